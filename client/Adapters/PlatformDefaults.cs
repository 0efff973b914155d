// .NET-only adapter: System.Text.Json for hub arguments; SIPSorcery links and the
// QUIC/WebSocket transports as the defaults. C# 7.2: mono compiles it against the
// declared surface (tests/csharp/surface/, tests/csharp/run.sh).
// Foreign types are named by alias only (no wholesale using of a foreign namespace).
#if NETCOREAPP
using System;
using StjSerializer = System.Text.Json.JsonSerializer;
using StjOptions = System.Text.Json.JsonSerializerOptions;
using StjDefaults = System.Text.Json.JsonSerializerDefaults;

namespace FlightSimP2P.Client
{
    /// <summary>Hub arguments and results as JSON with System.Text.Json's web defaults (as SignalR's JSON protocol).</summary>
    public sealed class SystemTextJsonHubSerializer : IHubSerializer
    {
        private readonly StjOptions _options;

        public SystemTextJsonHubSerializer(StjOptions options = null)
        {
            _options = options ?? new StjOptions(StjDefaults.Web);
        }

        public string Serialize(object value)
        {
            return StjSerializer.Serialize(value, value.GetType(), _options);
        }

        public object Deserialize(string json, Type type)
        {
            return StjSerializer.Deserialize(json, type, _options);
        }
    }

    public partial class WebRTCP2PService
    {
        static partial void ApplyPlatformDefaults(WebRTCP2POptions options)
        {
            if (options.Serializer == null)
            {
                options.Serializer = new SystemTextJsonHubSerializer();
            }
            if (options.LinkFactory == null)
            {
                options.LinkFactory = new SipsorceryLinkFactory(options);
            }
            if (options.TransportFactory == null)
            {
                options.TransportFactory = new DefaultTransportFactory(options);
            }
        }
    }
}
#endif
