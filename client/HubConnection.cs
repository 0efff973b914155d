// HubConnection: SignalR's client type, over WebRTCP2PService. An app written against
// Microsoft.AspNetCore.SignalR.Client compiles against this with its using lines
// changed (client/AVALONIA-INTEGRATION.md shows the diff; tests/csharp/signalr-app/
// is such an app, compiled by mono and run against the real server by live.sh).
// Also: the SignalR-shaped timeouts, IRetryPolicy/RetryContext, HttpTransportType.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace FlightSimP2P.Client
{
    /// <summary>SignalR's HubConnection: built by HubConnectionBuilder; everything WebRTCP2PService does.</summary>
    public class HubConnection : WebRTCP2PService, IAsyncDisposable
    {
        /// <summary>Ours is 10 s (SignalR's 30 s): a silent server is noticed sooner.</summary>
        public static readonly TimeSpan DefaultServerTimeout = TimeSpan.FromSeconds(10);
        /// <summary>Ours is 5 s (SignalR's 15 s).</summary>
        public static readonly TimeSpan DefaultKeepAliveInterval = TimeSpan.FromSeconds(5);
        public static readonly TimeSpan DefaultHandshakeTimeout = TimeSpan.FromSeconds(15);

        private readonly string _session;

        public HubConnection(WebRTCP2POptions options) : this(options, null)
        {
        }

        /// <summary>session: "new" (StartAsync creates a session), a join code (StartAsync joins it), or null.</summary>
        public HubConnection(WebRTCP2POptions options, string session) : base(options)
        {
            _session = session;
        }

        /// <summary>
        /// Connects; with the URL's ?session=new or ?session=CODE also creates or joins that
        /// session, in the same round trip over WebSocket (StartAndCreateSessionAsync /
        /// StartAndJoinSessionAsync). Without it, CreateSessionAsync or JoinSessionAsync follow.
        /// </summary>
        public new Task StartAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            if (_session == null)
            {
                return base.StartAsync(cancellationToken);
            }
            if (_session == "new")
            {
                return StartAndCreateSessionAsync(0, null, cancellationToken);
            }
            return StartAndJoinSessionAsync(_session, null, cancellationToken);
        }

        /// <summary>Raised once the connection is disposed (DisposeAsync): what the builder attached is released.</summary>
        internal event Action Disposed;

        /// <summary>SignalR's DisposeAsync returns ValueTask: stops (leaving the session) and disposes.</summary>
        public new ValueTask DisposeAsync()
        {
            return new ValueTask(base.DisposeAsync().ContinueWith(t =>
            {
                Action d = Disposed;
                Disposed = null;
                if (d != null)
                {
                    d();
                }
                t.GetAwaiter().GetResult();
            }, TaskScheduler.Default));
        }
    }

    public partial class WebRTCP2PService : IAsyncDisposable
    {
        ValueTask IAsyncDisposable.DisposeAsync()
        {
            return new ValueTask(DisposeAsync());
        }

        /// <summary>
        /// SignalR's ServerTimeout (WebRTCP2POptions.ServerTimeout, default 10 s): a server that
        /// sends nothing for this long is lost and Reconnecting fires. It is a ceiling: the
        /// protocol's liveness rule (a Ping unanswered past the adaptive live timeout, 1.5-10 s)
        /// usually decides first, and raising ServerTimeout does not delay it. Settable at any
        /// time, as SignalR's: a change applies from the next decision (ServiceCore.SetTimeouts),
        /// on the connection under way too (its silence is then timed from the change at the
        /// earliest).
        /// </summary>
        public TimeSpan ServerTimeout
        {
            get { return _options.ServerTimeout; }
            set
            {
                _options.ServerTimeout = value;
                TimeoutsChanged();
            }
        }

        /// <summary>
        /// SignalR's KeepAliveInterval: how often the client pings the server at the longest
        /// (writes WebRTCP2POptions.KeepAliveInterval, the transport keep-alive, and PingInterval,
        /// never above the liveness rule's 500 ms: WebRTCP2POptions.PingIntervalFor; the rule's
        /// probes, every 100 ms while a Ping is outstanding, are not changed by it). Settable at
        /// any time: the next ping goes out within the new interval; the transport keep-alive
        /// (WebSocket, QUIC) takes it at the next connect.
        /// </summary>
        public TimeSpan KeepAliveInterval
        {
            get { return _options.KeepAliveInterval; }
            set
            {
                _options.KeepAliveInterval = value;
                _options.PingInterval = WebRTCP2POptions.PingIntervalFor(value);
                TimeoutsChanged();
            }
        }

        /// <summary>
        /// SignalR's HandshakeTimeout (WebRTCP2POptions.HandshakeTimeout, default 15 s): connect
        /// to Welcome. Settable at any time: a handshake under way is timed from its start.
        /// </summary>
        public TimeSpan HandshakeTimeout
        {
            get { return _options.HandshakeTimeout; }
            set
            {
                _options.HandshakeTimeout = value;
                TimeoutsChanged();
            }
        }

        /// <summary>The three timeouts as the options now say, to the live core.</summary>
        private void TimeoutsChanged()
        {
            long server = WebRTCP2POptions.Ms(_options.ServerTimeout);
            long ping = WebRTCP2POptions.Ms(_options.PingInterval);
            long handshake = WebRTCP2POptions.Ms(_options.HandshakeTimeout);
            Input(() => _core.SetTimeouts(_clock.NowMs, Math.Max(0, server), Math.Max(0, ping), Math.Max(0, handshake)));
        }
    }

    /// <summary>SignalR's RetryContext: what IRetryPolicy.NextRetryDelay is told.</summary>
    public sealed class RetryContext
    {
        public long PreviousRetryCount { get; set; }

        public TimeSpan ElapsedTime { get; set; }

        /// <summary>Always null here: the delays are asked for before the connection is lost (RetrySchedule).</summary>
        public Exception RetryReason { get; set; }
    }

    /// <summary>SignalR's IRetryPolicy: the delay before the next reconnect attempt, null to stop.</summary>
    public interface IRetryPolicy
    {
        TimeSpan? NextRetryDelay(RetryContext retryContext);
    }

    /// <summary>
    /// An IRetryPolicy as the core's list of reconnect delays: asked with PreviousRetryCount
    /// 0, 1, 2... and ElapsedTime the sum of the delays before (the connect attempts' own time
    /// not counted; RetryReason null), until it says null or MaxRetries delays are listed.
    /// </summary>
    public static class RetrySchedule
    {
        public const int MaxRetries = 1000;

        public static TimeSpan[] From(IRetryPolicy policy)
        {
            if (policy == null)
            {
                throw new ArgumentNullException("policy");
            }
            List<TimeSpan> delays = new List<TimeSpan>();
            TimeSpan elapsed = TimeSpan.Zero;
            while (delays.Count < MaxRetries)
            {
                TimeSpan? next = policy.NextRetryDelay(new RetryContext { PreviousRetryCount = delays.Count, ElapsedTime = elapsed, RetryReason = null });
                if (!next.HasValue)
                {
                    break;
                }
                TimeSpan d = next.Value < TimeSpan.Zero ? TimeSpan.Zero : next.Value;
                delays.Add(d);
                elapsed += d;
            }
            return delays.ToArray();
        }
    }

    /// <summary>SignalR's HttpTransportType (flags). The service uses QUIC and WebSocket whatever it says.</summary>
    [Flags]
    public enum HttpTransportType
    {
        None = 0,
        WebSockets = 1,
        ServerSentEvents = 2,
        LongPolling = 4,
    }
}
