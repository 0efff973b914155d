// .NET-only part of SignalR's HttpConnectionOptions: HttpMessageHandlerFactory (its type
// is System.Net.Http's, which the mono build of client/*.cs does without). Accepted and
// not called: there is no HTTP negotiate request; pin a development certificate with
// WebRTCP2POptions.CertificateSha256. C# 7.2, compiled by mono in tests/csharp/surface/check.sh.
#if NETCOREAPP
using System;
using NetHttpHandler = System.Net.Http.HttpMessageHandler;

namespace FlightSimP2P.Client
{
    public sealed partial class HttpConnectionOptions
    {
        public Func<NetHttpHandler, NetHttpHandler> HttpMessageHandlerFactory { get; set; }
    }
}
#endif
