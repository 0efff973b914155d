// Pure building blocks of the client's functional core (no I/O, no threads, no
// clock reads): injected time and randomness, control-message pacing, request
// matching, the reconnect schedule, TURN credential expiry, the certificate
// decision and the hub (SignalR-style) JSON envelope.
//
// Same portability rules as Protocol.cs: C# 7.2, compiled by Debian's mono in CI
// and unchanged by the .NET 8/9 build.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>Monotonic milliseconds. Injected so tests can drive time.</summary>
    public interface IClock
    {
        long NowMs { get; }
    }

    /// <summary>Randomness (reconnect jitter). Injected so tests are deterministic.</summary>
    public interface IRandom
    {
        /// <summary>Uniform in [0, 1).</summary>
        double NextDouble();
    }

    public sealed class SystemClock : IClock
    {
        public static readonly SystemClock Instance = new SystemClock();

        public long NowMs
        {
            get { return Stopwatch.GetTimestamp() * 1000 / Stopwatch.Frequency; }
        }
    }

    public sealed class SystemRandom : IRandom
    {
        private readonly Random _random = new Random();
        private readonly object _lock = new object();

        public double NextDouble()
        {
            lock (_lock)
            {
                return _random.NextDouble();
            }
        }
    }

    /// <summary>
    /// Control messages paced under Limits.SignalsPerSec (token bucket at 90 % of the
    /// server's rate, burst twice that), in two classes that share the budget:
    ///   * urgent: WebRTC signals (offer, answer, candidates) and keep-alive pings. They
    ///     go first, so ICE never waits behind hub traffic;
    ///   * normal: everything else (hub messages, invocations, requests and their marker
    ///     pings, LeaveSession), in order.
    /// Within a class nothing overtakes an earlier message, whatever thread queued it.
    /// Hub messages sent faster than the budget (a 30-60 Hz SendAsync("UpdatePosition"))
    /// would queue without end; once the normal class holds HubBacklogMs worth of budget,
    /// a new hub message with the same key (method and target) as one still waiting
    /// takes that one's place (latest wins, counted in Coalesced), so the wait stays
    /// bounded. Distinct messages are never dropped.
    /// </summary>
    public sealed class ControlQueue
    {
        /// <summary>Normal-class backlog (as time at the paced rate) beyond which same-key hub messages coalesce.</summary>
        public const long HubBacklogMs = 250;

        private sealed class Entry
        {
            public ClientMsg Msg;
            public string Key;
        }

        private readonly Queue<ClientMsg> _urgent = new Queue<ClientMsg>();
        private readonly LinkedList<Entry> _normal = new LinkedList<Entry>();
        private double _ratePerMs;
        private double _burst;
        private double _tokens;
        private long _last;
        private int _hubLimit = int.MaxValue;

        public ControlQueue()
        {
            Configure(0, 0);
        }

        public int Count
        {
            get { return _urgent.Count + _normal.Count; }
        }

        /// <summary>Hub messages replaced by a newer one with the same key while waiting.</summary>
        public long Coalesced { get; private set; }

        /// <summary>0 = unlimited.</summary>
        public void Configure(uint perSecond, long now)
        {
            if (perSecond == 0)
            {
                _ratePerMs = 0;
                _burst = double.MaxValue;
                _tokens = double.MaxValue;
                _hubLimit = int.MaxValue;
            }
            else
            {
                _ratePerMs = perSecond * 0.9 / 1000.0;
                _burst = Math.Max(1.0, perSecond * 2 * 0.9);
                _tokens = Math.Min(_tokens, _burst);
                if (_tokens < 1 && Count == 0)
                {
                    _tokens = _burst;
                }
                _hubLimit = Math.Max(2, (int)(_ratePerMs * HubBacklogMs));
            }
            _last = now;
        }

        public void Clear()
        {
            _urgent.Clear();
            _normal.Clear();
            _tokens = _burst;
        }

        /// <summary>WebRTC signals and keep-alive pings (not a request's marker pings).</summary>
        public static bool IsUrgent(ClientMsg msg)
        {
            ClientMsg.SignalTo st = msg as ClientMsg.SignalTo;
            if (st != null)
            {
                return !(st.Signal is Signal.App);
            }
            ClientMsg.Ping ping = msg as ClientMsg.Ping;
            return ping != null && !RequestTracker.IsMarker(ping.ClientTimeMs);
        }

        public void Enqueue(ClientMsg msg)
        {
            if (IsUrgent(msg))
            {
                _urgent.Enqueue(msg);
                return;
            }
            Entry e = new Entry();
            e.Msg = msg;
            _normal.AddLast(e);
        }

        /// <summary>A hub message; key (method and target, or null) lets a newer one replace it when the backlog is full.</summary>
        public void EnqueueHub(ClientMsg msg, string key)
        {
            if (key != null && _normal.Count >= _hubLimit)
            {
                for (LinkedListNode<Entry> n = _normal.First; n != null; n = n.Next)
                {
                    if (n.Value.Key == key)
                    {
                        n.Value.Msg = msg;
                        Coalesced++;
                        return;
                    }
                }
            }
            Entry e = new Entry();
            e.Msg = msg;
            e.Key = key;
            _normal.AddLast(e);
        }

        private void Refill(long now)
        {
            if (_ratePerMs > 0 && now > _last)
            {
                _tokens = Math.Min(_burst, _tokens + (now - _last) * _ratePerMs);
            }
            _last = Math.Max(_last, now);
        }

        /// <summary>Moves the messages that may go now, urgent ones first, to output.</summary>
        public void Poll(long now, List<ClientMsg> output)
        {
            Refill(now);
            while (Count > 0 && _tokens >= 1)
            {
                _tokens -= 1;
                if (_urgent.Count > 0)
                {
                    output.Add(_urgent.Dequeue());
                }
                else
                {
                    output.Add(_normal.First.Value.Msg);
                    _normal.RemoveFirst();
                }
            }
        }

        /// <summary>When the head of the queue may go; -1 when empty.</summary>
        public long NextWake(long now)
        {
            if (Count == 0)
            {
                return -1;
            }
            if (_tokens >= 1 || _ratePerMs <= 0)
            {
                return now;
            }
            return now + (long)Math.Ceiling((1 - _tokens) / _ratePerMs);
        }
    }

    /// <summary>
    /// The acknowledgement a C# client sends back on the "flight" DataChannel for every flight
    /// frame it receives there (PROTOCOL.md section 8): 3 bytes, 0x01 then the low 16 bits of
    /// the frame's sequence number, little-endian. Shorter than the 4-byte flight envelope, so
    /// a receiver that does not know it drops it (fsp2p.js counts it as a bad frame, older C#
    /// clients ignore it); it is sent only to C# peers.
    /// </summary>
    public static class PeerAck
    {
        public const byte Tag = 0x01;
        public const int Bytes = 3;

        public static byte[] Encode(uint seq)
        {
            return new byte[] { Tag, (byte)seq, (byte)(seq >> 8) };
        }

        public static bool TryDecode(byte[] message, out ushort seq16)
        {
            seq16 = 0;
            if (message == null || message.Length != Bytes || message[0] != Tag)
            {
                return false;
            }
            seq16 = (ushort)(message[1] | (message[2] << 8));
            return true;
        }
    }

    /// <summary>
    /// Matches the server's answers to one CreateSession/JoinSession. The protocol has
    /// no request ids, but the server handles messages in order and answers every Ping,
    /// so the request is sent between two marker Pings: an error that is not specific
    /// to sessions (rate_limited, invalid_argument, internal) belongs to the request
    /// only if it arrives after the first marker's Pong and before the second's.
    /// </summary>
    public sealed class RequestTracker
    {
        public const ulong MarkerBit = 1UL << 62;

        private static readonly HashSet<ushort> SessionErrors = new HashSet<ushort>
        {
            (ushort)ErrorCode.UnknownSession, (ushort)ErrorCode.SessionFull, (ushort)ErrorCode.WrongPassword,
            (ushort)ErrorCode.AlreadyInSession, (ushort)ErrorCode.TooManySessions, (ushort)ErrorCode.TooManyJoinAttempts,
        };

        private ulong _nextMarker = 1;
        private ulong _before;
        private ulong _after;
        private bool _beforeSeen;
        private bool _active;
        private bool _inFirst;
        private ushort _pendingAmbiguous;
        private string _pendingAmbiguousMessage;

        public bool Active
        {
            get { return _active; }
        }

        public int Token { get; private set; }

        /// <summary>Queues Ping(before), the request, Ping(after) as one group.</summary>
        public void Begin(int token, ClientMsg request, ControlQueue queue)
        {
            _before = MarkerBit | _nextMarker++;
            _after = MarkerBit | _nextMarker++;
            _beforeSeen = false;
            _active = true;
            _inFirst = false;
            _pendingAmbiguous = 0;
            Token = token;
            queue.Enqueue(new ClientMsg.Ping(_before));
            queue.Enqueue(request);
            queue.Enqueue(new ClientMsg.Ping(_after));
        }

        /// <summary>
        /// The request went in the connection's URL (First): the server answers it right
        /// after Welcome, before anything else, so no markers are needed and every error
        /// after the Welcome is the request's (WelcomeSeen marks that point).
        /// </summary>
        public void BeginInFirst(int token)
        {
            _beforeSeen = false;
            _active = true;
            _inFirst = true;
            _pendingAmbiguous = 0;
            Token = token;
        }

        /// <summary>The Welcome of the connection that carries a First request arrived.</summary>
        public void WelcomeSeen()
        {
            if (_active && _inFirst)
            {
                _beforeSeen = true;
            }
        }

        public void End()
        {
            _active = false;
            _inFirst = false;
        }

        public static bool IsMarker(ulong clientTimeMs)
        {
            return (clientTimeMs & MarkerBit) != 0;
        }

        /// <summary>
        /// A Pong. Returns true when the request ended without an answer: the second
        /// marker came back, and an error between the markers (say rate_limited) was
        /// the request's. error then holds it.
        /// </summary>
        public bool OnPong(ulong clientTimeMs, out ServerMsg.Error error)
        {
            error = null;
            if (!_active)
            {
                return false;
            }
            if (clientTimeMs == _before)
            {
                _beforeSeen = true;
            }
            else if (clientTimeMs == _after && _pendingAmbiguous != 0)
            {
                error = new ServerMsg.Error(_pendingAmbiguous, _pendingAmbiguousMessage);
                _active = false;
                return true;
            }
            return false;
        }

        /// <summary>True when this error answers the pending request.</summary>
        public bool Claims(ServerMsg.Error error)
        {
            if (!_active)
            {
                return false;
            }
            if (SessionErrors.Contains(error.Code))
            {
                return true;
            }
            if (_inFirst)
            {
                return _beforeSeen;
            }
            if (_beforeSeen && (error.Code == (ushort)ErrorCode.InvalidArgument || error.Code == (ushort)ErrorCode.Internal))
            {
                return true;
            }
            if (_beforeSeen && error.Code == (ushort)ErrorCode.RateLimited)
            {
                // The request or the second marker was dropped; the second marker's Pong decides.
                _pendingAmbiguous = error.Code;
                _pendingAmbiguousMessage = error.Message;
                return false;
            }
            return false;
        }
    }

    /// <summary>Automatic reconnect schedule: SignalR's default delays (0, 2, 10, 30 s) or your own, with a little jitter.</summary>
    public sealed class ReconnectPolicy
    {
        public static readonly long[] SignalRDefaultMs = { 0, 2000, 10000, 30000 };

        private readonly long[] _delays;

        public ReconnectPolicy(long[] delaysMs)
        {
            _delays = delaysMs ?? new long[0];
        }

        public bool Enabled
        {
            get { return _delays.Length > 0; }
        }

        /// <summary>Delay before attempt number 'attempt' (0-based), or -1 to give up. Up to 10 % jitter is added.</summary>
        public long Delay(int attempt, IRandom random)
        {
            if (attempt < 0 || attempt >= _delays.Length)
            {
                return -1;
            }
            long d = _delays[attempt];
            return d + (long)(d * 0.1 * random.NextDouble());
        }
    }

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

    /// <summary>Just enough JSON to split envelopes into raw values (RFC 8259 syntax, checked).</summary>
    public static class Json
    {
        public static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                if (c == '"' || c == '\\')
                {
                    sb.Append('\\').Append(c);
                }
                else if (c < 0x20)
                {
                    sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                }
                else
                {
                    sb.Append(c);
                }
            }
            sb.Append('"');
        }

        public static string Quote(string s)
        {
            StringBuilder sb = new StringBuilder();
            WriteString(sb, s);
            return sb.ToString();
        }

        /// <summary>Top-level object: member name to raw value text; null if not a valid object.</summary>
        public static Dictionary<string, string> TryParseObject(string text)
        {
            int i = SkipWs(text, 0);
            if (i >= text.Length || text[i] != '{')
            {
                return null;
            }
            Dictionary<string, string> result = new Dictionary<string, string>(StringComparer.Ordinal);
            i = SkipWs(text, i + 1);
            if (i < text.Length && text[i] == '}')
            {
                return SkipWs(text, i + 1) == text.Length ? result : null;
            }
            while (true)
            {
                int start = i;
                int end = SkipValue(text, i);
                if (end < 0 || text[start] != '"')
                {
                    return null;
                }
                string name = TryParseString(text.Substring(start, end - start));
                i = SkipWs(text, end);
                if (i >= text.Length || text[i] != ':')
                {
                    return null;
                }
                i = SkipWs(text, i + 1);
                int vend = SkipValue(text, i);
                if (vend < 0)
                {
                    return null;
                }
                result[name] = text.Substring(i, vend - i);
                i = SkipWs(text, vend);
                if (i >= text.Length)
                {
                    return null;
                }
                if (text[i] == '}')
                {
                    return SkipWs(text, i + 1) == text.Length ? result : null;
                }
                if (text[i] != ',')
                {
                    return null;
                }
                i = SkipWs(text, i + 1);
            }
        }

        /// <summary>Raw element texts of an array; null if not an array.</summary>
        public static List<string> TryParseArray(string text)
        {
            List<string> items = new List<string>();
            int i = SkipWs(text, 0);
            if (i >= text.Length || text[i] != '[')
            {
                return null;
            }
            i = SkipWs(text, i + 1);
            if (i < text.Length && text[i] == ']')
            {
                return SkipWs(text, i + 1) == text.Length ? items : null;
            }
            while (true)
            {
                int end = SkipValue(text, i);
                if (end < 0)
                {
                    return null;
                }
                items.Add(text.Substring(i, end - i));
                i = SkipWs(text, end);
                if (i >= text.Length)
                {
                    return null;
                }
                if (text[i] == ']')
                {
                    return SkipWs(text, i + 1) == text.Length ? items : null;
                }
                if (text[i] != ',')
                {
                    return null;
                }
                i = SkipWs(text, i + 1);
            }
        }

        /// <summary>A JSON string literal's value; null if raw is not one.</summary>
        public static string TryParseString(string raw)
        {
            if (raw == null || raw.Length < 2 || raw[0] != '"' || SkipValue(raw, 0) != raw.Length)
            {
                return null;
            }
            StringBuilder sb = new StringBuilder();
            for (int i = 1; i < raw.Length - 1; i++)
            {
                char c = raw[i];
                if (c != '\\')
                {
                    sb.Append(c);
                    continue;
                }
                char e = raw[++i];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u':
                        sb.Append((char)int.Parse(raw.Substring(i + 1, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        i += 4;
                        break;
                    default: sb.Append(e); break;
                }
            }
            return sb.ToString();
        }

        private static int SkipWs(string t, int i)
        {
            while (i < t.Length && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
            {
                i++;
            }
            return i;
        }

        /// <summary>End index of the value starting at i, or -1.</summary>
        private static int SkipValue(string t, int i)
        {
            if (i >= t.Length)
            {
                return -1;
            }
            char c = t[i];
            if (c == '"')
            {
                for (int j = i + 1; j < t.Length; j++)
                {
                    if (t[j] == '\\')
                    {
                        if (j + 1 >= t.Length)
                        {
                            return -1;
                        }
                        if (t[j + 1] == 'u')
                        {
                            if (j + 5 >= t.Length)
                            {
                                return -1;
                            }
                            for (int k = j + 2; k <= j + 5; k++)
                            {
                                if (Uri.IsHexDigit(t[k]) == false)
                                {
                                    return -1;
                                }
                            }
                            j += 5;
                        }
                        else if ("\"\\/bfnrt".IndexOf(t[j + 1]) < 0)
                        {
                            return -1;
                        }
                        else
                        {
                            j++;
                        }
                    }
                    else if (t[j] == '"')
                    {
                        return j + 1;
                    }
                    else if (t[j] < 0x20)
                    {
                        return -1;
                    }
                }
                return -1;
            }
            if (c == '{' || c == '[')
            {
                char close = c == '{' ? '}' : ']';
                int j = SkipWs(t, i + 1);
                if (j < t.Length && t[j] == close)
                {
                    return j + 1;
                }
                while (true)
                {
                    if (c == '{')
                    {
                        if (j >= t.Length || t[j] != '"')
                        {
                            return -1;
                        }
                        j = SkipValue(t, j);
                        if (j < 0)
                        {
                            return -1;
                        }
                        j = SkipWs(t, j);
                        if (j >= t.Length || t[j] != ':')
                        {
                            return -1;
                        }
                        j = SkipWs(t, j + 1);
                    }
                    j = SkipValue(t, j);
                    if (j < 0)
                    {
                        return -1;
                    }
                    j = SkipWs(t, j);
                    if (j >= t.Length)
                    {
                        return -1;
                    }
                    if (t[j] == close)
                    {
                        return j + 1;
                    }
                    if (t[j] != ',')
                    {
                        return -1;
                    }
                    j = SkipWs(t, j + 1);
                }
            }
            foreach (string lit in new[] { "true", "false", "null" })
            {
                if (string.CompareOrdinal(t, i, lit, 0, lit.Length) == 0)
                {
                    return i + lit.Length;
                }
            }
            int n = i;
            if (n < t.Length && t[n] == '-')
            {
                n++;
            }
            int digits = n;
            while (n < t.Length && (char.IsDigit(t[n]) || t[n] == '.' || t[n] == 'e' || t[n] == 'E' || t[n] == '+' || t[n] == '-'))
            {
                n++;
            }
            return n > digits && char.IsDigit(t[digits]) ? n : -1;
        }
    }

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

        /// <summary>Back to the configured server.</summary>
        public void Reset()
        {
            Target = null;
            Index = 0;
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
