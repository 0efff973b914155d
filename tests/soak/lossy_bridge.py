#!/usr/bin/env python3
"""A lossy, jittery Ethernet bridge between two interfaces, in user space.

    lossy_bridge.py IF_A IF_B [--delay-ms 300] [--jitter-ms 300] [--loss 0.05] [--seed N]

The soak test's "lossy proxy" (tests/soak/run.sh). It stands in for
`tc qdisc add dev IF netem delay 300ms 300ms loss 5%` on both directions,
for kernels without sch_netem (this project's CI VM has none). Each IPv4
frame read on one interface is written to the other after its own delay,
drawn uniformly from [delay - jitter, delay + jitter] (netem's default
jitter distribution), or dropped with probability `loss`, independently per
frame and per direction. Frames with their own delays overtake each other,
as with netem's jitter. Other frames (ARP) pass at once, without loss.

It works below IP (AF_PACKET sockets in a namespace of its own with no
address), so UDP (QUIC, WebTransport) and TCP (WebSocket) see the same
path: real loss, real retransmissions, real reordering.

SIGTERM or SIGINT: prints its counters (one JSON line) and exits.
"""
import argparse
import array
import heapq
import json
import random
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def csum(data):
    """RFC 1071 checksum, in native byte order (written back the same way)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(array.array("H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fix_l4_checksum(frame):
    """The UDP or TCP checksum of an IPv4 frame, computed afresh.

    veth leaves it to the "hardware" (checksum offload): a frame read off
    one veth carries a partial checksum, which the kernel behind the other
    would reject. Without ethtool (to turn the offload off) the bridge
    completes it.
    """
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    if proto not in (6, 17) or (int.from_bytes(frame[20:22], "big") & 0x3FFF):
        return frame  # not TCP/UDP, or a fragment
    total = int.from_bytes(frame[16:18], "big")
    start, end = 14 + ihl, 14 + total
    off = start + (16 if proto == 6 else 6)
    if end > len(frame) or off + 2 > end:
        return frame
    b = bytearray(frame)
    b[off:off + 2] = b"\0\0"
    pseudo = bytes(b[26:34]) + bytes([0, proto]) + (end - start).to_bytes(2, "big")
    c = csum(pseudo + bytes(b[start:end]))
    if proto == 17 and c == 0:
        c = 0xFFFF
    b[off:off + 2] = array.array("H", [c]).tobytes()
    return bytes(b)


def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((name, 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    s.setblocking(False)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--delay-ms", type=float, default=300.0)
    ap.add_argument("--jitter-ms", type=float, default=300.0)
    ap.add_argument("--loss", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=None)
    # A harsher path for the control run: every IP frame dropped, both ways,
    # for this long, starting this many seconds after the bridge started.
    ap.add_argument("--blackout-at", type=float, default=None)
    ap.add_argument("--blackout-ms", type=float, default=0.0)
    o = ap.parse_args()
    rng = random.Random(o.seed)
    socks = {o.a: open_if(o.a), o.b: open_if(o.b)}
    other = {socks[o.a]: socks[o.b], socks[o.b]: socks[o.a]}
    name = {socks[o.a]: o.a, socks[o.b]: o.b}
    stats = {
        "forwarded": 0, "dropped": 0, "passed_non_ip": 0, "send_errors": 0,
        "oversize": 0, "max_queue": 0, "blackout_dropped": 0,
    }
    started = time.monotonic()
    blackout = None
    if o.blackout_at is not None and o.blackout_ms > 0:
        blackout = (started + o.blackout_at, started + o.blackout_at + o.blackout_ms / 1000.0)
    queue = []  # (due, seq, out socket, frame)
    seq = 0
    stop = []

    def on_signal(*_):
        stop.append(True)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"lossy_bridge: {o.a} <-> {o.b}: delay {o.delay_ms}±{o.jitter_ms} ms, loss {o.loss:.1%}"
          + (f", blackout {o.blackout_ms:.0f} ms at {o.blackout_at} s" if blackout else ""),
          flush=True)
    while not stop:
        now = time.monotonic()
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        try:
            ready, _, _ = select.select(list(socks.values()), [], [], min(timeout, 0.5))
        except InterruptedError:
            continue
        for s in ready:
            while True:
                try:
                    frame, addr = s.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # our own writes, seen on the way out
                if len(frame) > 1514:
                    stats["oversize"] += 1
                out = other[s]
                is_ip = len(frame) >= 14 and frame[12:14] == b"\x08\x00"
                if not is_ip:
                    stats["passed_non_ip"] += 1
                    due = time.monotonic()
                elif blackout and blackout[0] <= time.monotonic() < blackout[1]:
                    stats["blackout_dropped"] += 1
                    continue
                elif rng.random() < o.loss:
                    stats["dropped"] += 1
                    continue
                else:
                    frame = fix_l4_checksum(frame)
                    d = o.delay_ms + rng.uniform(-o.jitter_ms, o.jitter_ms)
                    due = time.monotonic() + max(0.0, d) / 1000.0
                seq += 1
                heapq.heappush(queue, (due, seq, out, frame))
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
                    print(f"lossy_bridge: send on {name[out]} failed ({len(frame)} B): {e}",
                          file=sys.stderr, flush=True)
    print(json.dumps({"lossy_bridge": stats}), flush=True)


if __name__ == "__main__":
    main()
