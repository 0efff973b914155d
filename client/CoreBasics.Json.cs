// Just enough JSON (RFC 8259 syntax, checked) to split hub envelopes into raw values
// and read and write strings and numbers. Split from CoreBasics.cs.
//
// Pure (no I/O, no threads, no clock reads); C# 7.2, compiled by Debian's mono in CI and
// unchanged by the .NET 8/9 build (the rules in Protocol.Codes.cs).

using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace FlightSimP2P.Client
{
    /// <summary>Just enough JSON to split envelopes into raw values (RFC 8259 syntax, checked).</summary>
    public static class Json
    {
        public static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (char c in s)
            {
                if (c == '"' || c == '\\')
                {
                    sb.Append('\\').Append(c);
                }
                else if (c < 0x20)
                {
                    sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                }
                else
                {
                    sb.Append(c);
                }
            }
            sb.Append('"');
        }

        public static string Quote(string s)
        {
            StringBuilder sb = new StringBuilder();
            WriteString(sb, s);
            return sb.ToString();
        }

        /// <summary>Top-level object: member name to raw value text; null if not a valid object.</summary>
        public static Dictionary<string, string> TryParseObject(string text)
        {
            int i = SkipWs(text, 0);
            if (i >= text.Length || text[i] != '{')
            {
                return null;
            }
            Dictionary<string, string> result = new Dictionary<string, string>(StringComparer.Ordinal);
            i = SkipWs(text, i + 1);
            if (i < text.Length && text[i] == '}')
            {
                return SkipWs(text, i + 1) == text.Length ? result : null;
            }
            while (true)
            {
                int start = i;
                int end = SkipValue(text, i);
                if (end < 0 || text[start] != '"')
                {
                    return null;
                }
                string name = TryParseString(text.Substring(start, end - start));
                i = SkipWs(text, end);
                if (i >= text.Length || text[i] != ':')
                {
                    return null;
                }
                i = SkipWs(text, i + 1);
                int vend = SkipValue(text, i);
                if (vend < 0)
                {
                    return null;
                }
                result[name] = text.Substring(i, vend - i);
                i = SkipWs(text, vend);
                if (i >= text.Length)
                {
                    return null;
                }
                if (text[i] == '}')
                {
                    return SkipWs(text, i + 1) == text.Length ? result : null;
                }
                if (text[i] != ',')
                {
                    return null;
                }
                i = SkipWs(text, i + 1);
            }
        }

        /// <summary>Raw element texts of an array; null if not an array.</summary>
        public static List<string> TryParseArray(string text)
        {
            List<string> items = new List<string>();
            int i = SkipWs(text, 0);
            if (i >= text.Length || text[i] != '[')
            {
                return null;
            }
            i = SkipWs(text, i + 1);
            if (i < text.Length && text[i] == ']')
            {
                return SkipWs(text, i + 1) == text.Length ? items : null;
            }
            while (true)
            {
                int end = SkipValue(text, i);
                if (end < 0)
                {
                    return null;
                }
                items.Add(text.Substring(i, end - i));
                i = SkipWs(text, end);
                if (i >= text.Length)
                {
                    return null;
                }
                if (text[i] == ']')
                {
                    return SkipWs(text, i + 1) == text.Length ? items : null;
                }
                if (text[i] != ',')
                {
                    return null;
                }
                i = SkipWs(text, i + 1);
            }
        }

        /// <summary>A JSON string literal's value; null if raw is not one.</summary>
        public static string TryParseString(string raw)
        {
            if (raw == null || raw.Length < 2 || raw[0] != '"' || SkipValue(raw, 0) != raw.Length)
            {
                return null;
            }
            StringBuilder sb = new StringBuilder();
            for (int i = 1; i < raw.Length - 1; i++)
            {
                char c = raw[i];
                if (c != '\\')
                {
                    sb.Append(c);
                    continue;
                }
                char e = raw[++i];
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u':
                        sb.Append((char)int.Parse(raw.Substring(i + 1, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        i += 4;
                        break;
                    default: sb.Append(e); break;
                }
            }
            return sb.ToString();
        }

        private static int SkipWs(string t, int i)
        {
            while (i < t.Length && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r'))
            {
                i++;
            }
            return i;
        }

        /// <summary>End index of the value starting at i, or -1.</summary>
        private static int SkipValue(string t, int i)
        {
            if (i >= t.Length)
            {
                return -1;
            }
            char c = t[i];
            if (c == '"')
            {
                for (int j = i + 1; j < t.Length; j++)
                {
                    if (t[j] == '\\')
                    {
                        if (j + 1 >= t.Length)
                        {
                            return -1;
                        }
                        if (t[j + 1] == 'u')
                        {
                            if (j + 5 >= t.Length)
                            {
                                return -1;
                            }
                            for (int k = j + 2; k <= j + 5; k++)
                            {
                                if (Uri.IsHexDigit(t[k]) == false)
                                {
                                    return -1;
                                }
                            }
                            j += 5;
                        }
                        else if ("\"\\/bfnrt".IndexOf(t[j + 1]) < 0)
                        {
                            return -1;
                        }
                        else
                        {
                            j++;
                        }
                    }
                    else if (t[j] == '"')
                    {
                        return j + 1;
                    }
                    else if (t[j] < 0x20)
                    {
                        return -1;
                    }
                }
                return -1;
            }
            if (c == '{' || c == '[')
            {
                char close = c == '{' ? '}' : ']';
                int j = SkipWs(t, i + 1);
                if (j < t.Length && t[j] == close)
                {
                    return j + 1;
                }
                while (true)
                {
                    if (c == '{')
                    {
                        if (j >= t.Length || t[j] != '"')
                        {
                            return -1;
                        }
                        j = SkipValue(t, j);
                        if (j < 0)
                        {
                            return -1;
                        }
                        j = SkipWs(t, j);
                        if (j >= t.Length || t[j] != ':')
                        {
                            return -1;
                        }
                        j = SkipWs(t, j + 1);
                    }
                    j = SkipValue(t, j);
                    if (j < 0)
                    {
                        return -1;
                    }
                    j = SkipWs(t, j);
                    if (j >= t.Length)
                    {
                        return -1;
                    }
                    if (t[j] == close)
                    {
                        return j + 1;
                    }
                    if (t[j] != ',')
                    {
                        return -1;
                    }
                    j = SkipWs(t, j + 1);
                }
            }
            foreach (string lit in new[] { "true", "false", "null" })
            {
                if (string.CompareOrdinal(t, i, lit, 0, lit.Length) == 0)
                {
                    return i + lit.Length;
                }
            }
            int n = i;
            if (n < t.Length && t[n] == '-')
            {
                n++;
            }
            int digits = n;
            while (n < t.Length && (char.IsDigit(t[n]) || t[n] == '.' || t[n] == 'e' || t[n] == 'E' || t[n] == '+' || t[n] == '-'))
            {
                n++;
            }
            return n > digits && char.IsDigit(t[digits]) ? n : -1;
        }
    }
}
