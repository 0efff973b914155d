// Hub argument binding with DataContractJsonSerializer (mono and every .NET have it).
// The .NET build uses System.Text.Json instead (web defaults, like SignalR's JSON
// protocol); this one is the portable fallback and what the mono tests use.
//
// C# 7.2 (mono).

using System;
using System.IO;
using System.Runtime.Serialization.Json;
using System.Text;

namespace FlightSimP2P.Client
{
    public sealed class DataContractHubSerializer : IHubSerializer
    {
        public string Serialize(object value)
        {
            if (value == null)
            {
                return "null";
            }
            DataContractJsonSerializer s = new DataContractJsonSerializer(value.GetType());
            using (MemoryStream ms = new MemoryStream())
            {
                s.WriteObject(ms, value);
                return Encoding.UTF8.GetString(ms.ToArray());
            }
        }

        public object Deserialize(string json, Type type)
        {
            if (json == "null" && (!type.IsValueType || Nullable.GetUnderlyingType(type) != null))
            {
                return null;
            }
            if (type == typeof(object))
            {
                return json;
            }
            DataContractJsonSerializer s = new DataContractJsonSerializer(type);
            using (MemoryStream ms = new MemoryStream(Encoding.UTF8.GetBytes(json)))
            {
                return s.ReadObject(ms);
            }
        }
    }
}
