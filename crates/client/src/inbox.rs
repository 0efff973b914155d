//! Where a client's events wait to be read, and how a request waits for its
//! answer without losing anything else that arrives meanwhile.
//!
//! The reader task of a connection sends every [`Event`] into one channel.
//! A request (`join_session`, `ping`, the Welcome at connect) reads on until
//! its answer comes; what it passes over goes to a stash, in order, and is
//! what `next_event` returns first. Pure bookkeeping, with no I/O of its own.
//!
//! Across a reconnection the inbox reads on from one connection to the
//! next: when a connection's channel ends, the supervisor's channel (the
//! *plane*) says what comes next, its own events (`Reconnecting`,
//! `Reconnected`, the final `Closed`) and the next connection's channel.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Ended, Error, Event, Result};
use crate::protocol::{ErrorCode, PeerId, ServerMsg};
use crate::Via;

/// What the supervisor tells the inbox, in order.
pub(super) enum Segment {
    /// One event of its own.
    Event(Event),
    /// The next connection: events already read from it, then its channel.
    Connection(VecDeque<Event>, mpsc::Receiver<Event>),
}

/// A connection read at the same time as the current one: events already
/// read from it, then its channel.
pub(super) type Alongside = (VecDeque<Event>, mpsc::Receiver<Event>);

/// Events from the reader task, and those a wait skipped.
pub(super) struct Inbox {
    events: Option<mpsc::Receiver<Event>>,
    stash: VecDeque<Event>,
    /// Events a new connection delivered before the supervisor handed it over.
    front: VecDeque<Event>,
    plane: Option<mpsc::UnboundedReceiver<Segment>>,
    /// Where a move's new connection comes from (PROTOCOL.md §12 rule 10).
    side: Option<mpsc::UnboundedReceiver<Alongside>>,
    /// A move's new connection, read with the current one until that ends,
    /// then in its place.
    alongside: Option<mpsc::Receiver<Event>>,
}

/// What one wait of [`Inbox::recv`] got.
enum Got {
    Current(Option<Event>),
    Alongside(Option<Event>),
    Side(Option<Alongside>),
    Plane(Option<Segment>),
}

/// The next item of `rx`, or never if there is none (a disabled branch).
async fn next_of<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn next_unbounded<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Inbox {
    pub(super) fn new(events: mpsc::Receiver<Event>) -> Inbox {
        Inbox {
            events: Some(events),
            stash: VecDeque::new(),
            front: VecDeque::new(),
            plane: None,
            side: None,
            alongside: None,
        }
    }

    /// Read on from the supervisor's `plane` when the current channel ends,
    /// and alongside it from what comes on `side` (a move's new connection).
    pub(super) fn follow(
        &mut self,
        plane: mpsc::UnboundedReceiver<Segment>,
        side: mpsc::UnboundedReceiver<Alongside>,
    ) {
        self.plane = Some(plane);
        self.side = Some(side);
    }

    /// What was read and not yet taken, and the channel (for the supervisor,
    /// which hands a new connection's inbox over as a [`Segment::Connection`]).
    pub(super) fn into_parts(mut self) -> (VecDeque<Event>, Option<mpsc::Receiver<Event>>) {
        self.stash.extend(self.front);
        (self.stash, self.events)
    }

    /// Keep `e` for later, after what is kept already.
    pub(super) fn keep(&mut self, e: Event) {
        self.stash.push_back(e);
    }

    /// The next event from the channels, the current connection's first;
    /// `None` once they are all gone. Cancel-safe.
    ///
    /// During a move two connections are read at once, the current one and
    /// the new one that came on `side`; when the current one ends the new
    /// one takes its place, and only when neither is left does the plane
    /// say what comes next.
    async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.front.pop_front() {
                return Some(e);
            }
            let got = if self.events.is_some() {
                let waits_side = self.alongside.is_none() && self.side.is_some();
                tokio::select! {
                    biased;
                    e = next_of(&mut self.events) => Got::Current(e),
                    e = next_of(&mut self.alongside), if self.alongside.is_some() => Got::Alongside(e),
                    a = next_unbounded(&mut self.side), if waits_side => Got::Side(a),
                }
            } else if self.alongside.is_some() {
                self.events = self.alongside.take();
                continue;
            } else {
                self.plane.as_ref()?;
                tokio::select! {
                    biased;
                    a = next_unbounded(&mut self.side), if self.side.is_some() => Got::Side(a),
                    p = next_unbounded(&mut self.plane) => Got::Plane(p),
                }
            };
            match got {
                Got::Current(Some(e)) | Got::Alongside(Some(e)) => return Some(e),
                Got::Current(None) => self.events = self.alongside.take(),
                Got::Alongside(None) => self.alongside = None,
                Got::Side(Some((read, events))) => {
                    self.front.extend(read);
                    if self.events.is_some() {
                        self.alongside = Some(events);
                    } else {
                        self.events = Some(events);
                    }
                }
                Got::Side(None) => self.side = None,
                Got::Plane(None) => return None,
                Got::Plane(Some(Segment::Event(e))) => return Some(e),
                Got::Plane(Some(Segment::Connection(read, events))) => {
                    self.front = read;
                    self.events = Some(events);
                }
            }
        }
    }

    /// The next event, stashed ones first; `None` once the reader is gone.
    pub(super) async fn next(&mut self) -> Option<Event> {
        match self.stash.pop_front() {
            Some(e) => Some(e),
            None => self.recv().await,
        }
    }

    /// The next relayed frame within `limit` (other events are stashed).
    pub(super) async fn next_relay(&mut self, limit: Duration) -> Option<(PeerId, Bytes, Via)> {
        let deadline = tokio::time::Instant::now() + limit;
        if let Some(pos) = self
            .stash
            .iter()
            .position(|e| matches!(e, Event::Relay { .. }))
        {
            if let Some(Event::Relay { from, payload, via }) = self.stash.remove(pos) {
                return Some((from, payload, via));
            }
        }
        loop {
            let e = tokio::time::timeout_at(deadline, self.recv())
                .await
                .ok()??;
            match e {
                Event::Relay { from, payload, via } => return Some((from, payload, via)),
                other => self.stash.push_back(other),
            }
        }
    }

    /// Wait for a control message `pick` accepts. An `Error` from the server
    /// (other than `resume_failed`, which a fresh Welcome follows) or the end
    /// of the connection fails the wait. Other events stay for [`Inbox::next`].
    pub(super) async fn wait_for<T>(
        &mut self,
        pick: impl Fn(&ServerMsg) -> Option<T>,
    ) -> Result<T> {
        let mut skipped = VecDeque::new();
        let result = loop {
            let Some(e) = self.next().await else {
                break Err(Error::Closed(Ended::lost("connection ended")));
            };
            match &e {
                Event::Control(m) => {
                    if let Some(t) = pick(m) {
                        break Ok(t);
                    }
                    if let ServerMsg::Error { code, message } = m {
                        if ErrorCode::from_u16(*code) != Some(ErrorCode::ResumeFailed) {
                            break Err(Error::server(*code, message));
                        }
                    }
                }
                Event::Closed(ended) => break Err(Error::Closed(ended.clone())),
                // A reconnection: the answer may still come on the next connection.
                _ => {}
            }
            skipped.push_back(e);
        };
        // Put skipped events back in front, in order.
        while let Some(e) = skipped.pop_back() {
            self.stash.push_front(e);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(events: Vec<Event>) -> Inbox {
        let (tx, rx) = mpsc::channel(events.len().max(1));
        for e in events {
            tx.try_send(e).unwrap();
        }
        Inbox::new(rx)
    }

    fn pong(t: u64) -> Event {
        Event::Control(ServerMsg::Pong {
            client_time_ms: t,
            server_time_ms: 0,
        })
    }

    fn relay(from: PeerId) -> Event {
        Event::Relay {
            from,
            payload: Bytes::from_static(b"x"),
            via: Via::Datagram,
        }
    }

    fn is_pong(t: u64) -> impl Fn(&ServerMsg) -> Option<()> {
        move |m| match m {
            ServerMsg::Pong { client_time_ms, .. } if *client_time_ms == t => Some(()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_wait_keeps_what_it_passes_over_in_order() {
        let mut inbox = inbox(vec![pong(1), relay(7), pong(2), pong(3)]);
        inbox.wait_for(is_pong(2)).await.unwrap();
        assert_eq!(inbox.next().await, Some(pong(1)));
        assert_eq!(inbox.next().await, Some(relay(7)));
        assert_eq!(inbox.next().await, Some(pong(3)));
    }

    #[tokio::test]
    async fn a_refusal_ends_the_wait_but_resume_failed_does_not() {
        let error = |code: ErrorCode| {
            Event::Control(ServerMsg::Error {
                code: code as u16,
                message: "no".into(),
            })
        };
        let mut inbox = inbox(vec![
            error(ErrorCode::ResumeFailed),
            pong(1),
            error(ErrorCode::UnknownSession),
        ]);
        inbox.wait_for(is_pong(1)).await.unwrap();
        let err = inbox.wait_for(is_pong(2)).await.unwrap_err();
        assert_eq!(err.server_code(), Some(ErrorCode::UnknownSession));
        // The refusal is the wait's answer; what it passed over stays.
        assert_eq!(inbox.next().await, Some(error(ErrorCode::ResumeFailed)));
    }

    #[tokio::test]
    async fn the_end_of_the_connection_ends_the_wait() {
        let ended = Ended::by_peer(6, "closed by peer: server_full (code 6)".into());
        let mut inbox = inbox(vec![relay(1), Event::Closed(ended.clone())]);
        match inbox.wait_for(is_pong(1)).await {
            Err(Error::Closed(e)) => assert_eq!(e, ended),
            other => panic!("{other:?}"),
        }
        // A relay frame is still found behind the stashed close.
        let (from, ..) = inbox.next_relay(Duration::ZERO).await.unwrap();
        assert_eq!(from, 1);
        // The close was the wait's answer; with the reader gone, waits end too.
        assert_eq!(inbox.next().await, None);
        assert!(matches!(
            inbox.wait_for(is_pong(1)).await,
            Err(Error::Closed(_))
        ));
    }

    #[tokio::test]
    async fn the_inbox_reads_on_from_the_next_connection_in_order() {
        let (tx, rx) = mpsc::channel(8);
        let mut inbox = Inbox::new(rx);
        let (plane, plane_rx) = mpsc::unbounded_channel();
        let (_side, side_rx) = mpsc::unbounded_channel();
        inbox.follow(plane_rx, side_rx);
        tx.try_send(pong(1)).unwrap();
        drop(tx); // the first connection ends
        let (tx2, rx2) = mpsc::channel(8);
        plane
            .send(Segment::Event(Event::Reconnected { resumed: true }))
            .unwrap();
        plane
            .send(Segment::Connection(VecDeque::from([pong(2)]), rx2))
            .unwrap();
        tx2.try_send(relay(5)).unwrap();
        tx2.try_send(pong(3)).unwrap();
        // A wait passes over the reconnection and finds its answer later.
        inbox.wait_for(is_pong(3)).await.unwrap();
        assert_eq!(inbox.next().await, Some(pong(1)));
        assert_eq!(
            inbox.next().await,
            Some(Event::Reconnected { resumed: true })
        );
        assert_eq!(inbox.next().await, Some(pong(2)));
        assert_eq!(inbox.next().await, Some(relay(5)));
        // The supervisor gives up: its Closed, then the end.
        drop(tx2);
        let ended = Ended::lost("gone");
        plane
            .send(Segment::Event(Event::Closed(ended.clone())))
            .unwrap();
        drop(plane);
        assert_eq!(inbox.next().await, Some(Event::Closed(ended)));
        assert_eq!(inbox.next().await, None);
    }
}
