// ServiceCore, time: Tick fires every deadline (race, handshake, reconnect, requests,
// invocations, liveness, TURN refresh, paths), Pump sends what pacing lets out, NextWake
// tells the shell when to come back. Split from ServiceCore.cs (a partial class).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        /// <summary>Timers: connect race, deadlines, reconnects, pings, paths, pacing.</summary>
        public void Tick(long now)
        {
            if (_wsStartAt >= 0 && now >= _wsStartAt)
            {
                _wsStartAt = -1;
                StartAttempt(TransportKind.WebSocket, false, now);
            }
            if (_attemptDeadline >= 0 && now >= _attemptDeadline && _conn == 0)
            {
                _attemptDeadline = -1;
                foreach (int a in _attempts.Keys)
                {
                    CloseAttempt(a, false);
                }
                _attempts.Clear();
                _wsStartAt = -1;
                if (_handshake != 0)
                {
                    CloseAttempt(_handshake, false);
                    _handshake = 0;
                }
                ConnectFailed(now, new TimeoutException("connect timed out"));
            }
            if (_reconnectAt >= 0 && now >= _reconnectAt && _conn == 0 && _handshake == 0 && _attempts.Count == 0)
            {
                _reconnectAt = -1;
                BeginRace(now);
            }
            if (_requestDeadline >= 0 && now >= _requestDeadline)
            {
                FailRequest(new TimeoutException("no answer from the server"), true);
            }
            List<long> expired = new List<long>();
            foreach (KeyValuePair<long, PendingInvoke> kv in _invokes)
            {
                if (now >= kv.Value.Deadline)
                {
                    expired.Add(kv.Key);
                }
            }
            foreach (long id in expired)
            {
                Complete(_invokes[id].Token, null, new TimeoutException("the host did not answer in time"));
                _invokes.Remove(id);
            }
            long silentAt = SilentDeadline();
            if (silentAt >= 0 && now >= silentAt)
            {
                ServerSilent(now);
            }
            LivenessTick(now);
            MoveTick(now);
            if (_refreshAt >= 0 && now >= _refreshAt && _conn != 0 && _refreshConn == 0 && !_move.Moving)
            {
                StartRefresh(now);
            }
            foreach (PeerState p in new List<PeerState>(_peers.Values))
            {
                if (p.RetryAt >= 0 && p.RetryAt != long.MaxValue && now >= p.RetryAt)
                {
                    OpenLink(now, p, true);
                }
                long buffered = p.LinkId != 0 ? _metrics.BufferedAmount(p.Info.Id, p.LinkId) : 0;
                bool probe;
                bool missed;
                p.Path.Tick(now, buffered, out probe, out missed);
                if (missed)
                {
                    p.Path.Fail();
                    DirectFailed(now, p, IceFailReason.Timeout);
                    continue;
                }
                uint heldSeq;
                byte[] held = p.Path.TakeHeld(buffered, out heldSeq);
                if (held != null)
                {
                    SendDirect(p, held);
                    p.Path.OnSent(now, heldSeq, held.Length);
                    p.Quality.FrameOut(now);
                }
                if (probe && _sendSeq != 0)
                {
                    // A fresh copy of nothing new is still a probe: an empty snapshot with the current seq is dropped as a duplicate.
                    SendDirect(p, SnapshotEnvelope.Wrap(_sendSeq, new byte[0], 0, 0));
                    p.Path.OnSent(now, _sendSeq, SnapshotEnvelope.HeaderBytes);
                }
                PathMaybeChanged(now, p);
                EchoTick(now, p);
            }
        }

        private void Pump(long now)
        {
            Tick(now);
            QualityPump(now);
            if (_conn != 0)
            {
                List<ClientMsg> ready = new List<ClientMsg>();
                _queue.Poll(now, ready);
                foreach (ClientMsg m in ready)
                {
                    CoreOutput o = Emit(OutputKind.SendControl);
                    o.Conn = _conn;
                    o.Message = m;
                }
            }
        }

        /// <summary>When the shell must call Drain again at the latest; -1 = only on input.</summary>
        public long NextWake(long now)
        {
            long wake = -1;
            wake = Min(wake, _wsStartAt);
            wake = Min(wake, _attemptDeadline);
            wake = Min(wake, _reconnectAt);
            wake = Min(wake, _requestDeadline);
            wake = Min(wake, _conn != 0 ? _liveness.WakeAt : -1);
            wake = Min(wake, SilentDeadline());
            wake = Min(wake, _conn != 0 && _refreshConn == 0 ? _refreshAt : -1);
            wake = Min(wake, _conn != 0 ? _queue.NextWake(now) : -1);
            foreach (PendingInvoke pi in _invokes.Values)
            {
                wake = Min(wake, pi.Deadline);
            }
            foreach (PeerState p in _peers.Values)
            {
                wake = Min(wake, p.RetryAt == long.MaxValue ? -1 : p.RetryAt);
                wake = Min(wake, p.Path.NextWake(now));
                wake = Min(wake, p.Quality.PollTimeout(now));
                wake = Min(wake, QualityWake(now, p));
            }
            wake = Min(wake, ReportWake(now));
            wake = Min(wake, MoveWake());
            return wake;
        }

        private static long Min(long a, long b)
        {
            if (a < 0)
            {
                return b;
            }
            if (b < 0)
            {
                return a;
            }
            return Math.Min(a, b);
        }
    }
}
