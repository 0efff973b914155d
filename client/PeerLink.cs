// The WebRTC attempt with one remote peer: SIPSorcery RTCPeerConnection plus one
// DataChannel, signaled through the server (PROTOCOL.md sections 4 and 8).
//
// SIPSorcery's limits and how this class designs for them (see ANCHORS.md):
//  * Its data channels ignore `ordered`/`maxRetransmits`: they are reliable and
//    ordered (sipsorcery#1502). So frames carry a sequence number (SnapshotEnvelope)
//    and stale ones are dropped on receipt, and a frame is dropped rather than
//    queued when the channel's send buffer is already full.
//  * ICE reports `failed` only after RtpIceChannel.FAILED_TIMEOUT_PERIOD (16 s), and
//    a DTLS failure closes the connection instead of reporting `failed`. So any of
//    failed, closed-before-open, or our own deadline switches the peer to the relay.
//  * Until the DataChannel opens, and after a failure, flight data to the peer goes
//    through the server's relay: players see each other from the first frame.

using FlightSimP2P.Protocol;
using Microsoft.Extensions.Logging;
using SIPSorcery.Net;
// SIPSorcery.Net has its own IceServer (a resolved STUN/TURN server); ours is the Welcome entry.
using IceServer = FlightSimP2P.Protocol.IceServer;

namespace FlightSimP2P.Client;

internal sealed class PeerLink : IAsyncDisposable
{
    private const string ChannelLabel = "flight";

    private readonly uint _selfId;
    private readonly WebRTCP2POptions _options;
    private readonly ILogger _logger;
    private readonly Func<uint, Signal, Task> _sendSignal;
    private readonly Action<uint, byte[], FlightPath> _onData;
    private readonly Action<PeerLink> _onChanged;
    private readonly SemaphoreSlim _ops = new(1, 1);
    private readonly object _lock = new();
    private readonly List<RTCIceCandidateInit> _pendingRemote = new();
    private readonly List<RTCIceCandidate> _pendingLocal = new();

    private IReadOnlyList<IceServer> _iceServers;
    private RTCPeerConnection? _pc;
    private RTCDataChannel? _dc;
    private CancellationTokenSource? _deadline;
    private Task _signalChain = Task.CompletedTask;
    private int _generation;
    private bool _remoteDescriptionSet;
    private bool _localDescriptionSent;
    private bool _ignoringRemoteOffer;
    private bool _forceRelay;
    private bool _disposed;
    private int _retries;
    private long _droppedBusy;

    public PeerLink(
        uint selfId,
        uint peerId,
        bool isOfferer,
        IReadOnlyList<IceServer> iceServers,
        WebRTCP2POptions options,
        ILogger logger,
        Func<uint, Signal, Task> sendSignal,
        Action<uint, byte[], FlightPath> onData,
        Action<PeerLink> onChanged)
    {
        _selfId = selfId;
        PeerId = peerId;
        IsOfferer = isOfferer;
        _iceServers = iceServers;
        _options = options;
        _logger = logger;
        _sendSignal = sendSignal;
        _onData = onData;
        _onChanged = onChanged;
        State = options.EnableDirect ? DirectState.Connecting : DirectState.Disabled;
    }

    public uint PeerId { get; }

    /// <summary>True when this side makes the offer (it was in the session first).</summary>
    public bool IsOfferer { get; private set; }

    public DirectState State { get; private set; }

    /// <summary>The path flight data to this peer takes now.</summary>
    public FlightPath Path { get; private set; } = FlightPath.Relay;

    /// <summary>Frames dropped because the DataChannel's send buffer was full.</summary>
    public long DroppedBusy => Interlocked.Read(ref _droppedBusy);

    /// <summary>Fresh ICE servers (TURN credentials expire); used by the next attempt.</summary>
    public void UpdateIceServers(IReadOnlyList<IceServer> iceServers)
    {
        lock (_lock)
        {
            _iceServers = iceServers;
        }
    }

    /// <summary>Begins the first attempt: the offerer offers, the answerer waits for an offer (with a deadline).</summary>
    public async Task StartAsync()
    {
        if (State == DirectState.Disabled)
        {
            return;
        }

        if (IsOfferer)
        {
            await OfferAsync().ConfigureAwait(false);
        }
        else
        {
            int gen;
            lock (_lock)
            {
                gen = _generation;
            }

            ArmDeadline(gen);
        }
    }

    /// <summary>
    /// Starts a new direct attempt now, from either side: this side offers, and the other
    /// side answers any offer (a simultaneous offer is settled by the lower peer id).
    /// </summary>
    public Task RetryAsync()
    {
        lock (_lock)
        {
            if (_disposed || _forceRelay || !_options.EnableDirect)
            {
                return Task.CompletedTask;
            }

            _retries = 0;
        }

        return OfferAsync();
    }

    /// <summary>Testing and "force relay" buttons: stop using the direct path for this peer.</summary>
    public async Task SetForceRelayAsync(bool forceRelay)
    {
        lock (_lock)
        {
            _forceRelay = forceRelay;
        }

        if (forceRelay)
        {
            RTCPeerConnection? pc = Detach(DirectState.Disabled);
            ClosePeerConnection(pc);
            _onChanged(this);
        }
        else
        {
            await RetryAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Hands one frame to the DataChannel; false when the direct path is not usable (use the relay).</summary>
    public bool TrySend(byte[] frame)
    {
        RTCDataChannel? dc;
        lock (_lock)
        {
            if (State != DirectState.Connected || _forceRelay)
            {
                return false;
            }

            dc = _dc;
        }

        if (dc is null || dc.readyState != RTCDataChannelState.open)
        {
            return false;
        }

        if (dc.bufferedAmount > _options.MaxDataChannelBufferedBytes)
        {
            // The reliable channel is backed up: a newer snapshot will follow, drop this one.
            Interlocked.Increment(ref _droppedBusy);
            return true;
        }

        try
        {
            dc.send(frame);
            return true;
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "DataChannel send to peer {Peer} failed", PeerId);
            return false;
        }
    }

    /// <summary>
    /// Queues a signal from the peer. Signals are handled strictly in arrival order (an offer
    /// before its candidates) without blocking the caller (the control-stream reader).
    /// </summary>
    public void EnqueueSignal(Signal signal)
    {
        lock (_lock)
        {
            _signalChain = _signalChain
                .ContinueWith(_ => HandleSignalSafeAsync(signal), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default)
                .Unwrap();
        }
    }

    private async Task HandleSignalSafeAsync(Signal signal)
    {
        try
        {
            await HandleSignalAsync(signal).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "handling {Signal} from peer {Peer}", signal.GetType().Name, PeerId);
        }
    }

    private async Task HandleSignalAsync(Signal signal)
    {
        if (State == DirectState.Disabled && signal is not Signal.Offer)
        {
            return;
        }

        switch (signal)
        {
            case Signal.Offer offer:
                await OnRemoteOfferAsync(offer.Sdp).ConfigureAwait(false);
                break;
            case Signal.Answer answer:
                await OnRemoteAnswerAsync(answer.Sdp).ConfigureAwait(false);
                break;
            case Signal.IceCandidate candidate:
                OnRemoteCandidate(candidate);
                break;
            case Signal.EndOfCandidates:
                // SIPSorcery has no end-of-candidates call; its checks simply run out.
                break;
        }
    }

    private async Task OfferAsync()
    {
        await _ops.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_disposed)
            {
                return;
            }

            (RTCPeerConnection pc, int gen, RTCPeerConnection? old) = NewPeerConnection(isOfferer: true);
            ClosePeerConnection(old);
            _onChanged(this);

            // The channel is created before the offer so the SDP carries the m=application section.
            // ordered/maxRetransmits are what browsers honour; SIPSorcery ignores them (reliable, ordered).
            RTCDataChannel dc = await pc.createDataChannel(ChannelLabel, new RTCDataChannelInit { ordered = false, maxRetransmits = 0 }).ConfigureAwait(false);
            AttachChannel(dc, gen);

            RTCSessionDescriptionInit offer = pc.createOffer();
            await pc.setLocalDescription(offer).ConfigureAwait(false);
            await _sendSignal(PeerId, new Signal.Offer(offer.sdp)).ConfigureAwait(false);
            await LocalDescriptionSentAsync(gen).ConfigureAwait(false);
            ArmDeadline(gen);
            _logger.LogDebug("offered to peer {Peer}", PeerId);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "could not offer to peer {Peer}", PeerId);
            FailCurrent("offer failed: " + e.Message);
        }
        finally
        {
            _ops.Release();
        }
    }

    private async Task OnRemoteOfferAsync(string sdp)
    {
        await _ops.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_disposed)
            {
                return;
            }

            lock (_lock)
            {
                if (_forceRelay || !_options.EnableDirect)
                {
                    return;
                }

                // Glare: both sides offered. The lower peer id keeps its offer; the other answers.
                if (IsOfferer && _pc is not null && !_remoteDescriptionSet && State == DirectState.Connecting && _selfId < PeerId)
                {
                    _ignoringRemoteOffer = true;
                    _logger.LogDebug("glare with peer {Peer}: keeping my offer", PeerId);
                    return;
                }
            }

            (RTCPeerConnection pc, int gen, RTCPeerConnection? old) = NewPeerConnection(isOfferer: false);
            ClosePeerConnection(old);
            _onChanged(this);

            SetDescriptionResultEnum result = pc.setRemoteDescription(new RTCSessionDescriptionInit { type = RTCSdpType.offer, sdp = sdp });
            if (result != SetDescriptionResultEnum.OK)
            {
                Fail(gen, "remote offer refused: " + result);
                return;
            }

            RemoteDescriptionApplied(pc, gen);
            RTCSessionDescriptionInit answer = pc.createAnswer();
            await pc.setLocalDescription(answer).ConfigureAwait(false);
            await _sendSignal(PeerId, new Signal.Answer(answer.sdp)).ConfigureAwait(false);
            await LocalDescriptionSentAsync(gen).ConfigureAwait(false);
            ArmDeadline(gen);
            _logger.LogDebug("answered peer {Peer}", PeerId);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "could not answer peer {Peer}", PeerId);
            FailCurrent("answer failed: " + e.Message);
        }
        finally
        {
            _ops.Release();
        }
    }

    private async Task OnRemoteAnswerAsync(string sdp)
    {
        await _ops.WaitAsync().ConfigureAwait(false);
        try
        {
            RTCPeerConnection? pc;
            int gen;
            lock (_lock)
            {
                pc = _pc;
                gen = _generation;
                if (!IsOfferer || pc is null || _remoteDescriptionSet)
                {
                    return;
                }

                _ignoringRemoteOffer = false;
            }

            SetDescriptionResultEnum result = pc.setRemoteDescription(new RTCSessionDescriptionInit { type = RTCSdpType.answer, sdp = sdp });
            if (result != SetDescriptionResultEnum.OK)
            {
                Fail(gen, "remote answer refused: " + result);
                return;
            }

            RemoteDescriptionApplied(pc, gen);
        }
        catch (Exception e)
        {
            _logger.LogWarning(e, "could not apply the answer of peer {Peer}", PeerId);
            FailCurrent("answer not applied: " + e.Message);
        }
        finally
        {
            _ops.Release();
        }
    }

    private void OnRemoteCandidate(Signal.IceCandidate candidate)
    {
        // Browsers signal the end of candidates with an empty candidate string.
        if (string.IsNullOrWhiteSpace(candidate.Candidate))
        {
            return;
        }

        var init = new RTCIceCandidateInit
        {
            candidate = candidate.Candidate,
            sdpMid = candidate.SdpMid ?? "0",
            sdpMLineIndex = candidate.SdpMLineIndex ?? 0,
        };

        RTCPeerConnection? pc;
        lock (_lock)
        {
            if (_ignoringRemoteOffer)
            {
                // Candidates of an offer we turned down in glare.
                return;
            }

            if (_pc is null || !_remoteDescriptionSet)
            {
                _pendingRemote.Add(init);
                return;
            }

            pc = _pc;
        }

        AddRemoteCandidate(pc, init);
    }

    private void AddRemoteCandidate(RTCPeerConnection pc, RTCIceCandidateInit init)
    {
        try
        {
            pc.addIceCandidate(init);
        }
        catch (Exception e)
        {
            // e.g. an mDNS ".local" host candidate SIPSorcery cannot resolve: other candidates may still work.
            _logger.LogDebug(e, "ignored ICE candidate from peer {Peer}: {Candidate}", PeerId, init.candidate);
        }
    }

    private void RemoteDescriptionApplied(RTCPeerConnection pc, int gen)
    {
        List<RTCIceCandidateInit> pending;
        lock (_lock)
        {
            if (gen != _generation)
            {
                return;
            }

            _remoteDescriptionSet = true;
            pending = new List<RTCIceCandidateInit>(_pendingRemote);
            _pendingRemote.Clear();
        }

        foreach (RTCIceCandidateInit init in pending)
        {
            AddRemoteCandidate(pc, init);
        }
    }

    /// <summary>Replaces the peer connection with a fresh one; returns the new one, its generation and the old one (to close).</summary>
    private (RTCPeerConnection pc, int gen, RTCPeerConnection? old) NewPeerConnection(bool isOfferer)
    {
        IReadOnlyList<IceServer> servers;
        int gen;
        RTCPeerConnection? old;
        lock (_lock)
        {
            old = _pc;
            _pc = null;
            _dc = null;
            _deadline?.Cancel();
            _deadline = null;
            gen = ++_generation;
            IsOfferer = isOfferer;
            _remoteDescriptionSet = false;
            _localDescriptionSent = false;
            _ignoringRemoteOffer = false;
            _pendingRemote.Clear();
            _pendingLocal.Clear();
            State = DirectState.Connecting;
            Path = FlightPath.Relay;
            servers = _iceServers;
        }

        var config = new RTCConfiguration
        {
            iceServers = ToRtcIceServers(servers),
            iceTransportPolicy = _options.ForceTurn ? RTCIceTransportPolicy.relay : RTCIceTransportPolicy.all,
        };

        var pc = new RTCPeerConnection(config);
        pc.onicecandidate += candidate => OnLocalCandidate(gen, candidate);
        pc.onicegatheringstatechange += state =>
        {
            if (state == RTCIceGatheringState.complete)
            {
                _ = SendEndOfCandidatesAsync(gen);
            }
        };
        pc.oniceconnectionstatechange += state => OnIceConnectionState(gen, state);
        pc.onconnectionstatechange += state => OnConnectionState(gen, state);
        pc.ondatachannel += channel =>
        {
            AttachChannel(channel, gen);
            if (channel.readyState == RTCDataChannelState.open)
            {
                OnChannelOpen(gen, channel);
            }
        };

        lock (_lock)
        {
            if (gen == _generation)
            {
                _pc = pc;
            }
        }

        return (pc, gen, old);
    }

    /// <summary>One RTCIceServer per URL: SIPSorcery's RTCIceServer.urls holds a single URL.</summary>
    private static List<RTCIceServer> ToRtcIceServers(IReadOnlyList<IceServer> servers)
    {
        var list = new List<RTCIceServer>();
        foreach (IceServer server in servers)
        {
            foreach (string url in server.Urls)
            {
                list.Add(new RTCIceServer
                {
                    urls = url,
                    username = server.Username,
                    credential = server.Credential,
                    credentialType = RTCIceCredentialType.password,
                });
            }
        }

        return list;
    }

    private void OnLocalCandidate(int gen, RTCIceCandidate candidate)
    {
        lock (_lock)
        {
            if (gen != _generation)
            {
                return;
            }

            if (!_localDescriptionSent)
            {
                // Never let a candidate overtake the SDP: browsers reject addIceCandidate before setRemoteDescription.
                _pendingLocal.Add(candidate);
                return;
            }
        }

        _ = SendCandidateAsync(candidate);
    }

    private async Task LocalDescriptionSentAsync(int gen)
    {
        List<RTCIceCandidate> pending;
        lock (_lock)
        {
            if (gen != _generation)
            {
                return;
            }

            _localDescriptionSent = true;
            pending = new List<RTCIceCandidate>(_pendingLocal);
            _pendingLocal.Clear();
        }

        foreach (RTCIceCandidate candidate in pending)
        {
            await SendCandidateAsync(candidate).ConfigureAwait(false);
        }
    }

    private async Task SendCandidateAsync(RTCIceCandidate candidate)
    {
        try
        {
            // SIPSorcery's `candidate` lacks the "candidate:" prefix browsers expect.
            string line = candidate.candidate;
            if (!line.StartsWith("candidate:", StringComparison.Ordinal))
            {
                line = "candidate:" + line;
            }

            string mid = string.IsNullOrEmpty(candidate.sdpMid) ? candidate.sdpMLineIndex.ToString(System.Globalization.CultureInfo.InvariantCulture) : candidate.sdpMid;
            await _sendSignal(PeerId, new Signal.IceCandidate(line, mid, candidate.sdpMLineIndex)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "could not send an ICE candidate to peer {Peer}", PeerId);
        }
    }

    private async Task SendEndOfCandidatesAsync(int gen)
    {
        try
        {
            // Wait until the SDP went out, so the end marker follows the candidates.
            for (int i = 0; i < 100; i++)
            {
                lock (_lock)
                {
                    if (gen != _generation)
                    {
                        return;
                    }

                    if (_localDescriptionSent)
                    {
                        break;
                    }
                }

                await Task.Delay(50).ConfigureAwait(false);
            }

            await _sendSignal(PeerId, new Signal.EndOfCandidates()).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "could not send end-of-candidates to peer {Peer}", PeerId);
        }
    }

    private void AttachChannel(RTCDataChannel channel, int gen)
    {
        channel.onopen += () => OnChannelOpen(gen, channel);
        channel.onclose += () => Fail(gen, "DataChannel closed");
        channel.onerror += error => _logger.LogDebug("DataChannel error with peer {Peer}: {Error}", PeerId, error);
        channel.onmessage += (_, _, data) => OnChannelMessage(gen, data);
    }

    private void OnChannelOpen(int gen, RTCDataChannel channel)
    {
        lock (_lock)
        {
            if (gen != _generation || _forceRelay || State == DirectState.Connected)
            {
                return;
            }

            _dc = channel;
            State = DirectState.Connected;
            Path = UsesTurn(_pc) ? FlightPath.Turn : FlightPath.Direct;
            _deadline?.Cancel();
            _deadline = null;
            _retries = 0;
        }

        _logger.LogInformation("direct path to peer {Peer} open ({Path})", PeerId, Path);
        _onChanged(this);
    }

    private void OnChannelMessage(int gen, byte[] data)
    {
        FlightPath path;
        lock (_lock)
        {
            // A late frame from an older connection is still the peer's data; the snapshot filter judges it.
            path = gen == _generation && Path != FlightPath.Relay ? Path : FlightPath.Direct;
        }

        _onData(PeerId, data, path);
    }

    private void OnIceConnectionState(int gen, RTCIceConnectionState state)
    {
        switch (state)
        {
            case RTCIceConnectionState.connected:
                bool changed = false;
                lock (_lock)
                {
                    if (gen != _generation)
                    {
                        return;
                    }

                    if (State == DirectState.Interrupted && _dc is not null)
                    {
                        State = DirectState.Connected;
                        changed = true;
                    }

                    if (State == DirectState.Connected)
                    {
                        // The nominated pair may have changed (e.g. from a relay to a direct pair).
                        FlightPath path = UsesTurn(_pc) ? FlightPath.Turn : FlightPath.Direct;
                        changed |= path != Path;
                        Path = path;
                    }
                }

                if (changed)
                {
                    _onChanged(this);
                }

                break;
            case RTCIceConnectionState.disconnected:
                bool interrupted = false;
                lock (_lock)
                {
                    if (gen == _generation && State == DirectState.Connected)
                    {
                        State = DirectState.Interrupted;
                        Path = FlightPath.Relay;
                        interrupted = true;
                    }
                }

                if (interrupted)
                {
                    _logger.LogInformation("direct path to peer {Peer} interrupted; relaying meanwhile", PeerId);
                    _onChanged(this);
                }

                break;
            case RTCIceConnectionState.failed:
                Fail(gen, "ICE failed");
                break;
            case RTCIceConnectionState.closed:
                Fail(gen, "ICE closed");
                break;
        }
    }

    private void OnConnectionState(int gen, RTCPeerConnectionState state)
    {
        if (state == RTCPeerConnectionState.failed)
        {
            Fail(gen, "peer connection failed (DTLS or ICE)");
        }
        else if (state == RTCPeerConnectionState.closed)
        {
            // SIPSorcery closes (rather than fails) on a DTLS handshake failure.
            Fail(gen, "peer connection closed");
        }
    }

    private static bool UsesTurn(RTCPeerConnection? pc)
    {
        try
        {
            var entry = pc?.GetRtpChannel()?.NominatedEntry;
            return entry is not null
                && (entry.LocalCandidate?.type == RTCIceCandidateType.relay || entry.RemoteCandidate?.type == RTCIceCandidateType.relay);
        }
        catch (Exception)
        {
            return false;
        }
    }

    private void ArmDeadline(int gen)
    {
        var cts = new CancellationTokenSource();
        lock (_lock)
        {
            if (gen != _generation || State != DirectState.Connecting)
            {
                cts.Dispose();
                return;
            }

            _deadline?.Cancel();
            _deadline = cts;
        }

        _ = DeadlineAsync(gen, cts.Token);
    }

    private async Task DeadlineAsync(int gen, CancellationToken token)
    {
        try
        {
            await Task.Delay(_options.DirectConnectTimeout, token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        Fail(gen, $"no direct path within {_options.DirectConnectTimeout.TotalSeconds:0.#} s");
    }

    private void FailCurrent(string reason)
    {
        int gen;
        lock (_lock)
        {
            gen = _generation;
        }

        Fail(gen, reason);
    }

    /// <summary>Switches this peer to the relay for good (until a retry or a new offer).</summary>
    private void Fail(int gen, string reason)
    {
        RTCPeerConnection? pc;
        bool retry;
        lock (_lock)
        {
            if (gen != _generation || _disposed || State is DirectState.Failed or DirectState.Disabled)
            {
                return;
            }

            pc = DetachLocked(DirectState.Failed);
            retry = IsOfferer && _options.DirectRetryDelay > TimeSpan.Zero && _retries < _options.DirectMaxRetries;
            if (retry)
            {
                _retries++;
            }
        }

        _logger.LogInformation("direct path to peer {Peer} failed ({Reason}); using the relay", PeerId, reason);
        ClosePeerConnection(pc);
        _onChanged(this);
        if (retry)
        {
            _ = RetryLaterAsync(gen);
        }
    }

    private async Task RetryLaterAsync(int failedGen)
    {
        await Task.Delay(_options.DirectRetryDelay).ConfigureAwait(false);
        lock (_lock)
        {
            // Only if nothing happened since (no new offer, no force-relay, not disposed).
            if (_disposed || _forceRelay || _generation != failedGen || State != DirectState.Failed)
            {
                return;
            }
        }

        await OfferAsync().ConfigureAwait(false);
    }

    private RTCPeerConnection? Detach(DirectState state)
    {
        lock (_lock)
        {
            return DetachLocked(state);
        }
    }

    private RTCPeerConnection? DetachLocked(DirectState state)
    {
        RTCPeerConnection? pc = _pc;
        _pc = null;
        _dc = null;
        _deadline?.Cancel();
        _deadline = null;
        State = state;
        Path = FlightPath.Relay;
        return pc;
    }

    private void ClosePeerConnection(RTCPeerConnection? pc)
    {
        if (pc is null)
        {
            return;
        }

        try
        {
            pc.close();
            pc.Dispose();
        }
        catch (Exception e)
        {
            _logger.LogDebug(e, "closing the peer connection to {Peer}", PeerId);
        }
    }

    public ValueTask DisposeAsync()
    {
        RTCPeerConnection? pc;
        lock (_lock)
        {
            if (_disposed)
            {
                return ValueTask.CompletedTask;
            }

            _disposed = true;
            _generation++;
            pc = DetachLocked(DirectState.Disabled);
        }

        ClosePeerConnection(pc);
        return ValueTask.CompletedTask;
    }
}
