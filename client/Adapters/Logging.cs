// .NET-only adapter: SignalR's HubConnectionBuilder.ConfigureLogging, with
// Microsoft.Extensions.Logging's own ILoggingBuilder (so logging.AddConsole(),
// SetMinimumLevel(...) and the app's other providers work as with SignalR). The
// connection logs its lifecycle (state, reconnects, redirects, server errors, closing)
// under the category "FlightSimP2P.Client.HubConnection".
//
// Foreign types by alias only. C# 7.2: mono compiles this file against the declared
// surface (tests/csharp/surface/LoggingSurface.cs) on every tests/csharp/run.sh.
#if NETCOREAPP
using System;
using MelBuilder = Microsoft.Extensions.Logging.ILoggingBuilder;
using MelFactory = Microsoft.Extensions.Logging.ILoggerFactory;
using MelLogger = Microsoft.Extensions.Logging.ILogger;
using MelLog = Microsoft.Extensions.Logging.LoggerExtensions;
using DiCollection = Microsoft.Extensions.DependencyInjection.ServiceCollection;
using DiLogging = Microsoft.Extensions.DependencyInjection.LoggingServiceCollectionExtensions;
using DiBuild = Microsoft.Extensions.DependencyInjection.ServiceCollectionContainerBuilderExtensions;
using DiProvider = Microsoft.Extensions.DependencyInjection.ServiceProvider;

namespace FlightSimP2P.Client
{
    public sealed partial class HubConnectionBuilder
    {
        private DiProvider _logging;

        /// <summary>SignalR's ConfigureLogging: the connection logs through the providers configured here.</summary>
        public HubConnectionBuilder ConfigureLogging(Action<MelBuilder> configureLogging)
        {
            if (configureLogging == null)
            {
                throw new ArgumentNullException("configureLogging");
            }
            DiCollection services = new DiCollection();
            DiLogging.AddLogging(services, configureLogging);
            if (_logging != null)
            {
                _logging.Dispose();
            }
            _logging = DiBuild.BuildServiceProvider(services);
            return this;
        }

        partial void OnBuilt(HubConnection connection)
        {
            DiProvider provider = _logging;
            if (provider == null)
            {
                return;
            }
            MelFactory factory = (MelFactory)provider.GetService(typeof(MelFactory));
            if (factory == null)
            {
                return;
            }
            MelLogger log = factory.CreateLogger("FlightSimP2P.Client.HubConnection");
            connection.StateChanged += s => MelLog.LogInformation(log, "state {State}", s);
            connection.Redirected += node => MelLog.LogInformation(log, "redirected to node {Node}", node);
            connection.ServerError += e => MelLog.LogWarning(log, e, "server error");
            connection.Reconnecting += e =>
            {
                MelLog.LogWarning(log, e, "reconnecting");
                return System.Threading.Tasks.Task.FromResult(0);
            };
            connection.Reconnected += id =>
            {
                MelLog.LogInformation(log, "reconnected as peer {ConnectionId}", id);
                return System.Threading.Tasks.Task.FromResult(0);
            };
            connection.Closed += e =>
            {
                MelLog.LogInformation(log, "closed: {Reason}", e == null ? "stopped" : e.Message);
                return System.Threading.Tasks.Task.FromResult(0);
            };
            connection.Disposed += provider.Dispose;
        }
    }
}
#endif
