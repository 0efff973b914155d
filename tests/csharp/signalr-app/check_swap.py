#!/usr/bin/env python3
"""The SignalR-style app's client code (ChatClient.cs) and hub (ChatHub.cs) must be what
a SignalR app has, with only its using lines changed: outside the `// SWAP BEGIN` ..
`// SWAP END` block (using lines and comments only) they may not name FlightSim P2P's own
API (the members SignalR does not have). Program.cs, the test driver, may.
Usage: check_swap.py [FILE...] (default: the two files). Exit 1 with the offending lines."""
import os, re, sys

here = os.path.dirname(os.path.abspath(__file__))
files = sys.argv[1:] or [os.path.join(here, "ChatClient.cs"), os.path.join(here, "ChatHub.cs")]

# FlightSim P2P's public names that SignalR's client and server APIs do not have.
OWN = [
    "FlightSimP2P", "WebRTCP2P", "MapHub", "Handle<", "StartAnd", "CreateSessionAsync", "JoinSessionAsync",
    "LeaveSessionAsync", "SendFlightData", "FlightDataReceived", "SendToPeerCoreAsync", "SendAppData",
    "AppDataReceived", "PeerId", "IsHost", ".Session", "SessionInfo", "SessionChanged", "PeerJoined",
    "PeerLeft", "PeerPathChanged", "FlightPath", "GetPath", "Redirected", "ServerUrl", "RetrySchedule",
    "AccessTokenTransportFactory", "HubAudience", "Configure(", "DirectFramesDropped", "IceServer",
    "StaleSnapshotsDropped", "HostChanged", "ServerError", "PeerStatusChanged", "AllPeers",
]

bad = []
for path in files:
    lines = open(path).read().split("\n")
    inside = False
    swaps = 0
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if s.startswith("// SWAP BEGIN"):
            inside = True
            swaps += 1
            continue
        if s.startswith("// SWAP END"):
            inside = False
            continue
        if inside:
            if s and not s.startswith("//") and not re.match(r"^using [A-Za-z0-9_.]+;$", s):
                bad.append("%s:%d: not a using line inside the SWAP block: %s" % (path, n, s))
            continue
        code = s.split("//", 1)[0]
        for name in OWN:
            if name in code:
                bad.append("%s:%d: names %s (no SignalR counterpart): %s" % (path, n, name, s))
    if swaps != 1:
        bad.append("%s: needs exactly one SWAP block, has %d" % (path, swaps))

if bad:
    sys.stderr.write("\n".join(bad) + "\n")
    sys.exit(1)
