// Declared surface of Microsoft.Extensions.Logging / .DependencyInjection 8.0 (the
// packages client/FlightSimP2P.Client.csproj references for ConfigureLogging): every
// member client/Adapters/Logging.cs uses, plus LoggingBuilderExtensions.SetMinimumLevel
// and LogLevel, which check.sh's app probe calls as an app would. Published signatures;
// bodies throw, nothing here runs. Each names its API reference page
// (learn.microsoft.com/dotnet/api/<lower-case full name>).
//
// C# 7.2 (mono). Only compiled by the tests, never part of the library.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Threading.Tasks;

namespace Microsoft.Extensions.DependencyInjection
{
    // microsoft.extensions.dependencyinjection.servicedescriptor (only the type is named here)
    public class ServiceDescriptor
    {
        private ServiceDescriptor()
        {
        }
    }

    // microsoft.extensions.dependencyinjection.iservicecollection: interface IServiceCollection : IList<ServiceDescriptor>
    public interface IServiceCollection : IList<ServiceDescriptor>
    {
    }

    // microsoft.extensions.dependencyinjection.servicecollection: class ServiceCollection : IServiceCollection; ServiceCollection()
    public class ServiceCollection : IServiceCollection
    {
        public ServiceCollection()
        {
        }

        public int Count { get { throw new NotImplementedException(); } }
        public bool IsReadOnly { get { throw new NotImplementedException(); } }
        public ServiceDescriptor this[int index] { get { throw new NotImplementedException(); } set { throw new NotImplementedException(); } }
        public void Add(ServiceDescriptor item) { throw new NotImplementedException(); }
        public void Clear() { throw new NotImplementedException(); }
        public bool Contains(ServiceDescriptor item) { throw new NotImplementedException(); }
        public void CopyTo(ServiceDescriptor[] array, int arrayIndex) { throw new NotImplementedException(); }
        public IEnumerator<ServiceDescriptor> GetEnumerator() { throw new NotImplementedException(); }
        public int IndexOf(ServiceDescriptor item) { throw new NotImplementedException(); }
        public void Insert(int index, ServiceDescriptor item) { throw new NotImplementedException(); }
        public bool Remove(ServiceDescriptor item) { throw new NotImplementedException(); }
        public void RemoveAt(int index) { throw new NotImplementedException(); }
        IEnumerator IEnumerable.GetEnumerator() { throw new NotImplementedException(); }
    }

    // microsoft.extensions.dependencyinjection.serviceprovider: sealed class ServiceProvider : IServiceProvider, IDisposable, IAsyncDisposable
    public sealed class ServiceProvider : IServiceProvider, IDisposable, IAsyncDisposable
    {
        private ServiceProvider()
        {
        }

        // object? GetService(Type serviceType)
        public object GetService(Type serviceType) { throw new NotImplementedException(); }

        // void Dispose()
        public void Dispose() { throw new NotImplementedException(); }

        // ValueTask DisposeAsync()
        public ValueTask DisposeAsync() { throw new NotImplementedException(); }
    }

    // microsoft.extensions.dependencyinjection.loggingservicecollectionextensions (assembly Microsoft.Extensions.Logging)
    public static class LoggingServiceCollectionExtensions
    {
        // static IServiceCollection AddLogging(this IServiceCollection services, Action<ILoggingBuilder> configure)
        public static IServiceCollection AddLogging(this IServiceCollection services, Action<Microsoft.Extensions.Logging.ILoggingBuilder> configure)
        {
            throw new NotImplementedException();
        }
    }

    // microsoft.extensions.dependencyinjection.servicecollectioncontainerbuilderextensions (assembly Microsoft.Extensions.DependencyInjection)
    public static class ServiceCollectionContainerBuilderExtensions
    {
        // static ServiceProvider BuildServiceProvider(this IServiceCollection services)
        public static ServiceProvider BuildServiceProvider(this IServiceCollection services)
        {
            throw new NotImplementedException();
        }
    }
}

namespace Microsoft.Extensions.Logging
{
    // microsoft.extensions.logging.loglevel: enum LogLevel { Trace = 0, Debug = 1, Information = 2, Warning = 3, Error = 4, Critical = 5, None = 6 }
    public enum LogLevel
    {
        Trace = 0,
        Debug = 1,
        Information = 2,
        Warning = 3,
        Error = 4,
        Critical = 5,
        None = 6,
    }

    // microsoft.extensions.logging.iloggingbuilder: interface ILoggingBuilder { IServiceCollection Services { get; } }
    public interface ILoggingBuilder
    {
        Microsoft.Extensions.DependencyInjection.IServiceCollection Services { get; }
    }

    // microsoft.extensions.logging.ilogger (only the type is named here; its Log/IsEnabled/BeginScope are reached through LoggerExtensions)
    public interface ILogger
    {
    }

    // microsoft.extensions.logging.iloggerfactory: interface ILoggerFactory : IDisposable { ILogger CreateLogger(string categoryName); ... }
    public interface ILoggerFactory : IDisposable
    {
        ILogger CreateLogger(string categoryName);
    }

    // microsoft.extensions.logging.loggerextensions (assembly Microsoft.Extensions.Logging.Abstractions)
    public static class LoggerExtensions
    {
        // static void LogInformation(this ILogger logger, string? message, params object?[] args)
        public static void LogInformation(this ILogger logger, string message, params object[] args)
        {
            throw new NotImplementedException();
        }

        // static void LogWarning(this ILogger logger, Exception? exception, string? message, params object?[] args)
        public static void LogWarning(this ILogger logger, Exception exception, string message, params object[] args)
        {
            throw new NotImplementedException();
        }
    }

    // microsoft.extensions.logging.loggingbuilderextensions: static ILoggingBuilder SetMinimumLevel(this ILoggingBuilder builder, LogLevel level)
    public static class LoggingBuilderExtensions
    {
        public static ILoggingBuilder SetMinimumLevel(this ILoggingBuilder builder, LogLevel level)
        {
            throw new NotImplementedException();
        }
    }
}
