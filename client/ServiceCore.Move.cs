// ServiceCore, following a session move (PROTOCOL.md section 11 "Moving a session
// (version 5)", rule 10 of section 12): the decisions are MoveMachine's
// (CoreBasics.Move.cs); this part keeps the two connections' ids and does what the
// machine says. While a move is under way:
//   _moveOld  the connection the Redirect came on (relay frames only; what else it says,
//             and its close, start no reconnect and raise no event);
//   _moveNew  the connection to the named node; before its Welcome it is not _conn
//             (control waits in the queue), after a resumed Welcome it is _conn.
// Split from ServiceCore.cs (a partial class).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        private readonly MoveMachine _move = new MoveMachine();
        private int _moveOld;
        private int _moveNew;
        private TransportKind _moveNewKind;
        private ServerEndpoint _moveTarget;
        // The new connection's Welcome must come by then (the connect timeout), else it failed.
        private long _moveDeadline = -1;

        /// <summary>Where a move stands (Settled: none under way).</summary>
        public MovePhase MovePhase { get { return _move.Phase; } }

        /// <summary>Moves followed to their end on the new connection (for tests and logs).</summary>
        public long MovesCompleted { get; private set; }

        private MoveInput MoveIn(MoveEvent ev)
        {
            MoveInput i = new MoveInput();
            i.Event = ev;
            return i;
        }

        /// <summary>
        /// A Redirect on the current connection (settled) or on the new one (a move under
        /// way, the new one current or answering its Hello). True: the move took it, the
        /// caller does nothing more; false: follow it as any redirect (rules 4 and 5).
        /// </summary>
        private bool MoveRedirect(long now, int conn, ServerMsg.Redirect r, bool unasked)
        {
            if (_move.Moving)
            {
                MoveInput onNew = MoveIn(MoveEvent.Redirect);
                onNew.On = MoveConn.New;
                onNew.Reason = r.Reason;
                onNew.Unasked = unasked;
                onNew.InSession = Session != null;
                onNew.Version = ServerVersion;
                if (_move.Step(now, onNew) == MoveAction.CloseOld)
                {
                    // The new connection is current; the redirect is handled on it as usual.
                    CloseMoveOld();
                    SettleMove();
                }
            }
            MoveInput i = MoveIn(MoveEvent.Redirect);
            i.On = MoveConn.Current;
            i.Reason = r.Reason;
            i.Unasked = unasked;
            i.InSession = Session != null;
            i.Version = ServerVersion;
            if (conn != _conn || _move.Step(now, i) != MoveAction.OpenNew)
            {
                return false;
            }
            BeginMove(now, r);
            return true;
        }

        /// <summary>open_new: connect to the node with the resume token, keep the old connection for relay frames.</summary>
        private void BeginMove(long now, ServerMsg.Redirect r)
        {
            ServerEndpoint target = ServerEndpoint.FromNode(r.Node);
            CoreOutput ev = Emit(OutputKind.Redirected);
            ev.Name = target.Name;
            ev.Server = target;
            if (_refreshConn != 0)
            {
                // A TURN refresh resuming on the old node would take the seat back there:
                // let it go (the seat is kept); the new connection's Welcome brings fresh
                // credentials anyway.
                Close(_refreshConn, false);
                _helloInUrl.Remove(_refreshConn);
                _refreshConn = 0;
                _refreshAt = now + 30000;
            }
            _moveOld = _conn;
            _moveTarget = target;
            // Control waits in the queue for the new connection's Welcome; the old one's
            // liveness is no longer judged (what it says is ignored).
            _conn = 0;
            _liveness.Disconnected();
            bool quic = _o.QuicAllowed && _o.QuicSupported && target.Reaches(TransportKind.Quic);
            bool ws = _o.WebSocketAllowed && target.Reaches(TransportKind.WebSocket);
            if (!quic && !ws)
            {
                MoveNewFailed(now);
                return;
            }
            // The same kind of transport as the old connection when the node has it.
            TransportKind kind = _connKind == TransportKind.WebSocket ? (ws ? TransportKind.WebSocket : TransportKind.Quic)
                : (quic ? TransportKind.Quic : TransportKind.WebSocket);
            int id = _nextConn++;
            _moveNew = id;
            _moveNewKind = kind;
            _moveDeadline = now + _o.ConnectTimeoutMs;
            CoreOutput o = Emit(OutputKind.Connect);
            o.Conn = id;
            o.Transport = kind;
            o.Resume = ResumeToken != null;
            o.Server = target;
            if (kind == TransportKind.WebSocket && _o.FirstInUrl)
            {
                // Alone (no race): the resume token may go in the URL.
                o.First = First.Encode(MakeHello(), null);
                _helloInUrl[id] = true;
            }
        }

        /// <summary>The new connection before its Welcome: the Welcome, or a Redirect answering its Hello; nothing else counts.</summary>
        private void MoveNewMessage(long now, ServerMsg msg)
        {
            ServerMsg.Welcome w = msg as ServerMsg.Welcome;
            if (w != null)
            {
                MoveInput i = MoveIn(MoveEvent.NewWelcome);
                i.Resumed = w.Resumed;
                MoveAction a = _move.Step(now, i);
                int fresh = _moveNew;
                _moveDeadline = -1;
                if (a == MoveAction.None)
                {
                    return;
                }
                if (a == MoveAction.CloseOld)
                {
                    CloseMoveOld();
                }
                if (!w.Resumed)
                {
                    // Not resumed (the seat is gone): rule 4's after_reconnect on the new
                    // connection, which is the connection from now on: rejoin by code.
                    CloseMoveOld();
                    SettleMove();
                    _handshake = fresh;
                    _handshakeKind = _moveNewKind;
                    OnWelcome(now, fresh, w);
                    return;
                }
                // Resumed: same peer id and seat; control goes here from now on.
                _conn = fresh;
                _connKind = _moveNewKind;
                _lastError = null;
                ApplyWelcomeFields(now, w);
                _queue.Configure(Limits.SignalsPerSec, now);
                LivenessConnected(now);
                _redirects.Welcome();
                // A later reconnect goes straight to the node that holds the seat now.
                _rotation.Redirected(_moveTarget);
                if (a == MoveAction.UseNew)
                {
                    SettleMove();
                }
                return;
            }
            ServerMsg.Redirect r = msg as ServerMsg.Redirect;
            if (r != null)
            {
                MoveInput i = MoveIn(MoveEvent.Redirect);
                i.On = MoveConn.New;
                i.Reason = r.Reason;
                i.Unasked = false;
                i.InSession = Session != null;
                i.Version = ServerVersion;
                if (_move.Step(now, i) != MoveAction.CloseOld)
                {
                    return;
                }
                // The resume is answered elsewhere: the new connection follows it as usual
                // (it answers a Hello, so it is a handshake's redirect).
                int fresh = _moveNew;
                CloseMoveOld();
                SettleMove();
                _handshake = fresh;
                _handshakeKind = _moveNewKind;
                OnRedirect(now, fresh, r);
            }
        }

        /// <summary>The new connection could not be opened, or closed before its Welcome.</summary>
        private void MoveNewFailed(long now)
        {
            _moveDeadline = -1;
            _moveNew = 0;
            MoveAction a = _move.Step(now, MoveIn(MoveEvent.NewFailed));
            if (a == MoveAction.Reconnect)
            {
                // The old one is gone too: a lost connection; the first attempt goes to the
                // named node, where the seat is held.
                SettleMove();
                _rotation.Redirected(_moveTarget);
                MoveLost(now, new HubException("the session moved and the new connection failed"));
            }
        }

        /// <summary>
        /// TransportLost/TransportFailed of a connection a move knows. True: handled here
        /// (no reconnect, no event unless the table says reconnect).
        /// </summary>
        private bool MoveTransportLost(long now, int conn, Exception error)
        {
            if (!_move.Moving || conn == 0)
            {
                return false;
            }
            if (conn == _moveOld)
            {
                _moveOld = 0;
                MoveAction a = _move.Step(now, MoveIn(MoveEvent.OldClosed));
                if (a == MoveAction.UseNew)
                {
                    SettleMove();
                }
                else if (a == MoveAction.Reconnect)
                {
                    SettleMove();
                    MoveLost(now, error ?? new HubException("connection lost after a failed move"));
                }
                return true;
            }
            if (conn == _moveNew && _moveNew != _conn)
            {
                MoveNewFailed(now);
                return true;
            }
            if (conn == _moveNew && _moveNew == _conn)
            {
                // overlap: the new one closed: stay on the old one until it closes.
                _move.Step(now, MoveIn(MoveEvent.NewClosed));
                _conn = 0;
                _moveNew = 0;
                _liveness.Disconnected();
                return true;
            }
            return false;
        }

        /// <summary>Timers of a move: the new connection's connect deadline, the 10 s cap (overlap, old-only).</summary>
        private void MoveTick(long now)
        {
            if (!_move.Moving)
            {
                return;
            }
            if (_moveDeadline >= 0 && now >= _moveDeadline && _moveNew != 0 && _moveNew != _conn)
            {
                _helloInUrl.Remove(_moveNew);
                Close(_moveNew, false);
                MoveNewFailed(now);
            }
            MoveAction a = _move.Step(now, MoveIn(MoveEvent.Tick));
            if (a == MoveAction.CloseOld)
            {
                CloseMoveOld();
                SettleMove();
            }
            else if (a == MoveAction.Reconnect)
            {
                // Old only, and its node went silent for 10 s after the redirect: close it and
                // come back as after any lost connection (first to the named node).
                CloseMoveOld();
                SettleMove();
                _rotation.Redirected(_moveTarget);
                MoveLost(now, new HubException("the session moved, the new connection failed and the old one went silent"));
            }
        }

        private long MoveWake()
        {
            return Min(_move.WakeAtMs, _move.Moving ? _moveDeadline : -1);
        }

        /// <summary>Closes the old connection keeping the seat (999 / WebSocket 4999).</summary>
        private void CloseMoveOld()
        {
            if (_moveOld != 0)
            {
                Close(_moveOld, false);
                _moveOld = 0;
            }
        }

        private void SettleMove()
        {
            if (_moveNew != 0 && _moveNew == _conn)
            {
                MovesCompleted++;
            }
            _moveNew = 0;
            _moveDeadline = -1;
            if (_move.Moving)
            {
                _move.Reset();
            }
        }

        /// <summary>reconnect: as after any lost connection (rule 3, the resume token).</summary>
        private void MoveLost(long now, Exception error)
        {
            _conn = 0;
            _queue.Clear();
            _liveness.Disconnected();
            FailRequest(new ServerException((ushort)ErrorCode.Internal, "connection lost"), false);
            if (_stopping)
            {
                return;
            }
            LostConnection(now, error, 0);
        }

        /// <summary>Stop or give up: both connections of a move go.</summary>
        private void AbandonMove(bool leave)
        {
            if (_moveOld != 0)
            {
                Close(_moveOld, leave);
            }
            if (_moveNew != 0 && _moveNew != _conn)
            {
                Close(_moveNew, leave);
            }
            _moveOld = 0;
            _moveNew = 0;
            _moveDeadline = -1;
            _move.Reset();
        }

        /// <summary>The connections relay frames go out on now (the machine's send_on).</summary>
        private List<int> RelayConns()
        {
            List<int> conns = new List<int>(2);
            foreach (MoveConn c in _move.SendOn)
            {
                int id = c == MoveConn.Old ? _moveOld : _conn;
                if (id != 0 && !conns.Contains(id))
                {
                    conns.Add(id);
                }
            }
            return conns;
        }

        /// <summary>Some connection carries relay frames.</summary>
        private bool RelayUp
        {
            get { return _move.Moving ? RelayConns().Count > 0 : _conn != 0; }
        }

        /// <summary>A relay frame on conn is taken (take_from); outside a move every connection's is.</summary>
        private bool TakesRelayFrom(int conn)
        {
            if (!_move.Moving)
            {
                return true;
            }
            return RelayConns().Contains(conn);
        }
    }
}
