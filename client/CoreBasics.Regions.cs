// Regions (PROTOCOL.md section 11 "Regions (version 4)"): the node list of GET /nodes,
// the node measured in each region, where the list is, and the 5-minute cache of what
// was measured. Split from CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads: time is passed in); C# 7.2, compiled by
// Debian's mono in CI and unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>One node as GET /nodes lists it.</summary>
    public sealed class ListedNode
    {
        public string Name = "";
        /// <summary>null: a node without a region.</summary>
        public string Region;
        /// <summary>host:port of its QUIC port, or "".</summary>
        public string Quic = "";
        /// <summary>Base URL of its HTTP port (http://host:port), or "".</summary>
        public string Http = "";
        /// <summary>null: a CA-signed certificate.</summary>
        public byte[] CertSha256;
    }

    /// <summary>The pure rules of region measurement (PROTOCOL.md section 11).</summary>
    public static class Regions
    {
        /// <summary>At most this many entries go in region_rtts.</summary>
        public const int MaxEntries = 16;
        /// <summary>All regions are measured at once within this.</summary>
        public const long DeadlineMs = 1000;
        /// <summary>What was measured is kept this long.</summary>
        public const long CacheMs = 300000;

        /// <summary>1 to 32 bytes of a-z, 0-9, '-'.</summary>
        public static bool ValidRegion(string r)
        {
            if (string.IsNullOrEmpty(r) || r.Length > 32)
            {
                return false;
            }
            foreach (char c in r)
            {
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                {
                    return false;
                }
            }
            return true;
        }

        /// <summary>
        /// The nodes of a GET /nodes body ({"nodes": [{"name", "region", "quic", "http",
        /// "cert_sha256"}, ...]}), in its order; null when it is not such a body. An entry
        /// without a name, with a bad region or a bad hash is skipped (as the Rust client does).
        /// </summary>
        public static List<ListedNode> ParseNodes(string body)
        {
            Dictionary<string, string> top = body != null ? Json.TryParseObject(body) : null;
            string raw;
            if (top == null || !top.TryGetValue("nodes", out raw))
            {
                return null;
            }
            List<string> items = Json.TryParseArray(raw);
            if (items == null)
            {
                return null;
            }
            List<ListedNode> nodes = new List<ListedNode>();
            foreach (string item in items)
            {
                Dictionary<string, string> n = Json.TryParseObject(item);
                if (n == null)
                {
                    continue;
                }
                string name = Text(n, "name");
                if (string.IsNullOrEmpty(name))
                {
                    continue;
                }
                ListedNode node = new ListedNode();
                node.Name = name;
                node.Region = Text(n, "region");
                if (node.Region != null && !ValidRegion(node.Region))
                {
                    continue;
                }
                node.Quic = Text(n, "quic") ?? "";
                node.Http = Text(n, "http") ?? "";
                string hash = Text(n, "cert_sha256");
                if (hash != null)
                {
                    node.CertSha256 = FromHex(hash);
                    if (node.CertSha256 == null || node.CertSha256.Length != 32)
                    {
                        continue;
                    }
                }
                nodes.Add(node);
            }
            return nodes;
        }

        private static string Text(Dictionary<string, string> o, string key)
        {
            string raw;
            return o.TryGetValue(key, out raw) ? Json.TryParseString(raw) : null;
        }

        private static byte[] FromHex(string s)
        {
            if (s.Length % 2 != 0)
            {
                return null;
            }
            byte[] b = new byte[s.Length / 2];
            for (int i = 0; i < b.Length; i++)
            {
                if (!byte.TryParse(s.Substring(2 * i, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out b[i]))
                {
                    return null;
                }
            }
            return b;
        }

        /// <summary>
        /// The node to measure in each region: the first the list names for it (the server
        /// lists itself first), at most 16 regions. Empty when fewer than two regions are
        /// listed: there is nothing to choose.
        /// </summary>
        public static List<KeyValuePair<string, ListedNode>> PerRegion(List<ListedNode> nodes)
        {
            List<KeyValuePair<string, ListedNode>> out1 = new List<KeyValuePair<string, ListedNode>>();
            HashSet<string> seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (ListedNode n in nodes)
            {
                if (n.Region == null || out1.Count >= MaxEntries || !seen.Add(n.Region))
                {
                    continue;
                }
                out1.Add(new KeyValuePair<string, ListedNode>(n.Region, n));
            }
            if (out1.Count < 2)
            {
                out1.Clear();
            }
            return out1;
        }

        /// <summary>Where the node list is: the WebSocket URL's scheme (ws → http, wss → https)
        /// and host (with its port) with the path /nodes; null without a WebSocket URL.</summary>
        public static Uri NodesUri(Uri webSocketUri)
        {
            if (webSocketUri == null)
            {
                return null;
            }
            string scheme = webSocketUri.Scheme == "wss" ? "https" : webSocketUri.Scheme == "ws" ? "http" : null;
            if (scheme == null)
            {
                return null;
            }
            return new UriBuilder(scheme, webSocketUri.Host, webSocketUri.Port, "/nodes").Uri;
        }

        /// <summary>The host and port a node's HTTP base URL names (80/443 by default); false if it names none.</summary>
        public static bool TryHttpHostPort(string http, out string host, out int port)
        {
            host = null;
            port = 0;
            Uri u;
            if (string.IsNullOrEmpty(http) || !Uri.TryCreate(http, UriKind.Absolute, out u) || (u.Scheme != "http" && u.Scheme != "https"))
            {
                return false;
            }
            host = u.Host;
            port = u.Port;
            return host.Length > 0;
        }

        /// <summary>A measured duration as region_rtts says it: whole ms, at least 1.</summary>
        public static uint RttMs(long elapsedMs)
        {
            return (uint)Math.Max(1, Math.Min(uint.MaxValue, elapsedMs));
        }
    }

    /// <summary>
    /// What was measured and whether to measure again: after a Welcome of version 4 or later
    /// a measurement starts unless one runs or one ended within 5 minutes; a request carries
    /// what the last one gave while it is fresh, else nothing (it never waits).
    /// </summary>
    public sealed class RegionCache
    {
        private long _doneAt = -1;
        private List<RegionRtt> _last = new List<RegionRtt>();

        public bool Running { get; private set; }

        /// <summary>After a Welcome: measure now?</summary>
        public bool ShouldMeasure(long now, bool enabled, ushort welcomeVersion)
        {
            if (!enabled || welcomeVersion < Wire.RegionProtocolVersion || Running)
            {
                return false;
            }
            return _doneAt < 0 || now - _doneAt >= Regions.CacheMs;
        }

        public void Begin(long now)
        {
            Running = true;
        }

        /// <summary>A measurement ended with these regions (none: nothing to choose, or nothing answered).</summary>
        public void End(long now, List<RegionRtt> measured)
        {
            Running = false;
            _doneAt = now;
            _last = measured != null ? new List<RegionRtt>(measured) : new List<RegionRtt>();
            if (_last.Count > Regions.MaxEntries)
            {
                _last.RemoveRange(Regions.MaxEntries, _last.Count - Regions.MaxEntries);
            }
        }

        /// <summary>What the next request carries: a copy of the last result while it is fresh, else empty.</summary>
        public List<RegionRtt> ForRequest(long now)
        {
            if (_doneAt < 0 || now - _doneAt >= Regions.CacheMs)
            {
                return new List<RegionRtt>();
            }
            return new List<RegionRtt>(_last);
        }
    }
}
