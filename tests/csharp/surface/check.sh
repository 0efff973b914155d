#!/usr/bin/env bash
# The .NET-only adapters (client/Adapters/*.cs), compiled by mono against the declared
# surface (tests/csharp/surface/*Surface.cs: each SIPSorcery 10.0.16, System.Net.Quic
# and missing .NET member they use, with its published signature), with the symbols
# the .NET build defines. An adapter that uses a member the surface does not declare,
# or C# newer than 7.2, fails here. Then three checks that must fail, to show that
# this one can: an undeclared SIPSorcery member, an undeclared QUIC member, and a
# wholesale `using SIPSorcery.Net;` next to the project's types (CS0104 on IceServer).
# Finally: no C# file that sees the project's types imports SIPSorcery.Net or
# System.Net.Quic wholesale (aliases only).
# Usage: check.sh ROOT OUTDIR. Non-zero exit on any failure.
set -euo pipefail
root="$1"
out="$2"
cd "$root"

mapfile -t core < <(ls client/*.cs)
mapfile -t adapters < <(ls client/Adapters/*.cs)
mapfile -t surface < <(ls tests/csharp/surface/*Surface.cs)
compile() {
    mcs -nologo -langversion:7.2 -warnaserror -target:library \
        -define:NETCOREAPP -define:NET8_0_OR_GREATER -define:NET9_0_OR_GREATER \
        -r:System.dll -r:System.Core.dll -r:System.Net.Http.dll -r:System.Runtime.Serialization.dll \
        -out:"$out/adapters.dll" "${core[@]}" "${adapters[@]}" "${surface[@]}" "$@"
}
compile
echo "ok   adapters: ${#adapters[@]} files compiled by mono (C# 7.2) against the declared surface (${#surface[@]} files)" >&2

# Must fail: each probe uses what the surface does not declare.
probe() {
    local name="$1" expect="$2" code="$3"
    printf '%s\n' "$code" >"$out/probe.cs"
    if compile "$out/probe.cs" >"$out/probe.log" 2>&1; then
        echo "FAIL surface check: the probe '$name' compiled; the check cannot catch it" >&2
        return 1
    fi
    if ! grep -q "$expect" "$out/probe.log"; then
        echo "FAIL surface check: the probe '$name' failed, but not with $expect:" >&2
        cat "$out/probe.log" >&2
        return 1
    fi
    echo "ok   surface check catches: $name ($expect)" >&2
}
probe "an undeclared SIPSorcery member (RTCPeerConnection.getStats)" "error CS1061" '
#if NETCOREAPP
using SipPeer = SIPSorcery.Net.RTCPeerConnection;
namespace FlightSimP2P.Client { static class Probe { static object F(SipPeer pc) { return pc.getStats(); } } }
#endif'
probe "an undeclared System.Net.Quic member (QuicConnection.RemoteEndPoint)" "error CS1061" '
#if NET9_0_OR_GREATER
using NetQuicConnection = System.Net.Quic.QuicConnection;
namespace FlightSimP2P.Client { static class Probe { static object F(NetQuicConnection c) { return c.RemoteEndPoint; } } }
#endif'
probe "using SIPSorcery.Net wholesale next to FlightSimP2P.Protocol" "error CS0104" '
#if NETCOREAPP
using FlightSimP2P.Protocol;
using SIPSorcery.Net;
namespace FlightSimP2P.Client { static class Probe { static object F() { return typeof(IceServer); } } }
#endif'

# Must compile: SignalR app code that configures logging (the one builder call that needs
# the .NET build), against the library and the declared surface, as an app's own file.
printf '%s\n' '
#if NETCOREAPP
using System;
using Microsoft.Extensions.Logging;
using FlightSimP2P.Client;
namespace App { static class LoggingProbe { static HubConnection Make() {
    return new HubConnectionBuilder()
        .WithUrl("https://sim.example.com/hubs/flight")
        .ConfigureLogging(logging => logging.SetMinimumLevel(LogLevel.Debug))
        .WithAutomaticReconnect()
        .Build(); } } }
#endif' >"$out/logging-probe.cs"
compile "$out/logging-probe.cs"
echo "ok   app code calling ConfigureLogging(logging => logging.SetMinimumLevel(...)) compiles against the .NET build" >&2

# No wholesale import of a foreign namespace whose names clash with the project's.
wholesale() {
    grep -nE '^[[:space:]]*(global[[:space:]]+)?using[[:space:]]+(static[[:space:]]+)?(SIPSorcery(\.[A-Za-z.]+)?|System\.Net\.Quic)[[:space:]]*;' "$@" || true
}
bad="$(wholesale client/*.cs client/Adapters/*.cs tests/csharp/*.cs tests/csharp/signalr-app/*.cs 2>/dev/null)"
if [ -n "$bad" ]; then
    echo "FAIL wholesale using of SIPSorcery/System.Net.Quic (name foreign types by alias):" >&2
    echo "$bad" >&2
    exit 1
fi
printf 'using SIPSorcery.Net;\n' >"$out/probe-using.cs"
if [ -z "$(wholesale "$out/probe-using.cs")" ]; then
    echo "FAIL the wholesale-using check does not see 'using SIPSorcery.Net;'" >&2
    exit 1
fi
echo "ok   no wholesale using of SIPSorcery or System.Net.Quic (and the check sees one)" >&2
