// The postcard layer of the C# codec: PostcardWriter and PostcardReader (varints,
// zigzag, strings, bytes, options, sequences) and ProtocolException. Decoding is
// strict: over-long or overflowing varints, unknown enum tags, bools other than 0/1,
// invalid UTF-8, lengths past the end and trailing bytes all throw ProtocolException,
// so every implementation round-trips byte for byte. Split from Protocol.cs so the
// encoding primitives stand apart from the messages built on them.
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
    /// <summary>Bytes that are not a valid message, frame or relay header.</summary>
    public sealed class ProtocolException : Exception
    {
        /// <summary>BadMessage for undecodable bytes, FrameTooLarge for an over-long control frame.</summary>
        public ErrorCode Code { get; private set; }

        public ProtocolException(ErrorCode code, string message) : base(message)
        {
            Code = code;
        }

        public ProtocolException(ErrorCode code, string message, Exception inner) : base(message, inner)
        {
            Code = code;
        }
    }

    /// <summary>Appends postcard values to a growable buffer.</summary>
    public sealed class PostcardWriter
    {
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        private byte[] _buf;
        private int _len;

        public PostcardWriter() : this(64)
        {
        }

        public PostcardWriter(int capacity)
        {
            _buf = new byte[Math.Max(capacity, 16)];
        }

        /// <summary>Bytes written so far.</summary>
        public int Length
        {
            get { return _len; }
        }

        private void Reserve(int extra)
        {
            int need = _len + extra;
            if (need <= _buf.Length)
            {
                return;
            }
            int size = _buf.Length * 2;
            if (size < need)
            {
                size = need;
            }
            byte[] bigger = new byte[size];
            Buffer.BlockCopy(_buf, 0, bigger, 0, _len);
            _buf = bigger;
        }

        public void WriteU8(byte v)
        {
            Reserve(1);
            _buf[_len++] = v;
        }

        public void WriteBool(bool v)
        {
            WriteU8(v ? (byte)1 : (byte)0);
        }

        /// <summary>Unsigned LEB128 varint (postcard's u16/u32/u64/usize and enum tags).</summary>
        public void WriteVarint(ulong v)
        {
            Reserve(10);
            while (v >= 0x80)
            {
                _buf[_len++] = (byte)(v | 0x80);
                v >>= 7;
            }
            _buf[_len++] = (byte)v;
        }

        public void WriteU16(ushort v)
        {
            WriteVarint(v);
        }

        public void WriteU32(uint v)
        {
            WriteVarint(v);
        }

        public void WriteU64(ulong v)
        {
            WriteVarint(v);
        }

        /// <summary>Enum variant index.</summary>
        public void WriteTag(uint tag)
        {
            WriteVarint(tag);
        }

        public void WriteRaw(byte[] data, int offset, int count)
        {
            Reserve(count);
            Buffer.BlockCopy(data, offset, _buf, _len, count);
            _len += count;
        }

        /// <summary>Vec&lt;u8&gt;: varint length then the bytes.</summary>
        public void WriteBytes(byte[] data)
        {
            if (data == null)
            {
                throw new ArgumentNullException("data");
            }
            WriteVarint((ulong)data.Length);
            WriteRaw(data, 0, data.Length);
        }

        /// <summary>String: varint length in bytes then UTF-8 (strings with lone surrogates are refused).</summary>
        public void WriteString(string s)
        {
            if (s == null)
            {
                throw new ArgumentNullException("s");
            }
            byte[] utf8;
            try
            {
                utf8 = StrictUtf8.GetBytes(s);
            }
            catch (EncoderFallbackException e)
            {
                throw new ArgumentException("string is not valid Unicode (lone surrogate)", "s", e);
            }
            WriteBytes(utf8);
        }

        /// <summary>Option&lt;String&gt;: null is None.</summary>
        public void WriteOptionString(string s)
        {
            if (s == null)
            {
                WriteU8(0);
            }
            else
            {
                WriteU8(1);
                WriteString(s);
            }
        }

        /// <summary>Option&lt;Vec&lt;u8&gt;&gt;: null is None.</summary>
        public void WriteOptionBytes(byte[] b)
        {
            if (b == null)
            {
                WriteU8(0);
            }
            else
            {
                WriteU8(1);
                WriteBytes(b);
            }
        }

        /// <summary>Option&lt;u16&gt;.</summary>
        public void WriteOptionU16(ushort? v)
        {
            if (v.HasValue)
            {
                WriteU8(1);
                WriteU16(v.Value);
            }
            else
            {
                WriteU8(0);
            }
        }

        public byte[] ToArray()
        {
            byte[] result = new byte[_len];
            Buffer.BlockCopy(_buf, 0, result, 0, _len);
            return result;
        }
    }

    /// <summary>Reads postcard values from a byte range, strictly.</summary>
    public sealed class PostcardReader
    {
        private static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        private readonly byte[] _buf;
        private int _pos;
        private readonly int _end;

        public PostcardReader(byte[] buffer, int offset, int count)
        {
            if (buffer == null)
            {
                throw new ArgumentNullException("buffer");
            }
            if (offset < 0 || count < 0 || offset > buffer.Length - count)
            {
                throw new ArgumentOutOfRangeException("count");
            }
            _buf = buffer;
            _pos = offset;
            _end = offset + count;
        }

        /// <summary>Bytes not read yet.</summary>
        public int Remaining
        {
            get { return _end - _pos; }
        }

        private static ProtocolException Bad(string what)
        {
            return new ProtocolException(ErrorCode.BadMessage, what);
        }

        public byte ReadU8()
        {
            if (_pos >= _end)
            {
                throw Bad("message ends early");
            }
            return _buf[_pos++];
        }

        public bool ReadBool()
        {
            byte b = ReadU8();
            if (b == 0)
            {
                return false;
            }
            if (b == 1)
            {
                return true;
            }
            throw Bad("bool is neither 0 nor 1");
        }

        /// <summary>
        /// Reads a varint of at most maxBytes bytes whose last byte may hold at most
        /// lastByteMax (the value's remaining high bits), as postcard does.
        /// </summary>
        private ulong ReadVarint(int maxBytes, byte lastByteMax, string typeName)
        {
            ulong value = 0;
            for (int i = 0; i < maxBytes; i++)
            {
                byte b = ReadU8();
                value |= (ulong)(b & 0x7F) << (7 * i);
                if ((b & 0x80) == 0)
                {
                    if (i == maxBytes - 1 && b > lastByteMax)
                    {
                        throw Bad("varint overflows " + typeName);
                    }
                    return value;
                }
            }
            throw Bad("varint longer than " + maxBytes + " bytes for " + typeName);
        }

        public ushort ReadU16()
        {
            return (ushort)ReadVarint(3, 0x03, "u16");
        }

        public uint ReadU32()
        {
            return (uint)ReadVarint(5, 0x0F, "u32");
        }

        public ulong ReadU64()
        {
            return ReadVarint(10, 0x01, "u64");
        }

        /// <summary>Enum variant index (postcard encodes it as a u32 varint).</summary>
        public uint ReadTag()
        {
            return ReadU32();
        }

        /// <summary>A length (usize) that must fit in what is left of the message.</summary>
        private int ReadLength()
        {
            ulong len = ReadVarint(10, 0x01, "usize");
            if (len > (ulong)Remaining)
            {
                throw Bad("length " + len + " runs past the end of the message");
            }
            return (int)len;
        }

        public byte[] ReadBytes()
        {
            int len = ReadLength();
            byte[] result = new byte[len];
            Buffer.BlockCopy(_buf, _pos, result, 0, len);
            _pos += len;
            return result;
        }

        public string ReadString()
        {
            int len = ReadLength();
            string s;
            try
            {
                s = StrictUtf8.GetString(_buf, _pos, len);
            }
            catch (DecoderFallbackException e)
            {
                throw new ProtocolException(ErrorCode.BadMessage, "string is not valid UTF-8", e);
            }
            _pos += len;
            return s;
        }

        /// <summary>Option tag: false for None, true for Some; anything but 0/1 is an error.</summary>
        public bool ReadOptionTag()
        {
            byte b = ReadU8();
            if (b == 0)
            {
                return false;
            }
            if (b == 1)
            {
                return true;
            }
            throw Bad("option tag is neither 0 nor 1");
        }

        public string ReadOptionString()
        {
            return ReadOptionTag() ? ReadString() : null;
        }

        public byte[] ReadOptionBytes()
        {
            return ReadOptionTag() ? ReadBytes() : null;
        }

        public ushort? ReadOptionU16()
        {
            if (ReadOptionTag())
            {
                return ReadU16();
            }
            return null;
        }

        /// <summary>Vec&lt;T&gt; element count. Each element takes at least one byte, so a count above Remaining is refused early.</summary>
        public int ReadCount()
        {
            return ReadLength();
        }

        public ClientKind ReadClientKind()
        {
            uint tag = ReadTag();
            if (tag > 3)
            {
                throw Bad("unknown ClientKind " + tag);
            }
            return (ClientKind)tag;
        }

        public RelayMode ReadRelayMode()
        {
            uint tag = ReadTag();
            if (tag > 1)
            {
                throw Bad("unknown RelayMode " + tag);
            }
            return (RelayMode)tag;
        }

        public RedirectReason ReadRedirectReason()
        {
            uint tag = ReadTag();
            if (tag > 3)
            {
                throw Bad("unknown RedirectReason " + tag);
            }
            return (RedirectReason)tag;
        }

        public LeaveReason ReadLeaveReason()
        {
            uint tag = ReadTag();
            if (tag > 3)
            {
                throw Bad("unknown LeaveReason " + tag);
            }
            return (LeaveReason)tag;
        }

        /// <summary>Throws unless every byte was consumed.</summary>
        public void ExpectEnd()
        {
            if (_pos != _end)
            {
                throw Bad((_end - _pos) + " trailing bytes after the message");
            }
        }
    }
}
