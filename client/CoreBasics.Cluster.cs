// Cluster mode (PROTOCOL.md section 11) on the client: where a Redirect leads
// (ServerEndpoint), which server the next connection goes to and the redirect limit
// (ServerRotation), and the exceptions that report them. Split from CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using System.Globalization;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>
    /// A server to connect to other than the configured one: a fallback node of a cluster,
    /// or the node a Redirect names (PROTOCOL.md section 11). Null fields: not reachable
    /// that way.
    /// </summary>
    public sealed class ServerEndpoint
    {
        /// <summary>For logs.</summary>
        public string Name = "";
        /// <summary>QUIC host name or address; null: no QUIC.</summary>
        public string QuicHost;
        public int QuicPort = 4433;
        /// <summary>The WebSocket URL (ws:// or wss://.../ws); null: no WebSocket.</summary>
        public Uri WebSocketUri;
        /// <summary>SHA-256 of the certificate to pin. Null: for a fallback, the configured trust; for a redirect's node, a CA-signed certificate.</summary>
        public byte[] CertSha256;
        /// <summary>Named by a Redirect (not configured).</summary>
        public bool FromRedirect;

        public ServerEndpoint()
        {
        }

        /// <summary>A fallback reached at host (QUIC port, WebSocket URL; either may be null).</summary>
        public ServerEndpoint(string quicHost, int quicPort, Uri webSocketUri)
        {
            Name = quicHost ?? (webSocketUri != null ? webSocketUri.Host : "");
            QuicHost = quicHost;
            QuicPort = quicPort;
            WebSocketUri = webSocketUri;
        }

        public bool Reaches(TransportKind kind)
        {
            return kind == TransportKind.Quic ? QuicHost != null : WebSocketUri != null;
        }

        /// <summary>Where a Redirect's node is: its "host:port", {http}/ws (http to ws, https to wss), its hash.</summary>
        public static ServerEndpoint FromNode(NodeAddr node)
        {
            ServerEndpoint e = new ServerEndpoint();
            e.Name = node.Name ?? "";
            e.FromRedirect = true;
            string host;
            int port;
            if (TrySplitHostPort(node.Quic, out host, out port))
            {
                e.QuicHost = host;
                e.QuicPort = port;
            }
            e.WebSocketUri = WebSocketUriOf(node.Http);
            e.CertSha256 = node.CertSha256 != null && node.CertSha256.Length == 32 ? node.CertSha256 : null;
            return e;
        }

        /// <summary>{http}/ws with the scheme http to ws, https to wss; null when empty or not http(s).</summary>
        public static Uri WebSocketUriOf(string http)
        {
            string h = (http ?? "").Trim().TrimEnd('/');
            string rest;
            string scheme;
            if (h.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            {
                scheme = "wss://";
                rest = h.Substring(8);
            }
            else if (h.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
            {
                scheme = "ws://";
                rest = h.Substring(7);
            }
            else
            {
                return null;
            }
            Uri u;
            if (rest.Length == 0 || rest.IndexOf('/') >= 0 || !Uri.TryCreate(scheme + rest + "/ws", UriKind.Absolute, out u))
            {
                return null;
            }
            return u;
        }

        /// <summary>"host:port" or "[v6]:port" into host (no brackets) and port.</summary>
        public static bool TrySplitHostPort(string s, out string host, out int port)
        {
            host = null;
            port = 0;
            string t = (s ?? "").Trim();
            int colon = t.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(t.Substring(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out port)
                || port < 1 || port > 65535)
            {
                port = 0;
                return false;
            }
            string h = t.Substring(0, colon);
            if (h.StartsWith("[") && h.EndsWith("]"))
            {
                h = h.Substring(1, h.Length - 2);
            }
            else if (h.IndexOf(':') >= 0)
            {
                port = 0;
                return false;
            }
            if (h.Length == 0)
            {
                port = 0;
                return false;
            }
            host = h;
            return true;
        }
    }

    /// <summary>
    /// Where the next connection goes (cluster mode): a redirect's node while there is one,
    /// else the configured servers (the main one, null, then the fallbacks) in turn, the
    /// next one each time the current one cannot be reached.
    /// </summary>
    public sealed class ServerRotation
    {
        /// <summary>Redirects followed in a row (until a redirected request is answered) before failing.</summary>
        public const int MaxRedirects = 5;

        private readonly List<ServerEndpoint> _fallbacks;

        public ServerRotation(IList<ServerEndpoint> fallbacks)
        {
            _fallbacks = fallbacks == null ? new List<ServerEndpoint>() : new List<ServerEndpoint>(fallbacks);
        }

        /// <summary>0: the configured server; i: fallback i - 1.</summary>
        public int Index { get; private set; }

        public ServerEndpoint Target { get; private set; }

        /// <summary>The server of the next connection; null: the configured one.</summary>
        public ServerEndpoint Current
        {
            get { return Target ?? (Index == 0 ? null : _fallbacks[Index - 1]); }
        }

        public void Redirected(ServerEndpoint target)
        {
            Target = target;
        }

        /// <summary>The current server could not be reached: drop a redirect's node, else the next configured one.</summary>
        public void Unreachable()
        {
            if (Target != null)
            {
                Target = null;
                return;
            }
            Index = (Index + 1) % (_fallbacks.Count + 1);
        }

        /// <summary>Too many redirects in a row while in a session: drop the redirect's node, keep the configured index.</summary>
        public void BackToConfigured()
        {
            Target = null;
        }

        /// <summary>The liveness rule found the connected server lost: it counts as unreachable (a connection merely lost retries the same server).</summary>
        public void ServerLost()
        {
            Unreachable();
        }

        /// <summary>Whether the redirect that makes `count` in a row is followed.</summary>
        public static bool Follows(int count, int max)
        {
            return count <= max;
        }
    }

    /// <summary>Why the service is reconnecting after a Redirect (the Reconnecting event's error).</summary>
    public sealed class RedirectedException : Exception
    {
        public RedirectedException(RedirectReason reason, string node)
            : base("redirected to node " + node + " (" + reason + ")")
        {
            Reason = reason;
            Node = node;
        }

        public RedirectReason Reason { get; private set; }

        public string Node { get; private set; }
    }

    /// <summary>More redirects in a row than allowed: the cluster's nodes disagree about where a request belongs.</summary>
    public sealed class TooManyRedirectsException : Exception
    {
        public TooManyRedirectsException(int count, string node)
            : base("too many redirects (" + count + " in a row), the last to node " + node)
        {
            Node = node;
        }

        public string Node { get; private set; }
    }
}
