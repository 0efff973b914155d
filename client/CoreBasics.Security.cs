// Credentials and certificates: TURN REST-API credential expiry (when to refresh) and the
// decision to accept a server certificate. Split from CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using System.Globalization;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>Expiry of TURN REST-API credentials (username "&lt;unix expiry&gt;:&lt;peer&gt;").</summary>
    public static class TurnCredentials
    {
        /// <summary>Earliest expiry (Unix seconds) among the entries with credentials; 0 when none expire.</summary>
        public static ulong EarliestExpiry(IList<IceServer> servers)
        {
            ulong earliest = 0;
            if (servers == null)
            {
                return 0;
            }
            foreach (IceServer s in servers)
            {
                if (s.Username == null)
                {
                    continue;
                }
                int colon = s.Username.IndexOf(':');
                string head = colon < 0 ? s.Username : s.Username.Substring(0, colon);
                ulong t;
                if (ulong.TryParse(head, NumberStyles.None, CultureInfo.InvariantCulture, out t) && (earliest == 0 || t < earliest))
                {
                    earliest = t;
                }
            }
            return earliest;
        }

        /// <summary>
        /// Local monotonic time (ms) at which to fetch new credentials: a margin before
        /// expiry (5 minutes, or a quarter of the lifetime if that is shorter), measured
        /// against the server's clock from Welcome so local clock skew does not matter.
        /// -1 when nothing expires.
        /// </summary>
        public static long RefreshAt(IList<IceServer> servers, ulong serverTimeMs, long nowMs)
        {
            ulong expiry = EarliestExpiry(servers);
            if (expiry == 0)
            {
                return -1;
            }
            long lifetime = (long)(expiry * 1000) - (long)serverTimeMs;
            long margin = Math.Min(5 * 60 * 1000, Math.Max(0, lifetime / 4));
            return nowMs + Math.Max(0, lifetime - margin);
        }
    }

    /// <summary>TLS errors as System.Net.Security.SslPolicyErrors numbers them.</summary>
    [Flags]
    public enum TlsPolicyErrors
    {
        None = 0,
        RemoteCertificateNotAvailable = 1,
        RemoteCertificateNameMismatch = 2,
        RemoteCertificateChainErrors = 4,
    }

    /// <summary>Whether to accept the server's certificate (the QUIC and wss adapters ask this).</summary>
    public static class CertificatePolicy
    {
        /// <param name="errors">what the platform reported</param>
        /// <param name="pinConfigured">CertificateSha256 set (development)</param>
        /// <param name="pinMatches">the leaf's SHA-256 equals the pin (constant-time compare)</param>
        /// <param name="trustedRootConfigured">TrustedRootCertificate set</param>
        /// <param name="chainBuildsToTrustedRoot">the chain built with only that root as trust anchor</param>
        public static bool Accept(TlsPolicyErrors errors, bool pinConfigured, bool pinMatches,
            bool trustedRootConfigured, bool chainBuildsToTrustedRoot)
        {
            if (pinConfigured)
            {
                return pinMatches;
            }
            if ((errors & TlsPolicyErrors.RemoteCertificateNotAvailable) != 0
                || (errors & TlsPolicyErrors.RemoteCertificateNameMismatch) != 0)
            {
                return false;
            }
            if (trustedRootConfigured)
            {
                return chainBuildsToTrustedRoot;
            }
            return errors == TlsPolicyErrors.None;
        }
    }
}
