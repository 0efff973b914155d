// The shared types of the wire protocol, encoded inside messages: IceServer, Limits,
// PeerInfo, NodeAddr, SessionInfo and the WebRTC Signal variants. Split from
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
    /// <summary>(Version 4) One measured round trip to a region (PROTOCOL.md section 11
    /// "Regions"): region is 1 to 32 bytes of a-z, 0-9, '-'; the codec takes any string,
    /// the server checks (a bad list is answered invalid_argument).</summary>
    public sealed class RegionRtt
    {
        public string Region = "";
        public uint RttMs;

        public RegionRtt()
        {
        }

        public RegionRtt(string region, uint rttMs)
        {
            Region = region;
            RttMs = rttMs;
        }

        public void Write(PostcardWriter w)
        {
            w.WriteString(Region);
            w.WriteU32(RttMs);
        }

        public static RegionRtt Read(PostcardReader r)
        {
            RegionRtt e = new RegionRtt();
            e.Region = r.ReadString();
            e.RttMs = r.ReadU32();
            return e;
        }

        /// <summary>The list as a postcard sequence (a varint count, then the entries).</summary>
        public static void WriteList(PostcardWriter w, List<RegionRtt> list)
        {
            w.WriteVarint((ulong)list.Count);
            foreach (RegionRtt e in list)
            {
                e.Write(w);
            }
        }

        public static List<RegionRtt> ReadList(PostcardReader r)
        {
            int n = r.ReadCount();
            List<RegionRtt> list = new List<RegionRtt>();
            for (int i = 0; i < n; i++)
            {
                list.Add(Read(r));
            }
            return list;
        }
    }

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
}
