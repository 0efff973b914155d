// Declared surface of the .NET 8/9 base-library members the adapters use that mono
// 6.8's class library lacks (System.Text.Json; X509CertificateLoader, .NET 9), with
// their published signatures. Not .NET's code: bodies throw, nothing here runs. Each
// names its API reference page (learn.microsoft.com/dotnet/api/<lower-case full name>).
// Everything else the adapters call (SslClientAuthenticationOptions, X509Chain,
// CryptographicOperations, Stream, ValueTask, IAsyncDisposable...) is compiled against
// mono's own class library, which has the same signatures.
//
// C# 7.2 (mono). Only compiled by the tests, never part of the library.

using System;

namespace System.Text.Json
{
    // system.text.json.jsonserializerdefaults: enum JsonSerializerDefaults { General = 0, Web = 1 }
    public enum JsonSerializerDefaults
    {
        General = 0,
        Web = 1,
    }

    // system.text.json.jsonserializeroptions: sealed class JsonSerializerOptions
    public sealed class JsonSerializerOptions
    {
        // JsonSerializerOptions(JsonSerializerDefaults defaults)
        public JsonSerializerOptions(JsonSerializerDefaults defaults)
        {
        }
    }

    // system.text.json.jsonserializer: static partial class JsonSerializer
    public static class JsonSerializer
    {
        // static string Serialize(object? value, Type inputType, JsonSerializerOptions? options = null)
        public static string Serialize(object value, Type inputType, JsonSerializerOptions options = null)
        {
            throw new NotImplementedException();
        }

        // static object? Deserialize(string json, Type returnType, JsonSerializerOptions? options = null)
        public static object Deserialize(string json, Type returnType, JsonSerializerOptions options = null)
        {
            throw new NotImplementedException();
        }
    }
}

namespace System.Security.Cryptography.X509Certificates
{
    // system.security.cryptography.x509certificates.x509certificateloader (.NET 9): static class X509CertificateLoader
    public static class X509CertificateLoader
    {
        // static X509Certificate2 LoadCertificate(byte[] data)
        public static X509Certificate2 LoadCertificate(byte[] data)
        {
            throw new NotImplementedException();
        }
    }
}
