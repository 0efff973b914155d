// The server hub, ported to the session host. With SignalR an app calls
// SendAsync("SendMessage", ...) and a server-side hub broadcasts "ReceiveMessage"; here
// there is no app server, so the hub class runs on the session host:
//
//   public class ChatHub : Hub          // the server's hub class, unchanged but for its usings
//   {
//       public Task SendMessage(string user, string text) => Clients.All.SendAsync("ReceiveMessage", user, text);
//   }
//   connection.MapHub<ChatHub>();       // on every instance: the host's copy answers
//   connection.On<string, string>("ReceiveMessage", Show);
//   await connection.SendAsync("SendMessage", "ann", "hello");   // to the host's hub, from any peer
//
// SendAsync/SendCoreAsync of a mapped hub method goes to the session host only (run at
// once when this peer is the host); InvokeAsync of one returns the method's result. The
// host runs a new hub object per call, with Clients (All, Others, Caller, Client(id),
// AllExcept) and Context.ConnectionId (the caller's peer id); OnConnectedAsync and
// OnDisconnectedAsync run on the host when another peer joins or leaves the session. A
// non-host that receives a hub method (the host changed meanwhile) drops it.
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    /// <summary>SignalR's Hub, run on the session host (see MapHub).</summary>
    public abstract class Hub : IDisposable
    {
        public IHubCallerClients Clients { get; set; }

        public HubCallerContext Context { get; set; }

        public virtual Task OnConnectedAsync()
        {
            return Task.FromResult(0);
        }

        public virtual Task OnDisconnectedAsync(Exception exception)
        {
            return Task.FromResult(0);
        }

        public void Dispose()
        {
            Dispose(true);
        }

        protected virtual void Dispose(bool disposing)
        {
        }
    }

    /// <summary>SignalR's HubCallerContext: who called (ConnectionId is the caller's peer id).</summary>
    public sealed class HubCallerContext
    {
        public HubCallerContext(uint callerPeerId)
        {
            CallerPeerId = callerPeerId;
        }

        public uint CallerPeerId { get; private set; }

        public string ConnectionId
        {
            get { return CallerPeerId.ToString(CultureInfo.InvariantCulture); }
        }
    }

    /// <summary>SignalR's IClientProxy: hub messages to one or more peers' On handlers.</summary>
    public interface IClientProxy
    {
        Task SendCoreAsync(string method, object[] args, CancellationToken cancellationToken = default(CancellationToken));
    }

    /// <summary>SignalR's IHubCallerClients (the part a session has: no groups, no users).</summary>
    public interface IHubCallerClients
    {
        IClientProxy All { get; }

        IClientProxy Others { get; }

        IClientProxy Caller { get; }

        IClientProxy Client(string connectionId);

        IClientProxy AllExcept(IReadOnlyList<string> excludedConnectionIds);
    }

    /// <summary>SignalR's ClientProxyExtensions.SendAsync with 0 to 10 arguments.</summary>
    public static class ClientProxyExtensions
    {
        public static Task SendAsync(this IClientProxy c, string method, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new object[0], ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, object a4, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3, a4 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, object a4, object a5, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3, a4, a5 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, object a4, object a5, object a6, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3, a4, a5, a6 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, object a4, object a5, object a6, object a7, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3, a4, a5, a6, a7 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, object a4, object a5, object a6, object a7, object a8, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3, a4, a5, a6, a7, a8 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, object a4, object a5, object a6, object a7, object a8, object a9, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3, a4, a5, a6, a7, a8, a9 }, ct); }
        public static Task SendAsync(this IClientProxy c, string method, object a1, object a2, object a3, object a4, object a5, object a6, object a7, object a8, object a9, object a10, CancellationToken ct = default(CancellationToken)) { return c.SendCoreAsync(method, new[] { a1, a2, a3, a4, a5, a6, a7, a8, a9, a10 }, ct); }
    }

    /// <summary>Which peers a hub's Clients.X names (pure: tested without a network).</summary>
    public static class HubAudience
    {
        /// <summary>
        /// The peers to send to (AllPeers for "every other peer than me") and whether this peer's
        /// own handlers run too. kind: "all", "others", "caller", "client" (target), "except" (excluded).
        /// </summary>
        public static List<uint> Resolve(string kind, uint me, uint caller, uint target, ICollection<uint> excluded, IEnumerable<uint> sessionPeers, out bool local)
        {
            List<uint> to = new List<uint>();
            local = false;
            switch (kind)
            {
                case "all":
                    to.Add(WebRTCP2PService.AllPeers);
                    local = true;
                    break;
                case "others":
                    if (caller == me)
                    {
                        to.Add(WebRTCP2PService.AllPeers);
                    }
                    else
                    {
                        foreach (uint p in sessionPeers)
                        {
                            if (p != me && p != caller)
                            {
                                to.Add(p);
                            }
                        }
                        local = true;
                    }
                    break;
                case "caller":
                    if (caller == me)
                    {
                        local = true;
                    }
                    else
                    {
                        to.Add(caller);
                    }
                    break;
                case "client":
                    if (target == me)
                    {
                        local = true;
                    }
                    else
                    {
                        to.Add(target);
                    }
                    break;
                case "except":
                    foreach (uint p in sessionPeers)
                    {
                        if (p != me && !excluded.Contains(p))
                        {
                            to.Add(p);
                        }
                    }
                    local = !excluded.Contains(me);
                    break;
                default:
                    throw new ArgumentException("unknown audience " + kind, "kind");
            }
            return to;
        }
    }

    public partial class WebRTCP2PService
    {
        // The peer whose hub message or invocation is being handled (set by Dispatch).
        private static readonly AsyncLocal<uint> s_caller = new AsyncLocal<uint>();
        private readonly Dictionary<string, bool> _hubMethods = new Dictionary<string, bool>(StringComparer.Ordinal);

        /// <summary>Dispatch calls it before running the handlers of a message from peer.</summary>
        private static void SetCaller(uint peer)
        {
            s_caller.Value = peer;
        }

        /// <summary>
        /// Maps THub's public methods (those it declares, and its bases up to Hub) as hub methods
        /// that run on the session host: SendAsync/InvokeAsync of them from any peer reach the
        /// host's copy. Call it on every instance of the app, as SignalR's server maps its hub.
        /// </summary>
        public void MapHub<THub>() where THub : Hub, new()
        {
            MapHub<THub>(() => new THub());
        }

        public void MapHub<THub>(Func<THub> factory) where THub : Hub
        {
            if (factory == null)
            {
                throw new ArgumentNullException("factory");
            }
            for (Type t = typeof(THub); t != null && t != typeof(Hub); t = t.BaseType)
            {
                foreach (MethodInfo m in t.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
                {
                    if (m.IsSpecialName || m.IsGenericMethodDefinition || m.Name == "OnConnectedAsync" || m.Name == "OnDisconnectedAsync")
                    {
                        continue;
                    }
                    MapHubMethod(m, () => factory());
                }
            }
            // The hub's OnConnectedAsync/OnDisconnectedAsync, on the host, as peers join and leave.
            PeerJoined += (peer, name) => RunHubLifecycle(factory, peer, h => h.OnConnectedAsync());
            PeerLeft += (peer, reason) => RunHubLifecycle(factory, peer, h => h.OnDisconnectedAsync(null));
        }

        private void RunHubLifecycle<THub>(Func<THub> factory, uint peer, Func<Hub, Task> call) where THub : Hub
        {
            if (!IsHost || peer == PeerId)
            {
                return;
            }
            // Started here on the event thread, not waited for (as an On handler): it may await
            // InvokeAsync to the host, whose handler is a later event.
            Observe(RunHubLifecycleAsync(factory(), peer, call));
        }

        private async Task RunHubLifecycleAsync(Hub hub, uint peer, Func<Hub, Task> call)
        {
            try
            {
                hub.Clients = new CallerClients(this, peer);
                hub.Context = new HubCallerContext(peer);
                await call(hub).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // As a handler's: the hub's exception does not stop the event thread.
            }
            finally
            {
                hub.Dispose();
            }
        }

        private void MapHubMethod(MethodInfo method, Func<Hub> factory)
        {
            ParameterInfo[] ps = method.GetParameters();
            Type[] types = new Type[ps.Length];
            for (int i = 0; i < ps.Length; i++)
            {
                types[i] = ps[i].ParameterType;
            }
            lock (_hubMethods)
            {
                _hubMethods[method.Name] = true;
            }
            On(method.Name, types, args => RunHubMethod(method, factory, args));
        }

        private async Task<object> RunHubMethod(MethodInfo method, Func<Hub> factory, object[] args)
        {
            uint caller = s_caller.Value;
            if (!IsHost)
            {
                // Sent while the host changed: only the host's hub runs.
                return null;
            }
            Hub hub = factory();
            try
            {
                hub.Clients = new CallerClients(this, caller);
                hub.Context = new HubCallerContext(caller);
                object r;
                try
                {
                    r = method.Invoke(hub, args);
                }
                catch (TargetInvocationException e)
                {
                    throw e.InnerException ?? e;
                }
                Task t = r as Task;
                if (t == null)
                {
                    return r;
                }
                await t.ConfigureAwait(false);
                Type declared = method.ReturnType;
                bool hasResult = declared.IsGenericType && declared.GetGenericTypeDefinition() == typeof(Task<>);
                return hasResult ? declared.GetProperty("Result").GetValue(t) : null;
            }
            finally
            {
                hub.Dispose();
            }
        }

        /// <summary>SendCoreAsync calls it first: a mapped hub method goes to the session host only.</summary>
        private bool TryHubSend(string methodName, object[] args, CancellationToken cancellationToken, out Task sent)
        {
            sent = null;
            lock (_hubMethods)
            {
                if (!_hubMethods.ContainsKey(methodName))
                {
                    return false;
                }
            }
            uint host;
            uint me;
            SessionInfo session;
            lock (_gate)
            {
                session = _core.Session;
                me = _core.PeerId;
            }
            if (session == null)
            {
                sent = Fail("not connected to a session");
                return true;
            }
            host = session.Host;
            if (host == me)
            {
                string[] raw = SerializeArgs(args);
                Post(() => Observe(DispatchLocalAsync(methodName, raw, me)));
                sent = Task.FromResult(0);
            }
            else
            {
                sent = SendToPeerCoreAsync(host, methodName, args, cancellationToken);
            }
            return true;
        }

        /// <summary>
        /// Runs this peer's own handlers of a hub message, as if from peer caller: started on the
        /// event thread, not waited for (as a remote message's), so a hub method may await
        /// InvokeAsync to the host.
        /// </summary>
        private async Task DispatchLocalAsync(string methodName, string[] raw, uint caller)
        {
            Handler[] hs;
            lock (_handlers)
            {
                List<Handler> list;
                hs = _handlers.TryGetValue(methodName, out list) ? list.ToArray() : new Handler[0];
            }
            SetCaller(caller);
            foreach (Handler h in hs)
            {
                try
                {
                    await h.Run(h.Bind(raw, _serializer)).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // As for a remote message: a handler's exception does not stop the others.
                }
            }
        }

        /// <summary>A hub's Clients for one call from caller.</summary>
        private sealed class CallerClients : IHubCallerClients
        {
            private readonly WebRTCP2PService _svc;
            private readonly uint _caller;

            public CallerClients(WebRTCP2PService svc, uint caller)
            {
                _svc = svc;
                _caller = caller;
            }

            public IClientProxy All
            {
                get { return new Proxy(_svc, "all", _caller, 0, null); }
            }

            public IClientProxy Others
            {
                get { return new Proxy(_svc, "others", _caller, 0, null); }
            }

            public IClientProxy Caller
            {
                get { return new Proxy(_svc, "caller", _caller, 0, null); }
            }

            public IClientProxy Client(string connectionId)
            {
                return new Proxy(_svc, "client", _caller, uint.Parse(connectionId, CultureInfo.InvariantCulture), null);
            }

            public IClientProxy AllExcept(IReadOnlyList<string> excludedConnectionIds)
            {
                HashSet<uint> ex = new HashSet<uint>();
                foreach (string id in excludedConnectionIds)
                {
                    ex.Add(uint.Parse(id, CultureInfo.InvariantCulture));
                }
                return new Proxy(_svc, "except", _caller, 0, ex);
            }
        }

        private sealed class Proxy : IClientProxy
        {
            private readonly WebRTCP2PService _svc;
            private readonly string _kind;
            private readonly uint _caller;
            private readonly uint _target;
            private readonly HashSet<uint> _excluded;

            public Proxy(WebRTCP2PService svc, string kind, uint caller, uint target, HashSet<uint> excluded)
            {
                _svc = svc;
                _kind = kind;
                _caller = caller;
                _target = target;
                _excluded = excluded ?? new HashSet<uint>();
            }

            public Task SendCoreAsync(string method, object[] args, CancellationToken cancellationToken = default(CancellationToken))
            {
                uint me;
                List<uint> peers = new List<uint>();
                lock (_svc._gate)
                {
                    me = _svc._core.PeerId;
                    SessionInfo s = _svc._core.Session;
                    if (s != null)
                    {
                        foreach (PeerInfo p in s.Peers)
                        {
                            peers.Add(p.Id);
                        }
                    }
                }
                bool local;
                List<uint> to = HubAudience.Resolve(_kind, me, _caller, _target, _excluded, peers, out local);
                List<Task> sends = new List<Task>();
                foreach (uint p in to)
                {
                    sends.Add(_svc.SendToPeerCoreAsync(p, method, args, cancellationToken));
                }
                if (local)
                {
                    string[] raw = _svc.SerializeArgs(args);
                    _svc.Post(() => Observe(_svc.DispatchLocalAsync(method, raw, me)));
                }
                return Task.WhenAll(sends);
            }
        }
    }
}
