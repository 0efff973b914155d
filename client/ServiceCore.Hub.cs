// ServiceCore, the SignalR-shaped layer over app signals: hub messages (SendAsync),
// invocations run on the session host (InvokeAsync) and their results and failures.
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
        private sealed class PendingInvoke
        {
            public int Token;
            public uint Target;
            public long Deadline;
        }

        /// <summary>SendAsync: a hub message to every other peer (to = 0) or one peer.</summary>
        public bool SendHub(long now, uint to, string name, string[] args)
        {
            if (!Online || Session == null)
            {
                return false;
            }
            HubEnvelope e = new HubEnvelope();
            e.Name = name;
            e.Args = args;
            // Same method to the same target: a newer message may take a waiting one's place when the backlog is full.
            _queue.EnqueueHub(new ClientMsg.SignalTo(to, new Signal.App(e.Encode())), to + "\n" + name);
            return true;
        }

        public bool SendApp(long now, uint to, byte[] data)
        {
            if (!Online || Session == null)
            {
                return false;
            }
            _queue.Enqueue(new ClientMsg.SignalTo(to, new Signal.App(data)));
            return true;
        }

        /// <summary>InvokeAsync: runs on the session host; completes token with the result's raw JSON.</summary>
        public void Invoke(long now, int token, string name, string[] args, long timeoutMs)
        {
            if (Session == null || (!Online && !IsHost))
            {
                Complete(token, null, new InvalidOperationException("InvokeAsync needs a session (the host runs the hub methods)"));
                return;
            }
            long id = _nextInvoke++;
            PendingInvoke pi = new PendingInvoke();
            pi.Token = token;
            pi.Target = Session.Host;
            pi.Deadline = now + (timeoutMs > 0 ? timeoutMs : _o.InvokeTimeoutMs);
            _invokes[id] = pi;
            if (IsHost)
            {
                CoreOutput o = Emit(OutputKind.InvokeRequest);
                o.Peer = PeerId;
                o.Id = id;
                o.Name = name;
                o.Args = args;
                return;
            }
            HubEnvelope e = new HubEnvelope();
            e.Type = HubEnvelope.Invoke;
            e.Id = id;
            e.Name = name;
            e.Args = args;
            _queue.Enqueue(new ClientMsg.SignalTo(Session.Host, new Signal.App(e.Encode())));
        }

        /// <summary>The host's answer to an InvokeRequest (error null: resultJson is the result).</summary>
        public void InvokeResult(long now, uint to, long id, string resultJson, string error)
        {
            if (to == PeerId)
            {
                CompleteInvoke(to, id, resultJson, error);
                return;
            }
            if (!Online)
            {
                return;
            }
            HubEnvelope e = new HubEnvelope();
            e.Id = id;
            if (error != null)
            {
                e.Type = HubEnvelope.Error;
                e.ErrorText = error;
            }
            else
            {
                e.Type = HubEnvelope.Result;
                e.ResultJson = resultJson;
            }
            _queue.Enqueue(new ClientMsg.SignalTo(to, new Signal.App(e.Encode())));
        }

        private void CompleteInvoke(uint from, long id, string resultJson, string error)
        {
            PendingInvoke pi;
            if (!_invokes.TryGetValue(id, out pi) || pi.Target != from)
            {
                return;
            }
            _invokes.Remove(id);
            Complete(pi.Token, resultJson ?? "null", error != null ? new HubException(error) : null);
        }

        private void OnApp(long now, uint from, byte[] data)
        {
            HubEnvelope e = HubEnvelope.TryDecode(data);
            if (e == null)
            {
                CoreOutput raw = Emit(OutputKind.AppData);
                raw.Peer = from;
                raw.Data = data;
                return;
            }
            if (e.Type == HubEnvelope.Send)
            {
                CoreOutput o = Emit(OutputKind.HubMessage);
                o.Peer = from;
                o.Name = e.Name;
                o.Args = e.Args;
            }
            else if (e.Type == HubEnvelope.Invoke)
            {
                if (!IsHost)
                {
                    InvokeResult(now, from, e.Id, null, "peer " + PeerId + " is not the session host");
                    return;
                }
                CoreOutput o = Emit(OutputKind.InvokeRequest);
                o.Peer = from;
                o.Id = e.Id;
                o.Name = e.Name;
                o.Args = e.Args;
            }
            else if (e.Type == HubEnvelope.Result || e.Type == HubEnvelope.Error)
            {
                CompleteInvoke(from, e.Id, e.ResultJson, e.Type == HubEnvelope.Error ? e.ErrorText : null);
            }
        }

        private void FailInvokesTo(uint target, Exception error)
        {
            List<long> ids = new List<long>();
            foreach (KeyValuePair<long, PendingInvoke> kv in _invokes)
            {
                if (kv.Value.Target == target)
                {
                    ids.Add(kv.Key);
                }
            }
            foreach (long id in ids)
            {
                Complete(_invokes[id].Token, null, error);
                _invokes.Remove(id);
            }
        }

        private void FailAllInvokes(Exception error)
        {
            foreach (PendingInvoke pi in _invokes.Values)
            {
                Complete(pi.Token, null, error);
            }
            _invokes.Clear();
        }
    }
}
