//! The one harness of the core's tests: a [`Core`] driven by hand, on a
//! clock the test moves, its outputs read by the test. [`World`] is a
//! single server (tests/session.rs); [`Node`] is one node of a cluster
//! whose directory is the test itself (tests/cluster.rs). Both are a
//! [`Harness`]: they share every way to drive and read the core, and
//! differ only in how they start (`new`, in their own test file) and in a
//! few shortcuts there (`host`, `joiner`, ...).

use std::marker::PhantomData;
use std::net::IpAddr;
use std::time::Duration;

use crate::protocol::{ClientMsg, PeerId, ServerMsg};
use crate::session::{
    ConnId, ConnMeta, Core, Lookup, Now, Output, Persist, RelayDrop, Target, Transport,
};

/// The kind of a single server's harness.
pub(crate) struct Single;
/// The kind of a cluster node's harness.
pub(crate) struct Clustered;

/// A single server's core.
pub(crate) type World = Harness<Single>;
/// One node's core; the directory is the test itself.
pub(crate) type Node = Harness<Clustered>;

/// A core, its clock, and what it emitted that no test read yet.
pub(crate) struct Harness<K> {
    pub(crate) core: Core,
    pub(crate) now: Now,
    /// The client address of connections opened next.
    pub(crate) ip: IpAddr,
    unread: Vec<Output>,
    kind: PhantomData<K>,
}

impl<K> Harness<K> {
    /// A harness on `core`, at the system's time, opening connections from `ip`.
    pub(crate) fn start(core: Core, ip: IpAddr) -> Self {
        Harness {
            core,
            now: Now::system(),
            ip,
            unread: Vec::new(),
            kind: PhantomData,
        }
    }

    /// Move the clock on and run the core's timers.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.now = self.now.after(d);
        self.core.handle_timeout(self.now);
    }

    /// Everything the core emitted and no test read yet.
    pub(crate) fn outputs(&mut self) -> Vec<Output> {
        let mut out = std::mem::take(&mut self.unread);
        out.extend(std::iter::from_fn(|| self.core.poll_output()));
        out
    }

    /// Take the outputs `pick` wants; keep the rest for later reads.
    pub(crate) fn take<T>(&mut self, pick: impl Fn(&Output) -> Option<T>) -> Vec<T> {
        let mut taken = Vec::new();
        for o in self.outputs() {
            match pick(&o) {
                Some(t) => taken.push(t),
                None => self.unread.push(o),
            }
        }
        taken
    }

    /// What was sent to `conn`; every other output is read and dropped.
    pub(crate) fn sent_to(&mut self, conn: ConnId) -> Vec<ServerMsg> {
        self.outputs()
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, msg } if c == conn => Some(msg),
                _ => None,
            })
            .collect()
    }

    /// What was sent to `conn`; other outputs stay for later reads.
    pub(crate) fn sent(&mut self, conn: ConnId) -> Vec<ServerMsg> {
        self.take(|o| match o {
            Output::Send { conn: c, msg } if *c == conn => Some(msg.clone()),
            _ => None,
        })
    }

    /// The lookups the core asked the directory for.
    pub(crate) fn lookups(&mut self) -> Vec<Lookup> {
        self.take(|o| match o {
            Output::Lookup(l) => Some(l.clone()),
            _ => None,
        })
    }

    /// The records the core wants written.
    pub(crate) fn persisted(&mut self) -> Vec<Persist> {
        std::iter::from_fn(|| self.core.poll_persist()).collect()
    }

    /// Open a raw QUIC connection from [`Harness::ip`].
    pub(crate) fn open(&mut self) -> ConnId {
        let meta = ConnMeta {
            transport: Transport::Quic,
            ip: Some(self.ip),
        };
        self.core.open(self.now, meta).expect("open")
    }

    /// `conn` says `m`.
    pub(crate) fn msg(&mut self, conn: ConnId, m: ClientMsg) {
        self.core.handle(self.now, conn, m);
    }

    /// Route a relay frame of `len` bytes from `conn` to `dest`: the sender
    /// and the receivers, or why it is dropped.
    pub(crate) fn route(
        &mut self,
        conn: ConnId,
        dest: PeerId,
        len: usize,
    ) -> Result<(PeerId, Vec<Target>), RelayDrop> {
        let mut t = Vec::new();
        self.core
            .route(self.now.mono, conn, dest, len, &mut t)
            .map(|f| (f, t))
    }
}
