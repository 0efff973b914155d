// ServiceCore, flight data: snapshots wrapped and routed direct or through the relay,
// frames received either way, acks, and the latest-state rule on delivery. Split from
// ServiceCore.cs (a partial class).
//
// C# 7.2 (mono).

using System;
using System.Collections.Generic;
using FlightSimP2P.Protocol;

namespace FlightSimP2P.Client
{
    public sealed partial class ServiceCore
    {
        /// <summary>Wraps and routes one snapshot. False when nothing could be sent.</summary>
        public bool SendFlight(long now, uint to, byte[] data)
        {
            if (_conn == 0 && _peers.Count == 0)
            {
                return false;
            }
            // Never 0xFFFFFFFF: its header would be the quality frames' marker (PROTOCOL.md section 14).
            _sendSeq = QualityFrame.NextSeq(_sendSeq);
            byte[] frame = SnapshotEnvelope.Wrap(_sendSeq, data, 0, data.Length);
            List<PeerState> targets = new List<PeerState>();
            if (to == Wire.AllPeers)
            {
                targets.AddRange(_peers.Values);
            }
            else
            {
                PeerState p = GetPeer(to);
                if (p == null)
                {
                    return false;
                }
                targets.Add(p);
            }
            List<uint> relay = new List<uint>();
            bool any = false;
            foreach (PeerState p in targets)
            {
                long buffered = p.LinkId != 0 ? _metrics.BufferedAmount(p.Info.Id, p.LinkId) : 0;
                SendDecision d = p.Path.Decide(now, frame, _sendSeq, buffered);
                if (d == SendDecision.Direct)
                {
                    SendDirect(p, frame);
                    p.Path.OnSent(now, _sendSeq, frame.Length);
                    p.Quality.FrameOut(now);
                    any = true;
                }
                else if (d == SendDecision.Held)
                {
                    any = true;
                }
                else if (p.Online)
                {
                    relay.Add(p.Info.Id);
                    if (RelayUp)
                    {
                        p.Quality.FrameOut(now);
                    }
                }
                PathMaybeChanged(now, p);
            }
            if (relay.Count > 0 && RelayUp)
            {
                any = true;
                if (to == Wire.AllPeers && relay.Count == _peers.Count)
                {
                    SendRelay(Wire.AllPeers, frame);
                }
                else
                {
                    foreach (uint id in relay)
                    {
                        SendRelay(id, frame);
                    }
                }
            }
            return any;
        }

        private void SendDirect(PeerState p, byte[] frame)
        {
            CoreOutput o = Emit(OutputKind.SendDirect);
            o.Peer = p.Info.Id;
            o.LinkId = p.LinkId;
            o.Data = frame;
        }

        /// <summary>On every connection that carries relay frames (during a move's overlap, both: rule 10).</summary>
        private void SendRelay(uint to, byte[] frame)
        {
            foreach (int conn in RelayConns())
            {
                CoreOutput o = Emit(OutputKind.SendRelay);
                o.Conn = conn;
                o.Peer = to;
                o.Data = frame;
            }
        }

        public void RelayFrame(long now, int conn, uint from, byte[] payload)
        {
            if (conn == _conn && _conn != 0)
            {
                Heard(now);
            }
            if (!TakesRelayFrom(conn))
            {
                return;
            }
            PeerState p = GetPeer(from);
            if (QualityFrameIn(now, from, p, payload, FlightPath.Relay))
            {
                return;
            }
            if (p != null)
            {
                p.Path.OnRelayRx(now);
            }
            Deliver(now, from, payload, FlightPath.Relay);
        }

        public void DirectFrame(long now, uint from, int linkId, byte[] payload)
        {
            PeerState p = GetPeer(from);
            if (p == null || p.LinkId != linkId)
            {
                return;
            }
            if (QualityFrameIn(now, from, p, payload, p.Path.Turn ? FlightPath.Turn : FlightPath.Direct))
            {
                // Answered on this link; never acknowledged, never flight data.
                return;
            }
            ushort ack16;
            if (PeerAck.TryDecode(payload, out ack16))
            {
                p.Path.OnAck(now, ack16);
                PathMaybeChanged(now, p);
                return;
            }
            if (payload.Length < SnapshotEnvelope.HeaderBytes)
            {
                return;
            }
            if (p.Info.Client == ClientKind.DotNet)
            {
                // Every flight frame (and probe) that arrives directly is acknowledged at once.
                uint seq = (uint)(payload[0] | (payload[1] << 8) | (payload[2] << 16) | (payload[3] << 24));
                CoreOutput ack = Emit(OutputKind.SendDirect);
                ack.Peer = from;
                ack.LinkId = linkId;
                ack.Data = PeerAck.Encode(seq);
            }
            p.Path.OnDirectRx(now);
            Deliver(now, from, payload, p.Path.Turn ? FlightPath.Turn : FlightPath.Direct);
        }

        private void Deliver(long now, uint from, byte[] payload, FlightPath path)
        {
            PeerState peer = GetPeer(from);
            uint seq;
            int offset;
            if (!SnapshotEnvelope.TryUnwrap(payload, 0, payload.Length, out seq, out offset))
            {
                return;
            }
            uint last;
            if (_lastSeq.TryGetValue(from, out last) && !SnapshotEnvelope.IsNewer(seq, last))
            {
                StaleDropped++;
                // A move's overlap brings every relay frame twice: the copy is no stale sample.
                if (peer != null && !_move.Moving)
                {
                    peer.Quality.Stale(now);
                }
                return;
            }
            _lastSeq[from] = seq;
            if (peer != null)
            {
                FlightFrameIn(now, peer, path);
            }
            byte[] data = new byte[payload.Length - offset];
            Buffer.BlockCopy(payload, offset, data, 0, data.Length);
            CoreOutput o = Emit(OutputKind.FlightData);
            o.Peer = from;
            o.Data = data;
            o.Path = path;
        }
    }
}
