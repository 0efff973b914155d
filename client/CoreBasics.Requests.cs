// Matching the server's answers to one CreateSession/JoinSession between marker Pings
// (RequestTracker): the protocol has no request ids. Split from CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>
    /// Matches the server's answers to one CreateSession/JoinSession. The protocol has
    /// no request ids, but the server handles messages in order and answers every Ping,
    /// so the request is sent between two marker Pings: an error that is not specific
    /// to sessions (rate_limited, invalid_argument, internal) belongs to the request
    /// only if it arrives after the first marker's Pong and before the second's.
    /// </summary>
    public sealed class RequestTracker
    {
        public const ulong MarkerBit = 1UL << 62;

        private ulong _nextMarker = 1;
        private ulong _before;
        private ulong _after;
        private bool _beforeSeen;
        private bool _active;
        private bool _inFirst;
        private ushort _pendingAmbiguous;
        private string _pendingAmbiguousMessage;

        public bool Active
        {
            get { return _active; }
        }

        public int Token { get; private set; }

        /// <summary>Queues Ping(before), the request, Ping(after) as one group.</summary>
        public void Begin(int token, ClientMsg request, ControlQueue queue)
        {
            _before = MarkerBit | _nextMarker++;
            _after = MarkerBit | _nextMarker++;
            _beforeSeen = false;
            _active = true;
            _inFirst = false;
            _pendingAmbiguous = 0;
            Token = token;
            queue.Enqueue(new ClientMsg.Ping(_before));
            queue.Enqueue(request);
            queue.Enqueue(new ClientMsg.Ping(_after));
        }

        /// <summary>
        /// The request went in the connection's URL (First): the server answers it right
        /// after Welcome, before anything else, so no markers are needed and every error
        /// after the Welcome is the request's (WelcomeSeen marks that point).
        /// </summary>
        public void BeginInFirst(int token)
        {
            _beforeSeen = false;
            _active = true;
            _inFirst = true;
            _pendingAmbiguous = 0;
            Token = token;
        }

        /// <summary>The Welcome of the connection that carries a First request arrived.</summary>
        public void WelcomeSeen()
        {
            if (_active && _inFirst)
            {
                _beforeSeen = true;
            }
        }

        public void End()
        {
            _active = false;
            _inFirst = false;
        }

        public static bool IsMarker(ulong clientTimeMs)
        {
            return (clientTimeMs & MarkerBit) != 0;
        }

        /// <summary>
        /// A Pong. Returns true when the request ended without an answer: the second
        /// marker came back, and an error between the markers (say rate_limited) was
        /// the request's. error then holds it.
        /// </summary>
        public bool OnPong(ulong clientTimeMs, out ServerMsg.Error error)
        {
            error = null;
            if (!_active)
            {
                return false;
            }
            if (clientTimeMs == _before)
            {
                _beforeSeen = true;
            }
            else if (clientTimeMs == _after && _pendingAmbiguous != 0)
            {
                error = new ServerMsg.Error(_pendingAmbiguous, _pendingAmbiguousMessage);
                _active = false;
                return true;
            }
            return false;
        }

        /// <summary>True when this error answers the pending request.</summary>
        public bool Claims(ServerMsg.Error error)
        {
            if (!_active)
            {
                return false;
            }
            // Which codes can answer a request at all: the errors rule (ErrorRules.AnswersRequest,
            // replayed from docs/client-vectors.json). Those specific to sessions are the request's
            // whenever one is pending; internal and invalid_argument only between the markers.
            bool ambiguous = error.Code == (ushort)ErrorCode.Internal || error.Code == (ushort)ErrorCode.InvalidArgument;
            if (ErrorRules.AnswersRequest(error.Code) && !ambiguous)
            {
                return true;
            }
            if (_inFirst)
            {
                return _beforeSeen;
            }
            if (_beforeSeen && ambiguous)
            {
                return true;
            }
            if (_beforeSeen && error.Code == (ushort)ErrorCode.RateLimited)
            {
                // The request or the second marker was dropped; the second marker's Pong decides.
                _pendingAmbiguous = error.Code;
                _pendingAmbiguousMessage = error.Message;
                return false;
            }
            return false;
        }
    }
}
