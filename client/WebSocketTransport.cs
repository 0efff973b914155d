// Signaling over a WebSocket (PROTOCOL.md section 10) with ClientWebSocket's
// ArraySegment API, which mono and every .NET have. One sender loop keeps control
// messages in order; relay frames wait in a 4-frame queue that drops the oldest.
// The upgrade URL may carry the first request (?first=, PROTOCOL.md section 3); it
// is never logged.
// Also the transport factory: WebSocket here, QUIC from the net9.0 adapter.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.IO;
using System.Net.WebSockets;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed class WebSocketTransport : ISignalingTransport
    {
        private const int RelayQueueFrames = 4;

        private readonly ClientWebSocket _ws;
        private readonly object _lock = new object();
        private readonly Queue<byte[]> _relay = new Queue<byte[]>();
        private readonly SemaphoreSlim _sendLock = new SemaphoreSlim(1, 1);
        private readonly byte[] _buffer = new byte[64 * 1024];
        private Action<uint, byte[]> _onRelay;
        private bool _relayPumping;
        private ushort _closeCode;

        private WebSocketTransport(ClientWebSocket ws)
        {
            _ws = ws;
        }

        public long RelayDropped { get; private set; }

        public static Task<ISignalingTransport> ConnectAsync(Uri uri, TimeSpan keepAlive, CancellationToken cancellationToken)
        {
            return ConnectAsync(uri, null, keepAlive, cancellationToken);
        }

        /// <summary>
        /// Connects to uri with <c>first=</c> added when first is not null (PROTOCOL.md
        /// section 3): the server's Welcome and answer are then the first messages. That
        /// URL can hold a join code: it is never logged, and a connect error that quotes
        /// it is replaced by one that does not.
        /// </summary>
        public static async Task<ISignalingTransport> ConnectAsync(Uri uri, string first, TimeSpan keepAlive, CancellationToken cancellationToken)
        {
            ClientWebSocket ws = new ClientWebSocket();
            WebSocketHook.Apply(ws.Options);
            ws.Options.KeepAliveInterval = keepAlive;
            Uri target = first == null ? uri : new Uri(First.AppendTo(uri.AbsoluteUri, first));
            try
            {
                await ws.ConnectAsync(target, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                ws.Dispose();
                if (first != null && Quotes(e, first))
                {
                    throw new WebSocketException("WebSocket connect to " + uri.GetLeftPart(UriPartial.Path) + " failed ("
                        + e.GetType().Name + ", details withheld: they quote the URL's first request)");
                }
                throw;
            }
            return new WebSocketTransport(ws);
        }

        private static bool Quotes(Exception e, string secret)
        {
            for (Exception x = e; x != null; x = x.InnerException)
            {
                if ((x.Message ?? "").Contains(secret))
                {
                    return true;
                }
            }
            return false;
        }

        public Action<uint, byte[]> RelayReceived
        {
            set { _onRelay = value; }
        }

        public ushort CloseCode
        {
            get { return _closeCode; }
        }

        public async Task SendAsync(ClientMsg message, CancellationToken cancellationToken)
        {
            byte[] data = Wire.EncodeWsControl(message);
            await _sendLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await _ws.SendAsync(new ArraySegment<byte>(data), WebSocketMessageType.Binary, true, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _sendLock.Release();
            }
        }

        public bool TrySendRelay(uint to, byte[] payload)
        {
            byte[] msg = Wire.EncodeWsRelay(to, payload, 0, payload.Length);
            bool dropped = false;
            lock (_lock)
            {
                if (_relay.Count >= RelayQueueFrames)
                {
                    _relay.Dequeue();
                    RelayDropped++;
                    dropped = true;
                }
                _relay.Enqueue(msg);
                if (_relayPumping)
                {
                    return !dropped;
                }
                _relayPumping = true;
            }
            Task.Run(PumpRelay);
            return !dropped;
        }

        private async Task PumpRelay()
        {
            while (true)
            {
                byte[] msg;
                lock (_lock)
                {
                    if (_relay.Count == 0)
                    {
                        _relayPumping = false;
                        return;
                    }
                    msg = _relay.Dequeue();
                }
                await _sendLock.WaitAsync().ConfigureAwait(false);
                try
                {
                    await _ws.SendAsync(new ArraySegment<byte>(msg), WebSocketMessageType.Binary, true, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    lock (_lock)
                    {
                        _relay.Clear();
                        _relayPumping = false;
                    }
                    return;
                }
                finally
                {
                    _sendLock.Release();
                }
            }
        }

        public async Task<ServerMsg> ReceiveAsync(CancellationToken cancellationToken)
        {
            while (true)
            {
                MemoryStream message = new MemoryStream();
                WebSocketReceiveResult r;
                do
                {
                    r = await _ws.ReceiveAsync(new ArraySegment<byte>(_buffer), cancellationToken).ConfigureAwait(false);
                    if (r.MessageType == WebSocketMessageType.Close)
                    {
                        int status = r.CloseStatus.HasValue ? (int)r.CloseStatus.Value : 0;
                        _closeCode = status >= 4000 && status < 5000 ? (ushort)(status - 4000) : (ushort)0;
                        return null;
                    }
                    message.Write(_buffer, 0, r.Count);
                }
                while (!r.EndOfMessage);
                byte[] data = message.ToArray();
                WsMessageKind kind;
                int offset = Wire.ParseWsMessage(data, 0, data.Length, out kind);
                if (kind == WsMessageKind.Control)
                {
                    return ServerMsg.Decode(data, offset, data.Length - offset);
                }
                uint from;
                int payloadOffset;
                try
                {
                    payloadOffset = Wire.ParseRelayFrame(data, offset, data.Length - offset, out from);
                }
                catch (ProtocolException)
                {
                    continue;
                }
                byte[] payload = new byte[data.Length - payloadOffset];
                Buffer.BlockCopy(data, payloadOffset, payload, 0, payload.Length);
                Action<uint, byte[]> cb = _onRelay;
                if (cb != null)
                {
                    cb(from, payload);
                }
            }
        }

        public async Task CloseAsync(bool leave)
        {
            try
            {
                if (_ws.State == WebSocketState.Open || _ws.State == WebSocketState.CloseReceived)
                {
                    using (CancellationTokenSource cts = new CancellationTokenSource(2000))
                    {
                        await _ws.CloseOutputAsync(leave ? WebSocketCloseStatus.NormalClosure : (WebSocketCloseStatus)4000,
                            leave ? "leave" : "reconnecting", cts.Token).ConfigureAwait(false);
                    }
                }
            }
            catch (Exception)
            {
                // Already broken: the server keeps the seat for the grace period either way.
            }
            finally
            {
                if (!leave)
                {
                    _ws.Abort();
                }
                _ws.Dispose();
            }
        }
    }

    /// <summary>WebSocket everywhere; QUIC through QuicConnector on net9.0+.</summary>
    public sealed partial class DefaultTransportFactory : IClusterTransportFactory
    {
        private readonly WebRTCP2POptions _options;

        public DefaultTransportFactory(WebRTCP2POptions options)
        {
            _options = options;
        }

        public bool QuicSupported
        {
            get
            {
                bool supported = false;
                QuicIsSupported(ref supported);
                return supported;
            }
        }

        static partial void QuicIsSupported(ref bool supported);

        partial void ConnectQuic(CancellationToken cancellationToken, ref Task<ISignalingTransport> result);

        public Task<ISignalingTransport> ConnectAsync(TransportKind kind, string first, CancellationToken cancellationToken)
        {
            if (kind == TransportKind.Quic)
            {
                if (first != null)
                {
                    throw new ArgumentException("QUIC says Hello on its control stream", "first");
                }
                Task<ISignalingTransport> quic = null;
                ConnectQuic(cancellationToken, ref quic);
                if (quic == null)
                {
                    throw new PlatformNotSupportedException("QUIC needs .NET 9 or later with msquic");
                }
                return quic;
            }
            return WebSocketTransport.ConnectAsync(_options.EffectiveWebSocketUri, first, _options.KeepAliveInterval, cancellationToken);
        }

        /// <summary>Cluster mode: the same, to another node (a fallback, or where a Redirect leads).</summary>
        public Task<ISignalingTransport> ConnectAsync(TransportKind kind, ServerEndpoint server, string first, CancellationToken cancellationToken)
        {
            if (server == null)
            {
                return ConnectAsync(kind, first, cancellationToken);
            }
            if (!server.Reaches(kind))
            {
                throw new ArgumentException("node " + server.Name + " has no " + kind + " address", "server");
            }
            return new DefaultTransportFactory(_options.For(server)).ConnectAsync(kind, first, cancellationToken);
        }
    }
}
