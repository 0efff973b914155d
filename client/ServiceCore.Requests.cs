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
            StampRegions(msg, ServerVersion, now);
            _request.Begin(token, msg, _queue);
        }

        /// <summary>
        /// Sets a CreateSession's or JoinSession's region_rtts for a connection speaking
        /// `version` (PROTOCOL.md section 4): from version 4 what the last measurement gave
        /// while fresh (else an empty list: a request never waits for one); before it none.
        /// Done each time the request goes out (a redirect may lead to another version).
        /// </summary>
        private void StampRegions(ClientMsg msg, ushort version, long now)
        {
            List<RegionRtt> rtts = version >= Wire.RegionProtocolVersion ? _regions.ForRequest(now) : null;
            ClientMsg.CreateSession c = msg as ClientMsg.CreateSession;
            if (c != null)
            {
                c.RegionRtts = rtts;
            }
            ClientMsg.JoinSession j = msg as ClientMsg.JoinSession;
            if (j != null)
            {
                j.RegionRtts = rtts;
            }
        }

        /// <summary>What a request would carry now (RegionRtts of the service): the fresh measurement, or empty.</summary>
        public List<RegionRtt> RegionRttsAt(long now)
        {
            return _regions.ForRequest(now);
        }

        /// <summary>The shell's measurement (OutputKind.MeasureRegions) ended: these regions answered in time.</summary>
        public void RegionsMeasured(long now, List<RegionRtt> measured)
        {
            _regions.End(now, measured);
        }

        /// <summary>After a Welcome: start a measurement off the join's path if none is fresh (PROTOCOL.md section 11).</summary>
        private void MaybeMeasureRegions(long now, ushort welcomeVersion)
        {
            if (!_regions.ShouldMeasure(now, _o.RegionMeasurementEnabled, welcomeVersion))
            {
                return;
            }
            _regions.Begin(now);
            CoreOutput o = Emit(OutputKind.MeasureRegions);
            o.Server = _rotation.Current;
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
