// The 3-byte acknowledgement C# peers send for each flight frame received on the direct
// path (PeerPath uses it to see a path stall). Split from CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;

namespace FlightSimP2P.Client
{
    /// <summary>
    /// The acknowledgement a C# client sends back on the "flight" DataChannel for every flight
    /// frame it receives there (PROTOCOL.md section 8): 3 bytes, 0x01 then the low 16 bits of
    /// the frame's sequence number, little-endian. Shorter than the 4-byte flight envelope, so
    /// a receiver that does not know it drops it (fsp2p.js counts it as a bad frame, older C#
    /// clients ignore it); it is sent only to C# peers.
    /// </summary>
    public static class PeerAck
    {
        public const byte Tag = 0x01;
        public const int Bytes = 3;

        public static byte[] Encode(uint seq)
        {
            return new byte[] { Tag, (byte)seq, (byte)(seq >> 8) };
        }

        public static bool TryDecode(byte[] message, out ushort seq16)
        {
            seq16 = 0;
            if (message == null || message.Length != Bytes || message[0] != Tag)
            {
                return false;
            }
            seq16 = (ushort)(message[1] | (message[2] << 8));
            return true;
        }
    }
}
