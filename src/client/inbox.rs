//! Where a client's events wait to be read, and how a request waits for its
//! answer without losing anything else that arrives meanwhile.
//!
//! The reader task of a connection sends every [`Event`] into one channel.
//! A request (`join_session`, `ping`, the Welcome at connect) reads on until
//! its answer comes; what it passes over goes to a stash, in order, and is
//! what `next_event` returns first. Pure bookkeeping, with no I/O of its own.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Ended, Error, Event, Result};
use crate::protocol::{ErrorCode, PeerId, ServerMsg};
use crate::relay::Via;

/// Events from the reader task, and those a wait skipped.
pub(super) struct Inbox {
    events: mpsc::Receiver<Event>,
    stash: VecDeque<Event>,
}

impl Inbox {
    pub(super) fn new(events: mpsc::Receiver<Event>) -> Inbox {
        Inbox {
            events,
            stash: VecDeque::new(),
        }
    }

    /// The next event, stashed ones first; `None` once the reader is gone.
    pub(super) async fn next(&mut self) -> Option<Event> {
        match self.stash.pop_front() {
            Some(e) => Some(e),
            None => self.events.recv().await,
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
            let e = tokio::time::timeout_at(deadline, self.events.recv())
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
                Event::Relay { .. } => {}
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
}
