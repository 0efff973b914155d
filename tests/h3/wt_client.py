#!/usr/bin/env python3
"""An independent HTTP/3 + WebTransport client (aioquic) against the real server.

It shares no code with the server: aioquic's QUIC, TLS, HTTP/3 and QPACK, and
the few protocol bytes it needs written out here from docs/PROTOCOL.md (§1, §3,
§5). tests/webtransport_aioquic.rs starts the server and runs this script:

    wt_client.py HOST:PORT CERT_SHA256_HEX

Each check prints one line `ok <name>: <details>` or `FAIL <name>: <details>`;
the exit status is 0 only if every check passed. The last line is a JSON
object with what the driver compares with the server's side (the SETTINGS
received, the statuses read).
"""

import asyncio
import base64
import hashlib
import json
import ssl
import sys

try:
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import (
        DatagramReceived,
        DataReceived,
        HeadersReceived,
        WebTransportStreamDataReceived,
    )
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import ConnectionTerminated, StreamReset
except ImportError as e:  # scripts/deps.sh installs it (tests/h3/requirements.txt)
    print(f"FAIL aioquic: not installed ({e}); run scripts/deps.sh "
          "or pip install -r tests/h3/requirements.txt")
    sys.exit(2)

H3_NO_ERROR = 0x100
H3_REQUEST_REJECTED = 0x10B
WAIT = 10.0

# PROTOCOL.md §3: control frames are varint(len) || postcard(body); the
# golden vector gives Hello{version 1, Browser, Datagram, "", no token}.
HELLO = bytes.fromhex("06 00 01 02 00 00 00")
CREATE = bytes.fromhex("03 01 00 00")  # CreateSession{max_peers 0, no password}


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_leb128(buf: bytes, at: int):
    n, shift = 0, 0
    while at < len(buf):
        b = buf[at]
        at += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, at
    return None, at


def join(code: str) -> bytes:
    body = b"\x02" + leb128(len(code)) + code.encode() + b"\x00"
    return leb128(len(body)) + body


def first(*frames: bytes) -> str:
    return base64.urlsafe_b64encode(b"".join(frames)).rstrip(b"=").decode()


def control_frames(buf: bytes):
    """Whole control frames at the front of `buf`, and the rest."""
    frames, at = [], 0
    while True:
        n, body_at = read_leb128(buf, at)
        if n is None or body_at + n > len(buf):
            return frames, buf[at:]
        frames.append(buf[body_at:body_at + n])
        at = body_at + n


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.headers = {}  # stream id -> status
        self.resets = {}  # stream id -> error code
        self.wt_data = {}  # stream id -> bytes
        self.session_data = {}  # CONNECT stream id -> bytes (capsules)
        self.datagrams = []
        self.terminated = None
        self.changed = asyncio.Event()

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            self.resets[event.stream_id] = event.error_code
        if isinstance(event, ConnectionTerminated):
            self.terminated = event
        for e in self.h3.handle_event(event):
            if isinstance(e, HeadersReceived):
                self.headers[e.stream_id] = dict(e.headers).get(b":status", b"").decode()
            elif isinstance(e, WebTransportStreamDataReceived):
                self.wt_data[e.stream_id] = self.wt_data.get(e.stream_id, b"") + e.data
            elif isinstance(e, DataReceived):
                self.session_data[e.stream_id] = self.session_data.get(e.stream_id, b"") + e.data
            elif isinstance(e, DatagramReceived):
                self.datagrams.append(e.data)
        self.changed.set()
        # Not the base class's stream readers: their writers, once garbage,
        # would finish the CONNECT stream (a close without a capsule).
        if isinstance(event, ConnectionTerminated):
            super().quic_event_received(event)

    async def until(self, what, timeout=WAIT):
        async def loop():
            while True:
                v = what()
                if v is not None and v is not False:
                    return v
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(loop(), timeout)

    def send_connect(self, authority: str, path: str) -> int:
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(sid, [
            (b":method", b"CONNECT"),
            (b":protocol", b"webtransport"),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            (b"origin", b"https://localhost"),
        ])
        self.transmit()
        return sid

    async def settings(self):
        return await self.until(lambda: self.h3.received_settings)

    async def connect_status(self, authority: str, path: str):
        sid = self.send_connect(authority, path)
        def answer():
            if sid in self.headers:
                return self.headers[sid]
            if sid in self.resets:
                return f"reset 0x{self.resets[sid]:x}"
            if self.terminated is not None:
                return "no response before the connection closed"
            return None
        try:
            return sid, await self.until(answer)
        except asyncio.TimeoutError:
            return sid, f"no answer in {WAIT:.0f} s"

    def control(self, session: int):
        """Control frames the server sent on the stream it opened (PROTOCOL.md §3)."""
        for sid, data in self.wt_data.items():
            if sid % 4 == 1:  # server-initiated bidirectional
                return control_frames(data)[0]
        return []


class Failed(Exception):
    pass


FAILURES = []


def check(cond, name, details, fatal=False):
    """Report one check; a failed one fails the run, and stops it if `fatal`."""
    line = f"{'ok' if cond else 'FAIL'} {name}: {details}"
    if not cond:
        FAILURES.append(line)
        if fatal:
            raise Failed(line)
    print(line, flush=True)


async def open_client(host, port, cert_hash):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               max_datagram_frame_size=65536, server_name="localhost")
    # The dev certificate is pinned by its SHA-256, as browsers do
    # (serverCertificateHashes): checked below, not by a CA.
    config.verify_mode = ssl.CERT_NONE
    cm = connect(host, port, configuration=config, create_protocol=Client, wait_connected=True)
    client = await cm.__aenter__()
    cert = client._quic.tls._peer_certificate
    from cryptography.hazmat.primitives.serialization import Encoding
    got = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
    if got != cert_hash:
        raise Failed(f"FAIL certificate: sha-256 {got}, expected {cert_hash}")
    return cm, client


async def refused(host, port, authority, cert_hash, path, want, name, report):
    cm, c = await open_client(host, port, cert_hash)
    _, status = await c.connect_status(authority, path)
    term = await c.until(lambda: c.terminated)
    check(status == str(want), f"refusal {name}",
          f"CONNECT {path.split('?')[0]}{'?first=…' if '?' in path else ''} -> "
          f":status {status}, then CONNECTION_CLOSE 0x{term.error_code:x} "
          f"(application: {term.frame_type is None})")
    check(term.error_code == H3_NO_ERROR and term.frame_type is None,
          f"refusal {name} close", f"H3_NO_ERROR after the {want}")
    report["refusals"][name] = {"status": status, "close": term.error_code}
    await cm.__aexit__(None, None, None)


async def relay(sender, s_sid, receiver, payload: bytes):
    """Send `payload` to every peer by datagram until the receiver has it."""
    for _ in range(50):
        sender.h3.send_datagram(s_sid, leb128(0) + payload)
        sender.transmit()
        try:
            return await receiver.until(
                lambda: next((d for d in receiver.datagrams if d.endswith(payload)), None),
                timeout=0.2)
        except asyncio.TimeoutError:
            continue
    return None


async def main():
    target, cert_hash = sys.argv[1], sys.argv[2].lower()
    host, port = target.rsplit(":", 1)
    port = int(port)
    authority = target
    report = {"refusals": {}}

    # 3: the server's SETTINGS, as aioquic decoded them.
    cm, probe = await open_client(host, port, cert_hash)
    settings = await probe.settings()
    report["settings"] = [[k, v] for k, v in settings.items()]  # in frame order
    check(settings.get(0x14E9CD29) == 1, "settings", ", ".join(
        f"0x{k:x}={v}" for k, v in settings.items()))
    await cm.__aexit__(None, None, None)

    # 1: refusals reach the client with their status, then H3_NO_ERROR.
    await refused(host, port, authority, cert_hash, "/signal?first=AAAA", 400, "bad first", report)
    await refused(host, port, authority, cert_hash, "/nope", 404, "unknown path", report)

    # 5: create, join, relay both ways.
    cm_a, a = await open_client(host, port, cert_hash)
    a_sid, status = await a.connect_status(authority, "/signal?first=" + first(HELLO, CREATE))
    check(status == "200", "create", f":status {status}", fatal=True)
    created = await a.until(lambda: next((f for f in a.control(a_sid) if f[:1] == b"\x01"), None))
    n, at = read_leb128(created, 1)
    code = created[at:at + n].decode()
    check(len(code) > 0, "create", f"SessionCreated, code {code}", fatal=True)

    cm_b, b = await open_client(host, port, cert_hash)
    b_sid, status = await b.connect_status(authority, "/signal?first=" + first(HELLO, join(code)))
    check(status == "200", "join", f":status {status}", fatal=True)
    joined = await b.until(lambda: next((f for f in b.control(b_sid) if f[:1] == b"\x02"), None))
    check(joined[1:1 + len(code) + 1] == leb128(len(code)) + code.encode(), "join",
          f"SessionJoined {code}", fatal=True)

    got = await relay(a, a_sid, b, b"from-a-1")
    check(got is not None, "relay a->b", f"datagram {got!r}", fatal=True)
    got = await relay(b, b_sid, a, b"from-b-1")
    check(got is not None, "relay b->a", f"datagram {got!r}", fatal=True)

    # 2: a second CONNECT on A's connection is reset (or answered 4xx); A goes on.
    _, status = await a.connect_status(authority, "/signal")
    check(status == f"reset 0x{H3_REQUEST_REJECTED:x}" or status.startswith("4"),
          "second CONNECT", f"{status}")
    report["second_connect"] = status
    got = await relay(a, a_sid, b, b"from-a-2")
    check(got is not None, "second CONNECT first session", f"still relays: {got!r}")
    check(a.terminated is None, "second CONNECT first session", "connection still open")

    # 1: a limit (the driver starts the server with --max-connections 2).
    await refused(host, port, authority, cert_hash, "/signal", 503, "server full", report)

    # 4: B ends its session without a capsule: it finishes the CONNECT stream.
    b._quic.send_stream_data(b_sid, b"", end_stream=True)
    b.transmit()
    term = await b.until(lambda: b.terminated, timeout=35)
    check(term.error_code == H3_NO_ERROR, "close without capsule",
          f"server closed with 0x{term.error_code:x}")
    report["no_capsule_close"] = term.error_code
    await cm_b.__aexit__(None, None, None)

    # The proper way, for contrast: a CLOSE_WEBTRANSPORT_SESSION capsule (code 0).
    capsule = bytes.fromhex("68 43 04 00 00 00 00")  # type 0x2843, length 4, code 0
    a.h3._quic.send_stream_data(a_sid, b"\x00" + bytes([len(capsule)]) + capsule, end_stream=True)
    a.transmit()
    term = await a.until(lambda: a.terminated, timeout=35)
    check(term.error_code == H3_NO_ERROR, "close with capsule", f"0x{term.error_code:x}")
    await cm_a.__aexit__(None, None, None)
    print(json.dumps(report), flush=True)
    if FAILURES:
        raise Failed(f"{len(FAILURES)} check(s) failed")


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 120))
    except Failed as e:
        print(e, flush=True)
        sys.exit(1)
    except Exception as e:  # a timeout or a broken connection is a failure too
        print(f"FAIL unexpected: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
