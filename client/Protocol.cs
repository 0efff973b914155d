// FlightSim P2P wire protocol, version 1: the portable C# codec.
//
// This file is the C# twin of the server's src/protocol.rs and implements
// docs/PROTOCOL.md exactly: postcard encoding and decoding of every ClientMsg and
// ServerMsg and the shared types, the control-stream frame (varint length prefix)
// with its size limit, the relay frame header, the planned WebSocket message
// framing, and the latest-state snapshot envelope the .NET client puts around
// flight data.
//
// Portability rules for this file (it is compiled by Debian's mono `mcs` in CI,
// C# 7.2 at most, and linked unchanged into the .NET 9 client):
//   * no C# 8+ syntax: no switch expressions, no nullable reference annotations,
//     no `using var`, no ranges or indices, no records, no default interface
//     members, no local functions;
//   * no .NET 5+ APIs: no BinaryPrimitives, no Span-only overloads; plain byte[]
//     with offset and count everywhere.
// Decoding is strict: over-long or overflowing varints, unknown enum tags, bools
// other than 0/1, invalid UTF-8, lengths past the end and trailing bytes all throw
// ProtocolException, so every implementation round-trips byte for byte.

using System;
using System.Collections.Generic;
using System.Text;

namespace FlightSimP2P.Protocol
{
    /// <summary>What kind of program a client is (for the server's logs and metrics).</summary>
    public enum ClientKind : uint
    {
        Rust = 0,
        DotNet = 1,
        Browser = 2,
        Other = 3
    }

    /// <summary>How the server delivers relay frames to this client.</summary>
    public enum RelayMode : uint
    {
        /// <summary>QUIC / WebTransport datagrams.</summary>
        Datagram = 0,
        /// <summary>One unidirectional stream per frame (System.Net.Quic has no datagrams).</summary>
        Stream = 1
    }

    /// <summary>Why a peer left a session, or why I am no longer in one.</summary>
    public enum LeaveReason : uint
    {
        Left = 0,
        TimedOut = 1,
        SessionExpired = 2,
        ServerShutdown = 3
    }

    /// <summary>Why a cluster node sends a client to another node (PROTOCOL.md section 11).</summary>
    public enum RedirectReason : uint
    {
        /// <summary>The session (asked for by JoinSession or by the resume token) lives on that node.</summary>
        Session = 0,
        /// <summary>This node is shutting down and handed my session to that node.</summary>
        Draining = 1,
        /// <summary>My session moved to that node.</summary>
        Moved = 2,
        /// <summary>New sessions go to that node.</summary>
        Placement = 3
    }

    /// <summary>Error codes of ServerMsg.Error and QUIC application close codes (PROTOCOL.md section 6).</summary>
    public enum ErrorCode : ushort
    {
        BadMessage = 1,
        FrameTooLarge = 2,
        UnsupportedVersion = 3,
        ProtocolViolation = 4,
        RateLimited = 5,
        ServerFull = 6,
        ShuttingDown = 7,
        Internal = 8,
        InvalidArgument = 9,
        UnknownSession = 10,
        SessionFull = 11,
        WrongPassword = 12,
        AlreadyInSession = 13,
        NotInSession = 14,
        UnknownPeer = 15,
        TooManySessions = 16,
        TooManyJoinAttempts = 17,
        ResumeFailed = 18,
        HelloTimeout = 19,
        Replaced = 20,
        SlowConsumer = 21,
        /// <summary>(cluster mode) The cluster directory cannot be reached now; retry later. Not fatal.</summary>
        ClusterUnavailable = 22
    }

    /// <summary>Helpers for error codes carried as raw u16 values.</summary>
    public static class ErrorCodes
    {
        private static readonly string[] Names =
        {
            null, "bad_message", "frame_too_large", "unsupported_version", "protocol_violation",
            "rate_limited", "server_full", "shutting_down", "internal", "invalid_argument",
            "unknown_session", "session_full", "wrong_password", "already_in_session",
            "not_in_session", "unknown_peer", "too_many_sessions", "too_many_join_attempts",
            "resume_failed", "hello_timeout", "replaced", "slow_consumer", "cluster_unavailable"
        };

        /// <summary>True for the codes this version of the protocol defines (1..=22).</summary>
        public static bool IsKnown(ushort code)
        {
            return code >= 1 && code < Names.Length;
        }

        /// <summary>Snake-case name as in PROTOCOL.md, or "error_N" for unknown codes.</summary>
        public static string Name(ushort code)
        {
            return IsKnown(code) ? Names[code] : "error_" + code;
        }

        /// <summary>
        /// Fatal errors are always followed by the server closing the connection with the
        /// same code. too_many_join_attempts (17) is not among them: when the player's
        /// network address has spent its failed-join budget the server sends it and keeps
        /// the connection ("try again in N s"); it closes with 17 only when that connection
        /// itself failed more than max_join_attempts times. Only the close decides.
        /// </summary>
        public static bool IsFatal(ushort code)
        {
            switch ((ErrorCode)code)
            {
                case ErrorCode.BadMessage:
                case ErrorCode.FrameTooLarge:
                case ErrorCode.UnsupportedVersion:
                case ErrorCode.ProtocolViolation:
                case ErrorCode.ServerFull:
                case ErrorCode.ShuttingDown:
                case ErrorCode.HelloTimeout:
                case ErrorCode.Replaced:
                case ErrorCode.SlowConsumer:
                    return true;
                default:
                    return false;
            }
        }
    }

    /// <summary>Bytes that are not a valid message, frame or relay header.</summary>
    public sealed class ProtocolException : Exception
    {
        /// <summary>BadMessage for undecodable bytes, FrameTooLarge for an over-long control frame.</summary>
        public ErrorCode Code { get; private set; }

        public ProtocolException(ErrorCode code, string message) : base(message)
        {
            Code = code;
        }

        public ProtocolException(ErrorCode code, string message, Exception inner) : base(message, inner)
        {
            Code = code;
        }
    }

    /// <summary>Appends postcard values to a growable buffer.</summary>
    public sealed class PostcardWriter
    {
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        private byte[] _buf;
        private int _len;

        public PostcardWriter() : this(64)
        {
        }

        public PostcardWriter(int capacity)
        {
            _buf = new byte[Math.Max(capacity, 16)];
        }

        /// <summary>Bytes written so far.</summary>
        public int Length
        {
            get { return _len; }
        }

        private void Reserve(int extra)
        {
            int need = _len + extra;
            if (need <= _buf.Length)
            {
                return;
            }
            int size = _buf.Length * 2;
            if (size < need)
            {
                size = need;
            }
            byte[] bigger = new byte[size];
            Buffer.BlockCopy(_buf, 0, bigger, 0, _len);
            _buf = bigger;
        }

        public void WriteU8(byte v)
        {
            Reserve(1);
            _buf[_len++] = v;
        }

        public void WriteBool(bool v)
        {
            WriteU8(v ? (byte)1 : (byte)0);
        }

        /// <summary>Unsigned LEB128 varint (postcard's u16/u32/u64/usize and enum tags).</summary>
        public void WriteVarint(ulong v)
        {
            Reserve(10);
            while (v >= 0x80)
            {
                _buf[_len++] = (byte)(v | 0x80);
                v >>= 7;
            }
            _buf[_len++] = (byte)v;
        }

        public void WriteU16(ushort v)
        {
            WriteVarint(v);
        }

        public void WriteU32(uint v)
        {
            WriteVarint(v);
        }

        public void WriteU64(ulong v)
        {
            WriteVarint(v);
        }

        /// <summary>Enum variant index.</summary>
        public void WriteTag(uint tag)
        {
            WriteVarint(tag);
        }

        public void WriteRaw(byte[] data, int offset, int count)
        {
            Reserve(count);
            Buffer.BlockCopy(data, offset, _buf, _len, count);
            _len += count;
        }

        /// <summary>Vec&lt;u8&gt;: varint length then the bytes.</summary>
        public void WriteBytes(byte[] data)
        {
            if (data == null)
            {
                throw new ArgumentNullException("data");
            }
            WriteVarint((ulong)data.Length);
            WriteRaw(data, 0, data.Length);
        }

        /// <summary>String: varint length in bytes then UTF-8 (strings with lone surrogates are refused).</summary>
        public void WriteString(string s)
        {
            if (s == null)
            {
                throw new ArgumentNullException("s");
            }
            byte[] utf8;
            try
            {
                utf8 = StrictUtf8.GetBytes(s);
            }
            catch (EncoderFallbackException e)
            {
                throw new ArgumentException("string is not valid Unicode (lone surrogate)", "s", e);
            }
            WriteBytes(utf8);
        }

        /// <summary>Option&lt;String&gt;: null is None.</summary>
        public void WriteOptionString(string s)
        {
            if (s == null)
            {
                WriteU8(0);
            }
            else
            {
                WriteU8(1);
                WriteString(s);
            }
        }

        /// <summary>Option&lt;Vec&lt;u8&gt;&gt;: null is None.</summary>
        public void WriteOptionBytes(byte[] b)
        {
            if (b == null)
            {
                WriteU8(0);
            }
            else
            {
                WriteU8(1);
                WriteBytes(b);
            }
        }

        /// <summary>Option&lt;u16&gt;.</summary>
        public void WriteOptionU16(ushort? v)
        {
            if (v.HasValue)
            {
                WriteU8(1);
                WriteU16(v.Value);
            }
            else
            {
                WriteU8(0);
            }
        }

        public byte[] ToArray()
        {
            byte[] result = new byte[_len];
            Buffer.BlockCopy(_buf, 0, result, 0, _len);
            return result;
        }
    }

    /// <summary>Reads postcard values from a byte range, strictly.</summary>
    public sealed class PostcardReader
    {
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        private readonly byte[] _buf;
        private int _pos;
        private readonly int _end;

        public PostcardReader(byte[] buffer, int offset, int count)
        {
            if (buffer == null)
            {
                throw new ArgumentNullException("buffer");
            }
            if (offset < 0 || count < 0 || offset > buffer.Length - count)
            {
                throw new ArgumentOutOfRangeException("count");
            }
            _buf = buffer;
            _pos = offset;
            _end = offset + count;
        }

        /// <summary>Bytes not read yet.</summary>
        public int Remaining
        {
            get { return _end - _pos; }
        }

        private static ProtocolException Bad(string what)
        {
            return new ProtocolException(ErrorCode.BadMessage, what);
        }

        public byte ReadU8()
        {
            if (_pos >= _end)
            {
                throw Bad("message ends early");
            }
            return _buf[_pos++];
        }

        public bool ReadBool()
        {
            byte b = ReadU8();
            if (b == 0)
            {
                return false;
            }
            if (b == 1)
            {
                return true;
            }
            throw Bad("bool is neither 0 nor 1");
        }

        /// <summary>
        /// Reads a varint of at most maxBytes bytes whose last byte may hold at most
        /// lastByteMax (the value's remaining high bits), as postcard does.
        /// </summary>
        private ulong ReadVarint(int maxBytes, byte lastByteMax, string typeName)
        {
            ulong value = 0;
            for (int i = 0; i < maxBytes; i++)
            {
                byte b = ReadU8();
                value |= (ulong)(b & 0x7F) << (7 * i);
                if ((b & 0x80) == 0)
                {
                    if (i == maxBytes - 1 && b > lastByteMax)
                    {
                        throw Bad("varint overflows " + typeName);
                    }
                    return value;
                }
            }
            throw Bad("varint longer than " + maxBytes + " bytes for " + typeName);
        }

        public ushort ReadU16()
        {
            return (ushort)ReadVarint(3, 0x03, "u16");
        }

        public uint ReadU32()
        {
            return (uint)ReadVarint(5, 0x0F, "u32");
        }

        public ulong ReadU64()
        {
            return ReadVarint(10, 0x01, "u64");
        }

        /// <summary>Enum variant index (postcard encodes it as a u32 varint).</summary>
        public uint ReadTag()
        {
            return ReadU32();
        }

        /// <summary>A length (usize) that must fit in what is left of the message.</summary>
        private int ReadLength()
        {
            ulong len = ReadVarint(10, 0x01, "usize");
            if (len > (ulong)Remaining)
            {
                throw Bad("length " + len + " runs past the end of the message");
            }
            return (int)len;
        }

        public byte[] ReadBytes()
        {
            int len = ReadLength();
            byte[] result = new byte[len];
            Buffer.BlockCopy(_buf, _pos, result, 0, len);
            _pos += len;
            return result;
        }

        public string ReadString()
        {
            int len = ReadLength();
            string s;
            try
            {
                s = StrictUtf8.GetString(_buf, _pos, len);
            }
            catch (DecoderFallbackException e)
            {
                throw new ProtocolException(ErrorCode.BadMessage, "string is not valid UTF-8", e);
            }
            _pos += len;
            return s;
        }

        /// <summary>Option tag: false for None, true for Some; anything but 0/1 is an error.</summary>
        public bool ReadOptionTag()
        {
            byte b = ReadU8();
            if (b == 0)
            {
                return false;
            }
            if (b == 1)
            {
                return true;
            }
            throw Bad("option tag is neither 0 nor 1");
        }

        public string ReadOptionString()
        {
            return ReadOptionTag() ? ReadString() : null;
        }

        public byte[] ReadOptionBytes()
        {
            return ReadOptionTag() ? ReadBytes() : null;
        }

        public ushort? ReadOptionU16()
        {
            if (ReadOptionTag())
            {
                return ReadU16();
            }
            return null;
        }

        /// <summary>Vec&lt;T&gt; element count. Each element takes at least one byte, so a count above Remaining is refused early.</summary>
        public int ReadCount()
        {
            return ReadLength();
        }

        public ClientKind ReadClientKind()
        {
            uint tag = ReadTag();
            if (tag > 3)
            {
                throw Bad("unknown ClientKind " + tag);
            }
            return (ClientKind)tag;
        }

        public RelayMode ReadRelayMode()
        {
            uint tag = ReadTag();
            if (tag > 1)
            {
                throw Bad("unknown RelayMode " + tag);
            }
            return (RelayMode)tag;
        }

        public RedirectReason ReadRedirectReason()
        {
            uint tag = ReadTag();
            if (tag > 3)
            {
                throw Bad("unknown RedirectReason " + tag);
            }
            return (RedirectReason)tag;
        }

        public LeaveReason ReadLeaveReason()
        {
            uint tag = ReadTag();
            if (tag > 3)
            {
                throw Bad("unknown LeaveReason " + tag);
            }
            return (LeaveReason)tag;
        }

        /// <summary>Throws unless every byte was consumed.</summary>
        public void ExpectEnd()
        {
            if (_pos != _end)
            {
                throw Bad((_end - _pos) + " trailing bytes after the message");
            }
        }
    }

    // ------------------------------------------------------------------
    // Shared types
    // ------------------------------------------------------------------

    /// <summary>One entry of WebRTC's iceServers; TURN entries carry short-lived coturn credentials.</summary>
    public sealed class IceServer
    {
        public List<string> Urls = new List<string>();
        /// <summary>null when absent (STUN).</summary>
        public string Username;
        /// <summary>null when absent (STUN).</summary>
        public string Credential;

        public void Write(PostcardWriter w)
        {
            w.WriteVarint((ulong)Urls.Count);
            foreach (string url in Urls)
            {
                w.WriteString(url);
            }
            w.WriteOptionString(Username);
            w.WriteOptionString(Credential);
        }

        public static IceServer Read(PostcardReader r)
        {
            IceServer s = new IceServer();
            int n = r.ReadCount();
            for (int i = 0; i < n; i++)
            {
                s.Urls.Add(r.ReadString());
            }
            s.Username = r.ReadOptionString();
            s.Credential = r.ReadOptionString();
            return s;
        }
    }

    /// <summary>Limits the server enforces on this connection (all u32; a rate of 0 means unlimited).</summary>
    public sealed class Limits
    {
        public uint MaxFrameBytes = 16384;
        public uint MaxRelayPayload = 1100;
        public uint RelayDatagramsPerSec = 500;
        public uint RelayBytesPerSec = 262144;
        public uint SignalsPerSec = 50;
        public uint MaxPeersPerSession = 16;
        public uint ResumeGraceMs = 15000;

        public void Write(PostcardWriter w)
        {
            w.WriteU32(MaxFrameBytes);
            w.WriteU32(MaxRelayPayload);
            w.WriteU32(RelayDatagramsPerSec);
            w.WriteU32(RelayBytesPerSec);
            w.WriteU32(SignalsPerSec);
            w.WriteU32(MaxPeersPerSession);
            w.WriteU32(ResumeGraceMs);
        }

        public static Limits Read(PostcardReader r)
        {
            Limits l = new Limits();
            l.MaxFrameBytes = r.ReadU32();
            l.MaxRelayPayload = r.ReadU32();
            l.RelayDatagramsPerSec = r.ReadU32();
            l.RelayBytesPerSec = r.ReadU32();
            l.SignalsPerSec = r.ReadU32();
            l.MaxPeersPerSession = r.ReadU32();
            l.ResumeGraceMs = r.ReadU32();
            return l;
        }
    }

    /// <summary>A peer of a session.</summary>
    public sealed class PeerInfo
    {
        public uint Id;
        public string Name = "";
        public ClientKind Client;

        public PeerInfo()
        {
        }

        public PeerInfo(uint id, string name, ClientKind client)
        {
            Id = id;
            Name = name;
            Client = client;
        }

        public void Write(PostcardWriter w)
        {
            w.WriteU32(Id);
            w.WriteString(Name);
            w.WriteTag((uint)Client);
        }

        public static PeerInfo Read(PostcardReader r)
        {
            PeerInfo p = new PeerInfo();
            p.Id = r.ReadU32();
            p.Name = r.ReadString();
            p.Client = r.ReadClientKind();
            return p;
        }
    }

    /// <summary>How clients reach one node of a cluster (PROTOCOL.md section 11).</summary>
    public sealed class NodeAddr
    {
        /// <summary>The node's name (for logs).</summary>
        public string Name = "";
        /// <summary>UDP "host:port" for raw QUIC and WebTransport; empty when it takes no UDP.</summary>
        public string Quic = "";
        /// <summary>Base URL of its HTTP port ("http://host:port"); WebSocket is {Http}/ws with ws/wss. Empty when none.</summary>
        public string Http = "";
        /// <summary>SHA-256 of its certificate's DER to pin; null when CA-signed.</summary>
        public byte[] CertSha256;

        public void Write(PostcardWriter w)
        {
            w.WriteString(Name);
            w.WriteString(Quic);
            w.WriteString(Http);
            w.WriteOptionBytes(CertSha256);
        }

        public static NodeAddr Read(PostcardReader r)
        {
            NodeAddr n = new NodeAddr();
            n.Name = r.ReadString();
            n.Quic = r.ReadString();
            n.Http = r.ReadString();
            n.CertSha256 = r.ReadOptionBytes();
            return n;
        }
    }

    /// <summary>State of a session as the server reports it.</summary>
    public sealed class SessionInfo
    {
        /// <summary>Six-character Crockford base32 join code.</summary>
        public string Code = "";
        public uint Host;
        public uint MaxPeers;
        public uint IdleTtlSecs;
        /// <summary>Everyone in the session, me included, in join order.</summary>
        public List<PeerInfo> Peers = new List<PeerInfo>();

        public void Write(PostcardWriter w)
        {
            w.WriteString(Code);
            w.WriteU32(Host);
            w.WriteU32(MaxPeers);
            w.WriteU32(IdleTtlSecs);
            w.WriteVarint((ulong)Peers.Count);
            foreach (PeerInfo p in Peers)
            {
                p.Write(w);
            }
        }

        public static SessionInfo Read(PostcardReader r)
        {
            SessionInfo s = new SessionInfo();
            s.Code = r.ReadString();
            s.Host = r.ReadU32();
            s.MaxPeers = r.ReadU32();
            s.IdleTtlSecs = r.ReadU32();
            int n = r.ReadCount();
            for (int i = 0; i < n; i++)
            {
                s.Peers.Add(PeerInfo.Read(r));
            }
            return s;
        }
    }

    /// <summary>WebRTC signaling payloads, relayed verbatim between the peers of a session.</summary>
    public abstract class Signal
    {
        /// <summary>Variant index on the wire.</summary>
        public abstract uint Tag { get; }

        protected abstract void WriteFields(PostcardWriter w);

        public void Write(PostcardWriter w)
        {
            w.WriteTag(Tag);
            WriteFields(w);
        }

        public static Signal Read(PostcardReader r)
        {
            uint tag = r.ReadTag();
            switch (tag)
            {
                case 0:
                    return new Offer(r.ReadString());
                case 1:
                    return new Answer(r.ReadString());
                case 2:
                    {
                        IceCandidate c = new IceCandidate();
                        c.Candidate = r.ReadString();
                        c.SdpMid = r.ReadOptionString();
                        c.SdpMLineIndex = r.ReadOptionU16();
                        return c;
                    }
                case 3:
                    return new EndOfCandidates();
                case 4:
                    return new App(r.ReadBytes());
                default:
                    throw new ProtocolException(ErrorCode.BadMessage, "unknown Signal tag " + tag);
            }
        }

        /// <summary>0: SDP offer.</summary>
        public sealed class Offer : Signal
        {
            public string Sdp;

            public Offer(string sdp)
            {
                Sdp = sdp;
            }

            public override uint Tag
            {
                get { return 0; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteString(Sdp);
            }
        }

        /// <summary>1: SDP answer.</summary>
        public sealed class Answer : Signal
        {
            public string Sdp;

            public Answer(string sdp)
            {
                Sdp = sdp;
            }

            public override uint Tag
            {
                get { return 1; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteString(Sdp);
            }
        }

        /// <summary>2: a trickled ICE candidate ("candidate:..." line as browsers give it).</summary>
        public sealed class IceCandidate : Signal
        {
            public string Candidate = "";
            /// <summary>null when absent.</summary>
            public string SdpMid;
            /// <summary>null when absent.</summary>
            public ushort? SdpMLineIndex;

            public IceCandidate()
            {
            }

            public IceCandidate(string candidate, string sdpMid, ushort? sdpMLineIndex)
            {
                Candidate = candidate;
                SdpMid = sdpMid;
                SdpMLineIndex = sdpMLineIndex;
            }

            public override uint Tag
            {
                get { return 2; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteString(Candidate);
                w.WriteOptionString(SdpMid);
                w.WriteOptionU16(SdpMLineIndex);
            }
        }

        /// <summary>3: no more candidates.</summary>
        public sealed class EndOfCandidates : Signal
        {
            public override uint Tag
            {
                get { return 3; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
            }
        }

        /// <summary>4: application bytes delivered reliably through the server.</summary>
        public sealed class App : Signal
        {
            public byte[] Data;

            public App(byte[] data)
            {
                Data = data;
            }

            public override uint Tag
            {
                get { return 4; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteBytes(Data);
            }
        }
    }

    // ------------------------------------------------------------------
    // ClientMsg
    // ------------------------------------------------------------------

    /// <summary>Messages a client sends on its control stream.</summary>
    public abstract class ClientMsg
    {
        /// <summary>Variant index on the wire.</summary>
        public abstract uint Tag { get; }

        protected abstract void WriteFields(PostcardWriter w);

        public void Write(PostcardWriter w)
        {
            w.WriteTag(Tag);
            WriteFields(w);
        }

        /// <summary>Postcard body, no length prefix.</summary>
        public byte[] Encode()
        {
            PostcardWriter w = new PostcardWriter();
            Write(w);
            return w.ToArray();
        }

        /// <summary>Decodes exactly one message; trailing bytes are an error.</summary>
        public static ClientMsg Decode(byte[] body)
        {
            if (body == null)
            {
                throw new ArgumentNullException("body");
            }
            return Decode(body, 0, body.Length);
        }

        public static ClientMsg Decode(byte[] buffer, int offset, int count)
        {
            PostcardReader r = new PostcardReader(buffer, offset, count);
            ClientMsg m = Read(r);
            r.ExpectEnd();
            return m;
        }

        public static ClientMsg Read(PostcardReader r)
        {
            uint tag = r.ReadTag();
            switch (tag)
            {
                case 0:
                    {
                        Hello h = new Hello();
                        h.Version = r.ReadU16();
                        h.Client = r.ReadClientKind();
                        h.RelayMode = r.ReadRelayMode();
                        h.Name = r.ReadString();
                        h.ResumeToken = r.ReadOptionBytes();
                        return h;
                    }
                case 1:
                    {
                        CreateSession c = new CreateSession();
                        c.MaxPeers = r.ReadU32();
                        c.Password = r.ReadOptionString();
                        return c;
                    }
                case 2:
                    {
                        JoinSession j = new JoinSession();
                        j.Code = r.ReadString();
                        j.Password = r.ReadOptionString();
                        return j;
                    }
                case 3:
                    {
                        uint to = r.ReadU32();
                        return new SignalTo(to, Signal.Read(r));
                    }
                case 4:
                    return new LeaveSession();
                case 5:
                    return new Ping(r.ReadU64());
                default:
                    throw new ProtocolException(ErrorCode.BadMessage, "unknown ClientMsg tag " + tag);
            }
        }

        /// <summary>0: the first message on every connection.</summary>
        public sealed class Hello : ClientMsg
        {
            public ushort Version = Wire.ProtocolVersion;
            public ClientKind Client = ClientKind.DotNet;
            public RelayMode RelayMode = RelayMode.Stream;
            /// <summary>At most 64 UTF-8 bytes; may be empty.</summary>
            public string Name = "";
            /// <summary>16 bytes from an earlier Welcome, or null.</summary>
            public byte[] ResumeToken;

            public override uint Tag
            {
                get { return 0; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU16(Version);
                w.WriteTag((uint)Client);
                w.WriteTag((uint)RelayMode);
                w.WriteString(Name);
                w.WriteOptionBytes(ResumeToken);
            }
        }

        /// <summary>1: create a session and become its host.</summary>
        public sealed class CreateSession : ClientMsg
        {
            /// <summary>0 = server maximum; else 2..=max.</summary>
            public uint MaxPeers;
            /// <summary>null = no password.</summary>
            public string Password;

            public CreateSession()
            {
            }

            public CreateSession(uint maxPeers, string password)
            {
                MaxPeers = maxPeers;
                Password = password;
            }

            public override uint Tag
            {
                get { return 1; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU32(MaxPeers);
                w.WriteOptionString(Password);
            }
        }

        /// <summary>2: join a session by its code.</summary>
        public sealed class JoinSession : ClientMsg
        {
            public string Code = "";
            /// <summary>null = no password.</summary>
            public string Password;

            public JoinSession()
            {
            }

            public JoinSession(string code, string password)
            {
                Code = code;
                Password = password;
            }

            public override uint Tag
            {
                get { return 2; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteString(Code);
                w.WriteOptionString(Password);
            }
        }

        /// <summary>3: ClientMsg::Signal: deliver a signal to one peer (0 = every other peer).</summary>
        public sealed class SignalTo : ClientMsg
        {
            public uint To;
            public Signal Signal;

            public SignalTo(uint to, Signal signal)
            {
                To = to;
                Signal = signal;
            }

            public override uint Tag
            {
                get { return 3; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU32(To);
                Signal.Write(w);
            }
        }

        /// <summary>4: leave my session (the connection stays open).</summary>
        public sealed class LeaveSession : ClientMsg
        {
            public override uint Tag
            {
                get { return 4; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
            }
        }

        /// <summary>5: answered with Pong.</summary>
        public sealed class Ping : ClientMsg
        {
            public ulong ClientTimeMs;

            public Ping(ulong clientTimeMs)
            {
                ClientTimeMs = clientTimeMs;
            }

            public override uint Tag
            {
                get { return 5; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU64(ClientTimeMs);
            }
        }
    }

    // ------------------------------------------------------------------
    // ServerMsg
    // ------------------------------------------------------------------

    /// <summary>Messages the server sends on a client's control stream.</summary>
    public abstract class ServerMsg
    {
        /// <summary>Variant index on the wire.</summary>
        public abstract uint Tag { get; }

        protected abstract void WriteFields(PostcardWriter w);

        public void Write(PostcardWriter w)
        {
            w.WriteTag(Tag);
            WriteFields(w);
        }

        /// <summary>Postcard body, no length prefix.</summary>
        public byte[] Encode()
        {
            PostcardWriter w = new PostcardWriter();
            Write(w);
            return w.ToArray();
        }

        /// <summary>Decodes exactly one message; trailing bytes are an error.</summary>
        public static ServerMsg Decode(byte[] body)
        {
            if (body == null)
            {
                throw new ArgumentNullException("body");
            }
            return Decode(body, 0, body.Length);
        }

        public static ServerMsg Decode(byte[] buffer, int offset, int count)
        {
            PostcardReader r = new PostcardReader(buffer, offset, count);
            ServerMsg m = Read(r);
            r.ExpectEnd();
            return m;
        }

        public static ServerMsg Read(PostcardReader r)
        {
            uint tag = r.ReadTag();
            switch (tag)
            {
                case 0:
                    {
                        Welcome w = new Welcome();
                        w.Version = r.ReadU16();
                        w.PeerId = r.ReadU32();
                        w.ResumeToken = r.ReadBytes();
                        w.Resumed = r.ReadBool();
                        int n = r.ReadCount();
                        for (int i = 0; i < n; i++)
                        {
                            w.IceServers.Add(IceServer.Read(r));
                        }
                        w.Limits = Protocol.Limits.Read(r);
                        w.ServerTimeMs = r.ReadU64();
                        return w;
                    }
                case 1:
                    return new SessionCreated(SessionInfo.Read(r));
                case 2:
                    return new SessionJoined(SessionInfo.Read(r));
                case 3:
                    return new PeerJoined(PeerInfo.Read(r));
                case 4:
                    {
                        uint peer = r.ReadU32();
                        return new PeerLeft(peer, r.ReadLeaveReason());
                    }
                case 5:
                    return new HostChanged(r.ReadU32());
                case 6:
                    {
                        uint from = r.ReadU32();
                        return new SignalFrom(from, Signal.Read(r));
                    }
                case 7:
                    {
                        ushort code = r.ReadU16();
                        return new Error(code, r.ReadString());
                    }
                case 8:
                    {
                        ulong client = r.ReadU64();
                        return new Pong(client, r.ReadU64());
                    }
                case 9:
                    return new SessionLeft(r.ReadLeaveReason());
                case 10:
                    {
                        uint peer = r.ReadU32();
                        return new PeerStatus(peer, r.ReadBool());
                    }
                case 11:
                    {
                        uint after = r.ReadU32();
                        return new GoingAway(after, r.ReadString());
                    }
                case 12:
                    {
                        RedirectReason reason = r.ReadRedirectReason();
                        return new Redirect(reason, NodeAddr.Read(r));
                    }
                default:
                    throw new ProtocolException(ErrorCode.BadMessage, "unknown ServerMsg tag " + tag);
            }
        }

        /// <summary>0: answer to Hello.</summary>
        public sealed class Welcome : ServerMsg
        {
            public ushort Version = Wire.ProtocolVersion;
            /// <summary>My peer id, never 0.</summary>
            public uint PeerId;
            /// <summary>16 bytes; send it in Hello.ResumeToken after a lost connection.</summary>
            public byte[] ResumeToken = new byte[0];
            public bool Resumed;
            public List<IceServer> IceServers = new List<IceServer>();
            public Limits Limits = new Limits();
            public ulong ServerTimeMs;

            public override uint Tag
            {
                get { return 0; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU16(Version);
                w.WriteU32(PeerId);
                w.WriteBytes(ResumeToken);
                w.WriteBool(Resumed);
                w.WriteVarint((ulong)IceServers.Count);
                foreach (IceServer s in IceServers)
                {
                    s.Write(w);
                }
                Limits.Write(w);
                w.WriteU64(ServerTimeMs);
            }
        }

        /// <summary>1: answer to CreateSession.</summary>
        public sealed class SessionCreated : ServerMsg
        {
            public SessionInfo Session;

            public SessionCreated(SessionInfo session)
            {
                Session = session;
            }

            public override uint Tag
            {
                get { return 1; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                Session.Write(w);
            }
        }

        /// <summary>2: answer to JoinSession, or sent after a resumed Welcome.</summary>
        public sealed class SessionJoined : ServerMsg
        {
            public SessionInfo Session;

            public SessionJoined(SessionInfo session)
            {
                Session = session;
            }

            public override uint Tag
            {
                get { return 2; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                Session.Write(w);
            }
        }

        /// <summary>3: another peer joined my session.</summary>
        public sealed class PeerJoined : ServerMsg
        {
            public PeerInfo Peer;

            public PeerJoined(PeerInfo peer)
            {
                Peer = peer;
            }

            public override uint Tag
            {
                get { return 3; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                Peer.Write(w);
            }
        }

        /// <summary>4: another peer left my session for good.</summary>
        public sealed class PeerLeft : ServerMsg
        {
            public uint Peer;
            public LeaveReason Reason;

            public PeerLeft(uint peer, LeaveReason reason)
            {
                Peer = peer;
                Reason = reason;
            }

            public override uint Tag
            {
                get { return 4; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU32(Peer);
                w.WriteTag((uint)Reason);
            }
        }

        /// <summary>5: the host role moved.</summary>
        public sealed class HostChanged : ServerMsg
        {
            public uint Host;

            public HostChanged(uint host)
            {
                Host = host;
            }

            public override uint Tag
            {
                get { return 5; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU32(Host);
            }
        }

        /// <summary>6: ServerMsg::Signal: a signal from another peer of my session.</summary>
        public sealed class SignalFrom : ServerMsg
        {
            public uint From;
            public Signal Signal;

            public SignalFrom(uint from, Signal signal)
            {
                From = from;
                Signal = signal;
            }

            public override uint Tag
            {
                get { return 6; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU32(From);
                Signal.Write(w);
            }
        }

        /// <summary>7: a request failed, or the connection is about to be closed.</summary>
        public sealed class Error : ServerMsg
        {
            /// <summary>Raw code; see ErrorCode (unknown future codes are kept as numbers).</summary>
            public ushort Code;
            public string Message;

            public Error(ushort code, string message)
            {
                Code = code;
                Message = message;
            }

            public override uint Tag
            {
                get { return 7; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU16(Code);
                w.WriteString(Message);
            }
        }

        /// <summary>8: answer to Ping.</summary>
        public sealed class Pong : ServerMsg
        {
            public ulong ClientTimeMs;
            public ulong ServerTimeMs;

            public Pong(ulong clientTimeMs, ulong serverTimeMs)
            {
                ClientTimeMs = clientTimeMs;
                ServerTimeMs = serverTimeMs;
            }

            public override uint Tag
            {
                get { return 8; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU64(ClientTimeMs);
                w.WriteU64(ServerTimeMs);
            }
        }

        /// <summary>9: I am no longer in a session.</summary>
        public sealed class SessionLeft : ServerMsg
        {
            public LeaveReason Reason;

            public SessionLeft(LeaveReason reason)
            {
                Reason = reason;
            }

            public override uint Tag
            {
                get { return 9; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteTag((uint)Reason);
            }
        }

        /// <summary>10: a peer lost its connection (Online = false) or resumed (true).</summary>
        public sealed class PeerStatus : ServerMsg
        {
            public uint Peer;
            public bool Online;

            public PeerStatus(uint peer, bool online)
            {
                Peer = peer;
                Online = online;
            }

            public override uint Tag
            {
                get { return 10; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU32(Peer);
                w.WriteBool(Online);
            }
        }

        /// <summary>11: the server is shutting down; reconnect with the resume token after the delay.</summary>
        public sealed class GoingAway : ServerMsg
        {
            public uint ReconnectAfterMs;
            public string Message;

            public GoingAway(uint reconnectAfterMs, string message)
            {
                ReconnectAfterMs = reconnectAfterMs;
                Message = message;
            }

            public override uint Tag
            {
                get { return 11; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU32(ReconnectAfterMs);
                w.WriteString(Message);
            }
        }

        /// <summary>
        /// 12: (cluster mode) go to another node: close this connection, connect to Node by the
        /// same transport, Hello (with the resume token if in a session) and send again the
        /// CreateSession or JoinSession this node did not answer. Answers Hello (instead of
        /// Welcome), JoinSession or CreateSession, or comes unasked (draining, session moved).
        /// </summary>
        public sealed class Redirect : ServerMsg
        {
            public RedirectReason Reason;
            public NodeAddr Node;

            public Redirect(RedirectReason reason, NodeAddr node)
            {
                Reason = reason;
                Node = node;
            }

            public override uint Tag
            {
                get { return 12; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteTag((uint)Reason);
                Node.Write(w);
            }
        }
    }

    // ------------------------------------------------------------------
    // Framing
    // ------------------------------------------------------------------

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
        /// it means to resume (any non-zero code keeps the seat for the grace period).
        /// </summary>
        public const long CloseReconnecting = 1000;

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

    /// <summary>
    /// The .NET client's envelope around flight data, on every path (DataChannel and
    /// relay): a 4-byte little-endian sequence number, then the application payload.
    /// The receiver keeps only snapshots newer than the last one it accepted from
    /// that peer, so a late frame (a relay stream overtaken by a newer one, a frame
    /// still in flight when the path switches) never overwrites newer state.
    /// Comparison is serial-number arithmetic (RFC 1982), so the counter may wrap.
    /// </summary>
    public static class SnapshotEnvelope
    {
        public const int HeaderBytes = 4;

        public static byte[] Wrap(uint seq, byte[] payload, int offset, int count)
        {
            if (payload == null)
            {
                throw new ArgumentNullException("payload");
            }
            if (offset < 0 || count < 0 || offset > payload.Length - count)
            {
                throw new ArgumentOutOfRangeException("count");
            }
            byte[] result = new byte[HeaderBytes + count];
            WriteHeader(result, 0, seq);
            Buffer.BlockCopy(payload, offset, result, HeaderBytes, count);
            return result;
        }

        public static void WriteHeader(byte[] buffer, int offset, uint seq)
        {
            buffer[offset] = (byte)seq;
            buffer[offset + 1] = (byte)(seq >> 8);
            buffer[offset + 2] = (byte)(seq >> 16);
            buffer[offset + 3] = (byte)(seq >> 24);
        }

        /// <summary>False when the data is too short to hold the header.</summary>
        public static bool TryUnwrap(byte[] buffer, int offset, int count, out uint seq, out int payloadOffset)
        {
            seq = 0;
            payloadOffset = 0;
            if (count < HeaderBytes)
            {
                return false;
            }
            seq = (uint)buffer[offset]
                | ((uint)buffer[offset + 1] << 8)
                | ((uint)buffer[offset + 2] << 16)
                | ((uint)buffer[offset + 3] << 24);
            payloadOffset = offset + HeaderBytes;
            return true;
        }

        /// <summary>True when seq comes after last in serial-number order.</summary>
        public static bool IsNewer(uint seq, uint last)
        {
            return unchecked((int)(seq - last)) > 0;
        }
    }

    /// <summary>Per-sender latest-snapshot filter (thread-safe).</summary>
    public sealed class SnapshotFilter
    {
        private readonly Dictionary<uint, uint> _last = new Dictionary<uint, uint>();
        private readonly object _lock = new object();
        private long _dropped;

        /// <summary>Snapshots refused as stale or duplicate so far.</summary>
        public long Dropped
        {
            get { lock (_lock) { return _dropped; } }
        }

        /// <summary>True if seq from peer is newer than anything accepted from it; records it.</summary>
        public bool Accept(uint peer, uint seq)
        {
            lock (_lock)
            {
                uint last;
                if (_last.TryGetValue(peer, out last) && !SnapshotEnvelope.IsNewer(seq, last))
                {
                    _dropped++;
                    return false;
                }
                _last[peer] = seq;
                return true;
            }
        }

        /// <summary>Forget a peer (it left, or a new link to it started from scratch).</summary>
        public void Reset(uint peer)
        {
            lock (_lock)
            {
                _last.Remove(peer);
            }
        }

        public void Clear()
        {
            lock (_lock)
            {
                _last.Clear();
            }
        }
    }
}
