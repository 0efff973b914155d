// Declared surface of SIPSorcery 10.0.16: every member client/Adapters/SipsorceryLink.cs
// uses, with the signature the package publishes, so mono can compile the adapter
// (tests/csharp/run.sh). Not SIPSorcery's code: bodies throw, nothing here runs.
// Each member names the file of sipsorcery-org/sipsorcery at tag v10.0.16 where its
// signature was read. An adapter that uses a member not declared here does not compile.
//
// C# 7.2 (mono). Only compiled by the tests, never part of the library.

using System;
using System.Collections.Generic;
using System.Threading.Tasks;

namespace SIPSorcery.Net
{
    // src/SIPSorcery/net/WebRTC/IRTCPeerConnection.cs: enum RTCSdpType { answer = 0, offer = 1, pranswer = 2, rollback = 3 }
    public enum RTCSdpType
    {
        answer = 0,
        offer = 1,
        pranswer = 2,
        rollback = 3,
    }

    // src/SIPSorcery/net/WebRTC/IRTCPeerConnection.cs: enum RTCIceCredentialType { password }
    public enum RTCIceCredentialType
    {
        password,
    }

    // src/SIPSorcery/net/WebRTC/IRTCPeerConnection.cs: class RTCIceServer, public fields urls, username, credentialType, credential
    public class RTCIceServer
    {
        public string urls;
        public string username;
        public RTCIceCredentialType credentialType;
        public string credential;
    }

    // src/SIPSorcery/net/WebRTC/IRTCPeerConnection.cs: enum RTCIceTransportPolicy { all, relay }
    public enum RTCIceTransportPolicy
    {
        all,
        relay,
    }

    // src/SIPSorcery/net/WebRTC/IRTCPeerConnection.cs: class RTCConfiguration, public fields
    // List<RTCIceServer> iceServers; RTCIceTransportPolicy iceTransportPolicy (others unused here)
    public class RTCConfiguration
    {
        public List<RTCIceServer> iceServers;
        public RTCIceTransportPolicy iceTransportPolicy;
    }

    // src/SIPSorcery/net/WebRTC/IRTCPeerConnection.cs: enum RTCPeerConnectionState { closed, failed, disconnected, @new, connecting, connected }
    public enum RTCPeerConnectionState
    {
        closed,
        failed,
        disconnected,
        @new,
        connecting,
        connected,
    }

    // src/SIPSorcery/net/ICE/IRTCIceCandidate.cs: enum RTCIceGatheringState { @new, gathering, complete }
    public enum RTCIceGatheringState
    {
        @new,
        gathering,
        complete,
    }

    // src/SIPSorcery/net/ICE/IRTCIceCandidate.cs: enum RTCIceConnectionState { closed, failed, disconnected, @new, checking, connected }
    public enum RTCIceConnectionState
    {
        closed,
        failed,
        disconnected,
        @new,
        checking,
        connected,
    }

    // src/SIPSorcery/net/ICE/IRTCIceCandidate.cs: enum RTCIceCandidateType { host, prflx, srflx, relay }
    public enum RTCIceCandidateType
    {
        host,
        prflx,
        srflx,
        relay,
    }

    // src/SIPSorcery/net/ICE/IRTCIceCandidate.cs: class RTCIceCandidateInit
    // { string candidate { get; set; } string sdpMid { get; set; } ushort sdpMLineIndex { get; set; } string usernameFragment { get; set; } }
    public class RTCIceCandidateInit
    {
        public string candidate { get; set; }
        public string sdpMid { get; set; }
        public ushort sdpMLineIndex { get; set; }
        public string usernameFragment { get; set; }
    }

    // src/SIPSorcery/net/ICE/RTCIceCandidate.cs: class RTCIceCandidate
    // { string candidate => ToString(); string sdpMid { get; set; } ushort sdpMLineIndex { get; set; } RTCIceCandidateType type { get; set; } }
    public class RTCIceCandidate
    {
        public string candidate { get { throw new NotImplementedException(); } }
        public string sdpMid { get; set; }
        public ushort sdpMLineIndex { get; set; }
        public RTCIceCandidateType type { get; set; }
    }

    // src/SIPSorcery/net/ICE/IceChecklistEntry.cs: class ChecklistEntry { public RTCIceCandidate LocalCandidate; public RTCIceCandidate RemoteCandidate; }
    public class ChecklistEntry
    {
        public RTCIceCandidate LocalCandidate;
        public RTCIceCandidate RemoteCandidate;
    }

    // src/SIPSorcery/net/ICE/RtpIceChannel.cs: class RtpIceChannel : RTPChannel
    // { public ChecklistEntry NominatedEntry { get; private set; } public static int FAILED_TIMEOUT_PERIOD = 16; DISCONNECTED_TIMEOUT_PERIOD = 8 }
    public class RtpIceChannel
    {
        public static int DISCONNECTED_TIMEOUT_PERIOD = 8;
        public static int FAILED_TIMEOUT_PERIOD = 16;

        public ChecklistEntry NominatedEntry { get { throw new NotImplementedException(); } }
    }

    // src/SIPSorcery/net/RTP/Enums/SetDescriptionResultEnum.cs: enum SetDescriptionResultEnum { OK, AudioIncompatible, ... } (only OK is named here)
    public enum SetDescriptionResultEnum
    {
        OK,
    }

    // src/SIPSorcery/net/WebRTC/RTCPeerConnection.cs: class RTCSessionDescriptionInit { RTCSdpType type { get; set; } string sdp { get; set; } }
    public class RTCSessionDescriptionInit
    {
        public RTCSdpType type { get; set; }
        public string sdp { get; set; }
    }

    // src/SIPSorcery/net/WebRTC/IRTCPeerConnection.cs: class RTCOfferOptions / class RTCAnswerOptions (the optional arguments of createOffer/createAnswer)
    public class RTCOfferOptions
    {
    }

    public class RTCAnswerOptions
    {
    }

    // src/SIPSorcery/sys/Net/PortRange.cs: class PortRange (an optional argument of the RTCPeerConnection constructor)
    public class PortRange
    {
        private PortRange()
        {
        }
    }

    // src/SIPSorcery/net/WebRTC/IRTCDataChannel.cs: class RTCDataChannelInit
    // { bool? ordered; ushort? maxPacketLifeTime; ushort? maxRetransmits; string protocol; bool? negotiated; ushort? id } (all { get; set; })
    public class RTCDataChannelInit
    {
        public bool? ordered { get; set; }
        public ushort? maxPacketLifeTime { get; set; }
        public ushort? maxRetransmits { get; set; }
        public string protocol { get; set; }
        public bool? negotiated { get; set; }
        public ushort? id { get; set; }
    }

    // src/SIPSorcery/net/WebRTC/IRTCDataChannel.cs: enum RTCDataChannelState { connecting, open, closing, closed }
    public enum RTCDataChannelState
    {
        connecting,
        open,
        closing,
        closed,
    }

    // src/SIPSorcery/net/WebRTC/RTCDataChannel.cs: enum DataChannelPayloadProtocols : uint (the second argument of onmessage)
    public enum DataChannelPayloadProtocols : uint
    {
    }

    // src/SIPSorcery/net/WebRTC/IRTCDataChannel.cs:
    // delegate void OnDataChannelMessageDelegate(RTCDataChannel dc, DataChannelPayloadProtocols protocol, byte[] data)
    public delegate void OnDataChannelMessageDelegate(RTCDataChannel dc, DataChannelPayloadProtocols protocol, byte[] data);

    // src/SIPSorcery/net/WebRTC/RTCDataChannel.cs: class RTCDataChannel
    public class RTCDataChannel
    {
        private RTCDataChannel()
        {
        }

        // RTCDataChannelState readyState { get; internal set; }
        public RTCDataChannelState readyState { get { throw new NotImplementedException(); } }

        // ulong bufferedAmount => _transport?.RTCSctpAssociation?.SendBufferedAmount ?? 0
        public ulong bufferedAmount { get { throw new NotImplementedException(); } }

        // event Action onopen; event Action onclose; event OnDataChannelMessageDelegate onmessage
        public event Action onopen { add { } remove { } }
        public event Action onclose { add { } remove { } }
        public event OnDataChannelMessageDelegate onmessage { add { } remove { } }

        // void send(byte[] data, int offset = 0, int count = -1)
        public void send(byte[] data, int offset = 0, int count = -1)
        {
            throw new NotImplementedException();
        }

        // void close()
        public void close()
        {
            throw new NotImplementedException();
        }
    }

    // src/SIPSorcery/net/WebRTC/RTCPeerConnection.cs: class RTCPeerConnection : RTPSession, IRTCPeerConnection
    public class RTCPeerConnection
    {
        // RTCPeerConnection(RTCConfiguration configuration, int bindPort = 0, PortRange portRange = null, Boolean videoAsPrimary = false)
        public RTCPeerConnection(RTCConfiguration configuration, int bindPort = 0, PortRange portRange = null, bool videoAsPrimary = false)
        {
            throw new NotImplementedException();
        }

        // event Action<RTCIceCandidate> onicecandidate (custom add/remove)
        public event Action<RTCIceCandidate> onicecandidate { add { } remove { } }

        // event Action<RTCIceConnectionState> oniceconnectionstatechange
        public event Action<RTCIceConnectionState> oniceconnectionstatechange { add { } remove { } }

        // event Action<RTCIceGatheringState> onicegatheringstatechange
        public event Action<RTCIceGatheringState> onicegatheringstatechange { add { } remove { } }

        // event Action<RTCPeerConnectionState> onconnectionstatechange
        public event Action<RTCPeerConnectionState> onconnectionstatechange { add { } remove { } }

        // event Action<RTCDataChannel> ondatachannel
        public event Action<RTCDataChannel> ondatachannel { add { } remove { } }

        // Task setLocalDescription(RTCSessionDescriptionInit init)
        public Task setLocalDescription(RTCSessionDescriptionInit init)
        {
            throw new NotImplementedException();
        }

        // SetDescriptionResultEnum setRemoteDescription(RTCSessionDescriptionInit init)
        public SetDescriptionResultEnum setRemoteDescription(RTCSessionDescriptionInit init)
        {
            throw new NotImplementedException();
        }

        // void close()
        public void close()
        {
            throw new NotImplementedException();
        }

        // RTCSessionDescriptionInit createOffer(RTCOfferOptions options = null)
        public RTCSessionDescriptionInit createOffer(RTCOfferOptions options = null)
        {
            throw new NotImplementedException();
        }

        // RTCSessionDescriptionInit createAnswer(RTCAnswerOptions options = null)
        public RTCSessionDescriptionInit createAnswer(RTCAnswerOptions options = null)
        {
            throw new NotImplementedException();
        }

        // RtpIceChannel GetRtpChannel()
        public RtpIceChannel GetRtpChannel()
        {
            throw new NotImplementedException();
        }

        // void addIceCandidate(RTCIceCandidateInit candidateInit)
        public void addIceCandidate(RTCIceCandidateInit candidateInit)
        {
            throw new NotImplementedException();
        }

        // async Task<RTCDataChannel> createDataChannel(string label, RTCDataChannelInit init = null)
        public Task<RTCDataChannel> createDataChannel(string label, RTCDataChannelInit init = null)
        {
            throw new NotImplementedException();
        }
    }
}

namespace SIPSorcery.Net
{
    // src/SIPSorcery/net/ICE/IceServer.cs: public class IceServer. The adapters never use it;
    // it is declared because its name is also FlightSimP2P.Protocol.IceServer's: a file that
    // imports SIPSorcery.Net wholesale gets CS0104 here as on .NET (tests/csharp/surface/check.sh).
    public class IceServer
    {
        private IceServer()
        {
        }
    }
}
