// The messages of the wire protocol: every ClientMsg and ServerMsg variant with its
// postcard encoding and strict decoding (PROTOCOL.md sections 4 and 5). Split from
// Protocol.cs (the codec's seams: postcard, types, messages, framing, snapshots).
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

        /// <summary>Decodes exactly one message of a connection before version 4; trailing bytes are an error.</summary>
        public static ClientMsg Decode(byte[] body)
        {
            return Decode(body, Wire.ReportProtocolVersion);
        }

        /// <summary>Decodes exactly one message of a connection whose Hello said
        /// <paramref name="version"/>: from version 4 CreateSession and JoinSession end with
        /// region_rtts (PROTOCOL.md section 4). Trailing bytes are an error.</summary>
        public static ClientMsg Decode(byte[] body, ushort version)
        {
            if (body == null)
            {
                throw new ArgumentNullException("body");
            }
            return Decode(body, 0, body.Length, version);
        }

        public static ClientMsg Decode(byte[] buffer, int offset, int count)
        {
            return Decode(buffer, offset, count, Wire.ReportProtocolVersion);
        }

        public static ClientMsg Decode(byte[] buffer, int offset, int count, ushort version)
        {
            PostcardReader r = new PostcardReader(buffer, offset, count);
            ClientMsg m = Read(r, version);
            r.ExpectEnd();
            return m;
        }

        public static ClientMsg Read(PostcardReader r)
        {
            return Read(r, Wire.ReportProtocolVersion);
        }

        public static ClientMsg Read(PostcardReader r, ushort version)
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
                        // Only a version that has the field carries it (a version-1 Hello ends here).
                        if (h.Version >= 2)
                            h.AccessToken = r.ReadOptionString();
                        return h;
                    }
                case 1:
                    {
                        CreateSession c = new CreateSession();
                        c.MaxPeers = r.ReadU32();
                        c.Password = r.ReadOptionString();
                        if (version >= Wire.RegionProtocolVersion)
                            c.RegionRtts = RegionRtt.ReadList(r);
                        return c;
                    }
                case 2:
                    {
                        JoinSession j = new JoinSession();
                        j.Code = r.ReadString();
                        j.Password = r.ReadOptionString();
                        if (version >= Wire.RegionProtocolVersion)
                            j.RegionRtts = RegionRtt.ReadList(r);
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
                case 6:
                    {
                        ushort reportVersion = r.ReadU16();
                        return new Report(reportVersion, r.ReadBytes());
                    }
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
            /// <summary>(Version 2) The access token from the game's backend (PROTOCOL.md section 13), or null.
            /// Sent only when Version is 2 or more: Hello is versioned on the wire.</summary>
            public string AccessToken;

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
                if (Version >= 2)
                    w.WriteOptionString(AccessToken);
            }
        }

        /// <summary>1: create a session and become its host.</summary>
        public sealed class CreateSession : ClientMsg
        {
            /// <summary>0 = server maximum; else 2..=max.</summary>
            public uint MaxPeers;
            /// <summary>null = no password.</summary>
            public string Password;
            /// <summary>(Version 4) The measured round trips; null = the field is absent (a
            /// connection before version 4), empty = nothing measured. The client sets it when
            /// it sends the request, from the version of the connection (PROTOCOL.md section 4).</summary>
            public List<RegionRtt> RegionRtts;

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
                if (RegionRtts != null)
                    RegionRtt.WriteList(w, RegionRtts);
            }
        }

        /// <summary>2: join a session by its code.</summary>
        public sealed class JoinSession : ClientMsg
        {
            public string Code = "";
            /// <summary>null = no password.</summary>
            public string Password;
            /// <summary>(Version 4) The measured round trips; null = the field is absent (a
            /// connection before version 4), empty = nothing measured. The client sets it when
            /// it sends the request, from the version of the connection (PROTOCOL.md section 4).</summary>
            public List<RegionRtt> RegionRtts;

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
                if (RegionRtts != null)
                    RegionRtt.WriteList(w, RegionRtts);
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

        /// <summary>
        /// 6 (protocol version 3): a quality report (PROTOCOL.md section 14). Body of version 1:
        /// ReportV1.Encode(). Sent only on a connection whose Welcome.Version is 3 or more; a
        /// server skips a body version it does not know.
        /// </summary>
        public sealed class Report : ClientMsg
        {
            public ushort Version;
            public byte[] Body = new byte[0];

            public Report(ushort version, byte[] body)
            {
                Version = version;
                Body = body ?? new byte[0];
            }

            public static Report V1(ReportV1 body)
            {
                return new Report(ReportV1.Version, body.Encode());
            }

            public override uint Tag
            {
                get { return 6; }
            }

            protected override void WriteFields(PostcardWriter w)
            {
                w.WriteU16(Version);
                w.WriteBytes(Body);
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
}
