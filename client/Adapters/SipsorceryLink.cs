// .NET adapter over SIPSorcery 10.x: one RTCPeerConnection and its "flight"
// DataChannel per peer, reporting to the core through ILinkEvents. Only library
// calls live here; ordering of signals, deadlines, stall detection and the queue
// bound are decided by ServiceCore/PeerPath.
#if NETCOREAPP
using System.Globalization;
using FlightSimP2P.Protocol;
using SIPSorcery.Net;

namespace FlightSimP2P.Client
{
    public sealed class SipsorceryLinkFactory : IPeerLinkFactory
    {
        private readonly WebRTCP2POptions _options;

        public SipsorceryLinkFactory(WebRTCP2POptions options) => _options = options;

        public IPeerLink Create(uint peer, int linkId, ILinkEvents events) => new SipsorceryLink(peer, linkId, events, _options.ForceTurn);
    }

    internal sealed class SipsorceryLink : IPeerLink
    {
        private readonly ILinkEvents _events;
        private readonly bool _forceTurn;
        private readonly object _lock = new object();
        private readonly List<RTCIceCandidateInit> _pendingRemote = new List<RTCIceCandidateInit>();
        private RTCPeerConnection _pc;
        private RTCDataChannel _dc;
        private bool _remoteSet;
        private bool _closed;

        public SipsorceryLink(uint peer, int linkId, ILinkEvents events, bool forceTurn)
        {
            Peer = peer;
            LinkId = linkId;
            _events = events;
            _forceTurn = forceTurn;
        }

        public uint Peer { get; }

        public int LinkId { get; }

        public long BufferedAmount => (long)(_dc?.bufferedAmount ?? 0);

        public void Start(bool offerer, List<IceServer> iceServers)
        {
            var servers = new List<RTCIceServer>();
            foreach (IceServer s in iceServers)
            {
                foreach (string url in s.Urls)
                {
                    servers.Add(new RTCIceServer { urls = url, username = s.Username, credential = s.Credential, credentialType = RTCIceCredentialType.password });
                }
            }
            var pc = new RTCPeerConnection(new RTCConfiguration
            {
                iceServers = servers,
                iceTransportPolicy = _forceTurn ? RTCIceTransportPolicy.relay : RTCIceTransportPolicy.all,
            });
            _pc = pc;
            pc.onicecandidate += c =>
            {
                string line = c.candidate.StartsWith("candidate:", StringComparison.Ordinal) ? c.candidate : "candidate:" + c.candidate;
                string mid = string.IsNullOrEmpty(c.sdpMid) ? c.sdpMLineIndex.ToString(CultureInfo.InvariantCulture) : c.sdpMid;
                _events.LocalSignal(this, new Signal.IceCandidate(line, mid, c.sdpMLineIndex));
            };
            pc.onicegatheringstatechange += s =>
            {
                if (s == RTCIceGatheringState.complete)
                {
                    _events.LocalSignal(this, new Signal.EndOfCandidates());
                }
            };
            pc.oniceconnectionstatechange += s =>
            {
                if (s == RTCIceConnectionState.disconnected) _events.Interrupted(this, true);
                else if (s == RTCIceConnectionState.connected) _events.Interrupted(this, false);
                else if (s == RTCIceConnectionState.failed || s == RTCIceConnectionState.closed) _events.Failed(this);
            };
            pc.onconnectionstatechange += s =>
            {
                if (s == RTCPeerConnectionState.failed || s == RTCPeerConnectionState.closed) _events.Failed(this);
            };
            pc.ondatachannel += Attach;
            if (offerer)
            {
                _ = OfferAsync(pc);
            }
        }

        private async Task OfferAsync(RTCPeerConnection pc)
        {
            try
            {
                // SIPSorcery ignores ordered/maxRetransmits (sipsorcery#1502); the core bounds the queue instead.
                Attach(await pc.createDataChannel("flight", new RTCDataChannelInit { ordered = false, maxRetransmits = 0 }).ConfigureAwait(false));
                RTCSessionDescriptionInit offer = pc.createOffer();
                await pc.setLocalDescription(offer).ConfigureAwait(false);
                _events.LocalSignal(this, new Signal.Offer(offer.sdp));
            }
            catch (Exception)
            {
                _events.Failed(this);
            }
        }

        private void Attach(RTCDataChannel dc)
        {
            _dc = dc;
            dc.onopen += () => _events.Opened(this, UsesTurn());
            dc.onclose += () => _events.Failed(this);
            dc.onmessage += (_, _, data) => _events.Received(this, data);
            if (dc.readyState == RTCDataChannelState.open)
            {
                _events.Opened(this, UsesTurn());
            }
        }

        private bool UsesTurn()
        {
            var entry = _pc?.GetRtpChannel()?.NominatedEntry;
            return entry != null && (entry.LocalCandidate?.type == RTCIceCandidateType.relay || entry.RemoteCandidate?.type == RTCIceCandidateType.relay);
        }

        public void Apply(Signal signal)
        {
            RTCPeerConnection pc = _pc;
            if (pc == null || _closed)
            {
                return;
            }
            if (signal is Signal.Offer offer)
            {
                _ = AnswerAsync(pc, offer.Sdp);
            }
            else if (signal is Signal.Answer answer)
            {
                if (pc.setRemoteDescription(new RTCSessionDescriptionInit { type = RTCSdpType.answer, sdp = answer.Sdp }) != SetDescriptionResultEnum.OK)
                {
                    _events.Failed(this);
                    return;
                }
                RemoteApplied(pc);
            }
            else if (signal is Signal.IceCandidate c && !string.IsNullOrWhiteSpace(c.Candidate))
            {
                var init = new RTCIceCandidateInit { candidate = c.Candidate, sdpMid = c.SdpMid ?? "0", sdpMLineIndex = c.SdpMLineIndex ?? 0 };
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

        private async Task AnswerAsync(RTCPeerConnection pc, string sdp)
        {
            try
            {
                if (pc.setRemoteDescription(new RTCSessionDescriptionInit { type = RTCSdpType.offer, sdp = sdp }) != SetDescriptionResultEnum.OK)
                {
                    _events.Failed(this);
                    return;
                }
                RemoteApplied(pc);
                RTCSessionDescriptionInit answer = pc.createAnswer();
                await pc.setLocalDescription(answer).ConfigureAwait(false);
                _events.LocalSignal(this, new Signal.Answer(answer.sdp));
            }
            catch (Exception)
            {
                _events.Failed(this);
            }
        }

        private void RemoteApplied(RTCPeerConnection pc)
        {
            List<RTCIceCandidateInit> pending;
            lock (_lock)
            {
                _remoteSet = true;
                pending = new List<RTCIceCandidateInit>(_pendingRemote);
                _pendingRemote.Clear();
            }
            foreach (RTCIceCandidateInit init in pending)
            {
                pc.addIceCandidate(init);
            }
        }

        public bool Send(byte[] frame)
        {
            RTCDataChannel dc = _dc;
            if (dc == null || dc.readyState != RTCDataChannelState.open)
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
                _dc?.close();
                _pc?.close();
            }
            catch (Exception)
            {
            }
        }
    }
}
#endif
