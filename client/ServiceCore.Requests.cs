// ServiceCore, session requests: CreateSession and JoinSession (one at a time, before
// or after the first Welcome), their failure, LeaveSession. Split from ServiceCore.cs
// (a partial class); the answers arrive in ServiceCore.ServerMessages.cs.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        public void CreateSession(long now, int token, uint maxPeers, string password)
        {
            BeginRequest(now, token, new ClientMsg.CreateSession(maxPeers, password), false, null, password);
        }

        public void JoinSession(long now, int token, string code, string password)
        {
            BeginRequest(now, token, new ClientMsg.JoinSession(code, password), true, code, password);
        }

        private void BeginRequest(long now, int token, ClientMsg msg, bool join, string code, string password)
        {
            if (_request.Active || _pendingRequest != null || _requestInUrlConn != 0)
            {
                Complete(token, null, new InvalidOperationException("another CreateSession/JoinSession is pending"));
                return;
            }
            if (!Online && State == HubConnectionState.Connecting)
            {
                // StartAsync is under way: sent after the Welcome (or in the URL of a
                // WebSocket attempt that starts from now on and is the only one).
                _pendingRequest = msg;
                _requestMsg = msg;
                _requestToken = token;
                _requestPassword = password;
                return;
            }
            if (!Online)
            {
                Complete(token, null, new InvalidOperationException("not connected"));
                return;
            }
            if (_request.Active)
            {
                Complete(token, null, new InvalidOperationException("another CreateSession/JoinSession is pending"));
                return;
            }
            _requestToken = token;
            _requestPassword = password;
            _requestMsg = msg;
            _requestDeadline = now + _o.RequestTimeoutMs;
            _request.Begin(token, msg, _queue);
        }

        private void FailRequest(Exception error, bool always)
        {
            _pendingRequest = null;
            _requestMsg = null;
            _requestInUrlConn = 0;
            if (!_request.Active && _requestToken == 0)
            {
                return;
            }
            _request.End();
            _requestDeadline = -1;
            Complete(_requestToken, null, error);
            _requestToken = 0;
        }

        public void LeaveSession(long now)
        {
            if (Online && Session != null)
            {
                _queue.Enqueue(new ClientMsg.LeaveSession());
            }
        }
    }
}
