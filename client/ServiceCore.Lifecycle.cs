// ServiceCore, connection lifecycle: Start (with a first request), the QUIC/WebSocket
// race and its attempts, the Hello, a transport that failed or was lost, the reconnect
// schedule, giving up, Stop. Split from ServiceCore.cs (a partial class) so each file
// holds one seam of the state machine; the state itself is declared in ServiceCore.cs.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        /// <summary>StartAsync: completes token when the first Welcome arrives (or fails).</summary>
        public void Start(long now, int token)
        {
            Start(now, token, null, 0);
        }

        /// <summary>
        /// StartAsync with a first CreateSession/JoinSession (requestToken completes with
        /// its SessionInfo). A WebSocket attempt that is the only one carries it in its
        /// URL, so Welcome and the answer come in the connect's round trip; otherwise it
        /// is sent right after the Welcome.
        /// </summary>
        public void Start(long now, int token, ClientMsg request, int requestToken)
        {
            if (State != HubConnectionState.Disconnected)
            {
                Complete(token, null, new InvalidOperationException("already started"));
                Complete(requestToken, null, new InvalidOperationException("already started"));
                return;
            }
            if (request != null)
            {
                ClientMsg.CreateSession create = request as ClientMsg.CreateSession;
                ClientMsg.JoinSession join = request as ClientMsg.JoinSession;
                if (create == null && join == null)
                {
                    Complete(token, null, new ArgumentException("the first request is CreateSession or JoinSession"));
                    Complete(requestToken, null, new ArgumentException("the first request is CreateSession or JoinSession"));
                    return;
                }
                _pendingRequest = request;
                _requestMsg = request;
                _requestToken = requestToken;
                _requestPassword = create != null ? create.Password : join.Password;
            }
            _stopping = false;
            _startToken = token;
            _plan.Reset();
            SetState(HubConnectionState.Connecting);
            BeginRace(now);
        }

        private void BeginRace(long now)
        {
            _raceStartedAt = now;
            _attempts.Clear();
            _wsStartAt = -1;
            if (State == HubConnectionState.Reconnecting)
            {
                // Rule 5: a reconnection attempt gets min(ConnectTimeout, max(3000, 2000 + 8·srtt)).
                _attemptDeadline = now + Timeouts.AttemptMs(_liveness.SrttMs ?? 0, _o.ConnectTimeoutMs);
                if (_plan.Active)
                {
                    if (!_plan.WithToken)
                    {
                        // Past the grace, or SignalR's retries (rule 7): a fresh connection, then
                        // rejoin by code (OnWelcome, after_reconnect).
                        ResumeToken = null;
                    }
                    _plan.Started();
                }
            }
            else
            {
                _attemptDeadline = now + _o.ConnectTimeoutMs;
            }
            if (_requestInUrlConn != 0 && _requestMsg != null)
            {
                // The attempt whose URL carried the request never got its Welcome (it could
                // not reach a redirect's node, or timed out): the request goes with this race.
                _pendingRequest = _requestMsg;
                _requestInUrlConn = 0;
                _request.End();
            }
            ServerEndpoint at = _rotation.Current;
            bool quic = _o.QuicAllowed && _o.QuicSupported && (at == null || at.Reaches(TransportKind.Quic));
            bool ws = _o.WebSocketAllowed && (at == null || at.Reaches(TransportKind.WebSocket));
            if (quic || ws)
            {
                // The race rule: QUIC first, the WebSocket after the fallback delay (or alone).
                long wsAfter;
                TransportKind first = Race.Start(quic, _o.QuicFallbackDelayMs, out wsAfter);
                StartAttempt(first, false, now);
                if (first == TransportKind.Quic && ws)
                {
                    _wsStartAt = now + wsAfter;
                }
            }
            else
            {
                _attemptDeadline = -1;
                ConnectFailed(now, new PlatformNotSupportedException("QUIC is not supported here and WebSocket is switched off"));
            }
        }

        private int StartAttempt(TransportKind kind, bool refresh, long now)
        {
            // Alone: no other attempt can connect and take the seat (QUIC has failed or is
            // off, no refresh connection is under way). Only then may a resume token or a
            // session request go in the URL: the server acts on a URL's Hello at the
            // upgrade, so a losing attempt would otherwise take the seat over (`replaced`)
            // or join a session. A fresh Hello in a losing attempt only makes a peer that
            // the close with 1000 removes at once (CloseAttempt).
            bool alone = refresh || (Race.CarriesFirst(_attempts.Count) && _refreshConn == 0);
            int id = _nextConn++;
            if (!refresh)
            {
                _attempts[id] = kind;
            }
            CoreOutput o = Emit(OutputKind.Connect);
            o.Conn = id;
            o.Transport = kind;
            o.Resume = ResumeToken != null;
            o.Server = _rotation.Current;
            if (kind == TransportKind.WebSocket && _o.FirstInUrl && (alone || ResumeToken == null))
            {
                ClientMsg request = alone && !refresh && ResumeToken == null ? _pendingRequest : null;
                // Read at the Hello's version (PROTOCOL.md section 4): its region_rtts are
                // what a measurement of an earlier connection left, while fresh.
                StampRegions(request, MakeHello().Version, now);
                try
                {
                    o.First = First.Encode(MakeHello(), request);
                }
                catch (ArgumentException)
                {
                    // Longer than the server takes in a URL (cannot happen within the
                    // limits on names and passwords): send the request after the Welcome.
                    request = null;
                    o.First = First.Encode(MakeHello(), null);
                }
                _helloInUrl[id] = ResumeToken != null;
                if (request != null)
                {
                    _pendingRequest = null;
                    _requestInUrlConn = id;
                }
            }
            return id;
        }

        /// <summary>
        /// Closes an attempt or a connection that is not (or no longer) the connection.
        /// One whose URL carried a fresh Hello leaves at once (1000): its peer is nobody's.
        /// One that carried a resume token keeps the seat (4000) unless the service stops.
        /// </summary>
        private void CloseAttempt(int conn, bool stopping)
        {
            bool token;
            Close(conn, _helloInUrl.TryGetValue(conn, out token) && (!token || stopping));
        }

        /// <summary>A transport attempt connected (handshake done, control stream open).</summary>
        public void TransportConnected(long now, int conn)
        {
            if (_move.Moving && conn == _moveNew)
            {
                if (!_helloInUrl.ContainsKey(conn))
                {
                    SendHello(conn, now, true);
                }
                return;
            }
            if (conn == _refreshConn)
            {
                if (!_helloInUrl.ContainsKey(conn))
                {
                    SendHello(conn, now, true);
                }
                return;
            }
            TransportKind kind;
            if (!_attempts.TryGetValue(conn, out kind) || _handshake != 0)
            {
                CloseAttempt(conn, false);
                return;
            }
            _attempts.Remove(conn);
            foreach (int loser in _attempts.Keys)
            {
                CloseAttempt(loser, false);
            }
            _attempts.Clear();
            _wsStartAt = -1;
            _handshake = conn;
            _handshakeKind = kind;
            _handshakeAt = now;
            _raceDeadline = _attemptDeadline;
            if (_o.HandshakeTimeoutMs > 0)
            {
                // From here the attempt deadline is the handshake's (the Welcome must come within
                // it); a reconnection attempt keeps rule 6's timeout for the whole attempt
                // (transport up, then the Welcome) when that is sooner.
                _attemptDeadline = HandshakeDeadline(now + _o.HandshakeTimeoutMs);
            }
            _queue.Clear();
            _queue.Configure(0, now);
            if (conn == _requestInUrlConn)
            {
                // Welcome, then the request's answer, are the first messages.
                _request.BeginInFirst(_requestToken);
            }
            if (!_helloInUrl.ContainsKey(conn))
            {
                SendHello(conn, now, false);
            }
        }

        private ClientMsg.Hello MakeHello()
        {
            ClientMsg.Hello hello = new ClientMsg.Hello();
            hello.Client = ClientKind.DotNet;
            hello.RelayMode = _o.RelayMode;
            hello.Name = _o.DisplayName ?? "";
            hello.ResumeToken = ResumeToken;
            // Version 5 (the fields of version 4): this client follows a session move
            // make-before-break (rule 10, ServiceCore.Move.cs). With it come version 3's
            // Report (sent only with TelemetryEnabled) and version 4's region_rtts (empty
            // lists without RegionMeasurementEnabled).
            hello.Version = Wire.MoveProtocolVersion;
            return hello;
        }

        private void SendHello(int conn, long now, bool direct)
        {
            CoreOutput o = Emit(OutputKind.SendControl);
            o.Conn = conn;
            o.Message = MakeHello();
        }

        /// <summary>A transport attempt failed before connecting.</summary>
        public void TransportFailed(long now, int conn, Exception error)
        {
            _helloInUrl.Remove(conn);
            if (MoveTransportLost(now, conn, error))
            {
                return;
            }
            if (conn == _refreshConn)
            {
                _refreshConn = 0;
                _refreshAt = now + 30000;
                return;
            }
            TransportKind kind;
            if (!_attempts.TryGetValue(conn, out kind))
            {
                return;
            }
            _attempts.Remove(conn);
            bool startWebSocket;
            bool lost = Race.Failed(kind, _attempts.Count, _wsStartAt < 0, out startWebSocket);
            if (startWebSocket)
            {
                _wsStartAt = now;
            }
            else if (lost)
            {
                ConnectFailed(now, error);
            }
        }

        private void ConnectFailed(long now, Exception error)
        {
            _attemptDeadline = -1;
            if (State == HubConnectionState.Connecting && _rotation.Target != null)
            {
                // A redirect's node cannot be reached: the configured servers instead.
                _rotation.Unreachable();
                BeginRace(now);
                return;
            }
            _rotation.Unreachable();
            if (State == HubConnectionState.Connecting)
            {
                FailRequest(error ?? new TimeoutException("connect failed"), true);
                SetState(HubConnectionState.Disconnected);
                Complete(_startToken, null, error);
                _startToken = 0;
                return;
            }
            AttemptFailed(now, error);
        }

        /// <summary>The connection (or a handshaking one) ended: error, close or end of stream.</summary>
        public void TransportLost(long now, int conn, Exception error, ushort closeCode)
        {
            _helloInUrl.Remove(conn);
            if (MoveTransportLost(now, conn, error))
            {
                // Rule 10: a move's old connection closing (code 20 from the old node, or
                // any) or its new one failing: what the move table says, no reconnect of its own.
                return;
            }
            if (conn == _refreshConn)
            {
                _refreshConn = 0;
                _refreshAt = now + 30000;
                if (!_handoff)
                {
                    return;
                }
                // The old connection is already gone: this is the loss of the connection.
                _handoff = false;
                _conn = conn;
                closeCode = closeCode == (ushort)ErrorCode.Replaced ? CloseVerdict.NoCode : closeCode;
            }
            if (_attempts.ContainsKey(conn))
            {
                TransportFailed(now, conn, error);
                return;
            }
            if (conn != _conn && conn != _handshake)
            {
                return;
            }
            if (conn == _conn && closeCode == (ushort)ErrorCode.Replaced && _refreshConn != 0)
            {
                // Make-before-break: the refresh connection took the seat over; its Welcome
                // follows. Queued control messages wait for it; nothing is redialled.
                _conn = 0;
                _handoff = true;
                return;
            }
            bool wasHandshake = conn == _handshake;
            _conn = 0;
            _handshake = 0;
            _queue.Clear();
            _liveness.Disconnected();
            FailRequest(new ServerException((ushort)ErrorCode.Internal, "connection lost"), false);
            if (_stopping)
            {
                return;
            }
            ServerMsg.Error last = _lastError;
            if (wasHandshake)
            {
                // An attempt refused or closed before its Welcome: retried, or final (errors: attempt_failure).
                ushort code = closeCode != CloseVerdict.NoCode ? closeCode : (last != null ? last.Code : CloseVerdict.NoCode);
                if (!ErrorRules.AttemptRetried(code))
                {
                    GiveUp(last != null && last.Code == code ? new ServerException(code, last.Message)
                        : error ?? new ServerException(code, "closed by the server"));
                    return;
                }
                if (State == HubConnectionState.Connecting)
                {
                    ConnectFailed(now, error);
                    return;
                }
                AttemptFailed(now, error);
                return;
            }
            CloseFacts facts = new CloseFacts();
            facts.Code = closeCode;
            facts.ErrorBefore = last != null ? last.Code : CloseVerdict.NoCode;
            facts.AutoResume = _policy.Enabled;
            long delay;
            CloseAction action = CloseVerdict.Decide(facts, out delay);
            if (action == CloseAction.GiveUp)
            {
                // The Error sent just before the close says why, in the server's words.
                ushort why = closeCode != CloseVerdict.NoCode ? closeCode : facts.ErrorBefore;
                GiveUp(last != null && last.Code == why ? new ServerException(why, last.Message)
                    : error ?? (why != CloseVerdict.NoCode ? new ServerException(why, "closed by the server") : null));
                return;
            }
            LostConnection(now, error, delay);
        }

        /// <summary>The connection is lost (close verdict: resume, or resume after delayMs): Reconnecting, and the plan's first attempt.</summary>
        private void LostConnection(long now, Exception error, long delayMs)
        {
            if (!_plan.Active)
            {
                _plan.GraceMs = Limits.ResumeGraceMs;
                _plan.Lost(now, delayMs);
            }
            else
            {
                // Lost again before a Welcome (a refresh hand-over that failed): the plan goes on.
                _plan.Failed(now, _random.NextDouble());
            }
            EnterReconnecting(error);
            _reconnectAt = _plan.NextAt;
            if (_reconnectAt < 0)
            {
                GiveUp(error);
            }
        }

        /// <summary>A reconnection attempt failed: the plan's next one, or give up (Closed).</summary>
        private void AttemptFailed(long now, Exception error)
        {
            if (!_plan.Active)
            {
                LostConnection(now, error, 0);
                return;
            }
            long at = _plan.Failed(now, _random.NextDouble());
            if (at < 0)
            {
                GiveUp(error);
                return;
            }
            EnterReconnecting(error);
            _reconnectAt = at;
        }

        /// <summary>A Redirect: the next attempt at once, to where it leads (redirects follow even without a retry policy).</summary>
        private void RedirectReconnect(long now, Exception error)
        {
            if (!_plan.Active)
            {
                _plan.GraceMs = Limits.ResumeGraceMs;
            }
            EnterReconnecting(error);
            _reconnectAt = _plan.Redirected(now);
        }

        private void EnterReconnecting(Exception error)
        {
            if (State != HubConnectionState.Reconnecting)
            {
                SetState(HubConnectionState.Reconnecting);
                Emit(OutputKind.Reconnecting).Error = error;
            }
        }

        private void GiveUp(Exception error)
        {
            AbandonMove(false);
            _reconnectAt = -1;
            _plan.Reset();
            _liveness.Disconnected();
            _attemptDeadline = -1;
            foreach (int a in _attempts.Keys)
            {
                CloseAttempt(a, false);
            }
            _attempts.Clear();
            if (_conn != 0)
            {
                Close(_conn, false);
                _conn = 0;
            }
            if (_refreshConn != 0)
            {
                Close(_refreshConn, true);
                _refreshConn = 0;
            }
            _handoff = false;
            ClearSession();
            FailAllInvokes(error ?? new HubException("connection closed"));
            if (State == HubConnectionState.Connecting)
            {
                // The first connect was refused for good (a fatal code before any Welcome,
                // e.g. token_required): StartAsync fails with it, as SignalR's does, and
                // Closed is not raised for a connection that never was.
                FailRequest(error ?? new HubException("connect refused"), true);
                SetState(HubConnectionState.Disconnected);
                Complete(_startToken, null, error ?? new HubException("connect refused"));
                _startToken = 0;
                return;
            }
            SetState(HubConnectionState.Disconnected);
            Emit(OutputKind.Closed).Error = error;
        }

        /// <summary>StopAsync: leaves for good (close code 0 / 1000).</summary>
        public void Stop(long now)
        {
            _stopping = true;
            _handoff = false;
            AbandonMove(true);
            if (_conn != 0)
            {
                Close(_conn, true);
            }
            if (_handshake != 0)
            {
                Close(_handshake, true);
            }
            if (_refreshConn != 0)
            {
                Close(_refreshConn, true);
                _refreshConn = 0;
            }
            _conn = 0;
            _handshake = 0;
            foreach (int a in _attempts.Keys)
            {
                CloseAttempt(a, true);
            }
            _attempts.Clear();
            _reconnectAt = -1;
            _plan.Reset();
            _liveness.Disconnected();
            _attemptDeadline = -1;
            FailRequest(new OperationCanceledException("stopped"), true);
            Complete(_startToken, null, new OperationCanceledException("stopped"));
            _startToken = 0;
            ClearSession();
            FailAllInvokes(new HubException("connection stopped"));
            ResumeToken = null;
            if (State != HubConnectionState.Disconnected)
            {
                SetState(HubConnectionState.Disconnected);
                Emit(OutputKind.Closed);
            }
        }

        private void Close(int conn, bool leave)
        {
            CoreOutput o = Emit(OutputKind.CloseTransport);
            o.Conn = conn;
            o.Leave = leave;
        }
    }
}
