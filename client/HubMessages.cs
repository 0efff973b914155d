// SignalR-style hub messages carried as Signal.App payloads.
//
// Wire format (UTF-8 JSON, one object per Signal.App):
//   {"name":"<method name>","args":[<arg0>, <arg1>, ...]}
// Arguments are serialized with System.Text.Json (web defaults: camelCase
// properties, case-insensitive reading), like SignalR's JSON hub protocol.
// A browser or Rust peer can take part by sending and parsing the same JSON.

using System.Text.Json;
using System.Text.Json.Serialization;

namespace FlightSimP2P.Client;

internal sealed class HubEnvelope
{
    [JsonPropertyName("name")]
    public string Name { get; set; } = "";

    [JsonPropertyName("args")]
    public object?[] Args { get; set; } = Array.Empty<object?>();
}

/// <summary>A decoded hub invocation: method name and raw JSON arguments (cloned, safe to keep).</summary>
internal readonly record struct HubInvocation(string Name, JsonElement[] Args);

internal static class HubMessageCodec
{
    public static byte[] Encode(string name, object?[] args, JsonSerializerOptions options) =>
        JsonSerializer.SerializeToUtf8Bytes(new HubEnvelope { Name = name, Args = args }, options);

    /// <summary>False when the payload is not a hub message (not JSON, or no string "name").</summary>
    public static bool TryDecode(byte[] data, out HubInvocation invocation)
    {
        invocation = default;
        if (data.Length == 0 || data[0] != (byte)'{')
        {
            return false;
        }

        try
        {
            using JsonDocument doc = JsonDocument.Parse(data);
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object
                || !root.TryGetProperty("name", out JsonElement name)
                || name.ValueKind != JsonValueKind.String)
            {
                return false;
            }

            JsonElement[] args = Array.Empty<JsonElement>();
            if (root.TryGetProperty("args", out JsonElement argsElement) && argsElement.ValueKind == JsonValueKind.Array)
            {
                args = argsElement.EnumerateArray().Select(a => a.Clone()).ToArray();
            }

            invocation = new HubInvocation(name.GetString() ?? "", args);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}

/// <summary>Handlers registered with On(...), by method name (case-insensitive, as in SignalR).</summary>
internal sealed class HubHandlerRegistry
{
    private readonly object _lock = new();
    private readonly Dictionary<string, List<Registration>> _handlers = new(StringComparer.OrdinalIgnoreCase);

    public IDisposable Add(string name, Type[] parameterTypes, Func<uint, object?[], Task> handler)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(parameterTypes);
        ArgumentNullException.ThrowIfNull(handler);
        var registration = new Registration(this, name, parameterTypes, handler);
        lock (_lock)
        {
            if (!_handlers.TryGetValue(name, out List<Registration>? list))
            {
                list = new List<Registration>();
                _handlers[name] = list;
            }

            list.Add(registration);
        }

        return registration;
    }

    public void RemoveAll(string name)
    {
        lock (_lock)
        {
            _handlers.Remove(name);
        }
    }

    public Registration[] Get(string name)
    {
        lock (_lock)
        {
            return _handlers.TryGetValue(name, out List<Registration>? list) ? list.ToArray() : Array.Empty<Registration>();
        }
    }

    private void Remove(Registration registration)
    {
        lock (_lock)
        {
            if (_handlers.TryGetValue(registration.Name, out List<Registration>? list))
            {
                list.Remove(registration);
                if (list.Count == 0)
                {
                    _handlers.Remove(registration.Name);
                }
            }
        }
    }

    internal sealed class Registration : IDisposable
    {
        private readonly HubHandlerRegistry _owner;

        public Registration(HubHandlerRegistry owner, string name, Type[] parameterTypes, Func<uint, object?[], Task> handler)
        {
            _owner = owner;
            Name = name;
            ParameterTypes = parameterTypes;
            Handler = handler;
        }

        public string Name { get; }

        public Type[] ParameterTypes { get; }

        public Func<uint, object?[], Task> Handler { get; }

        /// <summary>Binds JSON arguments to the handler's parameter types; false if they do not fit.</summary>
        public bool TryBind(JsonElement[] args, JsonSerializerOptions options, out object?[] values, out string? error)
        {
            values = new object?[ParameterTypes.Length];
            error = null;
            if (args.Length != ParameterTypes.Length)
            {
                error = $"'{Name}' expects {ParameterTypes.Length} argument(s), got {args.Length}";
                return false;
            }

            try
            {
                for (int i = 0; i < ParameterTypes.Length; i++)
                {
                    values[i] = args[i].Deserialize(ParameterTypes[i], options);
                }

                return true;
            }
            catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
            {
                error = $"'{Name}' arguments do not bind: {e.Message}";
                return false;
            }
        }

        public void Dispose() => _owner.Remove(this);
    }
}
