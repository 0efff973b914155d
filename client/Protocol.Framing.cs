// Framing of the wire protocol: the control-stream frame (varint length prefix and its
// size limit, FrameDecoder), the relay frame header and WebSocket message framing
// (Wire), and the first request in the URL (First). Split from Protocol.cs so what
// puts messages on a transport stands apart from the messages themselves.
//
// Portability rules for every Protocol.*.cs file (compiled by Debian's mono `mcs` in CI,
// C# 7.2 at most, and linked unchanged into the .NET 8/9 client):
//   * no C# 8+ syntax: no switch expressions, no nullable reference annotations,
//     no `using var`, no ranges or indices, no records, no default interface
//     members, no local functions;
//   * no .NET 5+ APIs: no BinaryPrimitives, no Span-only overloads; plain byte[]
//     with offset and count everywhere.

using System;
using System.Collections.Generic;
using System.Text;

namespace FlightSimP2P.Protocol
{
    /// <summary>What a WebSocket message carries (first byte of the message).</summary>
    public enum WsMessageKind : byte
    {
        /// <summary>0x00: a control message body (no length prefix: the WebSocket message is the frame).</summary>
        Control = 0x00,
        /// <summary>0x01: a relay frame, varint(peer) || payload.</summary>
        Relay = 0x01
    }

    /// <summary>Constants, control frames, relay frames and WebSocket messages.</summary>
    public static class Wire
    {
        public const ushort ProtocolVersion = 1;
        /// <summary>Hello/Welcome version 3: the fields of version 2; the client may send Report (PROTOCOL.md section 14).</summary>
        public const ushort ReportProtocolVersion = 3;
        /// <summary>Hello/Welcome version 4: CreateSession and JoinSession carry region_rtts (PROTOCOL.md sections 4 and 11).</summary>
        public const ushort RegionProtocolVersion = 4;
        /// <summary>Version 5: the client follows a session move make-before-break (PROTOCOL.md section 11).</summary>
        public const ushort MoveProtocolVersion = 5;
        /// <summary>ALPN of raw QUIC clients.</summary>
        public const string Alpn = "fsp2p/1";
        /// <summary>Control frame limit a client may assume before Welcome.</summary>
        public const int DefaultMaxFrameBytes = 16384;
        /// <summary>Default relay payload limit (Welcome.Limits.MaxRelayPayload says the real one).</summary>
        public const int DefaultMaxRelayPayload = 1100;
        /// <summary>Longest relay header: a u32 varint.</summary>
        public const int MaxRelayHeaderBytes = 5;
        /// <summary>Relay frame destination meaning "every other peer in my session".</summary>
        public const uint AllPeers = 0;
        public const int ResumeTokenLength = 16;
        public const int MaxNameBytes = 64;
        public const int MaxPasswordBytes = 128;
        /// <summary>QUIC application close code for leaving for good.</summary>
        public const long CloseLeave = 0;
        /// <summary>
        /// QUIC application close code this client uses when it drops a connection
        /// it means to resume (any non-zero code keeps the seat for the grace period):
        /// 999, the abandon code every client uses (PROTOCOL.md section 12, rule 4).
        /// </summary>
        public const long CloseReconnecting = 999;

        /// <summary>The same over WebSocket: status 4999 (4000 + 999).</summary>
        public const int WsCloseReconnecting = 4999;

        /// <summary>Bytes a varint of this value takes.</summary>
        public static int VarintLength(ulong v)
        {
            int n = 1;
            while (v >= 0x80)
            {
                v >>= 7;
                n++;
            }
            return n;
        }

        /// <summary>Writes a varint at buffer[offset..]; returns the bytes written.</summary>
        public static int WriteVarint(byte[] buffer, int offset, ulong v)
        {
            int i = offset;
            while (v >= 0x80)
            {
                buffer[i++] = (byte)(v | 0x80);
                v >>= 7;
            }
            buffer[i++] = (byte)v;
            return i - offset;
        }

        /// <summary>
        /// Reads a u32 varint (at most 5 bytes, value at most uint.MaxValue) from the
        /// front of a byte range, like the server's take_varint: returns false when
        /// the range ends before the varint does, throws on a bad varint.
        /// </summary>
        public static bool TryReadVarint32(byte[] buffer, int offset, int count, out uint value, out int used)
        {
            ulong v = 0;
            value = 0;
            used = 0;
            for (int i = 0; i < count; i++)
            {
                if (i >= 5)
                {
                    throw new ProtocolException(ErrorCode.BadMessage, "varint longer than 5 bytes");
                }
                byte b = buffer[offset + i];
                v |= (ulong)(b & 0x7F) << (7 * i);
                if ((b & 0x80) == 0)
                {
                    if (v > uint.MaxValue)
                    {
                        throw new ProtocolException(ErrorCode.BadMessage, "varint above u32::MAX");
                    }
                    value = (uint)v;
                    used = i + 1;
                    return true;
                }
            }
            if (count >= 5)
            {
                throw new ProtocolException(ErrorCode.BadMessage, "varint longer than 5 bytes");
            }
            return false;
        }

        /// <summary>Prefixes a message body with its varint length.</summary>
        public static byte[] Frame(byte[] body)
        {
            if (body == null)
            {
                throw new ArgumentNullException("body");
            }
            byte[] frame = new byte[VarintLength((ulong)body.Length) + body.Length];
            int n = WriteVarint(frame, 0, (ulong)body.Length);
            Buffer.BlockCopy(body, 0, frame, n, body.Length);
            return frame;
        }

        /// <summary>A control frame: varint(len) || postcard(msg).</summary>
        public static byte[] EncodeFrame(ClientMsg msg)
        {
            return Frame(msg.Encode());
        }

        public static byte[] EncodeFrame(ServerMsg msg)
        {
            return Frame(msg.Encode());
        }

        /// <summary>A relay frame: varint(peer) || payload.</summary>
        public static byte[] EncodeRelayFrame(uint peer, byte[] payload, int offset, int count)
        {
            if (payload == null)
            {
                throw new ArgumentNullException("payload");
            }
            if (offset < 0 || count < 0 || offset > payload.Length - count)
            {
                throw new ArgumentOutOfRangeException("count");
            }
            byte[] frame = new byte[VarintLength(peer) + count];
            int n = WriteVarint(frame, 0, peer);
            Buffer.BlockCopy(payload, offset, frame, n, count);
            return frame;
        }

        /// <summary>
        /// Splits a relay frame into its peer id and payload; returns the payload's
        /// offset in buffer (its length is offset + count - payloadOffset). An empty
        /// frame or a bad varint throws.
        /// </summary>
        public static int ParseRelayFrame(byte[] buffer, int offset, int count, out uint peer)
        {
            int used;
            if (!TryReadVarint32(buffer, offset, count, out peer, out used))
            {
                throw new ProtocolException(ErrorCode.BadMessage, "relay frame has no header");
            }
            return offset + used;
        }

        /// <summary>WebSocket control message: 0x00 || postcard(msg).</summary>
        public static byte[] EncodeWsControl(ClientMsg msg)
        {
            return PrefixByte((byte)WsMessageKind.Control, msg.Encode());
        }

        /// <summary>WebSocket control message from the server side (for tests and tools).</summary>
        public static byte[] EncodeWsControl(ServerMsg msg)
        {
            return PrefixByte((byte)WsMessageKind.Control, msg.Encode());
        }

        /// <summary>WebSocket relay message: 0x01 || varint(peer) || payload.</summary>
        public static byte[] EncodeWsRelay(uint peer, byte[] payload, int offset, int count)
        {
            if (payload == null)
            {
                throw new ArgumentNullException("payload");
            }
            if (offset < 0 || count < 0 || offset > payload.Length - count)
            {
                throw new ArgumentOutOfRangeException("count");
            }
            byte[] msg = new byte[1 + VarintLength(peer) + count];
            msg[0] = (byte)WsMessageKind.Relay;
            int n = WriteVarint(msg, 1, peer);
            Buffer.BlockCopy(payload, offset, msg, 1 + n, count);
            return msg;
        }

        /// <summary>
        /// Reads the kind byte of a WebSocket message; returns the offset of what
        /// follows it (the control body, or the relay frame). Empty messages and
        /// unknown kinds throw.
        /// </summary>
        public static int ParseWsMessage(byte[] buffer, int offset, int count, out WsMessageKind kind)
        {
            if (count < 1)
            {
                throw new ProtocolException(ErrorCode.BadMessage, "empty WebSocket message");
            }
            byte b = buffer[offset];
            if (b != (byte)WsMessageKind.Control && b != (byte)WsMessageKind.Relay)
            {
                throw new ProtocolException(ErrorCode.BadMessage, "unknown WebSocket message kind " + b);
            }
            kind = (WsMessageKind)b;
            return offset + 1;
        }

        private static byte[] PrefixByte(byte first, byte[] rest)
        {
            byte[] result = new byte[rest.Length + 1];
            result[0] = first;
            Buffer.BlockCopy(rest, 0, result, 1, rest.Length);
            return result;
        }

        /// <summary>Lower-case hex, for logs and tests.</summary>
        public static string ToHex(byte[] data)
        {
            StringBuilder sb = new StringBuilder(data.Length * 2);
            for (int i = 0; i < data.Length; i++)
            {
                sb.Append(data[i].ToString("x2"));
            }
            return sb.ToString();
        }

        /// <summary>
        /// Parses hex (e.g. a certificate SHA-256 from /cert-hash); ':' separators and
        /// whitespace are allowed, as openssl prints them. Throws FormatException.
        /// </summary>
        public static byte[] FromHex(string hex)
        {
            if (hex == null)
            {
                throw new ArgumentNullException("hex");
            }
            List<byte> bytes = new List<byte>(hex.Length / 2);
            int hi = -1;
            foreach (char c in hex)
            {
                if (c == ':' || char.IsWhiteSpace(c))
                {
                    continue;
                }
                int v = HexValue(c);
                if (v < 0)
                {
                    throw new FormatException("not a hex digit: '" + c + "'");
                }
                if (hi < 0)
                {
                    hi = v;
                }
                else
                {
                    bytes.Add((byte)((hi << 4) | v));
                    hi = -1;
                }
            }
            if (hi >= 0)
            {
                throw new FormatException("odd number of hex digits");
            }
            return bytes.ToArray();
        }

        private static int HexValue(char c)
        {
            if (c >= '0' && c <= '9')
            {
                return c - '0';
            }
            if (c >= 'a' && c <= 'f')
            {
                return c - 'a' + 10;
            }
            if (c >= 'A' && c <= 'F')
            {
                return c - 'A' + 10;
            }
            return -1;
        }
    }

    /// <summary>
    /// The first request in the URL (PROTOCOL.md section 3, "The first request in the
    /// URL"; section 10): a Hello, optionally followed by one CreateSession or
    /// JoinSession, as control frames exactly as on the stream, in base64url (RFC 4648
    /// section 5, no padding), sent as the <c>first</c> query parameter of the
    /// WebSocket upgrade (or WebTransport CONNECT). The server then answers Welcome and
    /// the request's answer as its first messages. The value can hold a join code and
    /// a resume token: never log a URL that carries it.
    /// </summary>
    public static class First
    {
        /// <summary>The query parameter's name.</summary>
        public const string Parameter = "first";
        /// <summary>The most bytes the frames may take before base64url (the server refuses more with 400).</summary>
        public const int MaxBytes = 2048;

        /// <summary>
        /// The frames: frame(hello) || [frame(request)]. request is null, a CreateSession
        /// or a JoinSession; anything else, or more than MaxBytes, throws ArgumentException.
        /// </summary>
        public static byte[] Frames(ClientMsg.Hello hello, ClientMsg request)
        {
            if (hello == null)
            {
                throw new ArgumentNullException("hello");
            }
            if (request != null && !(request is ClientMsg.CreateSession) && !(request is ClientMsg.JoinSession))
            {
                throw new ArgumentException("the first request is CreateSession or JoinSession", "request");
            }
            byte[] h = Wire.EncodeFrame(hello);
            byte[] r = request != null ? Wire.EncodeFrame(request) : new byte[0];
            if (h.Length + r.Length > MaxBytes)
            {
                throw new ArgumentException("the first request is longer than " + MaxBytes + " bytes", "request");
            }
            byte[] frames = new byte[h.Length + r.Length];
            Buffer.BlockCopy(h, 0, frames, 0, h.Length);
            Buffer.BlockCopy(r, 0, frames, h.Length, r.Length);
            return frames;
        }

        /// <summary>The <c>first</c> value: base64url of Frames(hello, request).</summary>
        public static string Encode(ClientMsg.Hello hello, ClientMsg request)
        {
            return Base64Url(Frames(hello, request));
        }

        /// <summary>RFC 4648 section 5 alphabet, no padding.</summary>
        public static string Base64Url(byte[] data)
        {
            if (data == null)
            {
                throw new ArgumentNullException("data");
            }
            return Convert.ToBase64String(data).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        }

        /// <summary>
        /// The URL with <c>first=value</c> added: <c>?first=</c>, or <c>&amp;first=</c> when
        /// it already has a query. A fragment is dropped (WebSocket URLs have none).
        /// value is base64url, which needs no escaping.
        /// </summary>
        public static string AppendTo(string url, string value)
        {
            if (url == null)
            {
                throw new ArgumentNullException("url");
            }
            if (value == null)
            {
                return url;
            }
            int hash = url.IndexOf('#');
            string s = hash >= 0 ? url.Substring(0, hash) : url;
            char last = s.Length > 0 ? s[s.Length - 1] : '\0';
            string sep = s.IndexOf('?') < 0 ? "?" : (last == '?' || last == '&' ? "" : "&");
            return s + sep + Parameter + "=" + value;
        }
    }

    /// <summary>
    /// Incremental splitter for the control stream: feed it bytes as they arrive and
    /// take whole frame bodies out. The declared length is checked against the limit
    /// before the body is buffered, so an oversized frame is refused from its header.
    /// </summary>
    public sealed class FrameDecoder
    {
        private byte[] _buf = new byte[256];
        private int _start;
        private int _end;
        private int _max;

        public FrameDecoder(int maxFrameBytes)
        {
            MaxFrameBytes = maxFrameBytes;
        }

        /// <summary>Longest body accepted; raise it to Welcome.Limits.MaxFrameBytes.</summary>
        public int MaxFrameBytes
        {
            get { return _max; }
            set
            {
                if (value < 1)
                {
                    throw new ArgumentOutOfRangeException("value");
                }
                _max = value;
            }
        }

        /// <summary>Bytes buffered but not yet returned as a frame.</summary>
        public int Buffered
        {
            get { return _end - _start; }
        }

        public void Push(byte[] data, int offset, int count)
        {
            if (count <= 0)
            {
                return;
            }
            if (_end + count > _buf.Length)
            {
                int live = _end - _start;
                int need = live + count;
                byte[] target = _buf;
                if (need > _buf.Length)
                {
                    int size = _buf.Length * 2;
                    if (size < need)
                    {
                        size = need;
                    }
                    target = new byte[size];
                }
                Buffer.BlockCopy(_buf, _start, target, 0, live);
                _buf = target;
                _start = 0;
                _end = live;
            }
            Buffer.BlockCopy(data, offset, _buf, _end, count);
            _end += count;
        }

        /// <summary>
        /// The next whole frame body, or false when more bytes are needed. Throws
        /// ProtocolException(FrameTooLarge) when a header announces more than
        /// MaxFrameBytes, and ProtocolException(BadMessage) for a bad length varint.
        /// A zero-length frame is returned as an empty body (which does not decode).
        /// </summary>
        public bool TryNextFrame(out byte[] body)
        {
            body = null;
            uint len;
            int used;
            if (!Wire.TryReadVarint32(_buf, _start, _end - _start, out len, out used))
            {
                return false;
            }
            if (len > (uint)_max)
            {
                throw new ProtocolException(ErrorCode.FrameTooLarge,
                    "frame of " + len + " bytes exceeds the limit of " + _max + " bytes");
            }
            int total = used + (int)len;
            if (_end - _start < total)
            {
                return false;
            }
            body = new byte[len];
            Buffer.BlockCopy(_buf, _start + used, body, 0, (int)len);
            _start += total;
            if (_start == _end)
            {
                _start = 0;
                _end = 0;
            }
            return true;
        }
    }
}
