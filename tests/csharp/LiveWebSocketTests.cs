// Live test: mono speaks to the REAL server over the WebSocket fallback
// transport (docs/PROTOCOL.md §10), with client/Protocol.*.cs doing all the
// encoding and decoding and mono's System.Net.WebSockets.ClientWebSocket as the
// transport. Run by tests/csharp/live.sh, which starts the server:
//
//   mcs -langversion:7.2 -out:live-ws-tests.exe client/Protocol.*.cs tests/csharp/LiveWebSocketTests.cs
//   mono live-ws-tests.exe ws://127.0.0.1:PORT/ws
//
// Scenario: A says Hello, gets Welcome, tries a join code nobody has (Error 10),
// creates a session; B joins with the code in lower case with a dash; A sees B
// join; Offer/Answer between them; 50 relay frames A -> B and 50 B -> everyone,
// byte-exact and in order; A's Ping gets a Pong; a JoinSession while in a
// session gets Error 13; garbage on a third connection gets Error 1 and close
// 4001; B closes with 1000, A gets PeerLeft(B, Left) and the server answers
// B's close frame (RFC 6455 §5.5.1). Then the first request in the URL
// (PROTOCOL.md §3): D creates a session with `?first=` (Hello + CreateSession,
// First.Encode) and sends nothing, E joins it the same way; Welcome and the answer
// are the first messages, D hears E join; a malformed `first` is refused (400).
//
// One line per check, then `N passed, N failed` as the last line; exit code 1 on
// any failure. Every wait has a timeout and the whole run is capped at 60 s.
//
// Plain C# 7.2, no test framework: the same rules as client/Protocol.*.cs.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    /// <summary>One thing a connection received: a control message, a relay frame, a
    /// message that did not decode, or the end of the connection.</summary>
    internal sealed class Received
    {
        public ServerMsg Control;
        public uint From;
        public byte[] Payload;
        /// <summary>Set on a message that did not decode (or was not binary).</summary>
        public string Fault;
        /// <summary>Set on the final item: the connection is over.</summary>
        public bool Ended;
        public WebSocketCloseStatus? CloseStatus;
        public string CloseDescription;
        /// <summary>Why the connection ended without a close frame (exception), if it did.</summary>
        public string EndError;

        public override string ToString()
        {
            if (Ended)
            {
                if (CloseStatus.HasValue)
                {
                    return "close " + (int)CloseStatus.Value + " \"" + CloseDescription + "\"";
                }
                return "connection ended without a close frame (" + EndError + ")";
            }
            if (Fault != null)
            {
                return "undecodable message: " + Fault;
            }
            if (Control != null)
            {
                return Describe(Control);
            }
            return "relay frame from " + From + " (" + Payload.Length + " bytes)";
        }

        public static string Describe(ServerMsg m)
        {
            ServerMsg.Error e = m as ServerMsg.Error;
            if (e != null)
            {
                return "Error(" + e.Code + " " + ErrorCodes.Name(e.Code) + ", \"" + e.Message + "\")";
            }
            ServerMsg.PeerLeft pl = m as ServerMsg.PeerLeft;
            if (pl != null)
            {
                return "PeerLeft(" + pl.Peer + ", " + pl.Reason + ")";
            }
            ServerMsg.PeerStatus ps = m as ServerMsg.PeerStatus;
            if (ps != null)
            {
                return "PeerStatus(" + ps.Peer + ", online=" + ps.Online + ")";
            }
            return m.GetType().Name;
        }
    }

    /// <summary>A WebSocket connection to the server with a background receive loop
    /// that sorts what arrives into a control queue and a relay queue.</summary>
    internal sealed class WsPeer : IDisposable
    {
        public readonly string Label;
        public uint Id;

        private readonly ClientWebSocket _ws = new ClientWebSocket();
        private readonly CancellationToken _life;
        private readonly object _gate = new object();
        private readonly Queue<Received> _control = new Queue<Received>();
        private readonly Queue<Received> _relay = new Queue<Received>();
        private readonly SemaphoreSlim _controlReady = new SemaphoreSlim(0);
        private readonly SemaphoreSlim _relayReady = new SemaphoreSlim(0);
        private Received _end;
        private int _relayCount;
        private Task _loop;

        public WsPeer(string label, CancellationToken life)
        {
            Label = label;
            _life = life;
        }

        /// <summary>Relay frames received so far (consumed or not).</summary>
        public int RelayCount
        {
            get { return Volatile.Read(ref _relayCount); }
        }

        public WebSocketState State
        {
            get { return _ws.State; }
        }

        public async Task ConnectAsync(Uri uri, int timeoutMs)
        {
            using (CancellationTokenSource cts = CancellationTokenSource.CreateLinkedTokenSource(_life))
            {
                cts.CancelAfter(timeoutMs);
                await _ws.ConnectAsync(uri, cts.Token).ConfigureAwait(false);
            }
            _loop = Task.Run(ReceiveLoop);
        }

        public async Task SendRawAsync(byte[] message, int timeoutMs)
        {
            using (CancellationTokenSource cts = CancellationTokenSource.CreateLinkedTokenSource(_life))
            {
                cts.CancelAfter(timeoutMs);
                await _ws.SendAsync(new ArraySegment<byte>(message), WebSocketMessageType.Binary, true, cts.Token)
                    .ConfigureAwait(false);
            }
        }

        public Task SendAsync(ClientMsg msg, int timeoutMs)
        {
            return SendRawAsync(Wire.EncodeWsControl(msg), timeoutMs);
        }

        public Task SendRelayAsync(uint peer, byte[] payload, int timeoutMs)
        {
            return SendRawAsync(Wire.EncodeWsRelay(peer, payload, 0, payload.Length), timeoutMs);
        }

        /// <summary>Starts the closing handshake (status, description) and waits for
        /// the server's close frame, up to the timeout.</summary>
        public async Task CloseAsync(WebSocketCloseStatus status, string description, int timeoutMs)
        {
            using (CancellationTokenSource cts = CancellationTokenSource.CreateLinkedTokenSource(_life))
            {
                cts.CancelAfter(timeoutMs);
                await _ws.CloseOutputAsync(status, description, cts.Token).ConfigureAwait(false);
            }
        }

        /// <summary>The next control item (or the end), or null after the timeout.</summary>
        public Task<Received> NextControlAsync(int timeoutMs)
        {
            return NextAsync(_control, _controlReady, timeoutMs);
        }

        /// <summary>The next relay item (or the end), or null after the timeout.</summary>
        public Task<Received> NextRelayAsync(int timeoutMs)
        {
            return NextAsync(_relay, _relayReady, timeoutMs);
        }

        /// <summary>The end of the connection, skipping anything still queued; null after the timeout.</summary>
        public async Task<Received> WaitEndAsync(int timeoutMs)
        {
            Stopwatch sw = Stopwatch.StartNew();
            while (true)
            {
                int left = timeoutMs - (int)sw.ElapsedMilliseconds;
                if (left <= 0)
                {
                    return null;
                }
                Received r = await NextControlAsync(left).ConfigureAwait(false);
                if (r == null || r.Ended)
                {
                    return r;
                }
            }
        }

        /// <summary>Control items queued right now, without waiting.</summary>
        public List<Received> DrainControl()
        {
            List<Received> list = new List<Received>();
            lock (_gate)
            {
                while (_control.Count > 0)
                {
                    _controlReady.Wait(0);
                    list.Add(_control.Dequeue());
                }
            }
            return list;
        }

        private async Task<Received> NextAsync(Queue<Received> queue, SemaphoreSlim ready, int timeoutMs)
        {
            if (!await ready.WaitAsync(timeoutMs).ConfigureAwait(false))
            {
                return null;
            }
            lock (_gate)
            {
                if (queue.Count > 0)
                {
                    return queue.Dequeue();
                }
                // Woken by the end of the connection: keep that signal for the next caller.
                ready.Release();
                return _end;
            }
        }

        private void Post(Queue<Received> queue, SemaphoreSlim ready, Received item)
        {
            lock (_gate)
            {
                queue.Enqueue(item);
            }
            ready.Release();
        }

        private async Task ReceiveLoop()
        {
            byte[] buf = new byte[4096];
            Received end = new Received();
            end.Ended = true;
            try
            {
                while (true)
                {
                    int used = 0;
                    WebSocketReceiveResult r;
                    do
                    {
                        if (used == buf.Length)
                        {
                            Array.Resize(ref buf, buf.Length * 2);
                        }
                        r = await _ws.ReceiveAsync(new ArraySegment<byte>(buf, used, buf.Length - used), _life)
                            .ConfigureAwait(false);
                        used += r.Count;
                    }
                    while (!r.EndOfMessage);

                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        end.CloseStatus = r.CloseStatus;
                        end.CloseDescription = r.CloseStatusDescription;
                        break;
                    }
                    Dispatch(r.MessageType, buf, used);
                }
            }
            catch (Exception e)
            {
                end.EndError = e.GetType().Name + ": " + e.Message;
                if (_ws.CloseStatus.HasValue)
                {
                    end.CloseStatus = _ws.CloseStatus;
                    end.CloseDescription = _ws.CloseStatusDescription;
                }
            }
            lock (_gate)
            {
                _end = end;
            }
            _controlReady.Release();
            _relayReady.Release();
        }

        private void Dispatch(WebSocketMessageType type, byte[] buf, int used)
        {
            Received item = new Received();
            if (type != WebSocketMessageType.Binary)
            {
                item.Fault = "a " + type + " message";
                Post(_control, _controlReady, item);
                return;
            }
            try
            {
                WsMessageKind kind;
                int off = Wire.ParseWsMessage(buf, 0, used, out kind);
                if (kind == WsMessageKind.Control)
                {
                    item.Control = ServerMsg.Decode(buf, off, used - off);
                    Post(_control, _controlReady, item);
                }
                else
                {
                    uint from;
                    int p = Wire.ParseRelayFrame(buf, off, used - off, out from);
                    item.From = from;
                    item.Payload = new byte[used - p];
                    Buffer.BlockCopy(buf, p, item.Payload, 0, item.Payload.Length);
                    Interlocked.Increment(ref _relayCount);
                    Post(_relay, _relayReady, item);
                }
            }
            catch (ProtocolException e)
            {
                byte[] copy = new byte[Math.Min(used, 64)];
                Buffer.BlockCopy(buf, 0, copy, 0, copy.Length);
                item.Fault = e.Message + " in " + Wire.ToHex(copy);
                Post(_control, _controlReady, item);
            }
        }

        public void Dispose()
        {
            try
            {
                _ws.Abort();
            }
            catch (Exception)
            {
            }
            if (_loop != null)
            {
                try
                {
                    _loop.Wait(500);
                }
                catch (Exception)
                {
                }
            }
            _ws.Dispose();
        }
    }

    /// <summary>Thrown after a failed check that later steps depend on.</summary>
    internal sealed class AbortScenario : Exception
    {
        public AbortScenario(string message) : base(message)
        {
        }
    }

    internal static class LiveWebSocketTests
    {
        private const int Wait = 10000;
        private const int Frames = 50;
        /// <summary>Relay frames a sender may have in flight before the receiver has
        /// them: below the server's 32-frame drop-oldest queue per WebSocket
        /// receiver, so nothing is dropped on purpose (relay is best effort).</summary>
        private const int Window = 16;


        /// <summary>A check later steps depend on: a failure aborts the scenario.</summary>
        private static void Require(string name, bool ok, string detail)
        {
            Check(ok, name, detail);
            if (!ok)
            {
                throw new AbortScenario(name);
            }
        }

        private static async Task<T> ExpectControl<T>(WsPeer peer, string name) where T : ServerMsg
        {
            Received r = await peer.NextControlAsync(Wait).ConfigureAwait(false);
            if (r == null)
            {
                Require(name, false, peer.Label + ": no message within " + Wait + " ms (wanted " + typeof(T).Name + ")");
            }
            T m = r.Control as T;
            if (m == null)
            {
                Require(name, false, peer.Label + ": wanted " + typeof(T).Name + ", got " + r);
            }
            return m;
        }

        private static async Task<WsPeer> Connect(Uri uri, string label, CancellationToken life)
        {
            WsPeer p = new WsPeer(label, life);
            // A URL with `first` can hold a join code: shown without its query.
            string shown = uri.GetLeftPart(UriPartial.Path) + (uri.Query.Length > 0 ? "?first=..." : "");
            try
            {
                await p.ConnectAsync(uri, Wait).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                p.Dispose();
                Require(label + " connects to " + shown, false, e.GetType().Name + ": " + e.Message);
            }
            Check(p.State == WebSocketState.Open, label + " connects to " + shown, "state " + p.State);
            return p;
        }

        private static ClientMsg Hello(string name)
        {
            ClientMsg.Hello h = new ClientMsg.Hello();
            h.Client = ClientKind.DotNet;
            h.RelayMode = RelayMode.Stream;
            h.Name = name;
            return h;
        }

        private static bool IsJoinCode(string code)
        {
            const string alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
            if (code == null || code.Length != 6)
            {
                return false;
            }
            foreach (char c in code)
            {
                if (alphabet.IndexOf(c) < 0)
                {
                    return false;
                }
            }
            return true;
        }

        private static string Peers(SessionInfo s)
        {
            StringBuilder sb = new StringBuilder("[");
            foreach (PeerInfo p in s.Peers)
            {
                if (sb.Length > 1)
                {
                    sb.Append(", ");
                }
                sb.Append(p.Id).Append(' ').Append(p.Name).Append(' ').Append(p.Client);
            }
            return sb.Append(']').ToString();
        }

        /// <summary>Deterministic test payloads: the first is 1 byte, the second the
        /// largest allowed, the rest in between; a u32 LE sequence number first
        /// (the flight-data envelope), then seeded random bytes, so some payloads
        /// start with 0x00 or 0x01 like a WebSocket message kind.</summary>
        private static List<byte[]> Payloads(int seed, int max)
        {
            List<byte[]> list = new List<byte[]>();
            Random rnd = new Random(seed);
            for (int i = 0; i < Frames; i++)
            {
                int len = i == 0 ? 1 : i == 1 ? max : 1 + (i * 211 + seed * 37) % max;
                byte[] p = new byte[len];
                rnd.NextBytes(p);
                if (len >= SnapshotEnvelope.HeaderBytes)
                {
                    SnapshotEnvelope.WriteHeader(p, 0, (uint)i);
                }
                list.Add(p);
            }
            return list;
        }

        private static bool Same(byte[] a, byte[] b)
        {
            if (a.Length != b.Length)
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

        /// <summary>Sends the payloads as relay frames to dest, never more than Window
        /// ahead of what the receiver has got.</summary>
        private static async Task SendRelays(WsPeer from, WsPeer receiver, uint dest, List<byte[]> payloads)
        {
            int before = receiver.RelayCount;
            for (int i = 0; i < payloads.Count; i++)
            {
                Stopwatch sw = Stopwatch.StartNew();
                while (receiver.RelayCount - before < i - Window + 1)
                {
                    if (sw.ElapsedMilliseconds > Wait)
                    {
                        Require(from.Label + " sends relay frames", false,
                            receiver.Label + " got only " + (receiver.RelayCount - before) + " of " + i + " sent");
                    }
                    await Task.Delay(1).ConfigureAwait(false);
                }
                await from.SendRelayAsync(dest, payloads[i], Wait).ConfigureAwait(false);
            }
        }

        /// <summary>Reads payloads.Count relay frames and compares sender and bytes, in order.</summary>
        private static async Task ReceiveRelays(WsPeer to, uint expectedFrom, List<byte[]> payloads, string name)
        {
            for (int i = 0; i < payloads.Count; i++)
            {
                Received r = await to.NextRelayAsync(Wait).ConfigureAwait(false);
                if (r == null || r.Ended)
                {
                    Check(false, name, "frame " + i + ": " + (r == null ? "nothing within " + Wait + " ms" : r.ToString()));
                    return;
                }
                if (r.From != expectedFrom)
                {
                    Check(false, name, "frame " + i + " from peer " + r.From + ", expected " + expectedFrom);
                    return;
                }
                if (!Same(r.Payload, payloads[i]))
                {
                    int found = -1;
                    for (int j = 0; j < payloads.Count; j++)
                    {
                        if (Same(r.Payload, payloads[j]))
                        {
                            found = j;
                        }
                    }
                    Check(false, name, "frame " + i + " differs (" + r.Payload.Length + " bytes, "
                        + (found >= 0 ? "it is frame " + found + ": out of order or a drop" : "matches no frame sent") + ")");
                    return;
                }
            }
            Check(true, name, payloads.Count + " frames");
        }

        private static async Task Run(Uri uri, CancellationToken life)
        {
            WsPeer a = null;
            WsPeer b = null;
            WsPeer c = null;
            try
            {
                // --- A: Hello, Welcome, a code nobody has, CreateSession ---
                a = await Connect(uri, "A", life);
                await a.SendAsync(Hello("mono-a"), Wait);
                ServerMsg.Welcome wa = await ExpectControl<ServerMsg.Welcome>(a, "A gets Welcome");
                a.Id = wa.PeerId;
                Check(true, "A gets Welcome", "peer " + wa.PeerId);
                Require("A's peer_id > 0", wa.PeerId > 0, "peer_id " + wa.PeerId);
                Check(wa.ResumeToken != null && wa.ResumeToken.Length == Wire.ResumeTokenLength, "A's resume token is 16 bytes",
                    "length " + (wa.ResumeToken == null ? -1 : wa.ResumeToken.Length));
                Check(wa.Version == 1 && !wa.Resumed, "Welcome: version 1, not resumed",
                    "version " + wa.Version + ", resumed " + wa.Resumed);
                Check(wa.Limits.MaxFrameBytes >= 1024 && wa.Limits.MaxRelayPayload >= 100, "Welcome: limits",
                    "max_frame_bytes " + wa.Limits.MaxFrameBytes + ", max_relay_payload " + wa.Limits.MaxRelayPayload);
                int maxPayload = (int)Math.Min(wa.Limits.MaxRelayPayload, 1100u);

                // Nobody has this code yet (no session exists). Done before A creates its
                // session: a JoinSession from a peer already in a session is refused with
                // already_in_session (13) before the code is looked at.
                await a.SendAsync(new ClientMsg.JoinSession("zzz-zzz", null), Wait);
                ServerMsg.Error wrong = await ExpectControl<ServerMsg.Error>(a, "A joins a wrong code: Error");
                Check(wrong.Code == (ushort)ErrorCode.UnknownSession, "A joins a wrong code: Error 10 unknown_session",
                    Received.Describe(wrong));

                await a.SendAsync(new ClientMsg.CreateSession(0, null), Wait);
                ServerMsg.SessionCreated created = await ExpectControl<ServerMsg.SessionCreated>(a, "A gets SessionCreated");
                SessionInfo s = created.Session;
                Require("SessionCreated: 6-character join code", IsJoinCode(s.Code), "code \"" + s.Code + "\"");
                Check(s.Host == a.Id && s.Peers.Count == 1 && s.Peers[0].Id == a.Id && s.Peers[0].Name == "mono-a"
                    && s.Peers[0].Client == ClientKind.DotNet, "SessionCreated: A is host and the only peer",
                    "host " + s.Host + ", peers " + Peers(s));

                // --- B: Hello + JoinSession pipelined, code as "abc-def" ---
                b = await Connect(uri, "B", life);
                string typed = s.Code.Substring(0, 3).ToLowerInvariant() + "-" + s.Code.Substring(3).ToLowerInvariant();
                await b.SendAsync(Hello("mono-b"), Wait);
                await b.SendAsync(new ClientMsg.JoinSession(typed, null), Wait);
                ServerMsg.Welcome wb = await ExpectControl<ServerMsg.Welcome>(b, "B gets Welcome");
                b.Id = wb.PeerId;
                Require("B gets Welcome with a new peer id", wb.PeerId > 0 && wb.PeerId != a.Id,
                    "A " + a.Id + ", B " + wb.PeerId);
                ServerMsg.SessionJoined joined = await ExpectControl<ServerMsg.SessionJoined>(b,
                    "B joins with \"" + typed + "\"");
                SessionInfo js = joined.Session;
                Check(js.Code == s.Code && js.Host == a.Id && js.Peers.Count == 2
                    && js.Peers[0].Id == a.Id && js.Peers[0].Name == "mono-a"
                    && js.Peers[1].Id == b.Id && js.Peers[1].Name == "mono-b" && js.Peers[1].Client == ClientKind.DotNet, "B joins with \"" + typed + "\": SessionJoined lists A then B",
                    "code " + js.Code + ", host " + js.Host + ", peers " + Peers(js));
                ServerMsg.PeerJoined pj = await ExpectControl<ServerMsg.PeerJoined>(a, "A gets PeerJoined(B)");
                Check(pj.Peer.Id == b.Id && pj.Peer.Name == "mono-b" && pj.Peer.Client == ClientKind.DotNet, "A gets PeerJoined(B)",
                    "peer " + pj.Peer.Id + " " + pj.Peer.Name + " " + pj.Peer.Client);

                // --- Signals: Offer A -> B, Answer B -> A ---
                const string offerSdp = "v=0\r\no=mono-a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
                const string answerSdp = "v=0\r\no=mono-b 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
                await a.SendAsync(new ClientMsg.SignalTo(b.Id, new Signal.Offer(offerSdp)), Wait);
                ServerMsg.SignalFrom so = await ExpectControl<ServerMsg.SignalFrom>(b, "B gets A's Offer");
                Signal.Offer offer = so.Signal as Signal.Offer;
                Check(so.From == a.Id && offer != null && offer.Sdp == offerSdp, "B gets A's Offer, from = A",
                    "from " + so.From + ", " + so.Signal.GetType().Name);
                await b.SendAsync(new ClientMsg.SignalTo(a.Id, new Signal.Answer(answerSdp)), Wait);
                ServerMsg.SignalFrom sa = await ExpectControl<ServerMsg.SignalFrom>(a, "A gets B's Answer");
                Signal.Answer answer = sa.Signal as Signal.Answer;
                Check(sa.From == b.Id && answer != null && answer.Sdp == answerSdp, "A gets B's Answer, from = B",
                    "from " + sa.From + ", " + sa.Signal.GetType().Name);

                // --- Relay: A -> B by id, B -> everyone (0) ---
                List<byte[]> aToB = Payloads(1, maxPayload);
                Stopwatch relayTime = Stopwatch.StartNew();
                Task recvB = ReceiveRelays(b, a.Id, aToB, "B gets A's " + Frames + " relay frames: from = A, exact bytes, in order");
                await SendRelays(a, b, b.Id, aToB);
                await recvB;
                List<byte[]> bToAll = Payloads(2, maxPayload);
                Task recvA = ReceiveRelays(a, b.Id, bToAll, "A gets B's " + Frames + " relay frames to all (0): from = B, exact bytes, in order");
                await SendRelays(b, a, Wire.AllPeers, bToAll);
                await recvA;
                long relayMs = relayTime.ElapsedMilliseconds;

                // Pong after the relays: also a point by which a stray echo would have come.
                ulong stamp = 0x0123456789ABCDEFUL;
                await b.SendAsync(new ClientMsg.Ping(stamp), Wait);
                ServerMsg.Pong pong = await ExpectControl<ServerMsg.Pong>(b, "B's Ping gets a Pong");
                ulong now = (ulong)(DateTime.UtcNow - new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc)).TotalMilliseconds;
                long skew = (long)pong.ServerTimeMs - (long)now;
                Check(pong.ClientTimeMs == stamp && Math.Abs(skew) < 60000, "B's Ping gets a Pong echoing client_time_ms, server time near ours",
                    "echo 0x" + pong.ClientTimeMs.ToString("x") + ", skew " + skew + " ms");
                await Task.Delay(100);
                Received stray = await b.NextRelayAsync(0);
                Check(stray == null && a.RelayCount == Frames && b.RelayCount == Frames, "no relay frames echoed back to their sender or extra",
                    stray != null ? "B got " + stray : "A got " + a.RelayCount + ", B got " + b.RelayCount
                        + " (relay phase " + relayMs + " ms)");

                // In a session already: the server refuses before it looks at the code.
                await a.SendAsync(new ClientMsg.JoinSession("zzz-zzz", null), Wait);
                ServerMsg.Error again = await ExpectControl<ServerMsg.Error>(a, "A joins while in a session: Error");
                Check(again.Code == (ushort)ErrorCode.AlreadyInSession, "A joins while in a session: Error 13 already_in_session", Received.Describe(again));

                // --- Garbage on a third connection ---
                c = await Connect(uri, "C", life);
                await c.SendRawAsync(new byte[] { 0x07, 0x00, 0x01, 0x02 }, Wait);
                Received gc = await c.NextControlAsync(Wait);
                ServerMsg.Error ge = gc == null ? null : gc.Control as ServerMsg.Error;
                Check(ge != null && ge.Code == (ushort)ErrorCode.BadMessage, "garbage (first byte 0x07) gets Error 1 bad_message",
                    gc == null ? "nothing within " + Wait + " ms" : gc.ToString());
                Received ce = await c.WaitEndAsync(Wait);
                Check(ce != null && ce.CloseStatus.HasValue && (int)ce.CloseStatus.Value == 4001, "then the server closes with status 4001",
                    ce == null ? "no close within " + Wait + " ms" : ce.ToString());

                // --- B leaves for good: close 1000 ---
                Stopwatch leave = Stopwatch.StartNew();
                try
                {
                    await b.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", Wait);
                    Check(true, "B sends close 1000", "");
                }
                catch (Exception e)
                {
                    Check(false, "B sends close 1000", e.GetType().Name + ": " + e.Message);
                }
                Received pl = await a.NextControlAsync(Wait);
                ServerMsg.PeerLeft left = pl == null ? null : pl.Control as ServerMsg.PeerLeft;
                Check(left != null && left.Peer == b.Id && left.Reason == LeaveReason.Left, "A gets PeerLeft(B, Left)",
                    (pl == null ? "nothing within " + Wait + " ms" : pl.ToString())
                        + " after " + leave.ElapsedMilliseconds + " ms");
                // RFC 6455 §5.5.1: the server must answer B's close frame with one.
                Received be = await b.WaitEndAsync(Wait);
                bool answered = be != null && be.CloseStatus.HasValue
                    && be.CloseStatus.Value == WebSocketCloseStatus.NormalClosure;
                string how = (be == null ? "no close within " + Wait + " ms" : be.ToString())
                    + " after " + leave.ElapsedMilliseconds + " ms";
                Check(answered, "B's closing handshake completes (server answers close 1000 with a close frame)", how);
                List<Received> rest = a.DrainControl();
                Check(rest.Count == 0, "A gets nothing else (no HostChanged: A stays host)",
                    rest.Count == 0 ? "" : string.Join(", ", rest));

                // Leave politely too (not checked further).
                try
                {
                    await a.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", 1000);
                    await a.WaitEndAsync(1500);
                }
                catch (Exception)
                {
                }
            }
            catch (AbortScenario e)
            {
                Check(false, "scenario", "stopped after the failed check \"" + e.Message + "\"");
            }
            finally
            {
                if (a != null)
                {
                    a.Dispose();
                }
                if (b != null)
                {
                    b.Dispose();
                }
                if (c != null)
                {
                    c.Dispose();
                }
            }
        }

        /// <summary>The first request in the URL: nothing is sent on the socket.</summary>
        private static async Task RunFirst(Uri uri, CancellationToken life)
        {
            WsPeer d = null;
            WsPeer e = null;
            try
            {
                string create = First.Encode((ClientMsg.Hello)Hello("mono-d"), new ClientMsg.CreateSession(0, null));
                d = await Connect(new Uri(First.AppendTo(uri.AbsoluteUri, create)), "D (first: Hello + CreateSession)", life);
                ServerMsg.Welcome wd = await ExpectControl<ServerMsg.Welcome>(d, "D: Welcome first");
                Check(wd.PeerId > 0 && !wd.Resumed, "D: Welcome first, nothing sent", "peer " + wd.PeerId);
                ServerMsg.SessionCreated created = await ExpectControl<ServerMsg.SessionCreated>(d, "D: SessionCreated second");
                Check(created.Session.Host == wd.PeerId, "D: SessionCreated second", "code " + created.Session.Code);

                string join = First.Encode((ClientMsg.Hello)Hello("mono-e"), new ClientMsg.JoinSession(created.Session.Code, null));
                e = await Connect(new Uri(First.AppendTo(uri.AbsoluteUri, join)), "E (first: Hello + JoinSession)", life);
                ServerMsg.Welcome we = await ExpectControl<ServerMsg.Welcome>(e, "E: Welcome first");
                ServerMsg.SessionJoined joined = await ExpectControl<ServerMsg.SessionJoined>(e, "E: SessionJoined second");
                Check(joined.Session.Code == created.Session.Code && joined.Session.Peers.Count == 2, "E: SessionJoined second, nothing sent",
                    "peers " + joined.Session.Peers.Count);
                ServerMsg.PeerJoined pj = await ExpectControl<ServerMsg.PeerJoined>(d, "D hears E join");
                Check(pj.Peer.Id == we.PeerId, "D hears E join", "peer " + pj.Peer.Id);

                WsPeer bad = new WsPeer("F", life);
                string why = null;
                try
                {
                    await bad.ConnectAsync(new Uri(First.AppendTo(uri.AbsoluteUri, "!!notbase64")), Wait).ConfigureAwait(false);
                }
                catch (Exception x)
                {
                    why = x.GetType().Name;
                }
                finally
                {
                    bad.Dispose();
                }
                Check(why != null, "a malformed first is refused at the upgrade", why ?? "upgraded");

                await e.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", 1000);
                await d.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", 1000);
            }
            catch (AbortScenario x)
            {
                Check(false, "first scenario", "stopped after the failed check \"" + x.Message + "\"");
            }
            finally
            {
                if (d != null)
                {
                    d.Dispose();
                }
                if (e != null)
                {
                    e.Dispose();
                }
            }
        }

        private static int Main(string[] args)
        {
            if (args.Length != 1)
            {
                Console.Error.WriteLine("usage: mono live-ws-tests.exe ws://HOST:PORT/ws");
                return 2;
            }
            Stopwatch total = Stopwatch.StartNew();
            using (CancellationTokenSource life = new CancellationTokenSource())
            {
                Task run = Task.Run(async () =>
                {
                    await Run(new Uri(args[0]), life.Token).ConfigureAwait(false);
                    await RunFirst(new Uri(args[0]), life.Token).ConfigureAwait(false);
                });
                try
                {
                    if (!run.Wait(TimeSpan.FromSeconds(60)))
                    {
                        life.Cancel();
                        Check(false, "whole run", "not finished after 60 s");
                    }
                }
                catch (AggregateException e)
                {
                    Exception inner = e.InnerException ?? e;
                    Check(false, "whole run", "unexpected " + inner.GetType().Name + ": " + inner.Message);
                }
            }
            Note("time: " + total.ElapsedMilliseconds + " ms");
            int code = Summary();
            // Exit even if a background receive loop is still stuck somewhere.
            Environment.Exit(code);
            return code;
        }
    }
}
