// Declared surface of System.Net.Quic as .NET 9 publishes it: every member
// client/Adapters/QuicTransport.cs uses, with its published signature, so mono can
// compile the adapter (tests/csharp/run.sh). Not .NET's code: bodies throw, nothing
// here runs. Each member names the API reference page where its signature was read
// (learn.microsoft.com/dotnet/api/<the lower-case full name>, ".NET 9" version).
// An adapter that uses a member not declared here does not compile.
//
// C# 7.2 (mono). Only compiled by the tests, never part of the library.

using System;
using System.IO;
using System.Net;
using System.Net.Security;
using System.Threading;
using System.Threading.Tasks;

namespace System.Net.Quic
{
    // system.net.quic.quicstreamtype: enum QuicStreamType { Unidirectional = 0, Bidirectional = 1 }
    public enum QuicStreamType
    {
        Unidirectional = 0,
        Bidirectional = 1,
    }

    // system.net.quic.quicerror (the Error of a QuicException; only the type is named here)
    public enum QuicError
    {
        Success = 0,
    }

    // system.net.quic.quicexception: sealed class QuicException : IOException
    public sealed class QuicException : IOException
    {
        // QuicException(QuicError error, long? applicationErrorCode, string message)
        public QuicException(QuicError error, long? applicationErrorCode, string message) : base(message)
        {
        }

        // long? ApplicationErrorCode { get; }
        public long? ApplicationErrorCode { get { throw new NotImplementedException(); } }
    }

    // system.net.quic.quicconnectionoptions: abstract class QuicConnectionOptions
    public abstract class QuicConnectionOptions
    {
        internal QuicConnectionOptions()
        {
        }

        // long DefaultStreamErrorCode { get; set; }
        public long DefaultStreamErrorCode { get; set; }

        // long DefaultCloseErrorCode { get; set; }
        public long DefaultCloseErrorCode { get; set; }

        // int MaxInboundUnidirectionalStreams { get; set; }
        public int MaxInboundUnidirectionalStreams { get; set; }

        // int MaxInboundBidirectionalStreams { get; set; }
        public int MaxInboundBidirectionalStreams { get; set; }

        // TimeSpan IdleTimeout { get; set; }
        public TimeSpan IdleTimeout { get; set; }

        // TimeSpan KeepAliveInterval { get; set; } (.NET 9)
        public TimeSpan KeepAliveInterval { get; set; }

        // TimeSpan HandshakeTimeout { get; set; } (.NET 9)
        public TimeSpan HandshakeTimeout { get; set; }
    }

    // system.net.quic.quicclientconnectionoptions: sealed class QuicClientConnectionOptions : QuicConnectionOptions
    public sealed class QuicClientConnectionOptions : QuicConnectionOptions
    {
        // QuicClientConnectionOptions()
        public QuicClientConnectionOptions()
        {
        }

        // SslClientAuthenticationOptions ClientAuthenticationOptions { get; set; }
        public SslClientAuthenticationOptions ClientAuthenticationOptions { get; set; }

        // EndPoint RemoteEndPoint { get; set; }
        public EndPoint RemoteEndPoint { get; set; }
    }

    // system.net.quic.quicstream: sealed class QuicStream : Stream
    public sealed class QuicStream : Stream
    {
        private QuicStream()
        {
        }

        // ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, bool completeWrites, CancellationToken cancellationToken = default)
        public ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, bool completeWrites, CancellationToken cancellationToken = default(CancellationToken))
        {
            throw new NotImplementedException();
        }

        // override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default(CancellationToken))
        {
            throw new NotImplementedException();
        }

        // override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default(CancellationToken))
        {
            throw new NotImplementedException();
        }

        // override ValueTask DisposeAsync()
        public override ValueTask DisposeAsync()
        {
            throw new NotImplementedException();
        }

        // Stream's abstract members, which QuicStream overrides (CanSeek false, Length/Position/Seek/SetLength throw NotSupportedException).
        public override bool CanRead { get { throw new NotImplementedException(); } }
        public override bool CanSeek { get { throw new NotImplementedException(); } }
        public override bool CanWrite { get { throw new NotImplementedException(); } }
        public override long Length { get { throw new NotImplementedException(); } }
        public override long Position { get { throw new NotImplementedException(); } set { throw new NotImplementedException(); } }
        public override void Flush() { throw new NotImplementedException(); }
        public override int Read(byte[] buffer, int offset, int count) { throw new NotImplementedException(); }
        public override long Seek(long offset, SeekOrigin origin) { throw new NotImplementedException(); }
        public override void SetLength(long value) { throw new NotImplementedException(); }
        public override void Write(byte[] buffer, int offset, int count) { throw new NotImplementedException(); }
    }

    // system.net.quic.quicconnection: sealed class QuicConnection : IAsyncDisposable
    public sealed class QuicConnection : IAsyncDisposable
    {
        private QuicConnection()
        {
        }

        // static bool IsSupported { get; }
        public static bool IsSupported { get { throw new NotImplementedException(); } }

        // static ValueTask<QuicConnection> ConnectAsync(QuicClientConnectionOptions options, CancellationToken cancellationToken = default)
        public static ValueTask<QuicConnection> ConnectAsync(QuicClientConnectionOptions options, CancellationToken cancellationToken = default(CancellationToken))
        {
            throw new NotImplementedException();
        }

        // ValueTask<QuicStream> OpenOutboundStreamAsync(QuicStreamType type, CancellationToken cancellationToken = default)
        public ValueTask<QuicStream> OpenOutboundStreamAsync(QuicStreamType type, CancellationToken cancellationToken = default(CancellationToken))
        {
            throw new NotImplementedException();
        }

        // ValueTask<QuicStream> AcceptInboundStreamAsync(CancellationToken cancellationToken = default)
        public ValueTask<QuicStream> AcceptInboundStreamAsync(CancellationToken cancellationToken = default(CancellationToken))
        {
            throw new NotImplementedException();
        }

        // ValueTask CloseAsync(long errorCode, CancellationToken cancellationToken = default)
        public ValueTask CloseAsync(long errorCode, CancellationToken cancellationToken = default(CancellationToken))
        {
            throw new NotImplementedException();
        }

        // ValueTask DisposeAsync()
        public ValueTask DisposeAsync()
        {
            throw new NotImplementedException();
        }
    }
}
