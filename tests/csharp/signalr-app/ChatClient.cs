// A SignalR desktop client as an app writes it, ported by changing its using lines
// only (the block between the SWAP markers; check_swap.py enforces that nothing else in
// this file is FlightSim P2P's own API). Built by mono in tests/csharp/run.sh and run
// twice against the real server by tests/csharp/live.sh (Program.cs drives it).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;
// SWAP BEGIN: with SignalR these were
//   using Microsoft.AspNetCore.Http.Connections;
//   using Microsoft.AspNetCore.SignalR;
//   using Microsoft.AspNetCore.SignalR.Client;
using FlightSimP2P.Client;
// SWAP END

namespace SimChat
{
    /// <summary>Backs off 0.5, 1, 2, 4, 8 s, then gives up.</summary>
    public sealed class BackoffPolicy : IRetryPolicy
    {
        public TimeSpan? NextRetryDelay(RetryContext retryContext)
        {
            if (retryContext.PreviousRetryCount >= 5)
            {
                return null;
            }
            return TimeSpan.FromMilliseconds(500 * (1 << (int)retryContext.PreviousRetryCount));
        }
    }

    public sealed class ChatClient : IAsyncDisposable
    {
        private readonly HubConnection _connection;
        private readonly string _user;
        private readonly object _lock = new object();
        private readonly List<string> _messages = new List<string>();
        private readonly List<string> _positions = new List<string>();
        private int _tokenRequests;

        public ChatClient(string url, string user, string accessToken)
        {
            _user = user;
            _connection = new HubConnectionBuilder()
                .WithUrl(url, HttpTransportType.WebSockets, options =>
                {
                    options.AccessTokenProvider = () =>
                    {
                        Interlocked.Increment(ref _tokenRequests);
                        return Task.FromResult(accessToken);
                    };
                    options.Headers["X-Sim-Client"] = "simchat/1.0";
                    options.SkipNegotiation = true;
                    options.CloseTimeout = TimeSpan.FromSeconds(3);
                })
                .WithAutomaticReconnect(new BackoffPolicy())
                .WithServerTimeout(TimeSpan.FromSeconds(20))
                .WithKeepAliveInterval(TimeSpan.FromSeconds(5))
                .Build();
            _connection.HandshakeTimeout = TimeSpan.FromSeconds(12);

            _connection.On<string, string>("ReceiveMessage", (from, text) =>
            {
                lock (_lock)
                {
                    _messages.Add(from + ": " + text);
                }
            });
            _connection.On("ReceivePosition", new[] { typeof(double), typeof(double) }, args =>
            {
                lock (_lock)
                {
                    _positions.Add(args[0] + "," + args[1]);
                }
                return Task.CompletedTask;
            });
            // A client result: the hub (here the session host) asks this client for a value.
            _connection.On<int, int>("Square", x => x * x);
            _connection.Reconnecting += error =>
            {
                Console.WriteLine("# reconnecting: " + (error == null ? "-" : error.Message));
                return Task.CompletedTask;
            };
            _connection.Reconnected += connectionId =>
            {
                Console.WriteLine("# reconnected as " + connectionId);
                return Task.CompletedTask;
            };
            _connection.Closed += error => Task.CompletedTask;
        }

        public HubConnection Connection
        {
            get { return _connection; }
        }

        public int TokenRequests
        {
            get { return Volatile.Read(ref _tokenRequests); }
        }

        public HubConnectionState State
        {
            get { return _connection.State; }
        }

        public string ConnectionId
        {
            get { return _connection.ConnectionId; }
        }

        public TimeSpan ServerTimeout
        {
            get { return _connection.ServerTimeout; }
        }

        public TimeSpan KeepAliveInterval
        {
            get { return _connection.KeepAliveInterval; }
        }

        public TimeSpan HandshakeTimeout
        {
            get { return _connection.HandshakeTimeout; }
        }

        public List<string> Messages()
        {
            lock (_lock)
            {
                return new List<string>(_messages);
            }
        }

        public List<string> Positions()
        {
            lock (_lock)
            {
                return new List<string>(_positions);
            }
        }

        public Task StartAsync(CancellationToken cancellationToken)
        {
            return _connection.StartAsync(cancellationToken);
        }

        public Task SendMessageAsync(string text)
        {
            return _connection.SendAsync("SendMessage", _user, text);
        }

        public Task SendPositionAsync(double lat, double lon)
        {
            return _connection.SendAsync("SendPosition", lat, lon);
        }

        public Task WhisperAsync(string text)
        {
            return _connection.SendCoreAsync("Whisper", new object[] { text });
        }

        public Task<int> AddAsync(int a, int b)
        {
            return _connection.InvokeAsync<int>("Add", a, b);
        }

        public Task<int> SquareAsync(int x)
        {
            return _connection.InvokeCoreAsync<int>("Square", new object[] { x });
        }

        /// <summary>What the hub says about a method it does not have.</summary>
        public async Task<string> CallMissingAsync()
        {
            try
            {
                await _connection.InvokeCoreAsync("NoSuchMethod", new object[0]);
                return "no error";
            }
            catch (HubException e)
            {
                return "HubException: " + e.Message;
            }
        }

        public ValueTask DisposeAsync()
        {
            return _connection.DisposeAsync();
        }
    }
}
