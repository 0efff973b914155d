// ServiceCore, what the server says: Welcome (fresh, resumed, or a TURN refresh taking
// the seat over), sessions entered and left, peers, host changes, redirects (cluster
// mode), errors and pongs. Split from ServiceCore.cs (a partial class).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        public void ServerMessage(long now, int conn, ServerMsg msg)
        {
            if (conn == _refreshConn)
            {
                RefreshMessage(now, msg);
                return;
            }
            if (_move.Moving && conn == _moveNew && conn != _conn)
            {
                // Rule 10: the new connection of a move, before its Welcome.
                MoveNewMessage(now, msg);
                return;
            }
            // What any other connection says (a move's old one among them) is ignored.
            if (conn != _conn && conn != _handshake)
            {
                return;
            }
            if (conn == _conn)
            {
                Heard(now);
            }
            if (msg is ServerMsg.Welcome)
            {
                OnWelcome(now, conn, (ServerMsg.Welcome)msg);
            }
            else if (msg is ServerMsg.SessionCreated)
            {
                OnSessionEntered(now, ((ServerMsg.SessionCreated)msg).Session, false);
            }
            else if (msg is ServerMsg.SessionJoined)
            {
                OnSessionEntered(now, ((ServerMsg.SessionJoined)msg).Session, true);
            }
            else if (msg is ServerMsg.PeerJoined)
            {
                OnPeerJoined(now, ((ServerMsg.PeerJoined)msg).Peer);
            }
            else if (msg is ServerMsg.PeerLeft)
            {
                ServerMsg.PeerLeft m = (ServerMsg.PeerLeft)msg;
                OnPeerLeft(m.Peer, m.Reason);
            }
            else if (msg is ServerMsg.HostChanged)
            {
                OnHostChanged(((ServerMsg.HostChanged)msg).Host);
            }
            else if (msg is ServerMsg.SignalFrom)
            {
                ServerMsg.SignalFrom m = (ServerMsg.SignalFrom)msg;
                OnSignal(now, m.From, m.Signal);
            }
            else if (msg is ServerMsg.Redirect)
            {
                OnRedirect(now, conn, (ServerMsg.Redirect)msg);
            }
            else if (msg is ServerMsg.Error)
            {
                ServerMsg.Error e = (ServerMsg.Error)msg;
                if (e.Code == (ushort)ErrorCode.ClusterUnavailable && conn == _handshake && State == HubConnectionState.Reconnecting)
                {
                    // The resume needs the cluster directory, out of reach now: try again
                    // after the backoff, on the same node, within the grace as usual.
                    _handshake = 0;
                    _attemptDeadline = -1;
                    CloseAttempt(conn, false);
                    AttemptFailed(now, new ServerException(e.Code, e.Message));
                    return;
                }
                OnError(now, e);
            }
            else if (msg is ServerMsg.Pong)
            {
                OnPong(now, (ServerMsg.Pong)msg);
            }
            else if (msg is ServerMsg.SessionLeft)
            {
                ServerMsg.SessionLeft m = (ServerMsg.SessionLeft)msg;
                ClearSession();
                Emit(OutputKind.SessionChanged);
                CoreOutput o = Emit(OutputKind.PeerLeft);
                o.Peer = PeerId;
                o.Reason = m.Reason;
            }
            else if (msg is ServerMsg.PeerStatus)
            {
                ServerMsg.PeerStatus m = (ServerMsg.PeerStatus)msg;
                PeerState p = GetPeer(m.Peer);
                if (p != null)
                {
                    p.Online = m.Online;
                    p.Quality.SetOnline(now, m.Online);
                    CoreOutput o = Emit(OutputKind.PeerStatus);
                    o.Peer = m.Peer;
                    o.Online = m.Online;
                }
            }
            else if (msg is ServerMsg.GoingAway)
            {
                ServerMsg.GoingAway m = (ServerMsg.GoingAway)msg;
                int c = _conn;
                _conn = 0;
                _queue.Clear();
                _liveness.Disconnected();
                ServerException why = new ServerException((ushort)ErrorCode.ShuttingDown, m.Message);
                FailRequest(why, false);
                Close(c, false);
                // The close rule: a GoingAway means resume after its delay (a fatal Error before it wins).
                CloseFacts facts = new CloseFacts();
                facts.GoingAwayMs = m.ReconnectAfterMs;
                facts.ErrorBefore = _lastError != null ? _lastError.Code : CloseVerdict.NoCode;
                facts.AutoResume = _policy.Enabled;
                long delay;
                if (CloseVerdict.Decide(facts, out delay) == CloseAction.GiveUp)
                {
                    GiveUp(why);
                    return;
                }
                LostConnection(now, why, delay);
            }
        }

        /// <summary>
        /// Cluster mode (PROTOCOL.md section 11): leave this connection (keeping any seat),
        /// connect to the node at once, Hello (with the resume token if in a session) and
        /// the unanswered CreateSession/JoinSession again after its Welcome.
        /// </summary>
        private void OnRedirect(long now, int conn, ServerMsg.Redirect r)
        {
            bool unasked = conn == _conn && !(_request.Active || _requestInUrlConn != 0 || _pendingRequest != null);
            if (MoveRedirect(now, conn, r, unasked))
            {
                // Rule 10: a move, make-before-break (ServiceCore.Move.cs).
                return;
            }
            _redirects.Pending = _request.Active || _requestInUrlConn != 0 || _pendingRequest != null;
            bool follow = _redirects.Redirect(_o.MaxRedirects);
            ServerEndpoint target = ServerEndpoint.FromNode(r.Node);
            CoreOutput ev = Emit(OutputKind.Redirected);
            ev.Name = target.Name;
            ev.Server = target;
            bool requestPending = _request.Active || _requestInUrlConn != 0 || _pendingRequest != null;
            if (!follow)
            {
                TooManyRedirectsException err = new TooManyRedirectsException(_o.MaxRedirects, target.Name);
                _redirects.Reset();
                if (State == HubConnectionState.Connecting)
                {
                    Close(conn, true);
                    _conn = 0;
                    _handshake = 0;
                    _attemptDeadline = -1;
                    FailRequest(err, true);
                    SetState(HubConnectionState.Disconnected);
                    Complete(_startToken, null, err);
                    _startToken = 0;
                    return;
                }
                FailRequest(err, true);
                if (RedirectRun.AfterFailing(Session != null) == RedirectThen.Stop)
                {
                    // The request failed; this connection stays as long as the node keeps it.
                    return;
                }
                // In a session: back to the configured servers, which redirect afresh.
                _rotation.BackToConfigured();
                requestPending = false;
            }
            else if ((_o.QuicAllowed && _o.QuicSupported && target.Reaches(TransportKind.Quic))
                || (_o.WebSocketAllowed && target.Reaches(TransportKind.WebSocket)))
            {
                _rotation.Redirected(target);
            }
            else
            {
                // Unreachable as given: the configured servers instead.
                _rotation.Redirected(null);
            }
            ClientMsg resend = requestPending ? _requestMsg : null;
            if (_conn == conn)
            {
                _conn = 0;
            }
            if (_handshake == conn)
            {
                _handshake = 0;
            }
            _attemptDeadline = -1;
            _queue.Clear();
            _request.End();
            _requestInUrlConn = 0;
            _requestDeadline = -1;
            _pendingRequest = resend;
            if (resend != null && Session == null)
            {
                // In no session: arrive as a new peer (no token), then ask again.
                ResumeToken = null;
            }
            Close(conn, false);
            if (State == HubConnectionState.Connecting)
            {
                BeginRace(now);
                return;
            }
            _liveness.Disconnected();
            RedirectReconnect(now, new RedirectedException(r.Reason, target.Name));
        }

        private void OnWelcome(long now, int conn, ServerMsg.Welcome w)
        {
            bool reconnect = State == HubConnectionState.Reconnecting;
            uint oldId = PeerId;
            _handshake = 0;
            _conn = conn;
            _connKind = _handshakeKind;
            _lastError = null;
            _attemptDeadline = -1;
            _reconnectAt = -1;
            _plan.Reset();
            ApplyWelcomeFields(now, w);
            MaybeMeasureRegions(now, w.Version);
            _queue.Configure(Limits.SignalsPerSec, now);
            LivenessConnected(now);
            WelcomeMilestone(now);
            ReportClockStarts(now);
            bool pending = _pendingRequest != null || _request.Active || _requestInUrlConn == conn;
            ReconnectOutcome outcome = oldId == 0 ? ReconnectOutcome.Fresh
                : AfterReconnect.Decide(w.Resumed, w.PeerId, oldId, Session != null, pending);
            if (outcome == ReconnectOutcome.Rejoin)
            {
                // A new peer id: the old seat (and session) is gone; rejoin by code and password.
                string code = Session.Code;
                string password = SessionPassword;
                ClearSession();
                Emit(OutputKind.SessionChanged);
                if (_o.AutoRejoin)
                {
                    BeginRequest(now, 0, new ClientMsg.JoinSession(code, password), true, code, password);
                }
            }
            if (_requestInUrlConn == conn)
            {
                _requestInUrlConn = 0;
                _request.WelcomeSeen();
                _requestDeadline = now + _o.RequestTimeoutMs;
            }
            else if (_pendingRequest == null && !_request.Active)
            {
                _redirects.Pending = false;
                _redirects.Welcome();
            }
            else if (_pendingRequest != null)
            {
                ClientMsg first = _pendingRequest;
                _pendingRequest = null;
                StampRegions(first, ServerVersion, now);
                _requestDeadline = now + _o.RequestTimeoutMs;
                _request.Begin(_requestToken, first, _queue);
            }
            SetState(HubConnectionState.Connected);
            if (reconnect)
            {
                Emit(OutputKind.Reconnected).Name = PeerId.ToString();
            }
            Complete(_startToken, null, null);
            _startToken = 0;
        }

        private void ApplyWelcomeFields(long now, ServerMsg.Welcome w)
        {
            PeerId = w.PeerId;
            ResumeToken = w.ResumeToken;
            ServerVersion = w.Version;
            Limits = w.Limits;
            IceServers = w.IceServers;
            _refreshAt = TurnCredentials.RefreshAt(w.IceServers, w.ServerTimeMs, now);
        }

        /// <summary>Make-before-break resume for fresh TURN credentials.</summary>
        private void RefreshMessage(long now, ServerMsg msg)
        {
            ServerMsg.Welcome w = msg as ServerMsg.Welcome;
            if (w == null)
            {
                return;
            }
            int fresh = _refreshConn;
            _refreshConn = 0;
            if (!w.Resumed)
            {
                // The seat could not be taken over: keep the old connection, give this one up.
                Close(fresh, true);
                _refreshAt = now + 60000;
                if (_handoff)
                {
                    // (Cannot happen with a server that sent `replaced`; be safe.)
                    _handoff = false;
                    LostConnection(now, new ServerException((ushort)ErrorCode.ResumeFailed, "TURN refresh failed"), 0);
                }
                return;
            }
            int old = _conn;
            _conn = fresh;
            _handoff = false;
            // Queued control messages (hub messages, signals, a request) go out on the new connection.
            ApplyWelcomeFields(now, w);
            _queue.Configure(Limits.SignalsPerSec, now);
            LivenessConnected(now);
            if (old != 0)
            {
                Close(old, false);
            }
            if (State == HubConnectionState.Reconnecting)
            {
                // The old connection was lost while the refresh was under way: the refresh
                // connection is the resumed one; stop the reconnect race.
                foreach (int a in _attempts.Keys)
                {
                    CloseAttempt(a, false);
                }
                _attempts.Clear();
                if (_handshake != 0)
                {
                    CloseAttempt(_handshake, false);
                    _handshake = 0;
                }
                _wsStartAt = -1;
                _attemptDeadline = -1;
                _reconnectAt = -1;
                _plan.Reset();
                _connKind = _refreshKind;
                SetState(HubConnectionState.Connected);
                Emit(OutputKind.Reconnected).Name = PeerId.ToString();
            }
            foreach (PeerState p in _peers.Values)
            {
                if (p.RetryAt == long.MaxValue)
                {
                    p.RetryAt = now;
                }
            }
        }

        private void OnSessionEntered(long now, SessionInfo info, bool joined)
        {
            bool answersRequest = _request.Active;
            bool resync = !answersRequest && Session != null && joined;
            Session = info;
            _redirects.SessionEntered();
            if (answersRequest)
            {
                _request.End();
                _requestMsg = null;
                _requestDeadline = -1;
                SessionPassword = _requestPassword;
                Complete(_requestToken, info, null);
                _requestToken = 0;
            }
            HashSet<uint> present = new HashSet<uint>();
            foreach (PeerInfo pi in info.Peers)
            {
                if (pi.Id == PeerId)
                {
                    continue;
                }
                present.Add(pi.Id);
                PeerState existing = GetPeer(pi.Id);
                if (existing != null)
                {
                    existing.Info = pi;
                    if (resync && existing.Path.State != DirectState.Connected)
                    {
                        // After a resume, the peer that reconnected offers again.
                        OpenLink(now, existing, true);
                    }
                    continue;
                }
                PeerState p = AddPeer(now, pi);
                // Convention: the peer already in the session offers to the newcomer; after a resume, I offer.
                if (resync)
                {
                    OpenLink(now, p, true);
                }
            }
            List<uint> gone = new List<uint>();
            foreach (uint id in _peers.Keys)
            {
                if (!present.Contains(id))
                {
                    gone.Add(id);
                }
            }
            foreach (uint id in gone)
            {
                OnPeerLeft(id, LeaveReason.TimedOut);
            }
            Emit(OutputKind.SessionChanged);
        }

        private PeerState AddPeer(long now, PeerInfo info)
        {
            PeerState p = new PeerState();
            p.Info = info;
            p.Path = new PeerPath(_o.Path, !_o.EnableDirect);
            p.CreatedAt = now;
            p.Quality = new QualityTracker(info.Id, now);
            _peers[info.Id] = p;
            _lastSeq.Remove(info.Id);
            CoreOutput o = Emit(OutputKind.PeerJoined);
            o.Peer = info.Id;
            o.Name = info.Name;
            // The path rules: a new peer's first path is announced unless it is connecting.
            PathMaybeChanged(now, p, true);
            return p;
        }

        private void OnPeerJoined(long now, PeerInfo info)
        {
            if (Session == null || info.Id == PeerId)
            {
                return;
            }
            Session.Peers.Add(info);
            PeerState p = GetPeer(info.Id) ?? AddPeer(now, info);
            OpenLink(now, p, true);
        }

        private void OnPeerLeft(uint id, LeaveReason reason)
        {
            PeerState p = GetPeer(id);
            if (p == null)
            {
                return;
            }
            CloseLink(p);
            _peers.Remove(id);
            _lastSeq.Remove(id);
            if (Session != null)
            {
                Session.Peers.RemoveAll(x => x.Id == id);
            }
            FailInvokesTo(id, new HubException("the host left before answering"));
            CoreOutput o = Emit(OutputKind.PeerLeft);
            o.Peer = id;
            o.Reason = reason;
        }

        private void OnHostChanged(uint host)
        {
            if (Session == null)
            {
                return;
            }
            uint old = Session.Host;
            Session.Host = host;
            if (old != host)
            {
                FailInvokesTo(old, new HubException("the session host changed before answering"));
            }
            Emit(OutputKind.HostChanged).Peer = host;
            Emit(OutputKind.SessionChanged);
        }

        /// <summary>
        /// An Error never ends the connection by itself: only the transport closing does
        /// (TransportLost with its close code). too_many_join_attempts, for one, comes
        /// without a close when the address's budget is spent: it fails the pending join
        /// and the connection stays.
        /// </summary>
        private void OnError(long now, ServerMsg.Error e)
        {
            _lastError = e;
            ServerException ex = new ServerException(e.Code, e.Message);
            if (_request.Claims(e))
            {
                _redirects.ErrorAnswering();
                _request.End();
                FailRequest(ex, true);
                return;
            }
            if (e.Code != (ushort)ErrorCode.ResumeFailed)
            {
                Emit(OutputKind.ServerError).Error = ex;
            }
        }

        private void OnPong(long now, ServerMsg.Pong p)
        {
            if (RequestTracker.IsMarker(p.ClientTimeMs))
            {
                ServerMsg.Error e;
                if (_request.OnPong(p.ClientTimeMs, out e))
                {
                    FailRequest(new ServerException(e.Code, e.Message), true);
                }
                return;
            }
            RttMs = Math.Max(0, now - (long)p.ClientTimeMs);
            _liveness.Pong(now, (long)p.ClientTimeMs);
        }


        private void ClearSession()
        {
            foreach (PeerState p in _peers.Values)
            {
                CloseLink(p);
            }
            _peers.Clear();
            _lastSeq.Clear();
            Session = null;
            SessionPassword = null;
        }
    }
}
