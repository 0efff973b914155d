// Codec tests for client/Protocol.*.cs, run with mono (see tests/csharp/run.sh).
//
//   mcs -langversion:7.2 -out:codec-tests.exe client/Protocol.*.cs tests/csharp/CodecTests.cs
//   mono codec-tests.exe docs/vectors.txt
//
// For every `ok` line of the golden vectors (written by the Rust server from its
// own types) the body is decoded with the named type, re-encoded and compared
// byte for byte; every `bad` line must be refused with ProtocolException. Then
// explicit field checks, control-frame, relay-header, WebSocket-message and
// snapshot-envelope tests. Prints each failure, and `N passed, N failed` as the
// last line; exits 1 on any failure.
//
// Plain C# 7.2, no test framework: the same rules as client/Protocol.*.cs.

using System;
using System.Collections.Generic;
using System.IO;
using System.Text;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class CodecTests
    {
        private static void CheckBytes(string name, byte[] expected, byte[] actual)
        {
            if (SameBytes(expected, actual))
            {
                Pass(name);
            }
            else
            {
                Fail(name, "expected " + Wire.ToHex(expected) + " got " + Wire.ToHex(actual));
            }
        }

        private static bool SameBytes(byte[] a, byte[] b)
        {
            if (a == null || b == null || a.Length != b.Length)
            {
                return false;
            }
            for (int i = 0; i < a.Length; i++)
            {
                if (a[i] != b[i])
                {
                    return false;
                }
            }
            return true;
        }

        /// <summary>Runs action; passes only if it throws ProtocolException (with the code, when given).</summary>
        private static void CheckThrows(string name, Action action, ErrorCode? code)
        {
            try
            {
                action();
                Fail(name, "no exception");
            }
            catch (ProtocolException e)
            {
                if (code.HasValue && e.Code != code.Value)
                {
                    Fail(name, "code " + e.Code + ", expected " + code.Value);
                }
                else
                {
                    Pass(name);
                }
            }
            catch (Exception e)
            {
                Fail(name, "wrong exception " + e.GetType().Name + ": " + e.Message);
            }
        }

        private static byte[] Hex(string s)
        {
            return Wire.FromHex(s);
        }

        private static int Main(string[] args)
        {
            QuietPasses = true;
            string path = args.Length > 0 ? args[0] : "docs/vectors.txt";
            Dictionary<string, object> decoded = new Dictionary<string, object>();
            try
            {
                RunVectors(path, decoded);
            }
            catch (Exception e)
            {
                Fail("vectors", "could not run the vector file " + path + ": " + e);
            }

            Guard("field values", delegate { FieldChecks(decoded); });
            Guard("region round trips (version 4)", delegate { RegionChecks(decoded); });
            Guard("varints", VarintTests);
            Guard("worked examples", WorkedExamples);
            Guard("frames", FrameTests);
            Guard("relay", RelayTests);
            Guard("websocket", WebSocketTests);
            Guard("first request in the URL", FirstTests);
            Guard("snapshots", SnapshotTests);
            Guard("round trips", ConstructedRoundTrips);
            Guard("fuzz", FuzzTests);

            return Summary();
        }

        private static void Guard(string group, Action action)
        {
            try
            {
                action();
            }
            catch (Exception e)
            {
                Fail(group, "unexpected exception " + e);
            }
        }

        // ------------------------------------------------------------------
        // Golden vectors
        // ------------------------------------------------------------------

        private static void RunVectors(string path, Dictionary<string, object> decoded)
        {
            string[] lines = File.ReadAllLines(path, Encoding.UTF8);
            int ok = 0;
            int bad = 0;
            int v4Lines = 0;
            for (int n = 0; n < lines.Length; n++)
            {
                string line = lines[n].TrimEnd('\r');
                if (line.Length == 0 || line.StartsWith("#"))
                {
                    continue;
                }
                string[] f = line.Split('\t');
                if (f.Length < 3)
                {
                    Fail("vectors line " + (n + 1), "expected `ok|bad<TAB>type<TAB>name<TAB>hex`");
                    continue;
                }
                string verdict = f[0];
                string type = f[1];
                string name = type + "/" + f[2];
                byte[] body = Hex(f.Length > 3 ? f[3] : "");
                // ClientMsg@v4: a message on a connection whose Hello said version 4
                // (CreateSession/JoinSession end with region_rtts, PROTOCOL.md section 4).
                bool v4 = type == "ClientMsg@v4";
                ushort version = v4 ? Wire.RegionProtocolVersion : Wire.ReportProtocolVersion;
                if (v4)
                {
                    v4Lines++;
                }
                if (type != "ClientMsg" && !v4 && type != "ServerMsg")
                {
                    Fail(name, "unknown type " + type);
                    continue;
                }
                if (verdict == "ok")
                {
                    ok++;
                    try
                    {
                        byte[] again;
                        if (type == "ClientMsg" || v4)
                        {
                            ClientMsg m = ClientMsg.Decode(body, version);
                            decoded[name] = m;
                            again = m.Encode();
                        }
                        else
                        {
                            ServerMsg m = ServerMsg.Decode(body);
                            decoded[name] = m;
                            again = m.Encode();
                        }
                        CheckBytes(name + " round trip", body, again);
                        // The same message as a control frame splits back out of a FrameDecoder.
                        FrameDecoder dec = new FrameDecoder(Wire.DefaultMaxFrameBytes);
                        byte[] frame = Wire.Frame(body);
                        dec.Push(frame, 0, frame.Length);
                        byte[] out1;
                        Check(dec.TryNextFrame(out out1) && SameBytes(body, out1) && dec.Buffered == 0, name + " framed", "frame did not come back out");
                    }
                    catch (Exception e)
                    {
                        Fail(name, "does not decode: " + e.GetType().Name + ": " + e.Message);
                    }
                }
                else if (verdict == "bad")
                {
                    bad++;
                    byte[] captured = body;
                    if (type == "ClientMsg" || v4)
                    {
                        ushort at = version;
                        CheckThrows(name + " refused", delegate { ClientMsg.Decode(captured, at); }, ErrorCode.BadMessage);
                    }
                    else
                    {
                        CheckThrows(name + " refused", delegate { ServerMsg.Decode(captured); }, ErrorCode.BadMessage);
                    }
                }
                else
                {
                    Fail(name, "unknown verdict " + verdict);
                }
            }
            Check(ok >= 50, "vector file has ok lines", "only " + ok + " ok lines");
            Check(v4Lines >= 10, "vector file has ClientMsg@v4 lines, all checked", "only " + v4Lines);
            Check(bad >= 15, "vector file has bad lines", "only " + bad + " bad lines");
        }

        private static T Get<T>(Dictionary<string, object> decoded, string name) where T : class
        {
            object o;
            if (!decoded.TryGetValue(name, out o))
            {
                throw new Exception("vector " + name + " missing or did not decode");
            }
            T t = o as T;
            if (t == null)
            {
                throw new Exception("vector " + name + " decoded as " + o.GetType().Name + ", expected " + typeof(T).Name);
            }
            return t;
        }

        // PROTOCOL.md sections 4 and 11: the fields of the version-4 vectors, the worked
        // example, and the version rule both ways (a version-4 body is refused at version 3,
        // a version-3 one at version 4).
        private static void RegionChecks(Dictionary<string, object> d)
        {
            ClientMsg.CreateSession none = Get<ClientMsg.CreateSession>(d, "ClientMsg@v4/create_v4_nothing_measured");
            Check(none.RegionRtts != null && none.RegionRtts.Count == 0, "create_v4_nothing_measured: an empty list", "list missing or not empty");
            ClientMsg.CreateSession three = Get<ClientMsg.CreateSession>(d, "ClientMsg@v4/create_v4_three_regions");
            Eq((uint)8, three.MaxPeers, "create_v4_three_regions max_peers");
            Eq(3, three.RegionRtts.Count, "create_v4_three_regions count");
            Eq("us-east", three.RegionRtts[1].Region, "create_v4_three_regions region 1");
            Eq((uint)153, three.RegionRtts[2].RttMs, "create_v4_three_regions rtt 2");
            ClientMsg.JoinSession one = Get<ClientMsg.JoinSession>(d, "ClientMsg@v4/join_v4_password_one_region");
            Eq("7KQ2MX", one.Code, "join_v4_password_one_region code");
            Eq("pw", one.Password, "join_v4_password_one_region password");
            Eq(1, one.RegionRtts.Count, "join_v4_password_one_region count");
            ClientMsg.JoinSession sixteen = Get<ClientMsg.JoinSession>(d, "ClientMsg@v4/join_v4_sixteen_regions_edge_values");
            Eq(16, sixteen.RegionRtts.Count, "join_v4_sixteen_regions count");
            Eq(32, Encoding.UTF8.GetByteCount(sixteen.RegionRtts[0].Region), "join_v4_sixteen_regions 32-byte name");
            Eq(uint.MaxValue, sixteen.RegionRtts[1].RttMs, "join_v4_sixteen_regions u32 max");
            // The worked example of section 4.
            ClientMsg.CreateSession ex = new ClientMsg.CreateSession(8, null);
            ex.RegionRtts = new List<RegionRtt> { new RegionRtt("eu", 5), new RegionRtt("us-east", 84), new RegionRtt("asia", 153) };
            CheckBytes("worked example CreateSession@v4", Hex("01080003026575050775732d65617374540461736961" + "9901"), ex.Encode());
            // Without a list (null) the request is the version-3 body.
            CheckBytes("CreateSession without region_rtts is the version-3 body", Hex("010800"), new ClientMsg.CreateSession(8, null).Encode());
            // The version decides: a version-4 body is refused at version 3 (trailing bytes), a version-3 body at version 4.
            byte[] v4Body = Hex("01000000");
            CheckThrows("create_v4 body refused at version 3", delegate { ClientMsg.Decode(v4Body); }, ErrorCode.BadMessage);
            byte[] v3Body = Hex("010000");
            CheckThrows("create_v3 body refused at version 4", delegate { ClientMsg.Decode(v3Body, Wire.RegionProtocolVersion); }, ErrorCode.BadMessage);
            Check(ClientMsg.Decode(v3Body, 3) is ClientMsg.CreateSession, "create_v3 body decodes at version 3", "did not");
        }

        private static void FieldChecks(Dictionary<string, object> d)
        {
            ClientMsg.Hello min = Get<ClientMsg.Hello>(d, "ClientMsg/hello_minimal");
            Eq((ushort)1, min.Version, "hello_minimal version");
            Eq(ClientKind.Rust, min.Client, "hello_minimal client");
            Eq(RelayMode.Datagram, min.RelayMode, "hello_minimal relay_mode");
            Eq("", min.Name, "hello_minimal name");
            Check(min.ResumeToken == null, "hello_minimal no token", "token present");

            ClientMsg.Hello dn = Get<ClientMsg.Hello>(d, "ClientMsg/hello_dotnet_stream_resume");
            Eq(ClientKind.DotNet, dn.Client, "hello_dotnet client");
            Eq(RelayMode.Stream, dn.RelayMode, "hello_dotnet relay_mode");
            Eq("Ann", dn.Name, "hello_dotnet name");
            CheckBytes("hello_dotnet token", Hex("000102030405060708090a0b0c0d0e0f"), dn.ResumeToken);

            ClientMsg.Hello uni = Get<ClientMsg.Hello>(d, "ClientMsg/hello_browser_unicode_name");
            Eq("Zo\u00eb \u2708 \u6a5f\u9577", uni.Name, "hello_browser_unicode_name name");
            Eq(ClientKind.Browser, uni.Client, "hello_browser_unicode_name client");

            ClientMsg.Hello max = Get<ClientMsg.Hello>(d, "ClientMsg/hello_other_max_name");
            Eq(new string('n', 64), max.Name, "hello_other_max_name name");
            Eq(ClientKind.Other, max.Client, "hello_other_max_name client");
            CheckBytes("hello_other_max_name token", Hex("ffffffffffffffffffffffffffffffff"), max.ResumeToken);

            Eq(ushort.MaxValue, Get<ClientMsg.Hello>(d, "ClientMsg/hello_version_max").Version, "hello_version_max");

            // Issue 25 (PROTOCOL.md section 14): Hello version 3, Report and its body.
            ClientMsg.Hello v3 = Get<ClientMsg.Hello>(d, "ClientMsg/hello_v3_no_token");
            Eq((ushort)3, v3.Version, "hello_v3_no_token version");
            Check(v3.AccessToken == null, "hello_v3_no_token has the version-2 field, empty", "token present");
            ClientMsg.Report remp = Get<ClientMsg.Report>(d, "ClientMsg/report_v1_empty");
            ReportV1 eb = ReportV1.Decode(remp.Body);
            Check(eb.Links.Count == 0 && eb.Setup.Count == 0 && eb.IceFailures.Count == 0 && eb.Candidates == CandidateKinds.None, "report_v1_empty body", "not empty");
            ClientMsg.Report full = Get<ClientMsg.Report>(d, "ClientMsg/report_v1_full");
            Eq((ushort)1, full.Version, "report_v1_full version");
            ReportV1 fb = ReportV1.Decode(full.Body);
            Eq(5, fb.Links.Count, "report_v1_full links");
            Eq(300u, fb.Links[1].Peer, "report_v1_full peer 300");
            Eq(LinkPath.Turn, fb.Links[1].Path, "report_v1_full turn");
            Eq(QualityGrade.Good, fb.Links[1].Grade, "report_v1_full good");
            Eq((byte)4, fb.Links[1].RttBucket, "report_v1_full rtt bucket");
            Eq((byte)255, fb.Links[3].LossBucket, "report_v1_full not measured");
            Eq(QualityGrade.Lost, fb.Links[4].Grade, "report_v1_full lost");
            Eq(5, fb.Setup.Count, "report_v1_full milestones");
            Eq(MilestoneKind.FirstFrame, fb.Setup[4].Kind, "report_v1_full first_frame");
            Eq(70000u, fb.Setup[4].Ms, "report_v1_full 70000 ms");
            Eq(LinkPath.Direct, fb.Setup[4].Path, "report_v1_full first_frame direct");
            Eq("Timeout,Failed,Disconnected,NoCandidates,Other", string.Join(",", fb.IceFailures), "report_v1_full every reason");
            Eq(CandidateKinds.Host | CandidateKinds.Srflx | CandidateKinds.Relay | CandidateKinds.Prflx, fb.Candidates, "report_v1_full candidates");
            CheckBytes("report_v1_full body re-encoded", full.Body, fb.Encode());
            ClientMsg.Report opaque = Get<ClientMsg.Report>(d, "ClientMsg/report_v9_opaque");
            Eq((ushort)9, opaque.Version, "report_v9_opaque version");
            CheckBytes("report_v9_opaque body kept opaque", Hex("dead"), opaque.Body);

            ClientMsg.CreateSession cd = Get<ClientMsg.CreateSession>(d, "ClientMsg/create_default");
            Eq(0u, cd.MaxPeers, "create_default max_peers");
            Check(cd.Password == null, "create_default password", "password present");
            ClientMsg.CreateSession cp = Get<ClientMsg.CreateSession>(d, "ClientMsg/create_password_max_peers");
            Eq(uint.MaxValue, cp.MaxPeers, "create_password max_peers");
            Eq("p\u00e4ssw\u00f6rd", cp.Password, "create_password password");

            ClientMsg.JoinSession jc = Get<ClientMsg.JoinSession>(d, "ClientMsg/join_code");
            Eq("7KQ2MX", jc.Code, "join_code code");
            Check(jc.Password == null, "join_code password", "password present");
            ClientMsg.JoinSession je = Get<ClientMsg.JoinSession>(d, "ClientMsg/join_code_password_empty");
            Eq("7kq-2mx", je.Code, "join_code_password_empty code");
            Eq("", je.Password, "join_code_password_empty password");

            ClientMsg.SignalTo so = Get<ClientMsg.SignalTo>(d, "ClientMsg/signal_offer");
            Eq(2u, so.To, "signal_offer to");
            Signal.Offer offer = so.Signal as Signal.Offer;
            Check(offer != null && offer.Sdp.StartsWith("v=0\r\no=- "), "signal_offer sdp", "not an offer starting v=0");

            ClientMsg.SignalTo sa = Get<ClientMsg.SignalTo>(d, "ClientMsg/signal_answer_long_sdp");
            Signal.Answer ans = sa.Signal as Signal.Answer;
            Check(ans != null && ans.Sdp.Length > 2000, "signal_answer_long_sdp", "not a long answer");

            ClientMsg.SignalTo sc = Get<ClientMsg.SignalTo>(d, "ClientMsg/signal_candidate_full");
            Signal.IceCandidate cand = sc.Signal as Signal.IceCandidate;
            Check(cand != null, "signal_candidate_full kind", "not a candidate");
            if (cand != null)
            {
                Eq(128u, sc.To, "signal_candidate_full to");
                Check(cand.Candidate.StartsWith("candidate:842163049 1 udp"), "signal_candidate_full candidate", cand.Candidate);
                Eq("0", cand.SdpMid, "signal_candidate_full sdp_mid");
                Eq((ushort?)ushort.MaxValue, cand.SdpMLineIndex, "signal_candidate_full sdp_mline_index");
            }
            ClientMsg.SignalTo sb = Get<ClientMsg.SignalTo>(d, "ClientMsg/signal_candidate_bare");
            Signal.IceCandidate bare = sb.Signal as Signal.IceCandidate;
            Eq(uint.MaxValue, sb.To, "signal_candidate_bare to");
            Check(bare != null && bare.Candidate == "" && bare.SdpMid == null && !bare.SdpMLineIndex.HasValue, "signal_candidate_bare fields", "expected empty candidate, no mid, no index");

            ClientMsg.SignalTo eoc = Get<ClientMsg.SignalTo>(d, "ClientMsg/signal_end_of_candidates_to_all");
            Check(eoc.To == Wire.AllPeers && eoc.Signal is Signal.EndOfCandidates, "signal_end_of_candidates_to_all", "wrong fields");

            ClientMsg.SignalTo app = Get<ClientMsg.SignalTo>(d, "ClientMsg/signal_app_bytes");
            Signal.App appSig = app.Signal as Signal.App;
            Eq(16384u, app.To, "signal_app_bytes to");
            Check(appSig != null && appSig.Data.Length == 256 && appSig.Data[0] == 0 && appSig.Data[255] == 255, "signal_app_bytes data", "expected bytes 00..ff");

            Check(Get<ClientMsg>(d, "ClientMsg/leave") is ClientMsg.LeaveSession, "leave", "not LeaveSession");
            Eq(0UL, Get<ClientMsg.Ping>(d, "ClientMsg/ping_zero").ClientTimeMs, "ping_zero");
            Eq(ulong.MaxValue, Get<ClientMsg.Ping>(d, "ClientMsg/ping_max").ClientTimeMs, "ping_max");

            ServerMsg.Welcome wf = Get<ServerMsg.Welcome>(d, "ServerMsg/welcome_full");
            Eq((ushort)1, wf.Version, "welcome_full version");
            Eq(42u, wf.PeerId, "welcome_full peer_id");
            CheckBytes("welcome_full resume_token", Encoding.ASCII.GetBytes("defghijklmnopqrs"), wf.ResumeToken);
            Eq(false, wf.Resumed, "welcome_full resumed");
            Eq(2, wf.IceServers.Count, "welcome_full ice server count");
            if (wf.IceServers.Count == 2)
            {
                IceServer stun = wf.IceServers[0];
                IceServer turn = wf.IceServers[1];
                Check(stun.Urls.Count == 1 && stun.Urls[0] == "stun:turn.example.com:3478"
                    && stun.Username == null && stun.Credential == null, "welcome_full stun", "wrong STUN entry");
                Eq(2, turn.Urls.Count, "welcome_full turn url count");
                Eq("turn:turn.example.com:3478?transport=udp", turn.Urls[0], "welcome_full turn url 0");
                Eq("turns:turn.example.com:5349?transport=tcp", turn.Urls[1], "welcome_full turn url 1");
                Eq("1700003600:42", turn.Username, "welcome_full TURN username");
                Eq("mJ1xg3cpXWdlgWHeWJ5vVhiWz0U=", turn.Credential, "welcome_full TURN credential");
            }
            Eq(16384u, wf.Limits.MaxFrameBytes, "welcome_full max_frame_bytes");
            Eq(1100u, wf.Limits.MaxRelayPayload, "welcome_full max_relay_payload");
            Eq(500u, wf.Limits.RelayDatagramsPerSec, "welcome_full relay_datagrams_per_sec");
            Eq(262144u, wf.Limits.RelayBytesPerSec, "welcome_full relay_bytes_per_sec");
            Eq(50u, wf.Limits.SignalsPerSec, "welcome_full signals_per_sec");
            Eq(16u, wf.Limits.MaxPeersPerSession, "welcome_full max_peers");
            Eq(15000u, wf.Limits.ResumeGraceMs, "welcome_full resume_grace_ms");
            Eq(1700000000123UL, wf.ServerTimeMs, "welcome_full server_time_ms");

            ServerMsg.Welcome wr = Get<ServerMsg.Welcome>(d, "ServerMsg/welcome_resumed_no_ice");
            Eq(uint.MaxValue, wr.PeerId, "welcome_resumed peer_id");
            Eq(true, wr.Resumed, "welcome_resumed resumed");
            Eq(0, wr.IceServers.Count, "welcome_resumed ice");
            Eq(16, wr.ResumeToken.Length, "welcome_resumed token length");
            Eq(ulong.MaxValue, wr.ServerTimeMs, "welcome_resumed server_time_ms");
            Eq(uint.MaxValue, wr.Limits.MaxFrameBytes, "welcome_resumed max_frame_bytes");
            Eq(0u, wr.Limits.MaxRelayPayload, "welcome_resumed max_relay_payload");
            Eq(2u, wr.Limits.MaxPeersPerSession, "welcome_resumed max_peers");

            SessionInfo sc1 = Get<ServerMsg.SessionCreated>(d, "ServerMsg/session_created").Session;
            Eq("7KQ2MX", sc1.Code, "session_created code");
            Eq(1u, sc1.Host, "session_created host");
            Eq(16u, sc1.MaxPeers, "session_created max_peers");
            Eq(1800u, sc1.IdleTtlSecs, "session_created idle_ttl");
            Check(sc1.Peers.Count == 1 && sc1.Peers[0].Id == 1 && sc1.Peers[0].Name == "Ann"
                && sc1.Peers[0].Client == ClientKind.Rust, "session_created peers", "wrong peer list");

            SessionInfo sj = Get<ServerMsg.SessionJoined>(d, "ServerMsg/session_joined").Session;
            Eq(3, sj.Peers.Count, "session_joined peer count");
            if (sj.Peers.Count == 3)
            {
                Eq(300u, sj.Peers[1].Id, "session_joined peer 1 id");
                Eq("Bob \u2708", sj.Peers[1].Name, "session_joined peer 1 name");
                Eq(ClientKind.Browser, sj.Peers[1].Client, "session_joined peer 1 client");
                Eq(uint.MaxValue, sj.Peers[2].Id, "session_joined peer 2 id");
                Eq(ClientKind.DotNet, sj.Peers[2].Client, "session_joined peer 2 client");
            }

            PeerInfo pj = Get<ServerMsg.PeerJoined>(d, "ServerMsg/peer_joined").Peer;
            Check(pj.Id == 300 && pj.Name == "Bob \u2708" && pj.Client == ClientKind.Browser, "peer_joined", "wrong peer");
            Eq(300u, Get<ServerMsg.HostChanged>(d, "ServerMsg/host_changed").Host, "host_changed");

            ServerMsg.SignalFrom sf = Get<ServerMsg.SignalFrom>(d, "ServerMsg/signal_from");
            Signal.IceCandidate sfc = sf.Signal as Signal.IceCandidate;
            Check(sf.From == 7 && sfc != null && sfc.Candidate.EndsWith("typ relay") && sfc.SdpMid == "data"
                && sfc.SdpMLineIndex == 0, "signal_from", "wrong fields");
            ServerMsg.SignalFrom sae = Get<ServerMsg.SignalFrom>(d, "ServerMsg/signal_app_empty");
            Signal.App empty = sae.Signal as Signal.App;
            Check(sae.From == 1 && empty != null && empty.Data.Length == 0, "signal_app_empty", "wrong fields");

            ServerMsg.Pong pong = Get<ServerMsg.Pong>(d, "ServerMsg/pong");
            Eq(123456UL, pong.ClientTimeMs, "pong client_time_ms");
            Eq(1700000000000UL, pong.ServerTimeMs, "pong server_time_ms");

            ServerMsg.PeerStatus off = Get<ServerMsg.PeerStatus>(d, "ServerMsg/peer_status_offline");
            Check(off.Peer == 5 && !off.Online, "peer_status_offline", "wrong fields");
            ServerMsg.PeerStatus on = Get<ServerMsg.PeerStatus>(d, "ServerMsg/peer_status_online");
            Check(on.Peer == 5 && on.Online, "peer_status_online", "wrong fields");

            ServerMsg.GoingAway ga = Get<ServerMsg.GoingAway>(d, "ServerMsg/going_away");
            Check(ga.ReconnectAfterMs == 2000 && ga.Message == "server shutting down", "going_away", "wrong fields");

            // Cluster mode (PROTOCOL.md section 11): Redirect with and without a certificate hash.
            ServerMsg.Redirect rp = Get<ServerMsg.Redirect>(d, "ServerMsg/redirect_session_pinned");
            Check(rp.Reason == RedirectReason.Session && rp.Node.Name == "node-b"
                && rp.Node.Quic == "10.0.0.2:4433" && rp.Node.Http == "http://10.0.0.2:8080"
                && rp.Node.CertSha256 != null && rp.Node.CertSha256.Length == 32 && rp.Node.CertSha256[31] == 31, "redirect_session_pinned", "wrong fields");
            ServerMsg.Redirect rc = Get<ServerMsg.Redirect>(d, "ServerMsg/redirect_draining_ca");
            Check(rc.Reason == RedirectReason.Draining && rc.Node.CertSha256 == null
                && rc.Node.Http == "https://eu-2.example.com", "redirect_draining_ca", "wrong fields");
            ServerMsg.Redirect rw = Get<ServerMsg.Redirect>(d, "ServerMsg/redirect_moved_ws_only");
            Check(rw.Reason == RedirectReason.Moved && rw.Node.Quic == "", "redirect_moved_ws_only", "wrong fields");
            ServerMsg.Redirect rpl = Get<ServerMsg.Redirect>(d, "ServerMsg/redirect_placement");
            Check(rpl.Reason == RedirectReason.Placement && rpl.Node.Http == "", "redirect_placement", "wrong fields");

            for (uint reason = 0; reason < 4; reason++)
            {
                ServerMsg.PeerLeft pl = Get<ServerMsg.PeerLeft>(d, "ServerMsg/peer_left_" + reason);
                Check(pl.Peer == 9 && (uint)pl.Reason == reason, "peer_left_" + reason, "wrong fields");
                ServerMsg.SessionLeft sl = Get<ServerMsg.SessionLeft>(d, "ServerMsg/session_left_" + reason);
                Eq((LeaveReason)reason, sl.Reason, "session_left_" + reason);
            }

            // Every error code: the vector's name is error_<name> and its message "<name> (<code>)".
            for (ushort code = 1; code <= 22; code++)
            {
                string name = ErrorCodes.Name(code);
                ServerMsg.Error e = Get<ServerMsg.Error>(d, "ServerMsg/error_" + name);
                Eq(code, e.Code, "error_" + name + " code");
                Eq(name + " (" + code + ")", e.Message, "error_" + name + " message");
            }
            // 17 (too_many_join_attempts) closes only when the connection's own budget is spent.
            Check(ErrorCodes.IsFatal(1) && ErrorCodes.IsFatal(2) && !ErrorCodes.IsFatal(17) && ErrorCodes.IsFatal(20)
                && ErrorCodes.IsFatal(21) && !ErrorCodes.IsFatal(22) && !ErrorCodes.IsFatal(5) && !ErrorCodes.IsFatal(9) && !ErrorCodes.IsFatal(18), "fatal codes", "fatal table differs from PROTOCOL.md section 6");
            Eq("error_99", ErrorCodes.Name(99), "unknown error code name");
        }

        // ------------------------------------------------------------------
        // Varints, worked examples
        // ------------------------------------------------------------------

        private static void VarintTests()
        {
            // PROTOCOL.md section 2.
            ulong[] values = { 0, 127, 128, 300, 4294967295 };
            string[] hex = { "00", "7f", "8001", "ac02", "ffffffff0f" };
            for (int i = 0; i < values.Length; i++)
            {
                PostcardWriter w = new PostcardWriter();
                w.WriteVarint(values[i]);
                CheckBytes("varint " + values[i], Hex(hex[i]), w.ToArray());
                byte[] b = Hex(hex[i]);
                uint v;
                int used;
                Check(Wire.TryReadVarint32(b, 0, b.Length, out v, out used) && v == values[i] && used == b.Length, "varint32 read " + values[i], "wrong value");
                // Every strict prefix needs more bytes.
                for (int cut = 0; cut < b.Length; cut++)
                {
                    Check(!Wire.TryReadVarint32(b, 0, cut, out v, out used), "varint32 prefix " + values[i] + "/" + cut, "claimed complete");
                }
            }
            CheckThrows("varint32 2^32", delegate { uint v; int u; Wire.TryReadVarint32(Hex("8080808010"), 0, 5, out v, out u); },
                ErrorCode.BadMessage);
            CheckThrows("varint32 six bytes", delegate { uint v; int u; Wire.TryReadVarint32(Hex("808080808000"), 0, 6, out v, out u); },
                ErrorCode.BadMessage);
            CheckThrows("varint32 five continuation bytes", delegate { uint v; int u; Wire.TryReadVarint32(Hex("8080808080"), 0, 5, out v, out u); },
                ErrorCode.BadMessage);

            // Type limits of the postcard reader.
            Eq(ushort.MaxValue, new PostcardReader(Hex("ffff03"), 0, 3).ReadU16(), "u16 max");
            CheckThrows("u16 overflow", delegate { new PostcardReader(Hex("ffff04"), 0, 3).ReadU16(); }, ErrorCode.BadMessage);
            Eq(uint.MaxValue, new PostcardReader(Hex("ffffffff0f"), 0, 5).ReadU32(), "u32 max");
            CheckThrows("u32 overflow", delegate { new PostcardReader(Hex("ffffffff10"), 0, 5).ReadU32(); }, ErrorCode.BadMessage);
            Eq(ulong.MaxValue, new PostcardReader(Hex("ffffffffffffffffff01"), 0, 10).ReadU64(), "u64 max");
            CheckThrows("u64 overflow", delegate { new PostcardReader(Hex("ffffffffffffffffff02"), 0, 10).ReadU64(); }, ErrorCode.BadMessage);
            CheckThrows("u64 eleven bytes", delegate { new PostcardReader(Hex("8080808080808080808000"), 0, 11).ReadU64(); }, ErrorCode.BadMessage);
            CheckThrows("varint truncated", delegate { new PostcardReader(Hex("80"), 0, 1).ReadU32(); }, ErrorCode.BadMessage);
            CheckThrows("length past end", delegate { new PostcardReader(Hex("05616263"), 0, 4).ReadString(); }, ErrorCode.BadMessage);
            CheckThrows("huge length", delegate { new PostcardReader(Hex("ffffffffffffffffff01"), 0, 10).ReadBytes(); }, ErrorCode.BadMessage);
            CheckThrows("lone surrogate refused by the encoder", delegate
            {
                try
                {
                    new PostcardWriter().WriteString("\ud800");
                }
                catch (ArgumentException e)
                {
                    throw new ProtocolException(ErrorCode.BadMessage, "refused", e);
                }
            }, ErrorCode.BadMessage);
        }

        private static void WorkedExamples()
        {
            // PROTOCOL.md section 9: control frames, length prefix included.
            CheckBytes("example Ping 300", Hex("0305ac02"), Wire.EncodeFrame(new ClientMsg.Ping(300)));
            ClientMsg.Hello hello = new ClientMsg.Hello();
            hello.Client = ClientKind.Browser;
            hello.RelayMode = RelayMode.Datagram;
            hello.Name = "Ann";
            CheckBytes("example Hello", Hex("09000102000341 6e6e00"), Wire.EncodeFrame(hello));
            CheckBytes("example CreateSession", Hex("03010000"), Wire.EncodeFrame(new ClientMsg.CreateSession(0, null)));
            CheckBytes("example JoinSession", Hex("0c0206374b51324d580102 7077"), Wire.EncodeFrame(new ClientMsg.JoinSession("7KQ2MX", "pw")));
            CheckBytes("example LeaveSession", Hex("0104"), Wire.EncodeFrame(new ClientMsg.LeaveSession()));
            CheckBytes("example Error", Hex("04070a0178"), Wire.EncodeFrame(new ServerMsg.Error(10, "x")));
            CheckBytes("example HostChanged", Hex("020502"), Wire.EncodeFrame(new ServerMsg.HostChanged(2)));

            // The .NET client's own Hello: DotNet, Stream relay mode, a resume token.
            ClientMsg.Hello mine = new ClientMsg.Hello();
            mine.Name = "Ann";
            mine.ResumeToken = Hex("000102030405060708090a0b0c0d0e0f");
            CheckBytes("dotnet Hello defaults", Hex("0001010103416e6e0110000102030405060708090a0b0c0d0e0f"), mine.Encode());
        }

        // ------------------------------------------------------------------
        // Control frames
        // ------------------------------------------------------------------

        private static void FrameTests()
        {
            // A length over the limit is refused from the header alone, before any body byte.
            FrameDecoder dec = new FrameDecoder(16384);
            byte[] header = new byte[5];
            int n = Wire.WriteVarint(header, 0, 16385);
            dec.Push(header, 0, n);
            byte[] body;
            CheckThrows("oversized frame refused from its header", delegate { dec.TryNextFrame(out body); }, ErrorCode.FrameTooLarge);

            FrameDecoder small = new FrameDecoder(100);
            small.Push(new byte[] { 101 }, 0, 1);
            CheckThrows("101 > 100 refused", delegate { small.TryNextFrame(out body); }, ErrorCode.FrameTooLarge);

            FrameDecoder huge = new FrameDecoder(16384);
            huge.Push(Hex("ffffffff0f"), 0, 5);
            CheckThrows("4 GiB frame refused", delegate { huge.TryNextFrame(out body); }, ErrorCode.FrameTooLarge);

            FrameDecoder badLen = new FrameDecoder(16384);
            badLen.Push(Hex("808080808000"), 0, 6);
            CheckThrows("six-byte length refused", delegate { badLen.TryNextFrame(out body); }, ErrorCode.BadMessage);

            // Exactly at the limit is fine.
            FrameDecoder edge = new FrameDecoder(300);
            byte[] big = Wire.Frame(new byte[300]);
            edge.Push(big, 0, big.Length);
            Check(edge.TryNextFrame(out body) && body.Length == 300, "frame at the limit", "not returned");

            // A header split across pushes is "need more", not an error.
            FrameDecoder split = new FrameDecoder(16384);
            byte[] ping = Wire.EncodeFrame(new ClientMsg.Ping(300));
            split.Push(ping, 0, 1);
            Check(!split.TryNextFrame(out body), "partial frame needs more", "returned a frame early");
            split.Push(ping, 1, ping.Length - 1);
            Check(split.TryNextFrame(out body) && ClientMsg.Decode(body) is ClientMsg.Ping, "partial frame completes", "not a Ping");

            // Zero-length frame: returned empty, does not decode (bad_message on the server).
            FrameDecoder zero = new FrameDecoder(16384);
            zero.Push(new byte[] { 0 }, 0, 1);
            Check(zero.TryNextFrame(out body) && body.Length == 0, "zero-length frame returned", "not returned");
            CheckThrows("zero-length frame does not decode", delegate { ServerMsg.Decode(new byte[0]); }, ErrorCode.BadMessage);

            // Many frames coalesced and split at random points come back whole and in order.
            List<ServerMsg> msgs = new List<ServerMsg>();
            for (uint i = 0; i < 200; i++)
            {
                StringBuilder sdp = new StringBuilder();
                for (uint k = 0; k < i * 3; k++)
                {
                    sdp.Append("v=0\r\n");
                }
                msgs.Add(new ServerMsg.SignalFrom(i + 1, new Signal.Offer(sdp.ToString())));
                msgs.Add(new ServerMsg.Pong(i, ulong.MaxValue - i));
            }
            MemoryStream wire = new MemoryStream();
            foreach (ServerMsg m in msgs)
            {
                byte[] f = Wire.EncodeFrame(m);
                wire.Write(f, 0, f.Length);
            }
            byte[] all = wire.ToArray();
            for (int seed = 0; seed < 5; seed++)
            {
                Random rng = new Random(seed + 7);
                FrameDecoder fd = new FrameDecoder(16384);
                List<byte[]> got = new List<byte[]>();
                int at = 0;
                while (at < all.Length)
                {
                    int len = Math.Min(rng.Next(1, seed == 0 ? 3 : 1500), all.Length - at);
                    fd.Push(all, at, len);
                    at += len;
                    byte[] fb;
                    while (fd.TryNextFrame(out fb))
                    {
                        got.Add(fb);
                    }
                }
                bool same = got.Count == msgs.Count;
                for (int i = 0; same && i < got.Count; i++)
                {
                    same = SameBytes(got[i], msgs[i].Encode()) && ServerMsg.Decode(got[i]).Tag == msgs[i].Tag;
                }
                Check(same && fd.Buffered == 0, "split frames reassembled (seed " + seed + ")", got.Count + " of " + msgs.Count + " frames, " + fd.Buffered + " bytes left");
            }

            // The limit can be raised after Welcome.
            FrameDecoder raise = new FrameDecoder(10);
            raise.MaxFrameBytes = 20;
            byte[] twenty = Wire.Frame(new byte[20]);
            raise.Push(twenty, 0, twenty.Length);
            Check(raise.TryNextFrame(out body) && body.Length == 20, "raised limit", "not returned");
        }

        // ------------------------------------------------------------------
        // Relay frames, WebSocket messages, snapshots
        // ------------------------------------------------------------------

        private static void RelayTests()
        {
            byte[] hi = { 0x68, 0x69 };
            // PROTOCOL.md section 9.
            CheckBytes("relay to all", Hex("006869"), Wire.EncodeRelayFrame(0, hi, 0, 2));
            CheckBytes("relay to 300", Hex("ac026869"), Wire.EncodeRelayFrame(300, hi, 0, 2));
            CheckBytes("relay from 2", Hex("026869"), Wire.EncodeRelayFrame(2, hi, 0, 2));

            byte[] f = Hex("ac0268656c6c6f");
            uint peer;
            int at = Wire.ParseRelayFrame(f, 0, f.Length, out peer);
            Check(peer == 300 && at == 2 && Encoding.ASCII.GetString(f, at, f.Length - at) == "hello", "relay parse 300", "wrong split");
            byte[] zero = { 0 };
            at = Wire.ParseRelayFrame(zero, 0, 1, out peer);
            Check(peer == 0 && at == 1, "relay parse empty payload", "wrong split");
            CheckThrows("relay empty frame", delegate { uint p; Wire.ParseRelayFrame(new byte[0], 0, 0, out p); }, ErrorCode.BadMessage);
            CheckThrows("relay truncated header", delegate { uint p; Wire.ParseRelayFrame(Hex("80"), 0, 1, out p); }, ErrorCode.BadMessage);
            CheckThrows("relay header over u32", delegate { uint p; Wire.ParseRelayFrame(Hex("808080801000"), 0, 6, out p); }, ErrorCode.BadMessage);
            byte[] maxHdr = Wire.EncodeRelayFrame(uint.MaxValue, hi, 0, 2);
            CheckBytes("relay max peer", Hex("ffffffff0f6869"), maxHdr);
            // Offsets into a larger buffer.
            byte[] padded = Hex("eeee026869ee");
            at = Wire.ParseRelayFrame(padded, 2, 3, out peer);
            Check(peer == 2 && at == 3, "relay parse with offset", "wrong split");
            CheckBytes("relay encode slice", Hex("0169"), Wire.EncodeRelayFrame(1, hi, 1, 1));
        }

        private static void WebSocketTests()
        {
            byte[] c = Wire.EncodeWsControl(new ClientMsg.Ping(300));
            CheckBytes("ws control", Hex("0005ac02"), c);
            WsMessageKind kind;
            int at = Wire.ParseWsMessage(c, 0, c.Length, out kind);
            Check(kind == WsMessageKind.Control && ClientMsg.Decode(c, at, c.Length - at) is ClientMsg.Ping, "ws control parse", "wrong");

            byte[] r = Wire.EncodeWsRelay(300, new byte[] { 0x68, 0x69 }, 0, 2);
            CheckBytes("ws relay", Hex("01ac026869"), r);
            at = Wire.ParseWsMessage(r, 0, r.Length, out kind);
            uint peer;
            int payload = Wire.ParseRelayFrame(r, at, r.Length - at, out peer);
            Check(kind == WsMessageKind.Relay && peer == 300 && payload == 3, "ws relay parse", "wrong");

            byte[] s = Wire.EncodeWsControl(new ServerMsg.HostChanged(2));
            CheckBytes("ws server control", Hex("000502"), s);
            CheckThrows("ws empty message", delegate { WsMessageKind k; Wire.ParseWsMessage(new byte[0], 0, 0, out k); }, ErrorCode.BadMessage);
            CheckThrows("ws unknown kind", delegate { WsMessageKind k; Wire.ParseWsMessage(new byte[] { 2, 0 }, 0, 2, out k); }, ErrorCode.BadMessage);
            CheckThrows("ws relay without header", delegate { uint p; Wire.ParseRelayFrame(new byte[] { 1 }, 1, 0, out p); }, ErrorCode.BadMessage);
        }

        private static void FirstTests()
        {
            // Golden vector, PROTOCOL.md section 3 "The first request in the URL".
            ClientMsg.Hello hello = new ClientMsg.Hello();
            hello.Client = ClientKind.Browser;
            hello.RelayMode = RelayMode.Datagram;
            hello.Name = "";
            ClientMsg.JoinSession join = new ClientMsg.JoinSession("7KQ2MX", null);
            CheckBytes("first frames (golden)", Hex("06000102000000090206374b51324d5800"), First.Frames(hello, join));
            Eq("BgABAgAAAAkCBjdLUTJNWAA", First.Encode(hello, join), "first value (golden)");
            Eq(Wire.ToHex(Wire.EncodeFrame(hello)), Wire.ToHex(First.Frames(hello, null)), "first Hello only");
            // The alphabet is RFC 4648 section 5 and there is no padding.
            Eq("-_8", First.Base64Url(new byte[] { 0xfb, 0xff }), "base64url alphabet");
            Eq("AA", First.Base64Url(new byte[] { 0 }), "base64url no padding");
            Eq("", First.Base64Url(new byte[0]), "base64url empty");
            // A resume token rides in the Hello.
            hello.ResumeToken = new byte[16];
            hello.ResumeToken[0] = 7;
            byte[] resumed = First.Frames(hello, null);
            byte[] body = new byte[resumed.Length - 1];
            Buffer.BlockCopy(resumed, 1, body, 0, body.Length);
            ClientMsg.Hello back = ClientMsg.Decode(body) as ClientMsg.Hello;
            Check(back != null && back.ResumeToken != null && back.ResumeToken[0] == 7, "first resume token", "token lost");
            bool refused = false;
            try
            {
                First.Frames(hello, new ClientMsg.Ping(1));
            }
            catch (ArgumentException)
            {
                refused = true;
            }
            Check(refused, "first refuses other requests", "Ping accepted");
            refused = false;
            try
            {
                ClientMsg.JoinSession big = new ClientMsg.JoinSession("7KQ2MX", new string('x', 3000));
                First.Frames(hello, big);
            }
            catch (ArgumentException)
            {
                refused = true;
            }
            Check(refused, "first refuses over 2048 bytes", "too long accepted");
            // Appending to the WebSocket URL.
            Eq("ws://h:8080/ws?first=AA", First.AppendTo("ws://h:8080/ws", "AA"), "append ?");
            Eq("wss://h/ws?room=1&first=AA", First.AppendTo("wss://h/ws?room=1", "AA"), "append &");
            Eq("ws://h/ws?first=AA", First.AppendTo("ws://h/ws?", "AA"), "append after empty query");
            Eq("ws://h/ws?first=AA", First.AppendTo("ws://h/ws#x", "AA"), "append drops fragment");
            Eq("ws://h/ws", First.AppendTo("ws://h/ws", null), "append nothing");
        }

        private static void SnapshotTests()
        {
            byte[] w = SnapshotEnvelope.Wrap(0x01020304, new byte[] { 9, 8 }, 0, 2);
            CheckBytes("envelope layout", Hex("040302010908"), w);
            uint seq;
            int at;
            Check(SnapshotEnvelope.TryUnwrap(w, 0, w.Length, out seq, out at) && seq == 0x01020304 && at == 4, "envelope unwrap", "wrong");
            Check(!SnapshotEnvelope.TryUnwrap(w, 0, 3, out seq, out at), "envelope too short", "accepted 3 bytes");
            Check(SnapshotEnvelope.IsNewer(2, 1) && !SnapshotEnvelope.IsNewer(1, 2) && !SnapshotEnvelope.IsNewer(5, 5), "newer", "order");
            Check(SnapshotEnvelope.IsNewer(3, uint.MaxValue - 2) && !SnapshotEnvelope.IsNewer(uint.MaxValue, 1), "newer across wrap", "wrap");

            SnapshotFilter filter = new SnapshotFilter();
            Check(filter.Accept(7, 100), "first accepted", "refused");
            Check(!filter.Accept(7, 99), "stale dropped", "accepted");
            Check(!filter.Accept(7, 100), "duplicate dropped", "accepted");
            Check(filter.Accept(7, 105), "newer accepted", "refused");
            Check(filter.Accept(8, 1), "other peer independent", "refused");
            filter.Reset(7);
            Check(filter.Accept(7, 1), "after reset anything goes", "refused");
            Eq(2L, filter.Dropped, "dropped count");
        }

        private static void ConstructedRoundTrips()
        {
            // Messages built in C# survive encode -> decode -> encode.
            List<ClientMsg> client = new List<ClientMsg>();
            ClientMsg.Hello h = new ClientMsg.Hello();
            h.Name = "Pilot \u2708";
            client.Add(h);
            client.Add(new ClientMsg.CreateSession(4, "secret"));
            client.Add(new ClientMsg.JoinSession("ABC-DEF", null));
            client.Add(new ClientMsg.SignalTo(3, new Signal.IceCandidate("candidate:1 1 udp 1 10.0.0.1 5000 typ host", "0", 0)));
            client.Add(new ClientMsg.SignalTo(0, new Signal.EndOfCandidates()));
            client.Add(new ClientMsg.SignalTo(0, new Signal.App(Encoding.UTF8.GetBytes("{\"name\":\"Chat\",\"args\":[\"hi\"]}"))));
            client.Add(new ClientMsg.SignalTo(9, new Signal.Answer("")));
            client.Add(new ClientMsg.LeaveSession());
            client.Add(new ClientMsg.Ping(ulong.MaxValue));
            foreach (ClientMsg m in client)
            {
                byte[] a = m.Encode();
                byte[] b = ClientMsg.Decode(a).Encode();
                CheckBytes("constructed " + m.GetType().Name, a, b);
            }
            ServerMsg.Welcome w = new ServerMsg.Welcome();
            w.PeerId = 1;
            w.ResumeToken = new byte[16];
            IceServer s = new IceServer();
            s.Urls.Add("stun:example.com:3478");
            w.IceServers.Add(s);
            byte[] wa = w.Encode();
            CheckBytes("constructed Welcome", wa, ServerMsg.Decode(wa).Encode());
        }

        private static void FuzzTests()
        {
            // Random bytes never throw anything but ProtocolException, and never hang.
            Random rng = new Random(42);
            byte[] buf = new byte[64];
            int wrong = 0;
            string firstWrong = null;
            for (int i = 0; i < 20000; i++)
            {
                int n = rng.Next(0, buf.Length);
                rng.NextBytes(buf);
                // Bias the first byte toward valid tags so decoding gets deep.
                if (n > 0)
                {
                    buf[0] = (byte)(buf[0] % 13);
                }
                TryDecode(delegate { ClientMsg.Decode(buf, 0, n); }, ref wrong, ref firstWrong);
                TryDecode(delegate { ServerMsg.Decode(buf, 0, n); }, ref wrong, ref firstWrong);
                TryDecode(delegate { uint p; Wire.ParseRelayFrame(buf, 0, n, out p); }, ref wrong, ref firstWrong);
                FrameDecoder fd = new FrameDecoder(32);
                TryDecode(delegate
                {
                    fd.Push(buf, 0, n);
                    byte[] f;
                    while (fd.TryNextFrame(out f))
                    {
                        try
                        {
                            ServerMsg.Decode(f);
                        }
                        catch (ProtocolException)
                        {
                        }
                    }
                }, ref wrong, ref firstWrong);
            }
            Check(wrong == 0, "fuzz: only ProtocolException", wrong + " other exceptions, first: " + firstWrong);
        }

        private static void TryDecode(Action a, ref int wrong, ref string firstWrong)
        {
            try
            {
                a();
            }
            catch (ProtocolException)
            {
            }
            catch (Exception e)
            {
                wrong++;
                if (firstWrong == null)
                {
                    firstWrong = e.GetType().Name + ": " + e.Message;
                }
            }
        }
    }
}
