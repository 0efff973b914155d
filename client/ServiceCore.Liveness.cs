// ServiceCore, liveness of the connected server: when pings go out, when a silent
// server counts as lost, and SignalR's settable timeouts on a built connection.
// Split from ServiceCore.cs (a partial class); Tick (ServiceCore.Time.cs) acts on it.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        /// <summary>Keep-alive pings: PingIntervalMs, but at least every half ServerTimeoutMs (so a live server is never taken for dead).</summary>
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

        /// <summary>
        /// When the connected server counts as silent: ServerTimeoutMs after it was last heard
        /// from, or after the timeouts last changed if that is later; -1: not connected or off.
        /// </summary>
        private long SilentDeadline()
        {
            if (_conn == 0 || _o.ServerTimeoutMs <= 0 || _lastRx < 0)
            {
                return -1;
            }
            return Math.Max(_lastRx, _timeoutsSetAt) + _o.ServerTimeoutMs;
        }

        /// <summary>
        /// SignalR's settable ServerTimeout, KeepAliveInterval and HandshakeTimeout on a built
        /// connection (milliseconds, 0: off, negative: unchanged), applied from the next decision:
        ///  * ServerTimeout: the silent-server deadline is the new timeout after the server was
        ///    last heard from or after this call, whichever is later (a shorter timeout never
        ///    condemns at once a server that was within the old one);
        ///  * the ping interval (and the half-ServerTimeout floor): the next ping goes out no
        ///    later than one new interval from now (a longer one applies after the ping due);
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
            if (_conn != 0)
            {
                long ping = PingEveryMs();
                _nextPing = ping > 0 ? Min(_nextPing, now + ping) : -1;
            }
            if (_handshake != 0 && _conn == 0 && handshakeTimeoutMs >= 0)
            {
                _attemptDeadline = _o.HandshakeTimeoutMs > 0 ? _handshakeAt + _o.HandshakeTimeoutMs : _raceDeadline;
            }
        }

        /// <summary>The server sent nothing for ServerTimeoutMs: the connection is lost (as TCP or QUIC would say, much later).</summary>
        private void ServerSilent(long now)
        {
            int c = _conn;
            _lastRx = -1;
            Close(c, false);
            TransportLost(now, c, new TimeoutException("the server sent nothing for " + _o.ServerTimeoutMs + " ms (ServerTimeout)"), 0);
        }
    }
}
