// Issue 25 (connection quality), C# half: the pure quality tracker (echo schedule, RTT by
// RFC 6298, jitter by RFC 3550, loss window, path reset, lost/unknown/grade with
// hysteresis, frames/s windows, poll timeout), the RTT/loss buckets, the Report's bytes,
// quality frames, the report schedule and queue, and the core's wiring (echo answered on
// the path it came on and never delivered, acknowledged or counted; Hello version 3; Report
// only after a Welcome of version 3 or more; the telemetry opt-out). Simulated time only.
// Part of ServiceTests (a partial class): run by its Main, compiled with it by run.sh.
//
// Plain C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static partial class ServiceTests
    {
        private static void RunQuality()
        {
            Test("quality: echo every 500 ms from the path's start; RTT and rttvar by RFC 6298, jitter by RFC 3550", QualityRttJitter);
            Test("quality: a request unanswered 2000 ms is lost; loss over the last 20 decided; late, unknown and repeated replies ignored", QualityLossWindow);
            Test("quality: lost 3000 ms after the first unanswered request (any reply clears it), and when the peer is offline", QualityLost);
            Test("quality: a path change resets the estimator (ids keep counting), connecting sends no echo and grades unknown", QualityPathReset);
            Test("quality: grade thresholds, hysteresis x0.8 on the way up, worse at once", QualityHysteresis);
            Test("quality: frames/s in 1000 ms windows from the tracker's creation; stale frames counted", QualityFps);
            Test("quality: poll timeout is the earliest of the next echo, a loss deadline and the lost deadline", QualityPollTimeout);
            Test("quality: RTT and loss buckets at their edges", QualityBucketsEdges);
            Test("quality: quality frames encode and parse; flight sequence numbers skip 0xFFFFFFFF", QualityFrames);
            Test("quality: Report bytes (ClientMsg variant 6, ReportV1 body) and strict decoding", QualityReportBytes);
            Test("quality: report schedule (10 s, early on change with a 2 s floor, queue without a link) and queue bounds", QualitySchedule);
            Test("quality core: Hello version 5; TelemetryEnabled off still says 5 (it follows moves) and sends no Report", QualityHelloVersion);
            Test("quality core: relay echo answered on the relay, never delivered, stale filter and counts untouched", QualityRelayEcho);
            Test("quality core: direct echo answered on its link, not acknowledged, not delivered", QualityDirectEcho);
            Test("quality core: echo requests on the relay, RTT from the replies, QualityChanged on grade and path changes", QualityCoreEchoLoop);
            Test("quality core: a newcomer awaiting the offer is connecting until the direct deadline, then relay; a Rust peer is relay at once", QualityCoreAwaitOffer);
            Test("quality shell: PeerQualityChanged reaches the app; a throwing handler stops neither events nor the timer loop (echoes go on)", QualityShellHandlerThrows);
            Test("quality core: Report only after a Welcome of version 3, with links, milestones and ICE failures", QualityCoreReports);
        }

        /// <summary>A tracker on a direct path (echoes every 500 ms; the relay's are every 2000 ms).</summary>
        private static QualityTracker DirectTracker(long now)
        {
            QualityTracker t = new QualityTracker(6, now);
            t.SetPath(now, LinkPath.Direct);
            return t;
        }

        private static void QualityRttJitter()
        {
            QualityTracker t = DirectTracker(0);
            Eq(1u, t.Tick(0), "first request at once on a usable path");
            Eq(0u, t.Tick(100), "none before 500 ms");
            t.Reply(40, 1);
            PeerQuality q = t.Snapshot(40);
            Eq((long?)40, q.RttMs, "first sample: srtt = r");
            Eq(20.0, t.RttvarMs, "first sample: rttvar = r/2");
            Eq(0.0, q.JitterMs, "first sample: jitter 0");
            Eq(QualityGrade.Excellent, q.Grade, "40 ms, no loss: excellent");
            Eq(0u, t.Tick(499), "not yet");
            Eq(2u, t.Tick(500), "500 ms after the previous send");
            t.Reply(560, 2);
            // rttvar = 0.75*20 + 0.25*|40-60| = 20; srtt = 0.875*40 + 0.125*60 = 42.5; jitter = 20/16.
            Eq(20.0, t.RttvarMs, "rttvar");
            Eq(42.5, t.SrttMs.Value, "srtt");
            q = t.Snapshot(560);
            Eq((long?)43, q.RttMs, "rtt_ms = round(42.5) = 43");
            Eq(1.3, q.JitterMs, "jitter 1.25 reported 1.3");
            Eq(0u, t.Tick(999), "next at 1000");
            Eq(3u, t.Tick(1000), "next at 1000");
        }

        private static void QualityLossWindow()
        {
            QualityTracker t = DirectTracker(0);
            t.Tick(0);
            t.Reply(10, 1);
            Eq(2u, t.Tick(500), "request 2");
            t.Tick(2499);
            Eq(1, t.Decided, "one decided (answered) at 2499");
            t.FrameIn(2500);
            Eq(2, t.Decided, "request 2 lost at 2500 (sent 500 + 2000), decided by any input");
            Eq(50.0, t.Snapshot(2500).LossPct, "1 of 2 lost");
            // A reply to the lost request, to an unknown id, to one answered before: ignored.
            double srtt = t.SrttMs.Value;
            t.Reply(2600, 2);
            t.Reply(2600, 999);
            t.Reply(2600, 1);
            Eq(srtt, t.SrttMs.Value, "no RTT sample from ignored replies");
            Eq(2, t.Decided, "no loss decision from ignored replies");
            // 25 more answered at once: the window keeps the last 20, all answered.
            long now = 3000;
            for (int i = 0; i < 25; i++)
            {
                uint id = t.Tick(now);
                Check(id != 0, "request due at " + now);
                t.Reply(now + 5, id);
                now += 500;
            }
            Eq(20, t.Decided, "window of 20");
            Eq(0.0, t.Snapshot(now).LossPct, "the lost one left the window");
        }

        private static void QualityLost()
        {
            QualityTracker t = DirectTracker(0);
            t.Tick(0);
            t.Reply(10, 1);
            Eq(QualityGrade.Excellent, t.Grade, "answered");
            // Unanswered from 500 on.
            for (long now = 500; now < 3500; now += 500)
            {
                t.Tick(now);
            }
            Eq(500L, t.UnansweredSince, "unanswered since the first request after the last reply");
            t.FrameIn(3499);
            Check(t.Grade != QualityGrade.Lost, "not lost at 2999 ms unanswered (" + t.Grade + ")");
            t.FrameIn(3500);
            Eq(QualityGrade.Lost, t.Grade, "lost at 3000 ms");
            Check(t.TakeChanged(), "changed");
            // A reply to a request already decided lost still counts as heard.
            t.Reply(3600, 2);
            Eq(-1L, t.UnansweredSince, "heard");
            Check(t.Grade != QualityGrade.Lost, "no longer lost (" + t.Grade + ")");
            t.SetOnline(3700, false);
            Eq(QualityGrade.Lost, t.Grade, "offline: lost");
            Eq(0u, t.Tick(4000), "no echo to an offline peer");
            t.SetOnline(4100, true);
            Check(t.Tick(4100) != 0, "echo again once online");
        }

        private static void QualityPathReset()
        {
            QualityTracker t = new QualityTracker(6, 0);
            Eq(LinkPath.Connecting, t.Path, "starts connecting");
            Eq(0u, t.Tick(0), "no echo while connecting");
            Eq(QualityGrade.Unknown, t.Grade, "unknown while connecting");
            t.SetPath(100, LinkPath.Relay);
            Check(t.TakeChanged(), "path change is an event");
            Eq(1u, t.Tick(100), "first echo at the first tick on the new path");
            t.Reply(150, 1);
            Eq(0u, t.Tick(600), "relay: not 500 ms later");
            Eq(0u, t.Tick(2099), "relay: not before 2000 ms");
            Eq(2u, t.Tick(2100), "relay: an echo every 2000 ms");
            Eq(QualityGrade.Excellent, t.Grade, "measured");
            t.SetPath(2200, LinkPath.Direct);
            PeerQuality q = t.Snapshot(2200);
            Eq((long?)null, q.RttMs, "RTT forgotten");
            Eq(0.0, q.LossPct, "loss forgotten");
            Eq(0L, q.PathMs, "path_ms from the change");
            Eq(QualityGrade.Unknown, q.Grade, "no sample on this path");
            t.Reply(2220, 2);
            Eq((long?)null, t.Snapshot(2220).RttMs, "a reply to a request of the old path is ignored");
            Eq(3u, t.Tick(2220), "ids keep counting, first request at once");
            Eq(0u, t.Tick(2719), "direct: 500 ms");
            Eq(4u, t.Tick(2720), "direct: 500 ms");
            Eq(120L, t.Snapshot(2320).PathMs, "path_ms: 120 ms since the change at 2200");
            t.SetPath(2900, LinkPath.Connecting);
            Eq(QualityGrade.Unknown, t.Grade, "connecting: unknown");
            Eq(0u, t.Tick(5000), "connecting: no echo");
        }

        /// <summary>Feeds one answered request with RTT r; returns the grade after it.</summary>
        private static QualityGrade Sample(QualityTracker t, ref long now, long r)
        {
            uint id = t.Tick(now);
            if (id == 0)
            {
                throw new Exception("no request due at " + now);
            }
            t.Reply(now + r, id);
            now += 500;
            return t.Grade;
        }

        private static void QualityHysteresis()
        {
            // Raw thresholds from unknown (a first sample: srtt = r, jitter 0, no loss).
            long[] rtts = { 99, 100, 249, 250 };
            QualityGrade[] grades = { QualityGrade.Excellent, QualityGrade.Good, QualityGrade.Good, QualityGrade.Poor };
            for (int i = 0; i < rtts.Length; i++)
            {
                long n0 = 0;
                Eq(grades[i], Sample(DirectTracker(0), ref n0, rtts[i]), "first sample " + rtts[i] + " ms");
            }
            QualityTracker t = DirectTracker(0);
            long now = 0;
            Eq(QualityGrade.Poor, Sample(t, ref now, 260), "260 ms: poor (no hysteresis from unknown)");
            // Coming down from 260 ms with 10 ms samples: good's limit 250 is not enough, 200 is
            // (x0.8); excellent's 100 is not enough, 80 is.
            QualityGrade below250 = QualityGrade.Unknown, below200 = QualityGrade.Unknown;
            QualityGrade below100 = QualityGrade.Unknown, below80 = QualityGrade.Unknown;
            for (int i = 0; i < 60; i++)
            {
                QualityGrade g = Sample(t, ref now, 10);
                double s = t.SrttMs.Value;
                if (s < 250 && below250 == QualityGrade.Unknown) below250 = g;
                if (s < 200 && below200 == QualityGrade.Unknown) below200 = g;
                if (s < 100 && below100 == QualityGrade.Unknown) below100 = g;
                if (s < 80 && below80 == QualityGrade.Unknown) below80 = g;
            }
            Eq(QualityGrade.Poor, below250, "raw good at srtt < 250 stays poor (needs < 200)");
            Eq(QualityGrade.Good, below200, "good once srtt < 200");
            Eq(QualityGrade.Good, below100, "raw excellent at srtt < 100 stays good (needs < 80)");
            Eq(QualityGrade.Excellent, below80, "excellent once srtt < 80");
            // Worse at once: one 1900 ms sample lifts jitter to ~118 (> 50).
            Eq(QualityGrade.Poor, Sample(t, ref now, 1900), "worse grades are taken at once");

            // Poor to excellent raw with only good's x0.8 limits met: good. Fresh: 300 then 30s.
            QualityTracker u = DirectTracker(0);
            now = 0;
            Sample(u, ref now, 300);
            for (int i = 0; i < 10; i++)
            {
                Sample(u, ref now, 30);
            }
            // srtt now 30 + 270 * 0.875^10 = 101.0; one more: 92.2 (raw excellent, < 200 good-x0.8, not < 80).
            Sample(u, ref now, 30);
            Check(u.SrttMs.Value < 100 && u.SrttMs.Value >= 80, "srtt between 80 and 100 (" + u.SrttMs.Value + ")");
            Eq(QualityGrade.Good, u.Grade, "poor -> excellent raw, only good's x0.8 limits: good");

            // Loss and jitter limits: 1 lost of 20 (5 %) keeps good, not excellent.
            QualityTracker v = DirectTracker(0);
            now = 0;
            v.Tick(now);
            now += 500;
            for (int i = 0; i < 19; i++)
            {
                Sample(v, ref now, 20);
            }
            v.FrameIn(now);
            Eq(5.0, v.Snapshot(now).LossPct, "1 of 20 lost");
            Eq(QualityGrade.Good, v.Grade, "5 % loss: good (excellent needs < 2)");
        }

        private static void QualityFps()
        {
            QualityTracker t = DirectTracker(1000);
            t.FrameIn(1100);
            t.FrameIn(1200);
            t.FrameIn(1999);
            t.FrameOut(1500);
            Eq(0, t.Snapshot(1999).FpsIn, "no completed window before 2000");
            PeerQuality q = t.Snapshot(2000);
            Eq(3, q.FpsIn, "window [1000, 2000): 3 in");
            Eq(1, q.FpsOut, "1 out");
            t.FrameIn(2500);
            t.Stale(2600);
            t.Stale(2700);
            Eq(1, t.Snapshot(3000).FpsIn, "window [2000, 3000): 1 (stale frames are not frames in)");
            Eq(2L, t.Snapshot(3000).StaleDropped, "stale running total");
            Eq(0, t.Snapshot(4500).FpsIn, "an empty window in between reports 0");
        }

        private static void QualityPollTimeout()
        {
            QualityTracker t = DirectTracker(0);
            Eq(0L, t.PollTimeout(0), "echo due at once");
            t.Tick(0);
            Eq(500L, t.PollTimeout(0), "next echo at 500");
            // Ticks at 0..1500 unanswered; at 1600 the next echo (2000) comes first, then the
            // first loss deadline (id 1 at 2000) ties; after a tick at 2000 the loss deadline of id 2 (2500) and the echo (2500).
            for (long n = 500; n <= 1500; n += 500)
            {
                t.Tick(n);
            }
            Eq(2000L, t.PollTimeout(1600), "next echo and id 1's loss deadline at 2000");
            t.Tick(2000);
            Eq(2500L, t.PollTimeout(2000), "then 2500");
            t.SetOnline(2100, false);
            Eq(-1L, t.PollTimeout(2100), "offline: the estimate is forgotten, nothing to wake for");
            QualityTracker l = DirectTracker(0);
            l.Tick(0);
            l.SetPath(10, LinkPath.Connecting);
            Eq(-1L, l.PollTimeout(10), "connecting: nothing");
            QualityTracker c = new QualityTracker(6, 0);
            Eq(-1L, c.PollTimeout(0), "connecting, nothing outstanding: none");
        }

        private static void QualityBucketsEdges()
        {
            Eq((byte)255, QualityBuckets.Rtt(null), "rtt unknown");
            Eq((byte)0, QualityBuckets.Rtt(0), "rtt 0");
            Eq((byte)0, QualityBuckets.Rtt(25), "rtt 25: first edge >= 25");
            Eq((byte)1, QualityBuckets.Rtt(26), "rtt 26");
            Eq((byte)3, QualityBuckets.Rtt(100), "rtt 100");
            Eq((byte)8, QualityBuckets.Rtt(1000), "rtt 1000");
            Eq((byte)9, QualityBuckets.Rtt(1001), "rtt above 1000");
            Eq((byte)255, QualityBuckets.Loss(null), "loss unknown");
            Eq((byte)0, QualityBuckets.Loss(0), "loss 0");
            Eq((byte)1, QualityBuckets.Loss(0.1), "loss 0.1");
            Eq((byte)2, QualityBuckets.Loss(2), "loss 2");
            Eq((byte)3, QualityBuckets.Loss(2.1), "loss 2.1");
            Eq((byte)6, QualityBuckets.Loss(50), "loss 50");
            Eq((byte)7, QualityBuckets.Loss(50.1), "loss above 50");
            QualityTracker t = DirectTracker(0);
            LinkReport l = t.ToReport(0);
            Eq((byte)255, l.RttBucket, "report: no sample, rtt 255");
            Eq((byte)255, l.LossBucket, "report: nothing decided, loss 255");
            t.Tick(0);
            t.Reply(120, 1);
            l = t.ToReport(120);
            Eq((byte)4, l.RttBucket, "report: 120 ms in (100, 150]");
            Eq((byte)0, l.LossBucket, "report: 0 % of 1 decided");
            Eq(LinkPath.Direct, l.Path, "report: path");
        }

        private static void QualityFrames()
        {
            byte[] f = QualityFrame.Encode(QualityFrameKind.EchoRequest, 0x01020304, 0xA0B0C0D0);
            Eq("FF-FF-FF-FF-01-04-03-02-01-D0-C0-B0-A0", BitConverter.ToString(f), "request bytes");
            QualityFrameKind k;
            uint id, tt;
            Eq(QualityParse.Ok, QualityFrame.Parse(f, out k, out id, out tt), "parses");
            Check(k == QualityFrameKind.EchoRequest && id == 0x01020304 && tt == 0xA0B0C0D0, "fields");
            byte[] shortOne = new byte[12];
            Array.Copy(f, shortOne, 12);
            Eq(QualityParse.Bad, QualityFrame.Parse(shortOne, out k, out id, out tt), "12 bytes: bad");
            byte[] kind3 = (byte[])f.Clone();
            kind3[4] = 3;
            Eq(QualityParse.Bad, QualityFrame.Parse(kind3, out k, out id, out tt), "kind 3: bad");
            byte[] flight = SnapshotEnvelope.Wrap(0xFFFFFFFE, new byte[9], 0, 9);
            Eq(QualityParse.NotQuality, QualityFrame.Parse(flight, out k, out id, out tt), "seq FFFFFFFE: flight data");
            Eq(QualityParse.NotQuality, QualityFrame.Parse(PeerAck.Encode(7), out k, out id, out tt), "an ack: not quality");
            Eq(0u, QualityFrame.NextSeq(0xFFFFFFFE), "after FFFFFFFE comes 0");
            Eq(1u, QualityFrame.NextSeq(0), "after 0 comes 1");
            Eq(0xFFFFFFFEu, QualityFrame.NextSeq(0xFFFFFFFD), "FFFFFFFE is used");
        }

        private static string Hex(byte[] b)
        {
            return BitConverter.ToString(b).Replace("-", "").ToLowerInvariant();
        }

        private static void QualityReportBytes()
        {
            ReportV1 r = new ReportV1();
            LinkReport l = new LinkReport();
            l.Peer = 5;
            l.Path = LinkPath.Relay;
            l.Grade = QualityGrade.Good;
            l.RttBucket = 3;
            l.LossBucket = 0;
            r.Links.Add(l);
            r.Setup.Add(new Milestone(MilestoneKind.Welcome, LinkPath.Connecting, 120));
            r.IceFailures.Add(IceFailReason.Timeout);
            r.Candidates = CandidateKinds.Host | CandidateKinds.Srflx;
            // links [5 relay good 3 0], setup [welcome connecting 120], ice_failures [timeout], candidates 3.
            Eq("0105030203000100007801" + "0003", Hex(r.Encode()), "ReportV1 body");
            byte[] msg = ClientMsg.Report.V1(r).Encode();
            Eq("06010d" + "01050302030001000078010003", Hex(msg), "ClientMsg::Report = varint(6) varint(1) varint(len) body");
            ClientMsg.Report back = (ClientMsg.Report)ClientMsg.Decode(msg);
            Eq((ushort)1, back.Version, "version");
            ReportV1 body = ReportV1.Decode(back.Body);
            Check(body.Links.Count == 1 && body.Links[0].Peer == 5 && body.Links[0].Grade == QualityGrade.Good, "link decoded");
            Check(body.Setup.Count == 1 && body.Setup[0].Ms == 120, "milestone decoded");
            Eq(CandidateKinds.Host | CandidateKinds.Srflx, body.Candidates, "candidates decoded");
            // Varints: peer 300, 70000 ms.
            ReportV1 big = new ReportV1();
            LinkReport b = new LinkReport();
            b.Peer = 300;
            b.Path = LinkPath.Direct;
            b.Grade = QualityGrade.Unknown;
            big.Links.Add(b);
            big.Setup.Add(new Milestone(MilestoneKind.FirstFrame, LinkPath.Turn, 70000));
            Eq("01ac020100ffff" + "01" + "04" + "02" + "f0a204" + "00" + "00", Hex(big.Encode()), "varint peer and ms, unknown buckets 255");
            // An empty report: three empty lists and no candidates.
            Eq("00000000", Hex(new ReportV1().Encode()), "empty body");
            Eq("060104" + "00000000", Hex(ClientMsg.Report.V1(new ReportV1()).Encode()), "empty report");
            // Strict: trailing byte, bad enum, over a bound.
            Check(Throws(() => ReportV1.Decode(new byte[] { 0, 0, 0, 0, 0 })), "trailing bytes refused");
            Check(Throws(() => ReportV1.Decode(new byte[] { 1, 5, 4, 0, 0, 0, 0, 0, 0 })), "LinkPath 4 refused");
            Check(Throws(() => ReportV1.Decode(new byte[] { 0, 17, 0, 0, 0 })), "17 milestones refused");
            for (int i = 0; i < 17; i++)
            {
                big.Setup.Add(new Milestone(MilestoneKind.Welcome, LinkPath.Connecting, 1));
            }
            Check(Throws(() => big.Encode()), "encoding over a bound refused");
        }

        private static bool Throws(Action a)
        {
            try
            {
                a();
                return false;
            }
            catch (ProtocolException)
            {
                return true;
            }
        }

        private static void QualitySchedule()
        {
            ReportSchedule s = new ReportSchedule();
            Eq(-1L, s.DueAt(true, true), "not started (no Welcome): never");
            s.Start(1000);
            Eq(-1L, s.DueAt(false, false), "no link, no change, nothing queued: never");
            Eq(11000L, s.DueAt(true, false), "a link: 10 s after the Welcome");
            Check(!s.Due(10999, true, false) && s.Due(11000, true, false), "due at 11000, not before");
            Eq(3000L, s.DueAt(false, true), "queued entries: 2 s after the Welcome");
            s.NoteChange();
            Eq(3000L, s.DueAt(true, false), "a change: early, but 2 s after the previous report");
            Check(!s.Due(2999, true, false) && s.Due(3000, true, false), "the floor holds");
            Eq(5000L, s.WakeAt(5000, true, false), "wake: now when due");
            Eq(3000L, s.WakeAt(2500, true, false), "wake: when due");
            s.Sent(3000);
            Eq(13000L, s.DueAt(true, false), "change sent: back to 10 s");
            Eq(5000L, s.DueAt(true, true), "queued entries with a link: 2 s floor");
            Eq(-1L, s.WakeAt(6000, false, false), "no link, nothing queued: no wake");

            ReportQueue q = new ReportQueue();
            for (int i = 0; i < 17; i++)
            {
                q.AddMilestone(MilestoneKind.FirstFrame, LinkPath.Relay, i);
                q.AddIceFailure(IceFailReason.Failed);
            }
            Eq(32, q.Count, "16 of each kept");
            Eq(2L, q.Dropped, "the 17th of each dropped");
            q.AddCandidate(CandidateKinds.Relay);
            q.AddCandidate(CandidateKinds.Host);
            List<LinkReport> links = new List<LinkReport>();
            for (uint i = 0; i < 70; i++)
            {
                LinkReport l = new LinkReport();
                l.Peer = i + 1;
                links.Add(l);
            }
            ReportV1 r = q.Take(links);
            Check(r.Links.Count == 64 && r.Setup.Count == 16 && r.IceFailures.Count == 16, "bounded report");
            Eq(CandidateKinds.Relay | CandidateKinds.Host, r.Candidates, "candidate bits");
            r.Encode();
            Eq(0, q.Count, "queue emptied");
            Eq(CandidateKinds.None, q.Candidates, "candidate bits since the last report");
        }

        // --- the core ---

        private static void QualityHelloVersion()
        {
            Harness h = new Harness();
            h.Core.Start(h.Now, 1);
            CoreOutput c = h.Drain().First(x => x.Kind == OutputKind.Connect);
            h.Core.TransportConnected(h.Now, c.Conn);
            ClientMsg.Hello hello = (ClientMsg.Hello)h.Sent(h.Drain()).First(m => m is ClientMsg.Hello);
            Eq((ushort)5, hello.Version, "telemetry on: Hello version 5 (3, region_rtts and moves)");

            CoreOptions off = new CoreOptions();
            off.TelemetryEnabled = false;
            off.EnableDirect = false;
            Harness g = new Harness(off);
            g.Core.Start(g.Now, 1);
            c = g.Drain().First(x => x.Kind == OutputKind.Connect);
            g.Core.TransportConnected(g.Now, c.Conn);
            hello = (ClientMsg.Hello)g.Sent(g.Drain()).First(m => m is ClientMsg.Hello);
            Eq((ushort)5, hello.Version, "telemetry off: Hello version 5 all the same (Report is optional)");
            ServerMsg.Welcome w = Harness.Welcome(5, false);
            w.Version = 3;
            g.Core.ServerMessage(g.Now, c.Conn, w);
            g.Conn = c.Conn;
            g.Drain();
            g.InSession(5, 5, 6);
            List<CoreOutput> outs = g.Advance(15000);
            Check(!g.Sent(outs).Any(m => m is ClientMsg.Report), "no Report with telemetry off");
            Check(outs.Any(o => o.Kind == OutputKind.SendRelay && QualityFrame.IsMarked(o.Data)), "echo requests still go (the local API works)");
        }

        /// <summary>Connected as 5 (Welcome version), in a session with 6, direct off.</summary>
        private static Harness RelayPair(ushort welcomeVersion, bool telemetry = true)
        {
            CoreOptions o = new CoreOptions();
            o.EnableDirect = false;
            o.TelemetryEnabled = telemetry;
            Harness h = new Harness(o);
            h.Core.Start(h.Now, 1);
            CoreOutput c = h.Drain().First(x => x.Kind == OutputKind.Connect);
            h.Core.TransportConnected(h.Now, c.Conn);
            h.Drain();
            h.Now += 30;
            ServerMsg.Welcome w = Harness.Welcome(5, false);
            w.Version = welcomeVersion;
            h.Core.ServerMessage(h.Now, c.Conn, w);
            h.Conn = c.Conn;
            h.Drain();
            h.InSession(5, 5, 6);
            return h;
        }

        private static void QualityRelayEcho()
        {
            Harness h = RelayPair(3);
            h.Core.RelayFrame(h.Now, h.Conn, 6, Frame(10));
            h.Drain();
            byte[] req = QualityFrame.Encode(QualityFrameKind.EchoRequest, 77, 123456);
            h.Core.RelayFrame(h.Now, h.Conn, 6, req);
            List<CoreOutput> outs = h.Drain();
            CoreOutput reply = outs.SingleOrDefault(o => o.Kind == OutputKind.SendRelay && o.Data.Length == QualityFrame.Bytes);
            Check(reply != null && reply.Peer == 6, "answered on the relay, to the sender");
            Eq(Hex(QualityFrame.Encode(QualityFrameKind.EchoReply, 77, 123456)), reply == null ? "" : Hex(reply.Data), "kind 2, same id and t");
            Check(!outs.Any(o => o.Kind == OutputKind.FlightData), "not delivered");
            Eq(0L, h.Core.StaleDropped, "not counted stale");
            // A malformed quality frame: dropped, nothing answered or delivered.
            h.Core.RelayFrame(h.Now, h.Conn, 6, new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 1, 2 });
            outs = h.Drain();
            Check(!outs.Any(o => o.Kind == OutputKind.FlightData || (o.Kind == OutputKind.SendRelay && o.Data.Length == QualityFrame.Bytes)), "malformed: dropped");
            // The stale filter still knows seq 10: 11 is delivered, 10 is stale.
            h.Core.RelayFrame(h.Now, h.Conn, 6, Frame(11));
            Check(h.Drain().Any(o => o.Kind == OutputKind.FlightData), "seq 11 after the echo: delivered");
            h.Core.RelayFrame(h.Now, h.Conn, 6, Frame(10));
            h.Drain();
            Eq(1L, h.Core.StaleDropped, "seq 10: stale (the echo did not move the filter)");
            h.Now += 1000;
            PeerQuality q = h.Core.GetQuality(h.Now, 6);
            Eq(1L, q.StaleDropped, "snapshot: stale 1");
        }

        private static void QualityDirectEcho()
        {
            Harness h = new Harness();
            h.Connect(5);
            h.InSession(5, 5);
            h.Core.ServerMessage(h.Now, h.Conn, new ServerMsg.PeerJoined(new PeerInfo(6, "p", ClientKind.DotNet)));
            CoreOutput link = h.Drain().First(o => o.Kind == OutputKind.OpenLink);
            h.Core.ChannelOpen(h.Now, 6, link.LinkId, false);
            h.Drain();
            byte[] req = QualityFrame.Encode(QualityFrameKind.EchoRequest, 3, 99);
            h.Core.DirectFrame(h.Now, 6, link.LinkId, req);
            List<CoreOutput> outs = h.Drain();
            List<CoreOutput> direct = outs.Where(o => o.Kind == OutputKind.SendDirect).ToList();
            Check(direct.Any(o => o.LinkId == link.LinkId && Hex(o.Data) == Hex(QualityFrame.Encode(QualityFrameKind.EchoReply, 3, 99))), "answered on the same link");
            Check(!direct.Any(o => o.Data.Length == PeerAck.Bytes), "not acknowledged (a C# peer's flight frame would be)");
            Check(!outs.Any(o => o.Kind == OutputKind.FlightData), "not delivered");
            Check(!outs.Any(o => o.Kind == OutputKind.SendRelay && o.Data.Length == QualityFrame.Bytes), "not answered on the relay");
            // The core's own echo goes on the DataChannel once the path is direct.
            List<CoreOutput> later = h.Advance(600);
            Check(later.Any(o => o.Kind == OutputKind.SendDirect && o.LinkId == link.LinkId && QualityFrame.IsMarked(o.Data) && o.Data[4] == 1), "echo requests on the DataChannel");
            Check(!later.Any(o => o.Kind == OutputKind.SendRelay && QualityFrame.IsMarked(o.Data)), "none on the relay");
            // A flight frame is still acknowledged.
            h.Core.DirectFrame(h.Now, 6, link.LinkId, Frame(1));
            Check(h.Drain().Any(o => o.Kind == OutputKind.SendDirect && o.Data.Length == PeerAck.Bytes), "flight frames still acknowledged");
        }

        private static void QualityCoreEchoLoop()
        {
            Harness h = RelayPair(3);
            CoreOutput ev = h.Log.LastOrDefault(o => o.Kind == OutputKind.QualityChanged && o.Peer == 6);
            Check(ev != null && ev.Quality.Path == LinkPath.Relay, "QualityChanged: path relay");
            // Answer every request after 30 ms for 3 s.
            List<KeyValuePair<long, byte[]>> pending = new List<KeyValuePair<long, byte[]>>();
            int requests = 0;
            List<CoreOutput> outs = new List<CoreOutput>(h.Log);
            for (int i = 0; i < 2000; i++)
            {
                foreach (CoreOutput o in outs)
                {
                    QualityFrameKind k;
                    uint id, t;
                    if (o.Kind == OutputKind.SendRelay && o.Peer == 6 && QualityFrame.Parse(o.Data, out k, out id, out t) == QualityParse.Ok && k == QualityFrameKind.EchoRequest)
                    {
                        requests++;
                        pending.Add(new KeyValuePair<long, byte[]>(h.Now + 30, QualityFrame.Encode(QualityFrameKind.EchoReply, id, t)));
                    }
                }
                h.Now += 5;
                foreach (KeyValuePair<long, byte[]> p in pending.Where(x => x.Key <= h.Now).ToList())
                {
                    h.Core.RelayFrame(h.Now, h.Conn, 6, p.Value);
                    pending.Remove(p);
                }
                outs = h.Drain();
            }
            Check(requests >= 5 && requests <= 6, "a request every 2000 ms on the relay (" + requests + " in 10 s)");
            PeerQuality q = h.Core.GetQuality(h.Now, 6);
            Eq((long?)30, q.RttMs, "RTT from the echo: 30 ms");
            Eq(QualityGrade.Excellent, q.Grade, "excellent");
            Check(h.Log.Any(o => o.Kind == OutputKind.QualityChanged && o.Quality.Grade == QualityGrade.Excellent), "QualityChanged on the grade change");
            // Stop answering: lost 3 s after the first unanswered request (at most 2 s away).
            int before = h.Log.Count;
            h.Advance(5500);
            Check(h.Log.Skip(before).Any(o => o.Kind == OutputKind.QualityChanged && o.Quality.Grade == QualityGrade.Lost), "QualityChanged: lost");
            Check(h.Core.NextWake(h.Now) > h.Now, "NextWake is ahead (no busy loop)");
        }

        private static void QualityCoreReports()
        {
            Harness old = RelayPair(2);
            List<CoreOutput> outs = old.Advance(12000);
            Check(!old.Sent(outs).Any(m => m is ClientMsg.Report), "Welcome version 2: no Report");

            Harness h = RelayPair(3);
            h.Advance(1900);
            Eq(0, h.Sent(h.Log).OfType<ClientMsg.Report>().Count(), "nothing within 2 s of the Welcome");
            h.Advance(200);
            List<ClientMsg.Report> reports = h.Sent(h.Log).OfType<ClientMsg.Report>().ToList();
            Check(reports.Count == 1, "the first report 2 s after the Welcome (" + reports.Count + ")");
            ReportV1 first = ReportV1.Decode(reports[0].Body);
            Check(first.Links.Count == 1 && first.Links[0].Peer == 6 && first.Links[0].Path == LinkPath.Relay, "the link, on the relay");
            Milestone welcome = first.Setup.FirstOrDefault(m => m.Kind == MilestoneKind.Welcome);
            Check(welcome != null && welcome.Ms == 30 && welcome.Path == LinkPath.Connecting, "welcome milestone: 30 ms from the race's start");
            // Nothing answers the echoes: the grade changes (unknown -> lost) are reported early,
            // never within 2 s of the previous report; then every 10 s.
            h.Advance(30000);
            reports = h.Sent(h.Log).OfType<ClientMsg.Report>().ToList();
            Check(reports.Count >= 4 && reports.Count <= 6, "about one per 10 s plus the changes (" + reports.Count + " in 30 s)");
            Check(reports.Skip(1).Any(r => ReportV1.Decode(r.Body).Links[0].Grade == QualityGrade.Lost), "a lost grade reported");
            Eq((long)reports.Count, h.Core.ReportsSent, "ReportsSent");
            // An ICE failure and a relay milestone, queued for the next report.
            Harness d = new Harness();
            d.Core.Start(d.Now, 1);
            CoreOutput c = d.Drain().First(x => x.Kind == OutputKind.Connect);
            d.Core.TransportConnected(d.Now, c.Conn);
            d.Drain();
            ServerMsg.Welcome w = Harness.Welcome(5, false);
            w.Version = 3;
            d.Core.ServerMessage(d.Now, c.Conn, w);
            d.Conn = c.Conn;
            d.Drain();
            d.InSession(5, 5);
            d.Core.ServerMessage(d.Now, d.Conn, new ServerMsg.PeerJoined(new PeerInfo(6, "p", ClientKind.DotNet)));
            CoreOutput link = d.Drain().First(o => o.Kind == OutputKind.OpenLink);
            d.Core.LocalSignal(d.Now, 6, link.LinkId, new Signal.Offer("v=0"));
            d.Drain();
            d.Now += 700;
            d.Core.LinkFailed(d.Now, 6, link.LinkId, IceFailReason.NoCandidates);
            d.Drain();
            d.Advance(12000);
            List<ReportV1> bodies = d.Sent(d.Log).OfType<ClientMsg.Report>().Select(r => ReportV1.Decode(r.Body)).ToList();
            Check(bodies.Any(b => b.IceFailures.Contains(IceFailReason.NoCandidates)), "the ICE failure reason reported");
            Milestone relay = bodies.SelectMany(b => b.Setup).FirstOrDefault(m => m.Kind == MilestoneKind.Relay);
            Check(relay != null && relay.Ms == 700 && relay.Path == LinkPath.Relay, "relay milestone: first offer -> relay, 700 ms");
            Eq(1, bodies.SelectMany(b => b.IceFailures).Count(x => x == IceFailReason.NoCandidates), "each failure reported once");
        }

        private static void QualityCoreAwaitOffer()
        {
            CoreOptions o = new CoreOptions();
            o.Path.DirectConnectTimeoutMs = 5000;
            Harness h = new Harness(o);
            h.Connect(7);
            // I join a session where 5 (a C# peer, who offers to newcomers) and 6 (Rust: no WebRTC) are.
            h.Core.JoinSession(h.Now, 2, "7KQ2MX", null);
            h.Drain();
            SessionInfo s = Harness.SessionOf(5, 5, 7);
            s.Peers.Add(new PeerInfo(6, "rust", ClientKind.Rust));
            h.Core.ServerMessage(h.Now, h.Conn, new ServerMsg.SessionJoined(s));
            long joined = h.Now;
            h.Drain();
            h.Advance(100);
            Eq(LinkPath.Connecting, h.Core.GetQuality(h.Now, 5).Path, "waiting for 5's offer: connecting");
            Eq(LinkPath.Relay, h.Core.GetQuality(h.Now, 6).Path, "a Rust peer: relay at once");
            Check(h.Core.NextWake(h.Now) <= joined + 5000, "woken by the deadline");
            h.Advance(5000);
            Eq(LinkPath.Relay, h.Core.GetQuality(h.Now, 5).Path, "no offer by the deadline: relay");
            Check(h.Core.NextWake(h.Now) > h.Now, "no busy wake after the deadline");
        }

        private static void QualityShellHandlerThrows()
        {
            FakeFactory f = new FakeFactory();
            WebRTCP2POptions o = new WebRTCP2POptions();
            o.TransportFactory = f;
            o.PingInterval = TimeSpan.Zero;
            o.EnableDirect = false;
            using (WebRTCP2PService s = new WebRTCP2PService(o))
            {
                int calls = 0;
                s.PeerQualityChanged += e => { Interlocked.Increment(ref calls); throw new InvalidOperationException("app bug"); };
                Check(s.StartAsync().Wait(5000) && s.CreateSessionAsync().Wait(5000), "in a session with peer 6");
                Check(WaitFor(() => Volatile.Read(ref calls) >= 1, 5000), "PeerQualityChanged fired (path relay)");
                PeerQuality q = s.GetPeerQuality(6);
                Check(q != null && q.Path == LinkPath.Relay, "GetPeerQuality(6): relay (" + q + ")");
                int sent = Volatile.Read(ref f.T.RelaySent);
                // Nobody answers: echoes keep going every 500 ms, and the grade falls to lost (another event).
                Check(WaitFor(() => Volatile.Read(ref f.T.RelaySent) >= sent + 2, 7000), "echo requests (every 2 s on the relay) go on after the handler threw");
                Check(WaitFor(() => Volatile.Read(ref calls) >= 2 && s.GetPeerQuality(6).Grade == QualityGrade.Lost, 6000),
                    "lost after 3 s unanswered, and the event fired again (" + calls + ", " + s.GetPeerQuality(6).Grade + ")");
                Check(s.State == HubConnectionState.Connected, "still connected");
                Eq(1, s.GetPeerQuality().Count, "one peer");
                Check(s.GetPeerQuality(99) == null, "unknown peer: null");
            }
        }
    }
}
