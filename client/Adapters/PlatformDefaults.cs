// .NET-only adapter: System.Text.Json for hub arguments, SIPSorcery links, QUIC on net9.0+.
#if NETCOREAPP
using System.Text.Json;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed class SystemTextJsonHubSerializer : IHubSerializer
    {
        private readonly JsonSerializerOptions _options;

        public SystemTextJsonHubSerializer(JsonSerializerOptions options = null)
        {
            _options = options ?? new JsonSerializerOptions(JsonSerializerDefaults.Web);
        }

        public string Serialize(object value) => JsonSerializer.Serialize(value, value.GetType(), _options);

        public object Deserialize(string json, Type type) => JsonSerializer.Deserialize(json, type, _options);
    }

    public sealed partial class WebRTCP2PService : IAsyncDisposable
    {
        static partial void ApplyPlatformDefaults(WebRTCP2POptions options)
        {
            options.Serializer ??= new SystemTextJsonHubSerializer();
            options.LinkFactory ??= new SipsorceryLinkFactory(options);
            options.TransportFactory ??= new DefaultTransportFactory(options);
        }

        ValueTask IAsyncDisposable.DisposeAsync() => new ValueTask(DisposeAsync());
    }
}
#endif
