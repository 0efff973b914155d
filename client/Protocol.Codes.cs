// FlightSim P2P wire protocol, version 1: the portable C# codec, split by seam into
// Protocol.*.cs (tests/csharp/run.sh compiles them alone, with the codec tests).
// This file: the enums the protocol names on the wire (client kind, relay mode, leave
// and redirect reasons) and the error codes of PROTOCOL.md section 6 with what each
// means to a client (ErrorCodes). The codec is the C# twin of the server's
// src/protocol.rs and implements docs/PROTOCOL.md exactly.
//
// Portability rules for every Protocol.*.cs file (compiled by Debian's mono `mcs` in CI,
// C# 7.2 at most, and linked unchanged into the .NET 8/9 client):
//   * no C# 8+ syntax: no switch expressions, no nullable reference annotations,
//     no `using var`, no ranges or indices, no records, no default interface
//     members, no local functions;
//   * no .NET 5+ APIs: no BinaryPrimitives, no Span-only overloads; plain byte[]
//     with offset and count everywhere.

using System;
using System.Collections.Generic;
using System.Text;

namespace FlightSimP2P.Protocol
{
    /// <summary>What kind of program a client is (for the server's logs and metrics).</summary>
    public enum ClientKind : uint
    {
        Rust = 0,
        DotNet = 1,
        Browser = 2,
        Other = 3
    }

    /// <summary>How the server delivers relay frames to this client.</summary>
    public enum RelayMode : uint
    {
        /// <summary>QUIC / WebTransport datagrams.</summary>
        Datagram = 0,
        /// <summary>One unidirectional stream per frame (System.Net.Quic has no datagrams).</summary>
        Stream = 1
    }

    /// <summary>Why a peer left a session, or why I am no longer in one.</summary>
    public enum LeaveReason : uint
    {
        Left = 0,
        TimedOut = 1,
        SessionExpired = 2,
        ServerShutdown = 3
    }

    /// <summary>Why a cluster node sends a client to another node (PROTOCOL.md section 11).</summary>
    public enum RedirectReason : uint
    {
        /// <summary>The session (asked for by JoinSession or by the resume token) lives on that node.</summary>
        Session = 0,
        /// <summary>This node is shutting down and handed my session to that node.</summary>
        Draining = 1,
        /// <summary>My session moved to that node.</summary>
        Moved = 2,
        /// <summary>New sessions go to that node.</summary>
        Placement = 3
    }

    /// <summary>Error codes of ServerMsg.Error and QUIC application close codes (PROTOCOL.md section 6).</summary>
    public enum ErrorCode : ushort
    {
        BadMessage = 1,
        FrameTooLarge = 2,
        UnsupportedVersion = 3,
        ProtocolViolation = 4,
        RateLimited = 5,
        ServerFull = 6,
        ShuttingDown = 7,
        Internal = 8,
        InvalidArgument = 9,
        UnknownSession = 10,
        SessionFull = 11,
        WrongPassword = 12,
        AlreadyInSession = 13,
        NotInSession = 14,
        UnknownPeer = 15,
        TooManySessions = 16,
        TooManyJoinAttempts = 17,
        ResumeFailed = 18,
        HelloTimeout = 19,
        Replaced = 20,
        SlowConsumer = 21,
        /// <summary>(cluster mode) The cluster directory cannot be reached now; retry later. Not fatal.</summary>
        ClusterUnavailable = 22,
        /// <summary>(access control) The server needs an access token and none came. Fatal.</summary>
        TokenRequired = 23,
        /// <summary>(access control) The token is refused for good (malformed, bad signature, wrong audience, ...). Fatal.</summary>
        TokenInvalid = 24,
        /// <summary>(access control) The token expired: closes; come back with a fresh one. Sent first as a warning, without a close.</summary>
        TokenExpired = 25,
        /// <summary>(access control) The token does not allow this request; the connection stays.</summary>
        Forbidden = 26,
        /// <summary>(access control) The operator revoked this token or its player. Fatal.</summary>
        TokenRevoked = 27
    }

    /// <summary>Helpers for error codes carried as raw u16 values.</summary>
    public static class ErrorCodes
    {
        private static readonly string[] Names =
        {
            null, "bad_message", "frame_too_large", "unsupported_version", "protocol_violation",
            "rate_limited", "server_full", "shutting_down", "internal", "invalid_argument",
            "unknown_session", "session_full", "wrong_password", "already_in_session",
            "not_in_session", "unknown_peer", "too_many_sessions", "too_many_join_attempts",
            "resume_failed", "hello_timeout", "replaced", "slow_consumer", "cluster_unavailable",
            "token_required", "token_invalid", "token_expired", "forbidden", "token_revoked"
        };

        /// <summary>True for the codes this version of the protocol defines (1..=27).</summary>
        public static bool IsKnown(ushort code)
        {
            return code >= 1 && code < Names.Length;
        }

        /// <summary>Snake-case name as in PROTOCOL.md, or "error_N" for unknown codes.</summary>
        public static string Name(ushort code)
        {
            return IsKnown(code) ? Names[code] : "error_" + code;
        }

        /// <summary>
        /// Fatal errors are always followed by the server closing the connection with the
        /// same code. too_many_join_attempts (17) is not among them: when the player's
        /// network address has spent its failed-join budget the server sends it and keeps
        /// the connection ("try again in N s"); it closes with 17 only when that connection
        /// itself failed more than max_join_attempts times. Only the close decides.
        /// </summary>
        public static bool IsFatal(ushort code)
        {
            switch ((ErrorCode)code)
            {
                case ErrorCode.BadMessage:
                case ErrorCode.FrameTooLarge:
                case ErrorCode.UnsupportedVersion:
                case ErrorCode.ProtocolViolation:
                case ErrorCode.ServerFull:
                case ErrorCode.ShuttingDown:
                case ErrorCode.HelloTimeout:
                case ErrorCode.Replaced:
                case ErrorCode.SlowConsumer:
                case ErrorCode.TokenRequired:
                case ErrorCode.TokenInvalid:
                case ErrorCode.TokenRevoked:
                    return true;
                default:
                    return false;
            }
        }
    }
}
