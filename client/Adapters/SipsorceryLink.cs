// .NET adapter over SIPSorcery 10.0.16: one RTCPeerConnection and its "flight"
// DataChannel per peer, reporting to the core through ILinkEvents. Only library
// calls live here; ordering of signals, deadlines, stall detection and the queue
// bound are decided by ServiceCore/PeerPath.
//
// SIPSorcery's types are named by alias only: SIPSorcery.Net declares public types
// whose names the project also uses (IceServer...), so `using SIPSorcery.Net;` here
// would be CS0104. C# 7.2: mono compiles this file against the declared surface
// (tests/csharp/surface/SipsorcerySurface.cs) on every tests/csharp/run.sh.
#if NETCOREAPP
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Threading.Tasks;
using FlightSimP2P.Protocol;
using SipPeer = SIPSorcery.Net.RTCPeerConnection;
using SipConfiguration = SIPSorcery.Net.RTCConfiguration;
using SipIceServer = SIPSorcery.Net.RTCIceServer;
using SipCredentialType = SIPSorcery.Net.RTCIceCredentialType;
using SipTransportPolicy = SIPSorcery.Net.RTCIceTransportPolicy;
using SipCandidate = SIPSorcery.Net.RTCIceCandidate;
using SipCandidateInit = SIPSorcery.Net.RTCIceCandidateInit;
using SipCandidateType = SIPSorcery.Net.RTCIceCandidateType;
using SipGatheringState = SIPSorcery.Net.RTCIceGatheringState;
using SipIceState = SIPSorcery.Net.RTCIceConnectionState;
using SipChannel = SIPSorcery.Net.RTCDataChannel;
using SipChannelInit = SIPSorcery.Net.RTCDataChannelInit;
using SipChannelState = SIPSorcery.Net.RTCDataChannelState;
using SipPayloadProtocol = SIPSorcery.Net.DataChannelPayloadProtocols;
using SipDescription = SIPSorcery.Net.RTCSessionDescriptionInit;
using SipSdpType = SIPSorcery.Net.RTCSdpType;
using SipSetResult = SIPSorcery.Net.SetDescriptionResultEnum;
using SipChecklistEntry = SIPSorcery.Net.ChecklistEntry;

namespace FlightSimP2P.Client
{
    public sealed class SipsorceryLinkFactory : IPeerLinkFactory
    {
        private readonly WebRTCP2POptions _options;

        public SipsorceryLinkFactory(WebRTCP2POptions options)
        {
            _options = options;
        }

        public IPeerLink Create(uint peer, int linkId, ILinkEvents events)
        {
            return new SipsorceryLink(peer, linkId, events, _options.ForceTurn);
        }
    }

    internal sealed class SipsorceryLink : IPeerLink
    {
        private readonly ILinkEvents _events;
        private readonly bool _forceTurn;
        private readonly object _lock = new object();
        private readonly List<SipCandidateInit> _pendingRemote = new List<SipCandidateInit>();
        private SipPeer _pc;
        private SipChannel _dc;
        private bool _remoteSet;
        private bool _closed;
        // Issue 25's failure reasons: ICE was connected once (a later failure is `disconnected`);
        // local candidates gathered (none at the end of gathering: `no_candidates`).
        private bool _everConnected;
        private int _gathered;
        private bool _gatheringDone;

        public SipsorceryLink(uint peer, int linkId, ILinkEvents events, bool forceTurn)
        {
            Peer = peer;
            LinkId = linkId;
            _events = events;
            _forceTurn = forceTurn;
        }

        public uint Peer { get; private set; }

        public int LinkId { get; private set; }

        public long BufferedAmount
        {
            get
            {
                SipChannel dc = _dc;
                return dc == null ? 0 : (long)dc.bufferedAmount;
            }
        }

        public void Start(bool offerer, List<IceServer> iceServers)
        {
            List<SipIceServer> servers = new List<SipIceServer>();
            foreach (IceServer s in iceServers)
            {
                foreach (string url in s.Urls)
                {
                    servers.Add(new SipIceServer { urls = url, username = s.Username, credential = s.Credential, credentialType = SipCredentialType.password });
                }
            }
            SipPeer pc = new SipPeer(new SipConfiguration
            {
                iceServers = servers,
                iceTransportPolicy = _forceTurn ? SipTransportPolicy.relay : SipTransportPolicy.all,
            });
            _pc = pc;
            pc.onicecandidate += OnIceCandidate;
            pc.onicegatheringstatechange += s =>
            {
                if (s == SipGatheringState.complete)
                {
                    _gatheringDone = true;
                    _events.LocalSignal(this, new Signal.EndOfCandidates());
                }
            };
            pc.oniceconnectionstatechange += s => OnState(s.ToString(), s == SipIceState.connected);
            pc.onconnectionstatechange += s => OnState(s.ToString(), false);
            pc.ondatachannel += Attach;
            if (offerer)
            {
                _ = OfferAsync(pc);
            }
        }

        private void OnIceCandidate(SipCandidate c)
        {
            _gathered++;
            ILinkTelemetry telemetry = _events as ILinkTelemetry;
            if (telemetry != null)
            {
                telemetry.CandidateGathered(this, KindOf(c.type));
            }
            string line = c.candidate.StartsWith("candidate:", StringComparison.Ordinal) ? c.candidate : "candidate:" + c.candidate;
            string mid = string.IsNullOrEmpty(c.sdpMid) ? c.sdpMLineIndex.ToString(CultureInfo.InvariantCulture) : c.sdpMid;
            _events.LocalSignal(this, new Signal.IceCandidate(line, mid, c.sdpMLineIndex));
        }

        private async Task OfferAsync(SipPeer pc)
        {
            try
            {
                // SIPSorcery 10.0.16 advertises this as reliable-unordered in DCEP but sends every
                // chunk ordered and reliably, with no FORWARD-TSN (sipsorcery#1502): the core bounds
                // the queue and moves a stalled peer to the relay instead.
                Attach(await pc.createDataChannel("flight", new SipChannelInit { ordered = false, maxRetransmits = 0 }).ConfigureAwait(false));
                SipDescription offer = pc.createOffer();
                await pc.setLocalDescription(offer).ConfigureAwait(false);
                _events.LocalSignal(this, new Signal.Offer(offer.sdp));
            }
            catch (Exception)
            {
                Fail(IceFailReason.Other);
            }
        }

        /// <summary>
        /// An ICE or peer connection state, passed on by name: the core decides by the path
        /// rules (PathRules.ConnectionState: failed/closed fall back and retry later,
        /// disconnected falls back only, connected recovers). The reason is for the report.
        /// </summary>
        private void OnState(string state, bool iceConnected)
        {
            if (iceConnected)
            {
                _everConnected = true;
            }
            _events.StateChanged(this, state, FailReason(state));
        }

        private static CandidateKinds KindOf(SipCandidateType type)
        {
            switch (type)
            {
                case SipCandidateType.host:
                    return CandidateKinds.Host;
                case SipCandidateType.srflx:
                    return CandidateKinds.Srflx;
                case SipCandidateType.relay:
                    return CandidateKinds.Relay;
                default:
                    return CandidateKinds.Prflx;
            }
        }

        /// <summary>Why a failed/closed state ended the attempt (reported to the server).</summary>
        private IceFailReason FailReason(string state)
        {
            if (state != "failed")
            {
                return IceFailReason.Other;
            }
            if (_everConnected)
            {
                return IceFailReason.Disconnected;
            }
            return _gatheringDone && _gathered == 0 ? IceFailReason.NoCandidates : IceFailReason.Failed;
        }

        private void Fail(IceFailReason reason)
        {
            ILinkTelemetry telemetry = _events as ILinkTelemetry;
            if (telemetry != null)
            {
                telemetry.Failed(this, reason);
            }
            else
            {
                _events.Failed(this);
            }
        }

        private void Attach(SipChannel dc)
        {
            _dc = dc;
            dc.onopen += () => _events.Opened(this, UsesTurn());
            dc.onclose += () => Fail(IceFailReason.Other);
            dc.onmessage += OnMessage;
            if (dc.readyState == SipChannelState.open)
            {
                _events.Opened(this, UsesTurn());
            }
        }

        private void OnMessage(SipChannel dc, SipPayloadProtocol protocol, byte[] data)
        {
            _events.Received(this, data);
        }

        private bool UsesTurn()
        {
            SipPeer pc = _pc;
            if (pc == null || pc.GetRtpChannel() == null)
            {
                return false;
            }
            SipChecklistEntry entry = pc.GetRtpChannel().NominatedEntry;
            return entry != null
                && ((entry.LocalCandidate != null && entry.LocalCandidate.type == SipCandidateType.relay)
                    || (entry.RemoteCandidate != null && entry.RemoteCandidate.type == SipCandidateType.relay));
        }

        public void Apply(Signal signal)
        {
            SipPeer pc = _pc;
            if (pc == null || _closed)
            {
                return;
            }
            Signal.Offer offer = signal as Signal.Offer;
            Signal.Answer answer = signal as Signal.Answer;
            Signal.IceCandidate c = signal as Signal.IceCandidate;
            if (offer != null)
            {
                _ = AnswerAsync(pc, offer.Sdp);
            }
            else if (answer != null)
            {
                if (pc.setRemoteDescription(new SipDescription { type = SipSdpType.answer, sdp = answer.Sdp }) != SipSetResult.OK)
                {
                    Fail(IceFailReason.Other);
                    return;
                }
                RemoteApplied(pc);
            }
            else if (c != null && !string.IsNullOrWhiteSpace(c.Candidate))
            {
                SipCandidateInit init = new SipCandidateInit { candidate = c.Candidate, sdpMid = c.SdpMid ?? "0", sdpMLineIndex = c.SdpMLineIndex ?? 0 };
                lock (_lock)
                {
                    if (!_remoteSet)
                    {
                        _pendingRemote.Add(init);
                        return;
                    }
                }
                pc.addIceCandidate(init);
            }
        }

        private async Task AnswerAsync(SipPeer pc, string sdp)
        {
            try
            {
                if (pc.setRemoteDescription(new SipDescription { type = SipSdpType.offer, sdp = sdp }) != SipSetResult.OK)
                {
                    Fail(IceFailReason.Other);
                    return;
                }
                RemoteApplied(pc);
                SipDescription answer = pc.createAnswer();
                await pc.setLocalDescription(answer).ConfigureAwait(false);
                _events.LocalSignal(this, new Signal.Answer(answer.sdp));
            }
            catch (Exception)
            {
                Fail(IceFailReason.Other);
            }
        }

        private void RemoteApplied(SipPeer pc)
        {
            List<SipCandidateInit> pending;
            lock (_lock)
            {
                _remoteSet = true;
                pending = new List<SipCandidateInit>(_pendingRemote);
                _pendingRemote.Clear();
            }
            foreach (SipCandidateInit init in pending)
            {
                pc.addIceCandidate(init);
            }
        }

        public bool Send(byte[] frame)
        {
            SipChannel dc = _dc;
            if (dc == null || dc.readyState != SipChannelState.open)
            {
                return false;
            }
            dc.send(frame);
            return true;
        }

        public void Close()
        {
            _closed = true;
            try
            {
                SipChannel dc = _dc;
                if (dc != null)
                {
                    dc.close();
                }
                SipPeer pc = _pc;
                if (pc != null)
                {
                    pc.close();
                }
            }
            catch (Exception)
            {
            }
        }
    }
}
#endif
