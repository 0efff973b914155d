// Pacing of control messages under the server's signal budget (ControlQueue): urgent
// and normal classes, hub-message coalescing. Split from CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
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
}
