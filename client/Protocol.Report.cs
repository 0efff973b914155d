// Issue 25, connection quality, the wire half (docs/PROTOCOL.md section 14):
//   * ClientMsg::Report (variant 6) = { version: u16, body: bytes }, body of version 1 =
//     postcard(ReportV1) — per-link path/grade/RTT and loss buckets, setup milestones,
//     ICE failure reasons and the candidate types gathered. No addresses, names or tokens;
//   * the buckets a link's RTT and loss go into;
//   * the 13-byte quality frame peers exchange on their flight path (echo request/reply),
//     FF FF FF FF || kind:u8 || id:u32 LE || t:u32 LE — flight senders skip sequence
//     0xFFFFFFFF, so no flight frame starts that way.
// Same portability rules as the other Protocol.*.cs files (Protocol.Messages.cs):
// C# 7.2, plain byte[].

using System;
using System.Collections.Generic;

namespace FlightSimP2P.Protocol
{
    /// <summary>The path of one peer-to-peer link, as reported (wire order).</summary>
    public enum LinkPath
    {
        Connecting = 0,
        Direct = 1,
        Turn = 2,
        Relay = 3,
    }

    /// <summary>A link's quality grade (wire order; LiveKit's names plus unknown).</summary>
    public enum QualityGrade
    {
        Unknown = 0,
        Excellent = 1,
        Good = 2,
        Poor = 3,
        Lost = 4,
    }

    /// <summary>Setup milestones (wire order).</summary>
    public enum MilestoneKind
    {
        /// <summary>Connect attempt started → Welcome received (path: connecting).</summary>
        Welcome = 0,
        /// <summary>Link created → first Signal from that peer (path: connecting).</summary>
        FirstSignal = 1,
        /// <summary>First offer sent or received → DataChannel usable (path: direct or turn).</summary>
        Direct = 2,
        /// <summary>First offer sent or received → fell back to the relay (path: relay).</summary>
        Relay = 3,
        /// <summary>Link created → first flight frame from that peer (path: the path it came on).</summary>
        FirstFrame = 4,
    }

    /// <summary>Why a WebRTC attempt failed (wire order).</summary>
    public enum IceFailReason
    {
        /// <summary>Not connected within the client's deadline.</summary>
        Timeout = 0,
        /// <summary>ICE state failed.</summary>
        Failed = 1,
        /// <summary>Was connected, lost, did not come back.</summary>
        Disconnected = 2,
        /// <summary>Gathering ended with no candidate.</summary>
        NoCandidates = 3,
        Other = 4,
    }

    /// <summary>Candidate types gathered (ReportV1.Candidates bits).</summary>
    [Flags]
    public enum CandidateKinds : byte
    {
        None = 0,
        Host = 1,
        Srflx = 2,
        Relay = 4,
        Prflx = 8,
    }

    public sealed class LinkReport
    {
        public uint Peer;
        public LinkPath Path;
        public QualityGrade Grade;
        public byte RttBucket = QualityBuckets.Unknown;
        public byte LossBucket = QualityBuckets.Unknown;
    }

    public sealed class Milestone
    {
        public MilestoneKind Kind;
        public LinkPath Path;
        public uint Ms;

        public Milestone()
        {
        }

        public Milestone(MilestoneKind kind, LinkPath path, uint ms)
        {
            Kind = kind;
            Path = path;
            Ms = ms;
        }
    }

    /// <summary>The body of a version-1 Report.</summary>
    public sealed class ReportV1
    {
        public const ushort Version = 1;
        public const int MaxLinks = 64;
        public const int MaxMilestones = 16;
        public const int MaxIceFailures = 16;

        public List<LinkReport> Links = new List<LinkReport>();
        public List<Milestone> Setup = new List<Milestone>();
        public List<IceFailReason> IceFailures = new List<IceFailReason>();
        public CandidateKinds Candidates;

        /// <summary>postcard(ReportV1). Throws when a list is over its bound.</summary>
        public byte[] Encode()
        {
            if (Links.Count > MaxLinks || Setup.Count > MaxMilestones || IceFailures.Count > MaxIceFailures)
            {
                throw new ProtocolException(ErrorCode.InvalidArgument, "ReportV1 over a bound (links 64, setup 16, ice_failures 16)");
            }
            PostcardWriter w = new PostcardWriter();
            w.WriteVarint((ulong)Links.Count);
            foreach (LinkReport l in Links)
            {
                w.WriteU32(l.Peer);
                w.WriteTag((uint)l.Path);
                w.WriteTag((uint)l.Grade);
                w.WriteU8(l.RttBucket);
                w.WriteU8(l.LossBucket);
            }
            w.WriteVarint((ulong)Setup.Count);
            foreach (Milestone m in Setup)
            {
                w.WriteTag((uint)m.Kind);
                w.WriteTag((uint)m.Path);
                w.WriteU32(m.Ms);
            }
            w.WriteVarint((ulong)IceFailures.Count);
            foreach (IceFailReason r in IceFailures)
            {
                w.WriteTag((uint)r);
            }
            w.WriteU8((byte)Candidates);
            return w.ToArray();
        }

        /// <summary>Strict: unknown enum values, lists over their bound and trailing bytes are errors.</summary>
        public static ReportV1 Decode(byte[] body)
        {
            if (body == null)
            {
                throw new ArgumentNullException("body");
            }
            PostcardReader r = new PostcardReader(body, 0, body.Length);
            ReportV1 rep = new ReportV1();
            int n = Count(r, MaxLinks, "links");
            for (int i = 0; i < n; i++)
            {
                LinkReport l = new LinkReport();
                l.Peer = r.ReadU32();
                l.Path = (LinkPath)Enum(r, 3, "LinkPath");
                l.Grade = (QualityGrade)Enum(r, 4, "Grade");
                l.RttBucket = r.ReadU8();
                l.LossBucket = r.ReadU8();
                rep.Links.Add(l);
            }
            n = Count(r, MaxMilestones, "setup");
            for (int i = 0; i < n; i++)
            {
                Milestone m = new Milestone();
                m.Kind = (MilestoneKind)Enum(r, 4, "MilestoneKind");
                m.Path = (LinkPath)Enum(r, 3, "LinkPath");
                m.Ms = r.ReadU32();
                rep.Setup.Add(m);
            }
            n = Count(r, MaxIceFailures, "ice_failures");
            for (int i = 0; i < n; i++)
            {
                rep.IceFailures.Add((IceFailReason)Enum(r, 4, "IceFailReason"));
            }
            rep.Candidates = (CandidateKinds)r.ReadU8();
            r.ExpectEnd();
            return rep;
        }

        private static int Count(PostcardReader r, int max, string what)
        {
            int n = r.ReadCount();
            if (n > max)
            {
                throw new ProtocolException(ErrorCode.BadMessage, what + ": " + n + " entries, at most " + max);
            }
            return n;
        }

        private static uint Enum(PostcardReader r, uint max, string what)
        {
            uint tag = r.ReadTag();
            if (tag > max)
            {
                throw new ProtocolException(ErrorCode.BadMessage, "unknown " + what + " " + tag);
            }
            return tag;
        }
    }

    /// <summary>RTT and loss buckets of a LinkReport (edges shared with the server's histograms).</summary>
    public static class QualityBuckets
    {
        public const byte Unknown = 255;
        public static readonly double[] RttEdgesMs = { 25, 50, 75, 100, 150, 200, 300, 500, 1000 };
        public static readonly double[] LossEdgesPct = { 0, 1, 2, 5, 10, 20, 50 };

        /// <summary>Index of the first edge ≥ rttMs (0..8), 9 above 1000, 255 for null.</summary>
        public static byte Rtt(double? rttMs)
        {
            return rttMs.HasValue ? Bucket(RttEdgesMs, rttMs.Value) : Unknown;
        }

        /// <summary>Index of the first edge ≥ lossPct (0..6), 7 above 50, 255 for null (nothing decided).</summary>
        public static byte Loss(double? lossPct)
        {
            return lossPct.HasValue ? Bucket(LossEdgesPct, lossPct.Value) : Unknown;
        }

        private static byte Bucket(double[] edges, double v)
        {
            for (int i = 0; i < edges.Length; i++)
            {
                if (edges[i] >= v)
                {
                    return (byte)i;
                }
            }
            return (byte)edges.Length;
        }
    }

    public enum QualityFrameKind
    {
        EchoRequest = 1,
        EchoReply = 2,
    }

    /// <summary>What a peer-to-peer payload is, by its first bytes.</summary>
    public enum QualityParse
    {
        /// <summary>Does not start FF FF FF FF: flight data (or an ack), not ours.</summary>
        NotQuality,
        /// <summary>A well-formed echo request or reply.</summary>
        Ok,
        /// <summary>Starts FF FF FF FF but is not 13 bytes or has another kind: drop it.</summary>
        Bad,
    }

    /// <summary>Quality frames: FF FF FF FF || kind:u8 || id:u32 LE || t:u32 LE (13 bytes).</summary>
    public static class QualityFrame
    {
        public const int Bytes = 13;
        /// <summary>The sequence number flight senders skip (its header is the quality marker).</summary>
        public const uint MarkerSeq = 0xFFFFFFFF;

        public static byte[] Encode(QualityFrameKind kind, uint id, uint t)
        {
            byte[] b = new byte[Bytes];
            b[0] = 0xFF;
            b[1] = 0xFF;
            b[2] = 0xFF;
            b[3] = 0xFF;
            b[4] = (byte)kind;
            b[5] = (byte)id;
            b[6] = (byte)(id >> 8);
            b[7] = (byte)(id >> 16);
            b[8] = (byte)(id >> 24);
            b[9] = (byte)t;
            b[10] = (byte)(t >> 8);
            b[11] = (byte)(t >> 16);
            b[12] = (byte)(t >> 24);
            return b;
        }

        /// <summary>True when the payload carries the quality marker (whatever follows).</summary>
        public static bool IsMarked(byte[] payload)
        {
            return payload != null && payload.Length >= 4
                && payload[0] == 0xFF && payload[1] == 0xFF && payload[2] == 0xFF && payload[3] == 0xFF;
        }

        public static QualityParse Parse(byte[] payload, out QualityFrameKind kind, out uint id, out uint t)
        {
            kind = 0;
            id = 0;
            t = 0;
            if (!IsMarked(payload))
            {
                return QualityParse.NotQuality;
            }
            if (payload.Length != Bytes || (payload[4] != 1 && payload[4] != 2))
            {
                return QualityParse.Bad;
            }
            kind = (QualityFrameKind)payload[4];
            id = (uint)(payload[5] | (payload[6] << 8) | (payload[7] << 16) | (payload[8] << 24));
            t = (uint)(payload[9] | (payload[10] << 8) | (payload[11] << 16) | (payload[12] << 24));
            return QualityParse.Ok;
        }

        /// <summary>The flight sequence number after seq, skipping MarkerSeq (… FFFFFFFE, 0, 1 …).</summary>
        public static uint NextSeq(uint seq)
        {
            uint next = unchecked(seq + 1);
            return next == MarkerSeq ? 0 : next;
        }
    }
}
