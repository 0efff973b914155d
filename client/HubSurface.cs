// SignalR-shaped overloads of WebRTCP2PService (generated pattern, 0 to 8 arguments as in
// SignalR): On with Action/Func<Task> handlers, Handle for hub methods that return a
// result to InvokeAsync, SendAsync and InvokeAsync with explicit arguments and a
// CancellationToken (so a token is never sent as an argument, an array is one
// argument, and SendAsync("M", null) sends one null argument).
//
// C# 7.2 (mono).

using System;
using System.Threading;
using System.Threading.Tasks;

namespace FlightSimP2P.Client
{
    public partial class WebRTCP2PService
    {
        public IDisposable On(string methodName, Action handler)
        {
            return On(methodName, new Type[] {  }, a => { handler(); return Task.FromResult<object>(null); });
        }

        public IDisposable On(string methodName, Func<Task> handler)
        {
            return On(methodName, new Type[] {  }, a => Unit(handler()));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<TResult>(string methodName, Func<TResult> handler)
        {
            return On(methodName, new Type[] {  }, a => Task.FromResult<object>(handler()));
        }

        public IDisposable Handle<TResult>(string methodName, Func<Task<TResult>> handler)
        {
            return On(methodName, new Type[] {  }, a => Boxed(handler()));
        }

        public IDisposable On<T1>(string methodName, Action<T1> handler)
        {
            return On(methodName, new Type[] { typeof(T1) }, a => { handler((T1)a[0]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1>(string methodName, Func<T1, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1) }, a => Unit(handler((T1)a[0])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, TResult>(string methodName, Func<T1, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1) }, a => Task.FromResult<object>(handler((T1)a[0])));
        }

        public IDisposable Handle<T1, TResult>(string methodName, Func<T1, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1) }, a => Boxed(handler((T1)a[0])));
        }

        public IDisposable On<T1, T2>(string methodName, Action<T1, T2> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2) }, a => { handler((T1)a[0], (T2)a[1]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1, T2>(string methodName, Func<T1, T2, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2) }, a => Unit(handler((T1)a[0], (T2)a[1])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, T2, TResult>(string methodName, Func<T1, T2, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2) }, a => Task.FromResult<object>(handler((T1)a[0], (T2)a[1])));
        }

        public IDisposable Handle<T1, T2, TResult>(string methodName, Func<T1, T2, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2) }, a => Boxed(handler((T1)a[0], (T2)a[1])));
        }

        public IDisposable On<T1, T2, T3>(string methodName, Action<T1, T2, T3> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3) }, a => { handler((T1)a[0], (T2)a[1], (T3)a[2]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1, T2, T3>(string methodName, Func<T1, T2, T3, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3) }, a => Unit(handler((T1)a[0], (T2)a[1], (T3)a[2])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, T2, T3, TResult>(string methodName, Func<T1, T2, T3, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3) }, a => Task.FromResult<object>(handler((T1)a[0], (T2)a[1], (T3)a[2])));
        }

        public IDisposable Handle<T1, T2, T3, TResult>(string methodName, Func<T1, T2, T3, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3) }, a => Boxed(handler((T1)a[0], (T2)a[1], (T3)a[2])));
        }

        public IDisposable On<T1, T2, T3, T4>(string methodName, Action<T1, T2, T3, T4> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4) }, a => { handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1, T2, T3, T4>(string methodName, Func<T1, T2, T3, T4, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4) }, a => Unit(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, T2, T3, T4, TResult>(string methodName, Func<T1, T2, T3, T4, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4) }, a => Task.FromResult<object>(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3])));
        }

        public IDisposable Handle<T1, T2, T3, T4, TResult>(string methodName, Func<T1, T2, T3, T4, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4) }, a => Boxed(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3])));
        }

        public IDisposable On<T1, T2, T3, T4, T5>(string methodName, Action<T1, T2, T3, T4, T5> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5) }, a => { handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1, T2, T3, T4, T5>(string methodName, Func<T1, T2, T3, T4, T5, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5) }, a => Unit(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, T2, T3, T4, T5, TResult>(string methodName, Func<T1, T2, T3, T4, T5, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5) }, a => Task.FromResult<object>(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4])));
        }

        public IDisposable Handle<T1, T2, T3, T4, T5, TResult>(string methodName, Func<T1, T2, T3, T4, T5, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5) }, a => Boxed(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4])));
        }

        public IDisposable On<T1, T2, T3, T4, T5, T6>(string methodName, Action<T1, T2, T3, T4, T5, T6> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6) }, a => { handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1, T2, T3, T4, T5, T6>(string methodName, Func<T1, T2, T3, T4, T5, T6, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6) }, a => Unit(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, T2, T3, T4, T5, T6, TResult>(string methodName, Func<T1, T2, T3, T4, T5, T6, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6) }, a => Task.FromResult<object>(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5])));
        }

        public IDisposable Handle<T1, T2, T3, T4, T5, T6, TResult>(string methodName, Func<T1, T2, T3, T4, T5, T6, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6) }, a => Boxed(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5])));
        }

        public IDisposable On<T1, T2, T3, T4, T5, T6, T7>(string methodName, Action<T1, T2, T3, T4, T5, T6, T7> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7) }, a => { handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1, T2, T3, T4, T5, T6, T7>(string methodName, Func<T1, T2, T3, T4, T5, T6, T7, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7) }, a => Unit(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, T2, T3, T4, T5, T6, T7, TResult>(string methodName, Func<T1, T2, T3, T4, T5, T6, T7, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7) }, a => Task.FromResult<object>(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6])));
        }

        public IDisposable Handle<T1, T2, T3, T4, T5, T6, T7, TResult>(string methodName, Func<T1, T2, T3, T4, T5, T6, T7, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7) }, a => Boxed(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6])));
        }

        public IDisposable On<T1, T2, T3, T4, T5, T6, T7, T8>(string methodName, Action<T1, T2, T3, T4, T5, T6, T7, T8> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7), typeof(T8) }, a => { handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6], (T8)a[7]); return Task.FromResult<object>(null); });
        }

        public IDisposable On<T1, T2, T3, T4, T5, T6, T7, T8>(string methodName, Func<T1, T2, T3, T4, T5, T6, T7, T8, Task> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7), typeof(T8) }, a => Unit(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6], (T8)a[7])));
        }

        /// <summary>A hub method with a result, answered on the host for InvokeAsync.</summary>
        public IDisposable Handle<T1, T2, T3, T4, T5, T6, T7, T8, TResult>(string methodName, Func<T1, T2, T3, T4, T5, T6, T7, T8, TResult> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7), typeof(T8) }, a => Task.FromResult<object>(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6], (T8)a[7])));
        }

        public IDisposable Handle<T1, T2, T3, T4, T5, T6, T7, T8, TResult>(string methodName, Func<T1, T2, T3, T4, T5, T6, T7, T8, Task<TResult>> handler)
        {
            return On(methodName, new Type[] { typeof(T1), typeof(T2), typeof(T3), typeof(T4), typeof(T5), typeof(T6), typeof(T7), typeof(T8) }, a => Boxed(handler((T1)a[0], (T2)a[1], (T3)a[2], (T4)a[3], (T5)a[4], (T6)a[5], (T7)a[6], (T8)a[7])));
        }

        public Task SendAsync(string methodName, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] {  }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] {  }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] {  }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1 }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, object arg2, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1, arg2 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, object arg2, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1, arg2 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, object arg2, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1, arg2 }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, object arg2, object arg3, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1, arg2, arg3 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, object arg2, object arg3, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1, arg2, arg3 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, object arg2, object arg3, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1, arg2, arg3 }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, object arg2, object arg3, object arg4, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1, arg2, arg3, arg4 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, object arg2, object arg3, object arg4, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1, arg2, arg3, arg4 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, object arg2, object arg3, object arg4, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1, arg2, arg3, arg4 }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1, arg2, arg3, arg4, arg5 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1, arg2, arg3, arg4, arg5 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1, arg2, arg3, arg4, arg5 }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1, arg2, arg3, arg4, arg5, arg6 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1, arg2, arg3, arg4, arg5, arg6 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1, arg2, arg3, arg4, arg5, arg6 }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, object arg7, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1, arg2, arg3, arg4, arg5, arg6, arg7 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, object arg7, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1, arg2, arg3, arg4, arg5, arg6, arg7 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, object arg7, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1, arg2, arg3, arg4, arg5, arg6, arg7 }, cancellationToken).ConfigureAwait(false);
        }

        public Task SendAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, object arg7, object arg8, CancellationToken cancellationToken = default(CancellationToken))
        {
            return SendCoreAsync(methodName, new object[] { arg1, arg2, arg3, arg4, arg5, arg6, arg7, arg8 }, cancellationToken);
        }

        public Task InvokeAsync(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, object arg7, object arg8, CancellationToken cancellationToken = default(CancellationToken))
        {
            return InvokeCoreAsync(methodName, typeof(object), new object[] { arg1, arg2, arg3, arg4, arg5, arg6, arg7, arg8 }, cancellationToken);
        }

        public async Task<TResult> InvokeAsync<TResult>(string methodName, object arg1, object arg2, object arg3, object arg4, object arg5, object arg6, object arg7, object arg8, CancellationToken cancellationToken = default(CancellationToken))
        {
            return (TResult)await InvokeCoreAsync(methodName, typeof(TResult), new object[] { arg1, arg2, arg3, arg4, arg5, arg6, arg7, arg8 }, cancellationToken).ConfigureAwait(false);
        }
    }
}
