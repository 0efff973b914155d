// Live test of issue 25 (connection quality) against the real server: two
// WebRTCP2PService instances in one session, on the relay (mono has no SIPSorcery, so
// no direct path), measure each other by echo (RTT > 0, a grade, PeerQualityChanged), and
// report to the server: its /metrics counts fsp2p_reports_total{result="accepted"} rising.
// Each service hands received relay frames on 5 ms late, so a loopback echo takes at least
// 10 ms (else it can round to 0). Then a pair with TelemetryEnabled off: still measured, no report.
// Usage: mono live-quality-tests.exe ws://HOST:PORT/ws http://HOST:PORT. Last line: "N passed, N failed".

using System;
using System.Collections.Generic;
using System.Linq;
using System.Net;
using System.Text.RegularExpressions;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Client;
using FlightSimP2P.Protocol;
using static FlightSimP2P.Tests.TestKit;

namespace FlightSimP2P.Tests
{
    internal static class LiveQualityTests
    {
        private static int Main(string[] args)
        {
            Uri ws = new Uri(args[0]);
            string http = args[1].TrimEnd('/');
            Test("two services on the relay: echo RTT > 0, a grade, PeerQualityChanged, reports accepted by the server", () => Run(ws, http, true));
            Test("TelemetryEnabled off: the quality API still measures, no report is sent", () => Run(ws, http, false));
            return Summary();
        }

        /// <summary>Relay frames received are handed on 5 ms late: a loopback echo then takes at least 10 ms.</summary>
        private const int RelayDelayMs = 5;

        private sealed class SlowRelayTransport : ISignalingTransport
        {
            private readonly ISignalingTransport _inner;

            public SlowRelayTransport(ISignalingTransport inner)
            {
                _inner = inner;
            }

            public Action<uint, byte[]> RelayReceived
            {
                set
                {
                    Action<uint, byte[]> handler = value;
                    _inner.RelayReceived = (from, payload) =>
                        Task.Delay(RelayDelayMs).ContinueWith(_ => handler(from, payload), TaskScheduler.Default);
                }
            }

            public ushort CloseCode { get { return _inner.CloseCode; } }

            public Task SendAsync(ClientMsg message, CancellationToken cancellationToken) { return _inner.SendAsync(message, cancellationToken); }

            public bool TrySendRelay(uint to, byte[] payload) { return _inner.TrySendRelay(to, payload); }

            public Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken) { return _inner.ReceiveAsync(cancellationToken); }

            public Task CloseAsync(bool leave) { return _inner.CloseAsync(leave); }
        }

        private sealed class SlowRelayFactory : ITransportFactory
        {
            private readonly ITransportFactory _inner;

            public SlowRelayFactory(ITransportFactory inner)
            {
                _inner = inner;
            }

            public bool QuicSupported { get { return false; } }

            public async Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken)
            {
                return new SlowRelayTransport(await _inner.ConnectAsync(kind, first, cancellationToken).ConfigureAwait(false));
            }
        }

        private static WebRTCP2PService Make(Uri ws, string name, bool telemetry)
        {
            return new HubConnectionBuilder()
                .WithUrl(ws.ToString(), o =>
                {
                    o.DisplayName = name;
                    o.QuicAllowed = false;
                    o.EnableDirect = false;
                    o.TelemetryEnabled = telemetry;
                    o.TransportFactory = new SlowRelayFactory(new DefaultTransportFactory(o));
                })
                .Build();
        }

        /// <summary>The value of fsp2p_reports_total{result="accepted"}; -1 when the server exports none.</summary>
        private static double Accepted(string http)
        {
            string text;
            using (WebClient c = new WebClient())
            {
                text = c.DownloadString(http + "/metrics");
            }
            Match m = Regex.Match(text, "^fsp2p_reports_total\\{result=\"accepted\"\\} ([0-9.eE+]+)$", RegexOptions.Multiline);
            return m.Success ? double.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : -1;
        }

        private static void Run(Uri ws, string http, bool telemetry)
        {
            double before = Accepted(http);
            string tag = telemetry ? "q" : "quiet";
            using (WebRTCP2PService host = Make(ws, tag + "-host", telemetry))
            using (WebRTCP2PService guest = Make(ws, tag + "-guest", telemetry))
            {
                List<PeerQuality> events = new List<PeerQuality>();
                host.PeerQualityChanged += q => { lock (events) { events.Add(q); } };
                // A throwing handler must not stop anything (the timer loop goes on).
                guest.PeerQualityChanged += q => { throw new InvalidOperationException("handler fault"); };
                Task<SessionInfo> created = host.StartAndCreateSessionAsync(4);
                Check(created.Wait(10000), "created");
                Check(guest.StartAndJoinSessionAsync(created.Result.Code).Wait(10000), "joined");
                uint g = guest.PeerId;
                uint h = host.PeerId;
                // Some flight data both ways, so frames/s is measured too.
                CancellationTokenSource stop = new CancellationTokenSource();
                Task sender = Task.Run(async () =>
                {
                    while (!stop.IsCancellationRequested)
                    {
                        host.SendFlightData(g, new byte[32]);
                        guest.SendFlightData(h, new byte[32]);
                        await Task.Delay(50).ConfigureAwait(false);
                    }
                });
                PeerQuality hq = null;
                PeerQuality gq = null;
                bool measured = WaitFor(() =>
                {
                    hq = host.GetPeerQuality(g);
                    gq = guest.GetPeerQuality(h);
                    return hq != null && gq != null && hq.RttMs.HasValue && gq.RttMs.HasValue
                        && hq.Grade != QualityGrade.Unknown && gq.Grade != QualityGrade.Unknown && hq.FpsIn > 0;
                }, 10000);
                Check(measured, "both measured within 10 s: host sees " + hq + "; guest sees " + gq);
                Check(hq.Path == LinkPath.Relay && gq.Path == LinkPath.Relay, "path relay");
                // Each echo crosses two receivers that hand relay frames on 5 ms late: RTT >= 10 ms.
                Check(hq.RttMs.Value >= 2 * RelayDelayMs && gq.RttMs.Value >= 2 * RelayDelayMs,
                    "echo RTT > 0, at least the 10 ms the receivers add (" + hq.RttMs + ", " + gq.RttMs + " ms)");
                Check(hq.Grade == QualityGrade.Excellent || hq.Grade == QualityGrade.Good, "a good grade on loopback: " + hq.Grade);
                Check(hq.FpsIn > 5 && hq.FpsOut > 5, "frames/s both ways: " + hq.FpsIn + "/" + hq.FpsOut);
                Check(hq.PathMs > 0, "time on the path");
                Check(host.GetPeerQuality().Count == 1, "GetPeerQuality(): one peer");
                lock (events)
                {
                    Check(events.Any(e => e.Peer == g && e.Path == LinkPath.Relay), "PeerQualityChanged: the path");
                    Check(events.Any(e => e.Peer == g && (e.Grade == QualityGrade.Excellent || e.Grade == QualityGrade.Good)), "PeerQualityChanged: the grade");
                }
                if (telemetry)
                {
                    Check(WaitFor(() => host.ReportsSent >= 1 && guest.ReportsSent >= 1, 8000), "both sent reports (" + host.ReportsSent + ", " + guest.ReportsSent + "; states " + host.State + ", " + guest.State + ")");
                    Check(before >= 0, "the server exports fsp2p_reports_total{result=\"accepted\"} (a server with Report support)");
                    double after = -1;
                    Check(WaitFor(() => (after = Accepted(http)) >= before + 2, 5000), "fsp2p_reports_total{result=\"accepted\"} rose: " + before + " -> " + after);
                }
                else
                {
                    Thread.Sleep(2500);
                    Check(host.ReportsSent == 0 && guest.ReportsSent == 0, "no report sent");
                    Check(Accepted(http) == before, "the server's count did not move (" + before + ")");
                }
                stop.Cancel();
                sender.Wait(2000);
                Check(guest.State == HubConnectionState.Connected, "the guest (throwing handler) is still connected");
                Check(guest.GetPeerQuality(h).PathMs > gq.PathMs, "and its clock runs on");
                guest.StopAsync().Wait(5000);
                host.StopAsync().Wait(5000);
            }
        }
    }
}
