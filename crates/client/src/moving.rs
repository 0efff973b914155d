//! Following a session the server moves to another node (PROTOCOL.md §11,
//! "Moving a session"; §12 rule 10).
//!
//! Why a module of its own: it is the one time a client holds two
//! connections to two nodes at once, and every other rule assumes one. The
//! decision is sans-IO, in the style of quinn-proto: [`Move`] is told what
//! happened and when, answers a [`MoveAction`], says which connections carry
//! relay frames ([`Move::send_on`], [`Move::take_from`]) and control
//! ([`Move::control_on`]), and when it wants a tick ([`Move::wake_at`]). The
//! connection supervisor in `reconnect` is the shell.
//!
//! [`Dedup`] is the Rust client's answer to the frames that come twice in
//! the overlap: the browser and C# clients drop them by the flight
//! envelope's sequence number (§5), but this client hands payloads to the
//! application unread, so it drops a byte-identical frame from the same
//! sender that already came on the other connection.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::protocol::{PeerId, RedirectReason};

/// How long after the redirect the client closes an old connection that the
/// old node has not closed (the node's overlap is 3 s by default).
pub const OLD_CLOSE_AFTER: Duration = Duration::from_millis(10_000);

/// Where a move stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovePhase {
    /// One connection, no move under way.
    Settled,
    /// The new connection is being opened; the old one carries relay frames.
    Opening,
    /// The new connection resumed the seat: relay frames go on both.
    Overlap,
    /// The new connection failed: the old one is used until it closes.
    OldOnly,
    /// The old connection closed before the new one was up.
    NewOnlyOpening,
}

/// Which connection a message came on or goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// The only connection, outside a move.
    Current,
    /// The connection the move started on.
    Old,
    /// The connection to the node the session moved to.
    New,
}

/// What happened, for [`Move::on_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveEvent {
    /// A `Redirect` came on `on`.
    Redirect {
        /// The connection it came on.
        on: Conn,
        /// Its reason.
        reason: RedirectReason,
        /// It answered no request.
        unasked: bool,
        /// The client is in a session.
        in_session: bool,
        /// The protocol version of the connection it came on.
        version: u16,
    },
    /// The new connection's `Welcome`.
    NewWelcome {
        /// `Welcome.resumed`.
        resumed: bool,
    },
    /// The new connection could not be opened (or ended before its `Welcome`).
    NewFailed,
    /// The new connection ended after its `Welcome`.
    NewClosed,
    /// The old connection ended.
    OldClosed,
}

/// What the shell does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveAction {
    /// Nothing.
    None,
    /// Not a move: handle the redirect as rules 4 and 5 say.
    NotAMove,
    /// Open a connection to the redirect's node with the resume token; keep
    /// the old one.
    OpenNew,
    /// Ignore what the old connection said.
    Ignore,
    /// Send relay frames on both connections, take them from both.
    SendOnBoth,
    /// The old connection is gone: the new one is the current one.
    UseNew,
    /// Close the old connection (code 999); the new one is the current one,
    /// and whatever it said (a redirect, a `Welcome` without the seat) is
    /// handled as usual.
    CloseOld,
    /// Both are gone: reconnect as after a lost connection (rule 3).
    Reconnect,
}

/// Whether a `Redirect` starts a move: reason `Placement`, answering no
/// request, while in a session, on a connection of version 5 or later.
pub fn is_move(reason: RedirectReason, unasked: bool, in_session: bool, version: u16) -> bool {
    reason == RedirectReason::Placement
        && unasked
        && in_session
        && version >= crate::protocol::MOVE_PROTOCOL_VERSION
}

/// The move state of one client.
#[derive(Debug, Clone)]
pub struct Move {
    phase: MovePhase,
    redirect_at: Option<Instant>,
}

impl Default for Move {
    fn default() -> Self {
        Self::new()
    }
}

impl Move {
    /// Settled, no move under way.
    pub fn new() -> Self {
        Self {
            phase: MovePhase::Settled,
            redirect_at: None,
        }
    }

    /// Where the move stands.
    pub fn phase(&self) -> MovePhase {
        self.phase
    }

    fn settle(&mut self, action: MoveAction) -> MoveAction {
        self.phase = MovePhase::Settled;
        self.redirect_at = None;
        action
    }

    /// Something happened at `now`.
    pub fn on_event(&mut self, event: MoveEvent, now: Instant) -> MoveAction {
        use MoveAction as A;
        use MovePhase as P;
        match (self.phase, event) {
            (
                P::Settled,
                MoveEvent::Redirect {
                    reason,
                    unasked,
                    in_session,
                    version,
                    ..
                },
            ) => {
                if reason == RedirectReason::Placement && unasked && in_session && version >= 5 {
                    self.phase = P::Opening;
                    self.redirect_at = Some(now);
                    A::OpenNew
                } else {
                    A::NotAMove
                }
            }
            (P::Settled, _) => A::None,
            (_, MoveEvent::Redirect { on: Conn::New, .. }) => self.settle(A::CloseOld),
            (_, MoveEvent::Redirect { .. }) => A::Ignore,
            (P::Opening, MoveEvent::NewWelcome { resumed: true }) => {
                self.phase = P::Overlap;
                A::SendOnBoth
            }
            (P::Opening, MoveEvent::NewWelcome { resumed: false }) => self.settle(A::CloseOld),
            (P::Opening, MoveEvent::NewFailed) => {
                self.phase = P::OldOnly;
                A::None
            }
            (P::Opening, MoveEvent::OldClosed) => {
                self.phase = P::NewOnlyOpening;
                A::None
            }
            (P::NewOnlyOpening, MoveEvent::NewWelcome { .. }) => self.settle(A::UseNew),
            (P::NewOnlyOpening, MoveEvent::NewFailed) => self.settle(A::Reconnect),
            (P::Overlap, MoveEvent::OldClosed) => self.settle(A::UseNew),
            (P::Overlap, MoveEvent::NewClosed) => {
                self.phase = P::OldOnly;
                A::None
            }
            (P::OldOnly, MoveEvent::OldClosed) => self.settle(A::Reconnect),
            _ => A::None,
        }
    }

    /// The timer fired at `now`: [`OLD_CLOSE_AFTER`] after the redirect, an
    /// old connection that is still open is closed by the client, in the
    /// overlap (the new one carries on) and in old_only (then both are
    /// gone: reconnect). The old connection has no liveness verdict of its
    /// own, so without this a silent old node would hold the client forever.
    pub fn tick(&mut self, now: Instant) -> MoveAction {
        match (self.phase, self.wake_at()) {
            (MovePhase::Overlap, Some(at)) if now >= at => self.settle(MoveAction::CloseOld),
            (MovePhase::OldOnly, Some(at)) if now >= at => self.settle(MoveAction::Reconnect),
            _ => MoveAction::None,
        }
    }

    /// When [`tick`](Self::tick) must be called next, if at all.
    pub fn wake_at(&self) -> Option<Instant> {
        match self.phase {
            MovePhase::Overlap | MovePhase::OldOnly => {
                self.redirect_at.map(|t| t + OLD_CLOSE_AFTER)
            }
            _ => None,
        }
    }

    /// The connections relay frames go out on.
    pub fn send_on(&self) -> &'static [Conn] {
        match self.phase {
            MovePhase::Settled => &[Conn::Current],
            MovePhase::Opening | MovePhase::OldOnly => &[Conn::Old],
            MovePhase::Overlap => &[Conn::Old, Conn::New],
            MovePhase::NewOnlyOpening => &[],
        }
    }

    /// The connections relay frames are taken from (the same as
    /// [`send_on`](Self::send_on)).
    pub fn take_from(&self) -> &'static [Conn] {
        self.send_on()
    }

    /// The connection control messages go on and are heard from, if any.
    pub fn control_on(&self) -> Option<Conn> {
        match self.phase {
            MovePhase::Settled => Some(Conn::Current),
            MovePhase::Opening | MovePhase::Overlap | MovePhase::NewOnlyOpening => Some(Conn::New),
            MovePhase::OldOnly => None,
        }
    }
}

/// Drops the second copy of a relay frame that came on both connections of
/// a move: a multiset of the frames each connection delivered first, keyed
/// by sender and payload, that the other connection's copy consumes.
///
/// Bounded: at most [`Dedup::MAX`] frames are remembered per connection (the
/// oldest are forgotten, so at worst a late copy gets through twice), and
/// [`clear`](Self::clear) forgets everything once the move settles.
#[derive(Debug, Default)]
pub struct Dedup {
    /// Index 0: frames first seen on the old connection; 1: on the new one.
    seen: [HashMap<(PeerId, u64), u32>; 2],
    order: [std::collections::VecDeque<(PeerId, u64)>; 2],
}

impl Dedup {
    /// Frames remembered per connection (a minute at 60 Hz from 8 peers).
    pub const MAX: usize = 30_000;

    /// A frame from `from` came on `on` (`Old` or `New`): `true` when it is
    /// new to the application, `false` when it is the other connection's copy.
    pub fn accept(&mut self, on: Conn, from: PeerId, payload: &[u8]) -> bool {
        let (mine, other) = match on {
            Conn::New => (1, 0),
            _ => (0, 1),
        };
        let key = (from, hash(payload));
        if let Some(n) = self.seen[other].get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.seen[other].remove(&key);
            }
            return false;
        }
        *self.seen[mine].entry(key).or_insert(0) += 1;
        self.order[mine].push_back(key);
        if self.order[mine].len() > Self::MAX {
            if let Some(old) = self.order[mine].pop_front() {
                if let Some(n) = self.seen[mine].get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.seen[mine].remove(&old);
                    }
                }
            }
        }
        true
    }

    /// Forget everything (the move settled).
    pub fn clear(&mut self) {
        for i in 0..2 {
            self.seen[i].clear();
            self.order[i].clear();
        }
    }
}

/// FNV-1a over the payload: frames are compared by a 64-bit hash, enough to
/// tell the frames of one overlap apart.
fn hash(payload: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in payload {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_through_both_nodes_reaches_the_application_once() {
        let mut d = Dedup::default();
        assert!(d.accept(Conn::Old, 2, b"a"));
        assert!(!d.accept(Conn::New, 2, b"a"));
        // The new node was faster this time.
        assert!(d.accept(Conn::New, 2, b"b"));
        assert!(!d.accept(Conn::Old, 2, b"b"));
        // The same bytes from another peer are another frame.
        assert!(d.accept(Conn::Old, 3, b"b"));
    }

    #[test]
    fn a_payload_sent_twice_by_the_application_is_delivered_twice() {
        let mut d = Dedup::default();
        assert!(d.accept(Conn::Old, 2, b"same"));
        assert!(!d.accept(Conn::New, 2, b"same"));
        assert!(d.accept(Conn::Old, 2, b"same"));
        assert!(!d.accept(Conn::New, 2, b"same"));
        // Both copies on one connection before the other's: two frames.
        assert!(d.accept(Conn::Old, 2, b"x"));
        assert!(d.accept(Conn::Old, 2, b"x"));
        assert!(!d.accept(Conn::New, 2, b"x"));
        assert!(!d.accept(Conn::New, 2, b"x"));
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut d = Dedup::default();
        for i in 0..(Dedup::MAX as u32 + 10) {
            assert!(d.accept(Conn::Old, 2, &i.to_le_bytes()));
        }
        assert_eq!(d.order[0].len(), Dedup::MAX);
        assert!(d.seen[0].len() <= Dedup::MAX);
        // The oldest were forgotten: their late copy gets through.
        assert!(d.accept(Conn::New, 2, &0u32.to_le_bytes()));
        // A recent one is still caught.
        assert!(!d.accept(Conn::New, 2, &(Dedup::MAX as u32).to_le_bytes()));
        d.clear();
        assert!(d.seen.iter().all(HashMap::is_empty));
    }
}
