//! The shell of [`quality`](super::quality): one [`Hub`] per
//! [`Client`](super::Client), shared by its connections' readers.
//!
//! Like the liveness [`Watch`](super::reconnect::Watch), the decisions are
//! the pure [`Quality`]'s; this keeps the clock and the lock and does the
//! I/O it asks for:
//! * the readers hand it every relay frame's payload ([`Hub::incoming`]):
//!   one 4-byte compare tells a quality frame from flight data; an echo
//!   request is answered at once on the relay, to its sender; a reply is
//!   measured; neither reaches the application. Flight frames are counted.
//! * the readers hand it every control message ([`Hub::control`]): the
//!   `Welcome` (may reports go?) and who is in my session.
//! * each connection's reader runs [`Hub::run`] beside the liveness watch:
//!   it sends the echo requests when due, and the `Report` on that
//!   connection's control stream when the schedule says so.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, Notify};

use super::quality::{Quality, QualityEvent, QualitySnapshot};
use super::RelaySender;
use crate::protocol::report::{classify, PeerPayload, Report, QUALITY_MAGIC};
use crate::protocol::{ClientMsg, PeerId, ServerMsg};

/// Quality events kept for a slow subscriber before it lags.
const EVENT_BACKLOG: usize = 256;

/// Every quality tracker of one client, and the means to act on them.
pub(super) struct Hub {
    state: Mutex<Quality>,
    /// `now` (ms) counts from here.
    epoch: Instant,
    /// Something changed that may move the next wake-up earlier.
    wake: Notify,
    /// Echo frames go out here (uncounted: they are not flight data).
    relay: RelaySender,
    events: broadcast::Sender<QualityEvent>,
    /// Reports written so far, and the last one.
    sent: Mutex<(u64, Option<Report>)>,
}

impl Hub {
    /// A hub sending echoes on `relay`; `telemetry`: send reports at all;
    /// `echo`: send echo requests.
    pub(super) fn new(telemetry: bool, echo: bool, relay: RelaySender) -> Hub {
        Hub {
            state: Mutex::new(Quality::new(telemetry, echo)),
            epoch: Instant::now(),
            wake: Notify::new(),
            relay,
            events: broadcast::channel(EVENT_BACKLOG).0,
            sent: Mutex::new((0, None)),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Apply `f` at `now`, then publish the quality events it caused.
    fn with<T>(&self, f: impl FnOnce(&mut Quality, u64) -> T) -> Option<T> {
        let now = self.now();
        let mut q = self.state.lock().ok()?;
        let r = f(&mut q, now);
        while let Some(e) = q.poll_event(now) {
            // Nobody subscribed is fine.
            let _ = self.events.send(e);
        }
        Some(r)
    }

    /// Count a flight frame: the hot path, so no events are published here
    /// (a grade change it noticed is published by [`run`](Self::run), which
    /// wakes at every deadline that can change a grade).
    fn count(&self, f: impl FnOnce(&mut Quality, u64)) {
        let now = self.now();
        if let Ok(mut q) = self.state.lock() {
            f(&mut q, now);
        }
    }

    /// A connect attempt (the first, or a reconnection) starts.
    pub(super) fn attempt_started(&self) {
        self.with(|q, now| q.attempt_started(now));
    }

    /// A control message from the server: the Welcome, and my session's members.
    pub(super) fn control(&self, m: &ServerMsg) {
        let changed = self.with(|q, now| match m {
            ServerMsg::Welcome(w) => {
                q.welcome(now, w.version, w.peer_id, w.resumed);
                true
            }
            ServerMsg::SessionCreated(info) | ServerMsg::SessionJoined(info) => {
                let ids: Vec<PeerId> = info.peers.iter().map(|p| p.id).collect();
                q.session(now, &ids);
                true
            }
            ServerMsg::PeerJoined(p) => {
                q.peer_joined(now, p.id);
                true
            }
            ServerMsg::PeerLeft { peer, .. } => {
                q.peer_left(now, *peer);
                true
            }
            ServerMsg::PeerStatus { peer, online } => {
                q.peer_status(now, *peer, *online);
                true
            }
            ServerMsg::SessionLeft { .. } => {
                q.session_left(now);
                true
            }
            _ => false,
        });
        if changed == Some(true) {
            self.wake.notify_one();
        }
    }

    /// A relay frame's payload from `from`. True when it was a quality
    /// frame (handled here; the application never sees it), false for
    /// flight data (counted, and for the application).
    pub(super) fn incoming(&self, from: PeerId, payload: &[u8]) -> bool {
        if payload.get(..4) != Some(&QUALITY_MAGIC[..]) {
            self.count(|q, now| q.flight_in(now, from));
            return false;
        }
        // A look-alike that is not exactly a quality frame is dropped.
        if let PeerPayload::Echo(e) = classify(payload) {
            match self.with(|q, now| q.echo(now, from, e)).flatten() {
                // On the path it came on: the relay, back to its sender.
                Some(reply) => self.relay.send_nowait(from, &reply.encode()),
                None => self.wake.notify_one(),
            }
        }
        true
    }

    /// A flight frame went to `to` (0: every peer of my session).
    pub(super) fn flight_out(&self, to: PeerId) {
        self.count(|q, now| q.flight_out(now, to));
    }

    /// Every link now.
    pub(super) fn snapshots(&self) -> Vec<QualitySnapshot> {
        self.with(|q, now| q.snapshots(now)).unwrap_or_default()
    }

    /// How many reports were written, and the last.
    pub(super) fn reports(&self) -> (u64, Option<Report>) {
        self.sent.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Quality events from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<QualityEvent> {
        self.events.subscribe()
    }

    /// Send the echo requests and reports when due, reports with `send` (on
    /// the connection running this); never returns (it ends with its reader).
    pub(super) async fn run<F, Fut>(&self, send: F)
    where
        F: Fn(ClientMsg) -> Fut,
        Fut: Future<Output = ()>,
    {
        loop {
            // Registered before looking, so a change meanwhile is not missed.
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (echoes, report, wake) = self
                .with(|q, now| {
                    let echoes = q.tick(now);
                    // Events first (in `with`), so that changes count as pending.
                    while let Some(e) = q.poll_event(now) {
                        let _ = self.events.send(e);
                    }
                    let report = q.poll_report(now);
                    (echoes, report, q.poll_timeout(now))
                })
                .unwrap_or_default();
            for (peer, echo) in echoes {
                self.relay.send_nowait(peer, &echo.encode());
            }
            if let Some(r) = report {
                let report = Report::v1(&r);
                send(ClientMsg::Report(report.clone())).await;
                if let Ok(mut sent) = self.sent.lock() {
                    *sent = (sent.0 + 1, Some(report));
                }
            }
            match wake {
                Some(at) => {
                    let at = self.epoch + Duration::from_millis(at);
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }
}
