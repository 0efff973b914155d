// The hub (SignalR-style) JSON envelope carried in Signal.App: send, invoke, result,
// error. Split from CoreBasics.cs; the JSON it needs is in CoreBasics.Json.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace FlightSimP2P.Client
{
    /// <summary>
    /// Hub messages carried in Signal.App as UTF-8 JSON, one object each:
    ///   send:    {"name":"M","args":[...]}                 (also what browser peers send)
    ///   invoke:  {"type":"invoke","id":7,"name":"M","args":[...]}   to the session host
    ///   result:  {"type":"result","id":7,"result":...}
    ///   error:   {"type":"error","id":7,"error":"text"}
    /// Arguments and results are kept as raw JSON text; an IHubSerializer binds them.
    /// </summary>
    public sealed class HubEnvelope
    {
        public const string Send = "send";
        public const string Invoke = "invoke";
        public const string Result = "result";
        public const string Error = "error";

        public string Type = Send;
        public long Id;
        public string Name = "";
        public string[] Args = new string[0];
        public string ResultJson;
        public string ErrorText;

        public byte[] Encode()
        {
            StringBuilder sb = new StringBuilder();
            sb.Append('{');
            if (Type != Send)
            {
                sb.Append("\"type\":");
                Json.WriteString(sb, Type);
                sb.Append(",\"id\":").Append(Id.ToString(CultureInfo.InvariantCulture)).Append(',');
            }
            if (Type == Send || Type == Invoke)
            {
                sb.Append("\"name\":");
                Json.WriteString(sb, Name);
                sb.Append(",\"args\":[");
                for (int i = 0; i < Args.Length; i++)
                {
                    if (i > 0)
                    {
                        sb.Append(',');
                    }
                    sb.Append(Args[i] ?? "null");
                }
                sb.Append(']');
            }
            else if (Type == Result)
            {
                sb.Append("\"result\":").Append(ResultJson ?? "null");
            }
            else
            {
                sb.Append("\"error\":");
                Json.WriteString(sb, ErrorText ?? "");
            }
            sb.Append('}');
            return Encoding.UTF8.GetBytes(sb.ToString());
        }

        /// <summary>Null when the payload is not a hub message.</summary>
        public static HubEnvelope TryDecode(byte[] data)
        {
            if (data == null || data.Length == 0 || data[0] != (byte)'{')
            {
                return null;
            }
            string text;
            try
            {
                text = new UTF8Encoding(false, true).GetString(data);
            }
            catch (ArgumentException)
            {
                return null;
            }
            Dictionary<string, string> fields = Json.TryParseObject(text);
            if (fields == null)
            {
                return null;
            }
            HubEnvelope e = new HubEnvelope();
            string raw;
            if (fields.TryGetValue("type", out raw))
            {
                e.Type = Json.TryParseString(raw);
                if (e.Type == null)
                {
                    return null;
                }
            }
            if (e.Type != Send)
            {
                long id;
                if (!fields.TryGetValue("id", out raw)
                    || !long.TryParse(raw, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out id))
                {
                    return null;
                }
                e.Id = id;
            }
            if (e.Type == Send || e.Type == Invoke)
            {
                if (!fields.TryGetValue("name", out raw) || (e.Name = Json.TryParseString(raw)) == null)
                {
                    return null;
                }
                if (fields.TryGetValue("args", out raw))
                {
                    List<string> args = Json.TryParseArray(raw);
                    if (args == null)
                    {
                        return null;
                    }
                    e.Args = args.ToArray();
                }
                return e;
            }
            if (e.Type == Result)
            {
                e.ResultJson = fields.TryGetValue("result", out raw) ? raw : "null";
                return e;
            }
            if (e.Type == Error)
            {
                e.ErrorText = fields.TryGetValue("error", out raw) ? (Json.TryParseString(raw) ?? raw) : "error";
                return e;
            }
            return null;
        }
    }
}
