// ServiceCore, liveness of the connected server: when pings go out (every 500 ms, and
// every 100 ms while probing: a Ping outstanding for probe_after, Liveness decides), when
// a silent server counts as lost, and SignalR's settable timeouts on a built connection.
// Split from ServiceCore.cs (a partial class); Tick (ServiceCore.Time.cs) acts on it, at
// NextWake, which includes Liveness.WakeAt (the next Ping or probe, the live deadline).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        /// <summary>
        /// Pings: PingIntervalMs (rule 2: 500), but at least every half ServerTimeoutMs (so a
        /// live server is never taken for dead). While rule 2 judges, a Ping outstanding for
        /// probe_after brings the next ones every 100 ms (never slower than this interval).
        /// </summary>
        private long PingEveryMs()
        {
            long ping = _o.PingIntervalMs;
            if (_o.ServerTimeoutMs > 0)
            {
                long half = Math.Max(1, _o.ServerTimeoutMs / 2);
                ping = ping > 0 ? Math.Min(ping, half) : half;
            }
            return ping;
        }

        /// <summary>Rule 2 decides (and probes) only with its own pings on (PingIntervalMs &gt; 0) and AdaptiveLiveness; otherwise pings go at the interval alone.</summary>
        private bool LivenessJudges()
        {
            return _o.AdaptiveLiveness && _o.PingIntervalMs > 0;
        }

        /// <summary>
        /// When the connected server counts as silent (SignalR's ServerTimeout, the ceiling on
        /// silence): ServerTimeoutMs after it was last heard from, or after the timeouts last
        /// changed if that is later; -1: not connected or off.
        /// </summary>
        private long SilentDeadline()
        {
            if (_conn == 0 || _o.ServerTimeoutMs <= 0 || _lastRx < 0)
            {
                return -1;
            }
            return Math.Max(_lastRx, _timeoutsSetAt) + _o.ServerTimeoutMs;
        }

        /// <summary>The connection is up (a Welcome): pings start, the live timeout is timed from the pings.</summary>
        private void LivenessConnected(long now)
        {
            _lastRx = now;
            _liveness.PingIntervalMs = PingEveryMs();
            _liveness.Judges = LivenessJudges();
            _liveness.Connected(now);
        }

        /// <summary>Anything from the connected server: a message, a Pong, a relay frame.</summary>
        private void Heard(long now)
        {
            _lastRx = now;
            _liveness.Heard(now);
        }

        /// <summary>Rule 2 at now: a Ping to send (a regular one or a probe: urgent class, never behind hub traffic), or the server lost.</summary>
        private void LivenessTick(long now)
        {
            if (_conn == 0)
            {
                return;
            }
            LivenessAction a = _liveness.Tick(now);
            if (a == LivenessAction.Ping)
            {
                _queue.Enqueue(new ClientMsg.Ping((ulong)now));
            }
            else if (a == LivenessAction.Lost)
            {
                ServerLost(now, new TimeoutException("no answer from the server for " + _liveness.LiveTimeoutMs
                    + " ms after a Ping (the live timeout, docs/PROTOCOL.md Client behaviour rule 2)"), true);
            }
        }

        /// <summary>
        /// SignalR's settable ServerTimeout, KeepAliveInterval and HandshakeTimeout on a built
        /// connection (milliseconds, 0: off, negative: unchanged), applied from the next decision:
        ///  * ServerTimeout: the silent-server deadline is the new timeout after the server was
        ///    last heard from or after this call, whichever is later (a shorter timeout never
        ///    condemns at once a server that was within the old one); rule 2's live timeout is
        ///    not changed by it (it adapts to the RTT);
        ///  * the ping interval (and the half-ServerTimeout floor): the next ping goes out no
        ///    later than one new interval from now (a longer one applies after the ping due);
        ///    probing (100 ms while a Ping is outstanding past probe_after) is not changed by it;
        ///  * HandshakeTimeout: a handshake under way gets the new timeout from its start (off:
        ///    the connect deadline it had before); later handshakes take it as they begin.
        /// </summary>
        public void SetTimeouts(long now, long serverTimeoutMs, long pingIntervalMs, long handshakeTimeoutMs)
        {
            if (serverTimeoutMs >= 0)
            {
                _o.ServerTimeoutMs = serverTimeoutMs;
            }
            if (pingIntervalMs >= 0)
            {
                _o.PingIntervalMs = pingIntervalMs;
            }
            if (handshakeTimeoutMs >= 0)
            {
                _o.HandshakeTimeoutMs = handshakeTimeoutMs;
            }
            _timeoutsSetAt = now;
            _liveness.Judges = LivenessJudges();
            _liveness.SetPingInterval(now, PingEveryMs());
            if (_handshake != 0 && _conn == 0 && handshakeTimeoutMs >= 0)
            {
                _attemptDeadline = _o.HandshakeTimeoutMs > 0 ? HandshakeDeadline(_handshakeAt + _o.HandshakeTimeoutMs) : _raceDeadline;
            }
        }

        /// <summary>The handshake's deadline: HandshakeTimeout's, but within rule 6's attempt timeout for a reconnection attempt.</summary>
        private long HandshakeDeadline(long handshakeAt)
        {
            if (State == HubConnectionState.Reconnecting && _raceDeadline >= 0)
            {
                return Math.Min(_raceDeadline, handshakeAt);
            }
            return handshakeAt;
        }

        /// <summary>The server sent nothing for ServerTimeoutMs: the connection is lost (as TCP or QUIC would say, much later).</summary>
        private void ServerSilent(long now)
        {
            ServerLost(now, new TimeoutException("the server sent nothing for " + _o.ServerTimeoutMs + " ms (ServerTimeout)"), true);
        }

        /// <summary>
        /// The connected server is taken for lost (rule 2, or ServerTimeout): close the
        /// connection and resume. A server lost this way counts as unreachable (cluster mode:
        /// the next configured server, the rotation rule); a connection the transport reports
        /// lost retries the same server.
        /// </summary>
        private void ServerLost(long now, Exception error, bool rotate)
        {
            int c = _conn;
            _lastRx = -1;
            _liveness.Disconnected();
            if (rotate)
            {
                _rotation.ServerLost();
            }
            Close(c, false);
            TransportLost(now, c, error, CloseVerdict.NoCode);
        }
    }
}
