#!/usr/bin/env python3
"""A delaying Ethernet switch between several interfaces, in user space.

    switch.py --port IF:REGION:IP ... --delay A-B=MS ... [--intra-ms MS]

The three-region test's WAN (tests/regions/run.sh). It stands in for netem
delays between regions on a kernel without sch_netem: every IPv4 frame read
on one port is written, after a one-way delay, to the port whose address is
the frame's destination; the delay is `--delay A-B` between regions A and B
(either order), `--intra-ms` within a region. Frames to an address no port
has are dropped; other frames (ARP) go to every other port at once. No loss,
no jitter: the figures measure distance, not luck.

It reuses the soak test's lossy bridge (tests/soak/lossy_bridge.py) for the
raw sockets and the checksum completion veth needs.

SIGTERM or SIGINT: prints its counters (one JSON line) and exits.
"""
import argparse
import heapq
import json
import os
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "soak"))
from lossy_bridge import PACKET_OUTGOING, fix_l4_checksum, open_if  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", action="append", required=True, help="IF:REGION:IP")
    ap.add_argument("--delay", action="append", default=[], help="A-B=MS (one way)")
    ap.add_argument("--intra-ms", type=float, default=2.5)
    o = ap.parse_args()
    ports = []  # (socket, ifname, region, ip bytes)
    for p in o.port:
        ifname, region, ip = p.split(":")
        ports.append((open_if(ifname), ifname, region, socket.inet_aton(ip)))
    delay = {}
    for d in o.delay:
        pair, ms = d.split("=")
        a, b = pair.split("-")
        delay[(a, b)] = delay[(b, a)] = float(ms)
    by_ip = {ip: (s, region) for s, _, region, ip in ports}
    region_of = {s: region for s, _, region, _ in ports}
    name = {s: ifname for s, ifname, _, _ in ports}
    stats = {"forwarded": 0, "flooded": 0, "unroutable": 0, "send_errors": 0, "max_queue": 0}
    queue = []  # (due, seq, out socket, frame)
    seq = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    print(f"switch: {[p for p in o.port]} delays {o.delay} intra {o.intra_ms} ms", flush=True)
    socks = [s for s, _, _, _ in ports]
    while not stop:
        now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        try:
            ready, _, _ = select.select(socks, [], [], min(timeout, 0.5))
        except InterruptedError:
            continue
        for s in ready:
            while True:
                try:
                    frame, addr = s.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                is_ip = len(frame) >= 34 and frame[12:14] == b"\x08\x00"
                if not is_ip:
                    for other in socks:
                        if other is not s:
                            seq += 1
                            heapq.heappush(queue, (time.monotonic(), seq, other, frame))
                            stats["flooded"] += 1
                    continue
                dst = by_ip.get(frame[30:34])
                if dst is None or dst[0] is s:
                    stats["unroutable"] += 1
                    continue
                out, dst_region = dst
                src_region = region_of[s]
                d = o.intra_ms if src_region == dst_region else delay.get((src_region, dst_region), 0.0)
                seq += 1
                heapq.heappush(queue, (time.monotonic() + d / 1000.0, seq, out, fix_l4_checksum(frame)))
        stats["max_queue"] = max(stats["max_queue"], len(queue))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, frame = heapq.heappop(queue)
            try:
                out.send(frame)
                stats["forwarded"] += 1
            except OSError as e:
                stats["send_errors"] += 1
                if stats["send_errors"] <= 5:
                    print(f"switch: send on {name[out]} failed ({len(frame)} B): {e}",
                          file=sys.stderr, flush=True)
    print(json.dumps({"switch": stats}), flush=True)


if __name__ == "__main__":
    main()
