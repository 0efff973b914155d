// The .NET client's envelope around flight data (SnapshotEnvelope: sequence number,
// latest state wins) and SnapshotFilter. Not part of the server's protocol: peers of
// this client agree on it. Split from Protocol.cs (the codec's seams).
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
    /// <summary>
    /// The .NET client's envelope around flight data, on every path (DataChannel and
    /// relay): a 4-byte little-endian sequence number, then the application payload.
    /// The receiver keeps only snapshots newer than the last one it accepted from
    /// that peer, so a late frame (a relay stream overtaken by a newer one, a frame
    /// still in flight when the path switches) never overwrites newer state.
    /// Comparison is serial-number arithmetic (RFC 1982), so the counter may wrap.
    /// </summary>
    public static class SnapshotEnvelope
    {
        public const int HeaderBytes = 4;

        public static byte[] Wrap(uint seq, byte[] payload, int offset, int count)
        {
            if (payload == null)
            {
                throw new ArgumentNullException("payload");
            }
            if (offset < 0 || count < 0 || offset > payload.Length - count)
            {
                throw new ArgumentOutOfRangeException("count");
            }
            byte[] result = new byte[HeaderBytes + count];
            WriteHeader(result, 0, seq);
            Buffer.BlockCopy(payload, offset, result, HeaderBytes, count);
            return result;
        }

        public static void WriteHeader(byte[] buffer, int offset, uint seq)
        {
            buffer[offset] = (byte)seq;
            buffer[offset + 1] = (byte)(seq >> 8);
            buffer[offset + 2] = (byte)(seq >> 16);
            buffer[offset + 3] = (byte)(seq >> 24);
        }

        /// <summary>False when the data is too short to hold the header.</summary>
        public static bool TryUnwrap(byte[] buffer, int offset, int count, out uint seq, out int payloadOffset)
        {
            seq = 0;
            payloadOffset = 0;
            if (count < HeaderBytes)
            {
                return false;
            }
            seq = (uint)buffer[offset]
                | ((uint)buffer[offset + 1] << 8)
                | ((uint)buffer[offset + 2] << 16)
                | ((uint)buffer[offset + 3] << 24);
            payloadOffset = offset + HeaderBytes;
            return true;
        }

        /// <summary>True when seq comes after last in serial-number order.</summary>
        public static bool IsNewer(uint seq, uint last)
        {
            return unchecked((int)(seq - last)) > 0;
        }
    }

    /// <summary>Per-sender latest-snapshot filter (thread-safe).</summary>
    public sealed class SnapshotFilter
    {
        private readonly Dictionary<uint, uint> _last = new Dictionary<uint, uint>();
        private readonly object _lock = new object();
        private long _dropped;

        /// <summary>Snapshots refused as stale or duplicate so far.</summary>
        public long Dropped
        {
            get { lock (_lock) { return _dropped; } }
        }

        /// <summary>True if seq from peer is newer than anything accepted from it; records it.</summary>
        public bool Accept(uint peer, uint seq)
        {
            lock (_lock)
            {
                uint last;
                if (_last.TryGetValue(peer, out last) && !SnapshotEnvelope.IsNewer(seq, last))
                {
                    _dropped++;
                    return false;
                }
                _last[peer] = seq;
                return true;
            }
        }

        /// <summary>Forget a peer (it left, or a new link to it started from scratch).</summary>
        public void Reset(uint peer)
        {
            lock (_lock)
            {
                _last.Remove(peer);
            }
        }

        public void Clear()
        {
            lock (_lock)
            {
                _last.Clear();
            }
        }
    }
}
