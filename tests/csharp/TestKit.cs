// The one C# test kit: every suite under tests/csharp (offline and live, and the
// SignalR-style app's driver) counts, prints and summarises through it, instead of each
// file carrying its own copy of Test/Check/Pass/Fail/WaitFor. Suites import it with
// `using static FlightSimP2P.Tests.TestKit;` and are compiled together with this file
// (tests/csharp/run.sh, live.sh).
//
// Two ways to use it, and they combine:
//   * Test(name, action): one named test; a Check inside it that fails (on any thread)
//     ends the test there with that check's text, and any exception fails it too;
//   * Check(ok, what) outside any Test: one counted check, printed as its own line.
// Lines: "ok   <prefix><what>" and "FAIL <prefix><what>: <why>"; Summary() prints the last
// line, "N passed, N failed", that run.sh and live.sh add up.
//
// TestJson: a small strict JSON reader (RFC 8259) for the suites that read data files
// (docs/client-vectors.json): objects become Dictionary<string, object>, arrays
// List<object>, numbers double, and true/false/null bool/null.
//
// Plain C# 7.2 (mono), System only: the codec suite links it with nothing but the codec.

using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Threading;

namespace FlightSimP2P.Tests
{
    /// <summary>A check inside a Test that did not hold: ends the test with its text.</summary>
    internal sealed class CheckFailedException : Exception
    {
        public CheckFailedException(string what) : base("check failed: " + what)
        {
        }
    }

    internal static class TestKit
    {
        private static readonly object Gate = new object();
        private static int _passed;
        private static int _failed;
        // Tests under way (a Test may run on one thread while its checks run on others).
        private static int _inTest;

        /// <summary>Put before every ok/FAIL line's text (e.g. "C# host: ").</summary>
        public static string Prefix = "";

        /// <summary>Passing checks print nothing (the codec suite has hundreds); failures always print.</summary>
        public static bool QuietPasses { get; set; }

        public static int Passed
        {
            get { lock (Gate) { return _passed; } }
        }

        public static int Failed
        {
            get { lock (Gate) { return _failed; } }
        }

        /// <summary>Counts a pass and prints it (unless QuietPasses).</summary>
        public static void Pass(string what)
        {
            lock (Gate)
            {
                _passed++;
                if (!QuietPasses)
                {
                    Console.WriteLine("ok   " + Prefix + what);
                    Console.Out.Flush();
                }
            }
        }

        /// <summary>Counts a failure and prints it with why (may be null).</summary>
        public static void Fail(string what, string why)
        {
            lock (Gate)
            {
                _failed++;
                Console.WriteLine("FAIL " + Prefix + what + (string.IsNullOrEmpty(why) ? "" : ": " + why));
                Console.Out.Flush();
            }
        }

        /// <summary>A line that is not a check (figures, notes): not counted.</summary>
        public static void Note(string line)
        {
            lock (Gate)
            {
                Console.WriteLine(line);
                Console.Out.Flush();
            }
        }

        /// <summary>Inside a Test: throws if !ok (the test fails there). Outside: one counted check.</summary>
        public static bool Check(bool ok, string what)
        {
            return Check(ok, what, null);
        }

        /// <summary>As Check(ok, what); detail is shown in the line (after the text when it passes, as the reason when it fails).</summary>
        public static bool Check(bool ok, string what, string detail)
        {
            if (Volatile.Read(ref _inTest) > 0)
            {
                if (!ok)
                {
                    throw new CheckFailedException(what + (string.IsNullOrEmpty(detail) ? "" : " (" + detail + ")"));
                }
                return true;
            }
            if (ok)
            {
                Pass(what + (string.IsNullOrEmpty(detail) ? "" : " (" + detail + ")"));
            }
            else
            {
                Fail(what, detail);
            }
            return ok;
        }

        /// <summary>Check that expected equals actual (EqualityComparer of T), saying both when not.</summary>
        public static bool Eq<T>(T expected, T actual, string what)
        {
            bool ok = EqualityComparer<T>.Default.Equals(expected, actual);
            return Check(ok, what, ok ? null : "expected <" + expected + "> got <" + actual + ">");
        }

        /// <summary>Check that expected equals actual (object.Equals: a boxed 3 is not a boxed 3L).</summary>
        public static bool Eq(object expected, object actual, string what)
        {
            bool ok = Equals(expected, actual);
            return Check(ok, what, ok ? null : "expected <" + expected + "> got <" + actual + ">");
        }

        /// <summary>Runs one named test: passes if it returns, fails with the failed check or the exception.</summary>
        public static void Test(string name, Action test)
        {
            Interlocked.Increment(ref _inTest);
            Exception error = null;
            try
            {
                test();
            }
            catch (Exception e)
            {
                error = e;
            }
            finally
            {
                Interlocked.Decrement(ref _inTest);
            }
            if (error == null)
            {
                Pass(name);
            }
            else
            {
                Fail(name, error is CheckFailedException ? error.Message : error.ToString());
            }
        }

        /// <summary>Polls cond every 10 ms for up to ms; true as soon as it holds.</summary>
        public static bool WaitFor(Func<bool> cond, int ms = 5000)
        {
            Stopwatch sw = Stopwatch.StartNew();
            while (sw.ElapsedMilliseconds < ms)
            {
                if (cond())
                {
                    return true;
                }
                Thread.Sleep(10);
            }
            return cond();
        }

        /// <summary>Prints "N passed, N failed" (the line the scripts add up); the exit code: 0 only if something passed and nothing failed.</summary>
        public static int Summary()
        {
            lock (Gate)
            {
                Console.WriteLine(_passed + " passed, " + _failed + " failed");
                Console.Out.Flush();
                return _failed == 0 && _passed > 0 ? 0 : 1;
            }
        }
    }

    /// <summary>A small strict JSON reader: Dictionary&lt;string, object&gt;, List&lt;object&gt;, string, double, bool, null.</summary>
    internal sealed class TestJson
    {
        private readonly string _s;
        private int _i;

        private TestJson(string s)
        {
            _s = s;
        }

        public static object Parse(string text)
        {
            TestJson r = new TestJson(text);
            object v = r.Value();
            r.Space();
            if (r._i != text.Length)
            {
                throw r.Error("trailing characters");
            }
            return v;
        }

        private FormatException Error(string what)
        {
            return new FormatException("JSON: " + what + " at offset " + _i);
        }

        private void Space()
        {
            while (_i < _s.Length && (_s[_i] == ' ' || _s[_i] == '\t' || _s[_i] == '\n' || _s[_i] == '\r'))
            {
                _i++;
            }
        }

        private bool Literal(string word)
        {
            if (string.CompareOrdinal(_s, _i, word, 0, word.Length) == 0)
            {
                _i += word.Length;
                return true;
            }
            return false;
        }

        private object Value()
        {
            Space();
            if (_i >= _s.Length)
            {
                throw Error("unexpected end");
            }
            char c = _s[_i];
            if (c == '{')
            {
                _i++;
                Dictionary<string, object> o = new Dictionary<string, object>();
                Space();
                if (_i < _s.Length && _s[_i] == '}')
                {
                    _i++;
                    return o;
                }
                while (true)
                {
                    Space();
                    string key = String();
                    Space();
                    Expect(':');
                    if (o.ContainsKey(key))
                    {
                        throw Error("duplicate key " + key);
                    }
                    o[key] = Value();
                    Space();
                    if (_i < _s.Length && _s[_i] == ',')
                    {
                        _i++;
                        continue;
                    }
                    Expect('}');
                    return o;
                }
            }
            if (c == '[')
            {
                _i++;
                List<object> a = new List<object>();
                Space();
                if (_i < _s.Length && _s[_i] == ']')
                {
                    _i++;
                    return a;
                }
                while (true)
                {
                    a.Add(Value());
                    Space();
                    if (_i < _s.Length && _s[_i] == ',')
                    {
                        _i++;
                        continue;
                    }
                    Expect(']');
                    return a;
                }
            }
            if (c == '"')
            {
                return String();
            }
            if (Literal("true"))
            {
                return true;
            }
            if (Literal("false"))
            {
                return false;
            }
            if (Literal("null"))
            {
                return null;
            }
            int start = _i;
            while (_i < _s.Length && "+-0123456789.eE".IndexOf(_s[_i]) >= 0)
            {
                _i++;
            }
            double d;
            if (_i == start || !double.TryParse(_s.Substring(start, _i - start), NumberStyles.Float, CultureInfo.InvariantCulture, out d))
            {
                throw Error("bad value");
            }
            return d;
        }

        private void Expect(char c)
        {
            if (_i >= _s.Length || _s[_i] != c)
            {
                throw Error("expected '" + c + "'");
            }
            _i++;
        }

        private string String()
        {
            Expect('"');
            StringBuilder sb = new StringBuilder();
            while (true)
            {
                if (_i >= _s.Length)
                {
                    throw Error("unterminated string");
                }
                char c = _s[_i++];
                if (c == '"')
                {
                    return sb.ToString();
                }
                if (c < ' ')
                {
                    throw Error("control character in a string");
                }
                if (c != '\\')
                {
                    sb.Append(c);
                    continue;
                }
                if (_i >= _s.Length)
                {
                    throw Error("unterminated escape");
                }
                char e = _s[_i++];
                switch (e)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u':
                        if (_i + 4 > _s.Length)
                        {
                            throw Error("short \\u escape");
                        }
                        sb.Append((char)int.Parse(_s.Substring(_i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        _i += 4;
                        break;
                    default:
                        throw Error("bad escape");
                }
            }
        }
    }
}
