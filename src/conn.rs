//! One connection's life, whatever carries it (raw QUIC, WebTransport, a
//! WebSocket): opened in the session core with its outbound handle
//! registered, control messages in, relay frames handed to
//! [`crate::relay`], and closed exactly once, gauges and all.
//!
//! Why a module of its own: the transports differ only in how bytes travel.
//! Each adapts its bytes in and out (control bodies travel unframed between
//! here and the transport, which adds its own framing) and leaves everything
//! else to a [`Conn`]; a change to the lifecycle is made here, once.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tracing::debug;

use crate::hub::{now, Ctrl, LatestQueue, Link, Shared};
use crate::metrics::Refusal;
use crate::protocol::{self, ClientMsg, ErrorCode};
use crate::session::{ConnId, ConnMeta, Transport, Via};
use crate::wire::Wire;

/// A connection attempt the core admitted ([`crate::session::Core::admit`])
/// and still counts as pending until it is opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    pub(crate) ip: IpAddr,
    pub(crate) validated: bool,
}

/// One open connection. Cloned into its tasks as an `Arc`; closed by
/// [`Conn::close`] or, at the latest, when the last handle is dropped.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    transport: Transport,
    closed: AtomicBool,
    /// The protocol version its `Hello` said (0 before one): how its
    /// `CreateSession` and `JoinSession` are laid out (version 4 adds
    /// `region_rtts`, [`protocol::decode_client`]).
    version: AtomicU16,
}

/// What the transport's writer sends: control items in order, relay frames
/// for a receiver without datagrams, and a kill switch for slow consumers.
pub(crate) struct Outlet {
    pub(crate) control: mpsc::Receiver<Ctrl>,
    pub(crate) relay: Arc<LatestQueue>,
    pub(crate) kill: Arc<Notify>,
    /// Relay datagrams handed to quinn (QUIC transports count their losses with it).
    pub(crate) datagrams_queued: Arc<AtomicU64>,
}

impl Conn {
    /// Open a connection whose client has proved its address: take a slot
    /// in the core (releasing its pending attempt, if it was admitted) and
    /// register its outbound handle, under one lock. `Err` is the code to
    /// refuse it with; the refusal is counted.
    pub(crate) fn open(
        shared: &Arc<Shared>,
        meta: ConnMeta,
        admitted: Option<Admitted>,
        wire: Option<Wire>,
    ) -> Result<(Arc<Conn>, Outlet), ErrorCode> {
        Self::open_with(shared, meta, admitted, wire, false)
    }

    /// Open a QUIC connection on 0-RTT data, before its address is proven:
    /// served at once, but holding no slot of its address until
    /// [`Conn::confirm`] (see [`crate::session::Core::open_provisional`]).
    /// Its attempt stays pending meanwhile.
    pub(crate) fn open_provisional(
        shared: &Arc<Shared>,
        meta: ConnMeta,
        wire: Wire,
    ) -> Result<(Arc<Conn>, Outlet), ErrorCode> {
        Self::open_with(shared, meta, None, Some(wire), true)
    }

    /// The handshake of a provisional connection completed: release its
    /// pending attempt and take a slot of its address. `Err` is the code to
    /// close it with.
    pub(crate) fn confirm(&self, admitted: Admitted) -> Result<(), ErrorCode> {
        let confirmed = {
            let mut st = self.shared.lock();
            st.core.abandon(admitted.ip, admitted.validated);
            let confirmed = st.core.confirm(self.id);
            self.shared.flush(&mut st);
            confirmed
        };
        if let Err(code) = confirmed {
            self.shared.metrics.refused(Refusal::Code(code));
        }
        confirmed
    }

    fn open_with(
        shared: &Arc<Shared>,
        meta: ConnMeta,
        admitted: Option<Admitted>,
        wire: Option<Wire>,
        provisional: bool,
    ) -> Result<(Arc<Conn>, Outlet), ErrorCode> {
        let (control_tx, control) = mpsc::channel(shared.tuning.control_queue.max(8));
        let relay = Arc::new(LatestQueue::new(shared.tuning.stream_relay_queue));
        let kill = Arc::new(Notify::new());
        let datagrams_queued = Arc::new(AtomicU64::new(0));
        let opened = {
            let mut st = shared.lock();
            if let Some(a) = admitted {
                st.core.abandon(a.ip, a.validated);
            }
            let opened = if provisional {
                st.core.open_provisional(now(), meta)
            } else {
                st.core.open(now(), meta)
            };
            if let Ok(id) = opened {
                st.links.insert(
                    id,
                    Link {
                        wire,
                        control: control_tx,
                        relay_queue: relay.clone(),
                        datagrams_queued: datagrams_queued.clone(),
                        kill: kill.clone(),
                        dropped: false,
                    },
                );
            }
            shared.flush(&mut st);
            opened
        };
        let id = match opened {
            Ok(id) => id,
            Err(code) => {
                shared.metrics.refused(Refusal::Code(code));
                debug!(ip = ?meta.ip, %code, "connection refused");
                return Err(code);
            }
        };
        shared.metrics.connection_opened(meta.transport);
        debug!(conn = id, ip = ?meta.ip, transport = meta.transport.as_str(), "connection open");
        let conn = Conn {
            shared: shared.clone(),
            id,
            transport: meta.transport,
            closed: AtomicBool::new(false),
            version: AtomicU16::new(0),
        };
        let outlet = Outlet {
            control,
            relay,
            kill,
            datagrams_queued,
        };
        Ok((Arc::new(conn), outlet))
    }

    /// The core's number for this connection.
    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    /// The server state this connection lives in.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// One control message body from the client (postcard, unframed).
    /// Returns false when it was bad: the client is told why and closed,
    /// and the transport should read no further.
    pub(crate) fn control(&self, body: &[u8]) -> bool {
        let version = self.version.load(Ordering::Acquire);
        match protocol::decode_client(body, version) {
            Ok(msg) => {
                self.handle(msg);
                true
            }
            Err(e) => {
                self.shared.metrics.signaling_messages.inc();
                self.bad_input(e.code(), &e.to_string());
                false
            }
        }
    }

    /// The access token from the connection's URL (`?access_token=`), for
    /// the core to check at `Hello` (access control). Never logged.
    pub(crate) fn url_token(&self, token: String) {
        let mut st = self.shared.lock();
        st.core.set_url_token(self.id, token);
    }

    /// One decoded control message (from the stream, or from the `first`
    /// request in the URL).
    pub(crate) fn handle(&self, msg: ClientMsg) {
        if let ClientMsg::Hello(h) = &msg {
            // Only the first counts: a second Hello closes the connection.
            let _ = self.version.compare_exchange(
                0,
                h.version.max(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        self.shared.metrics.signaling_messages.inc();
        let mut st = self.shared.lock();
        st.core.handle(now(), self.id, msg);
        self.shared.flush(&mut st);
    }

    /// Input the transport could not make sense of (bad framing, a frame too
    /// large): tell the client why and close it.
    pub(crate) fn bad_input(&self, code: ErrorCode, detail: &str) {
        let mut st = self.shared.lock();
        st.core.bad_frame(self.id, code, detail);
        self.shared.flush(&mut st);
    }

    /// One relay frame from the client.
    pub(crate) fn relay(&self, frame: &[u8], via: Via) {
        crate::relay::forward(&self.shared, self.id, frame, via);
    }

    /// The connection ended; `clean` means the client left on purpose (its
    /// peer leaves at once, instead of keeping its seat for a resume). Tells
    /// the core at once, so the other peers hear of it now. Only the first
    /// call counts.
    pub(crate) fn close(&self, clean: bool) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        {
            let mut st = self.shared.lock();
            st.links.remove(&self.id);
            st.core.closed(now(), self.id, clean);
            self.shared.flush(&mut st);
        }
        self.shared.metrics.connection_closed(self.transport);
        debug!(conn = self.id, clean, "connection closed");
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // A task that ended in any other way still gives its slot back.
        self.close(false);
    }
}
