#![warn(missing_docs, unreachable_pub)]
//! FlightSim P2P's core: every rule of the service as plain data and
//! synchronous state machines, with time and randomness passed in. No
//! sockets, tasks, clocks or Redis: the server (the `flightsim-p2p` package)
//! carries the decisions out.
//!
//! | module | what it is |
//! |---|---|
//! | [`session`] | the session core, a sans-IO state machine: who is in which session, who may talk to whom, limits, resume, its own timers |
//! | [`cluster`] | cluster mode as plain data: node and session records shared through Redis, and the decisions made from them |
//! | [`auth`] | access control: tokens from the game's backend (JWT, HS256 or EdDSA), verified without I/O |
//! | [`limits`], [`turn`] | limits with one set of defaults and the token bucket; ICE servers and coturn credentials |

pub mod auth;
pub mod cluster;
pub mod limits;
pub mod session;
pub mod turn;

use fsp2p_protocol as protocol;
