// Region measurement, the I/O side (PROTOCOL.md section 11 "Regions (version 4)"): fetch
// the node list, then time one node per region, all at once, within 1 s. The decisions
// (which node, what is kept, what a request carries) are pure (CoreBasics.Regions.cs);
// this file only sequences an IRegionProber, so tests drive it with fakes.
//
// The measurement is what the connection is on: on QUIC (.NET 9 with msquic) a QUIC
// handshake to each node's QUIC address (client/Adapters/QuicTransport.cs, QuicRegionProber:
// the handshake's duration, one round trip plus TLS work), else a TCP connect to each
// node's HTTP port (the time of the connect: one round trip), as the Rust client does for
// a WebSocket client.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.IO;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>The I/O of a region measurement (the default: TcpRegionProber).</summary>
    public interface IRegionProber
    {
        /// <summary>GET the node list; its body (UTF-8). Throws on any failure.</summary>
        Task<string> GetNodesAsync(Uri nodesUri, CancellationToken cancellationToken);

        /// <summary>The thing timed: completes when one round trip to the node is done (a TCP
        /// connect to its HTTP port, or a QUIC handshake). Throws on failure.</summary>
        Task RoundTripAsync(ListedNode node, CancellationToken cancellationToken);
    }

    /// <summary>One measurement: node list, one node per region, all timed at once within the deadline.</summary>
    public static class RegionMeasurer
    {
        /// <summary>
        /// The regions that answered within <see cref="Regions.DeadlineMs"/> of the start of
        /// the timing, with their round trips; empty when the list cannot be had or names
        /// fewer than two regions. Never throws. <paramref name="delay"/> is the deadline's
        /// timer (Task.Delay; tests pass their own).
        /// </summary>
        public static async Task<List<RegionRtt>> MeasureAsync(IRegionProber prober, IClock clock, Uri nodesUri,
            Func<long, CancellationToken, Task> delay, CancellationToken cancellationToken)
        {
            List<RegionRtt> result = new List<RegionRtt>();
            if (nodesUri == null)
            {
                return result;
            }
            List<ListedNode> nodes;
            try
            {
                nodes = Regions.ParseNodes(await prober.GetNodesAsync(nodesUri, cancellationToken).ConfigureAwait(false));
            }
            catch (Exception)
            {
                return result;
            }
            if (nodes == null)
            {
                return result;
            }
            List<KeyValuePair<string, ListedNode>> targets = Regions.PerRegion(nodes);
            if (targets.Count == 0)
            {
                return result;
            }
            using (CancellationTokenSource cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                long start = clock.NowMs;
                List<Task<RegionRtt>> all = new List<Task<RegionRtt>>();
                foreach (KeyValuePair<string, ListedNode> t in targets)
                {
                    all.Add(TimeOne(prober, clock, t.Key, t.Value, start, cts.Token));
                }
                Task deadline = delay(Regions.DeadlineMs, cts.Token);
                await Task.WhenAny(Task.WhenAll(all), deadline).ConfigureAwait(false);
                cts.Cancel();
                foreach (Task<RegionRtt> t in all)
                {
                    // Only what finished in time, and within the deadline by the clock too.
                    if (t.Status == TaskStatus.RanToCompletion && t.Result != null && t.Result.RttMs <= Regions.DeadlineMs)
                    {
                        result.Add(t.Result);
                    }
                }
            }
            return result;
        }

        private static async Task<RegionRtt> TimeOne(IRegionProber prober, IClock clock, string region, ListedNode node,
            long start, CancellationToken cancellationToken)
        {
            try
            {
                await prober.RoundTripAsync(node, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception)
            {
                return null;
            }
            return new RegionRtt(region, Regions.RttMs(clock.NowMs - start));
        }
    }

    /// <summary>
    /// The default prober: GET over a plain socket (http) or TLS (https; the pinned hash if
    /// one is configured, else the system's trust), and a TCP connect for the timing.
    /// </summary>
    public sealed class TcpRegionProber : IRegionProber
    {
        private const int MaxBody = 65536;
        private readonly string _pinnedSha256Hex;

        /// <param name="pinnedSha256Hex">The server's pinned certificate hash (hex), or null.</param>
        public TcpRegionProber(string pinnedSha256Hex)
        {
            _pinnedSha256Hex = pinnedSha256Hex != null ? pinnedSha256Hex.Replace(":", "").ToLowerInvariant() : null;
        }

        /// <summary>A TCP connect to the node's HTTP port.</summary>
        public Task RoundTripAsync(ListedNode node, CancellationToken cancellationToken)
        {
            string host;
            int port;
            if (!Regions.TryHttpHostPort(node.Http, out host, out port))
            {
                throw new ArgumentException("node " + node.Name + " has no HTTP address", "node");
            }
            return ConnectAsync(host, port, cancellationToken);
        }

        public static async Task ConnectAsync(string host, int port, CancellationToken cancellationToken)
        {
            using (TcpClient tcp = new TcpClient())
            using (cancellationToken.Register(() => tcp.Close()))
            {
                await tcp.ConnectAsync(host, port).ConfigureAwait(false);
            }
        }

        public async Task<string> GetNodesAsync(Uri nodesUri, CancellationToken cancellationToken)
        {
            using (TcpClient tcp = new TcpClient())
            using (cancellationToken.Register(() => tcp.Close()))
            {
                await tcp.ConnectAsync(nodesUri.Host, nodesUri.Port).ConfigureAwait(false);
                Stream s = tcp.GetStream();
                if (nodesUri.Scheme == "https")
                {
                    SslStream ssl = new SslStream(s, false, Validate);
                    await ssl.AuthenticateAsClientAsync(nodesUri.Host).ConfigureAwait(false);
                    s = ssl;
                }
                byte[] req = Encoding.ASCII.GetBytes("GET " + nodesUri.PathAndQuery + " HTTP/1.0\r\nHost: " + nodesUri.Authority
                    + "\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
                await s.WriteAsync(req, 0, req.Length, cancellationToken).ConfigureAwait(false);
                MemoryStream all = new MemoryStream();
                byte[] buf = new byte[4096];
                int n;
                while ((n = await s.ReadAsync(buf, 0, buf.Length, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    all.Write(buf, 0, n);
                    if (all.Length > MaxBody)
                    {
                        throw new IOException("GET /nodes: answer too long");
                    }
                }
                string text = Encoding.UTF8.GetString(all.ToArray());
                int head = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (!text.StartsWith("HTTP/1.", StringComparison.Ordinal) || head < 0 || text.Length < 12 || text.Substring(9, 3) != "200")
                {
                    throw new IOException("GET /nodes: not a 200 answer");
                }
                return text.Substring(head + 4);
            }
        }

        private bool Validate(object sender, X509Certificate cert, X509Chain chain, SslPolicyErrors errors)
        {
            if (_pinnedSha256Hex == null)
            {
                return errors == SslPolicyErrors.None;
            }
            if (cert == null)
            {
                return false;
            }
            using (SHA256 sha = SHA256.Create())
            {
                return Wire.ToHex(sha.ComputeHash(cert.GetRawCertData())) == _pinnedSha256Hex;
            }
        }
    }
}
