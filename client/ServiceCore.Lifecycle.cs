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
            _reconnectAttempt = 0;
            SetState(HubConnectionState.Connecting);
            BeginRace(now);
        }

        private void BeginRace(long now)
        {
            _attempts.Clear();
            _wsStartAt = -1;
            _attemptDeadline = now + _o.ConnectTimeoutMs;
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
            if (quic)
            {
                StartAttempt(TransportKind.Quic, false);
                if (ws)
                {
                    _wsStartAt = now + _o.QuicFallbackDelayMs;
                }
            }
            else if (ws)
            {
                StartAttempt(TransportKind.WebSocket, false);
            }
            else
            {
                _attemptDeadline = -1;
                ConnectFailed(now, new PlatformNotSupportedException("QUIC is not supported here and WebSocket is switched off"));
            }
        }

        private int StartAttempt(TransportKind kind, bool refresh)
        {
            // Alone: no other attempt can connect and take the seat (QUIC has failed or is
            // off, no refresh connection is under way). Only then may a resume token or a
            // session request go in the URL: the server acts on a URL's Hello at the
            // upgrade, so a losing attempt would otherwise take the seat over (`replaced`)
            // or join a session. A fresh Hello in a losing attempt only makes a peer that
            // the close with 1000 removes at once (CloseAttempt).
            bool alone = refresh || (_attempts.Count == 0 && _refreshConn == 0);
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
                // From here the attempt deadline is the handshake's (the Welcome must come within it).
                _attemptDeadline = now + _o.HandshakeTimeoutMs;
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
            if (kind == TransportKind.Quic && _wsStartAt >= 0)
            {
                _wsStartAt = now;
            }
            else if (_attempts.Count == 0 && _wsStartAt < 0)
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
            ScheduleReconnect(now, error, -1);
        }

        /// <summary>The connection (or a handshaking one) ended: error, close or end of stream.</summary>
        public void TransportLost(long now, int conn, Exception error, ushort closeCode)
        {
            _helloInUrl.Remove(conn);
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
                closeCode = closeCode == (ushort)ErrorCode.Replaced ? (ushort)0 : closeCode;
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
            FailRequest(new ServerException((ushort)ErrorCode.Internal, "connection lost"), false);
            if (_stopping)
            {
                return;
            }
            if (closeCode != 0 && NoReconnect.Contains(closeCode))
            {
                // The Error sent just before the close says why, in the server's words.
                ServerMsg.Error last = _lastError;
                GiveUp(last != null && last.Code == closeCode
                    ? new ServerException(closeCode, last.Message)
                    : error ?? new ServerException(closeCode, "closed by the server"));
                return;
            }
            if (wasHandshake && State == HubConnectionState.Connecting)
            {
                ConnectFailed(now, error);
                return;
            }
            ScheduleReconnect(now, error, -1);
        }


        private void ScheduleReconnect(long now, Exception error, long delayOverride)
        {
            if (!_policy.Enabled && delayOverride < 0)
            {
                GiveUp(error);
                return;
            }
            long delay = delayOverride >= 0 ? delayOverride : _policy.Delay(_reconnectAttempt, _random);
            if (delay < 0)
            {
                GiveUp(error);
                return;
            }
            if (State != HubConnectionState.Reconnecting)
            {
                SetState(HubConnectionState.Reconnecting);
                Emit(OutputKind.Reconnecting).Error = error;
            }
            if (delayOverride < 0)
            {
                _reconnectAttempt++;
            }
            _reconnectAt = now + delay;
        }

        private void GiveUp(Exception error)
        {
            _reconnectAt = -1;
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
            SetState(HubConnectionState.Disconnected);
            Emit(OutputKind.Closed).Error = error;
        }

        /// <summary>StopAsync: leaves for good (close code 0 / 1000).</summary>
        public void Stop(long now)
        {
            _stopping = true;
            _handoff = false;
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
