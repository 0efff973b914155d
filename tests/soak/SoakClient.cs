// The C# half of the soak test (tests/soak/run.sh): two WebRTCP2PService instances
// (client/*.cs, unmodified) in one session over the WebSocket transport, each sending
// a 200-byte flight frame to the other 30 times a second (through the server's relay:
// no WebRTC adapter here) for SECS, counting every time one took the server for lost
// (its Reconnecting event) or gave up (Closed).
//
//   mono soak-client.exe ws://HOST:PORT/ws SECS [--tight]
//
// --tight: ServerTimeout 400 ms with a Ping every 100 ms, the control run that proves
// the soak test catches false alarms. Prints one JSON line {"client":"csharp","lost":N,...}.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;

namespace FlightSimP2P.Soak
{
    internal sealed class Tally
    {
        public int Lost;
        public bool Closed;
        public long Sent;
        public long Received;
        public long LastMs;
        public readonly List<string> Reasons = new List<string>();
    }

    internal static class SoakClient
    {
        private static readonly Stopwatch Clock = Stopwatch.StartNew();

        private static WebRTCP2PService Make(string ws, string name, bool tight, Tally t)
        {
            HubConnectionBuilder b = new HubConnectionBuilder()
                .WithUrl(ws, o => { o.DisplayName = name; o.QuicAllowed = false; })
                .WithAutomaticReconnect();
            if (tight)
            {
                b = b.WithServerTimeout(TimeSpan.FromMilliseconds(400))
                    .WithKeepAliveInterval(TimeSpan.FromMilliseconds(100));
            }
            WebRTCP2PService s = b.Build();
            s.Reconnecting += e =>
            {
                lock (t)
                {
                    t.Lost++;
                    t.Reasons.Add(e == null ? "?" : e.Message);
                }
                Console.Error.WriteLine("soak csharp: " + name + ": server lost: " + (e == null ? "?" : e.Message));
                return Task.CompletedTask;
            };
            s.Closed += e =>
            {
                lock (t)
                {
                    t.Closed = true;
                }
                Console.Error.WriteLine("soak csharp: " + name + ": closed: " + (e == null ? "-" : e.Message));
                return Task.CompletedTask;
            };
            s.FlightDataReceived += (from, data, path) =>
            {
                Interlocked.Increment(ref t.Received);
                Interlocked.Exchange(ref t.LastMs, Clock.ElapsedMilliseconds);
            };
            return s;
        }

        private static string Json(string s)
        {
            return "\"" + (s ?? "").Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        }

        private static int Main(string[] args)
        {
            string ws = args[0];
            int secs = int.Parse(args[1]);
            bool tight = args.Length > 2 && args[2] == "--tight";
            Tally th = new Tally(), tg = new Tally();
            try
            {
                using (WebRTCP2PService host = Make(ws, "cs-host", tight, th))
                using (WebRTCP2PService guest = Make(ws, "cs-guest", tight, tg))
                {
                    if (!host.StartAsync().Wait(60000)) throw new Exception("host did not connect");
                    var session = host.CreateSessionAsync().Result;
                    if (!guest.StartAsync().Wait(60000)) throw new Exception("guest did not connect");
                    guest.JoinSessionAsync(session.Code).Wait(60000);
                    uint hid = host.PeerId, gid = guest.PeerId;
                    Console.Error.WriteLine("soak csharp: session " + session.Code + ", running " + secs + " s");
                    long end = Clock.ElapsedMilliseconds + secs * 1000L;
                    byte[] frame = new byte[200];
                    while (Clock.ElapsedMilliseconds < end)
                    {
                        if (host.SendFlightData(guest.PeerId, frame)) Interlocked.Increment(ref th.Sent);
                        if (guest.SendFlightData(host.PeerId, frame)) Interlocked.Increment(ref tg.Sent);
                        Thread.Sleep(33);
                    }
                    var sb = new StringBuilder();
                    int lost = 0;
                    bool ok = true;
                    sb.Append("{\"client\":\"csharp\",\"players\":{");
                    var players = new[] { Tuple.Create("host", host, th, hid), Tuple.Create("guest", guest, tg, gid) };
                    for (int i = 0; i < players.Length; i++)
                    {
                        var p = players[i];
                        Tally t = p.Item3;
                        bool inSession;
                        lock (t)
                        {
                            inSession = !t.Closed && p.Item2.State == HubConnectionState.Connected
                                && p.Item2.PeerId == p.Item4 && p.Item2.Session != null
                                && p.Item2.Session.Code == session.Code;
                            lost += t.Lost;
                            ok &= inSession && Interlocked.Read(ref t.Received) > 0;
                            if (i > 0) sb.Append(',');
                            sb.Append(Json(p.Item1)).Append(":{\"lost\":").Append(t.Lost)
                                .Append(",\"closed\":").Append(t.Closed ? "true" : "false")
                                .Append(",\"sent\":").Append(Interlocked.Read(ref t.Sent))
                                .Append(",\"received\":").Append(Interlocked.Read(ref t.Received))
                                .Append(",\"in_session\":").Append(inSession ? "true" : "false")
                                .Append(",\"quiet_at_end_s\":").Append(((Clock.ElapsedMilliseconds - Interlocked.Read(ref t.LastMs)) / 1000.0).ToString(System.Globalization.CultureInfo.InvariantCulture))
                                .Append(",\"reasons\":[");
                            for (int r = 0; r < t.Reasons.Count && r < 20; r++)
                            {
                                if (r > 0) sb.Append(',');
                                sb.Append(Json(t.Reasons[r]));
                            }
                            sb.Append("]}");
                        }
                    }
                    sb.Append("},\"lost\":").Append(lost).Append(",\"ok\":").Append(ok ? "true" : "false").Append('}');
                    Console.WriteLine(sb.ToString());
                    guest.StopAsync().Wait(5000);
                    host.StopAsync().Wait(5000);
                }
                return 0;
            }
            catch (Exception e)
            {
                Console.Error.WriteLine("soak csharp: failed: " + e);
                // What was counted before it failed still counts (the control run's
                // 400 ms timeout may lose the server before the session is set up).
                int lost;
                lock (th) lock (tg) lost = th.Lost + tg.Lost;
                Console.WriteLine("{\"client\":\"csharp\",\"lost\":" + lost + ",\"ok\":false,\"error\":" + Json(e.Message) + "}");
                return 1;
            }
        }
    }
}
