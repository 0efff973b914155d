//! The server's side of WebTransport over HTTP/3, written on quinn.
//!
//! Why our own and not web-transport-quinn's server half (the Rust client
//! still uses that crate): its `Request` sends a fixed SETTINGS frame (no
//! `WT_MAX_SESSIONS` codepoint of the current drafts, which Safari wants), its
//! `reject` returns before the response has left, so the connection was
//! closed with the answer still queued, and it answers a second CONNECT
//! with nothing at all. Here:
//!
//! * [`SETTINGS`] is the one list of what the server sends, in order;
//!   PROTOCOL.md §1 documents it and a test compares the two.
//! * [`Request::refuse`] sends a status, waits (bounded) until the client
//!   acknowledged it, then closes the connection with `H3_NO_ERROR`.
//! * A further request on the connection is reset with `H3_REQUEST_REJECTED`.
//! * A session that ends with its CONNECT stream finished but no
//!   `CLOSE_WEBTRANSPORT_SESSION` capsule is an ordinary close with code 0
//!   (the draft says so): [`Session::closed`] tells it apart for a metric.
//!
//! One session per connection (the server's `WT_MAX_SESSIONS` is 1). The
//! request's header section is decoded by `web-transport-proto` (QPACK
//! static table and Huffman); everything else is below, on quinn streams.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::debug;

/// The HTTP/3 SETTINGS the server sends on its control stream, in this
/// order: `(identifier, value, name)`. PROTOCOL.md §1 says why each is there.
pub const SETTINGS: &[(u64, u64, &str)] = &[
    (0x08, 1, "SETTINGS_ENABLE_CONNECT_PROTOCOL"),
    (0x33, 1, "SETTINGS_H3_DATAGRAM"),
    (0xffd277, 1, "H3_DATAGRAM (draft codepoint)"),
    (0x2b60_3742, 1, "SETTINGS_ENABLE_WEBTRANSPORT (draft-02)"),
    (
        0x2b60_3743,
        1,
        "SETTINGS_WEBTRANSPORT_MAX_SESSIONS (drafts before -07)",
    ),
    (
        0xc671_706a,
        1,
        "SETTINGS_WT_MAX_SESSIONS (drafts -07 to -12)",
    ),
    (
        0x14e9_cd29,
        1,
        "SETTINGS_WT_MAX_SESSIONS (draft-13 and later)",
    ),
];

/// `H3_NO_ERROR`: the connection close after a refusal.
pub const H3_NO_ERROR: u32 = 0x100;
/// `H3_REQUEST_REJECTED`: a request beyond the one session, reset unprocessed.
pub const H3_REQUEST_REJECTED: u32 = 0x10b;
/// `H3_STREAM_CREATION_ERROR`: a unidirectional stream of an unknown type.
const H3_STREAM_CREATION_ERROR: u32 = 0x103;
/// `H3_ID_ERROR`: a WebTransport stream for a session that is not ours.
const H3_ID_ERROR: u32 = 0x108;

/// HTTP/3 unidirectional stream types.
const STREAM_CONTROL: u64 = 0x00;
const STREAM_QPACK_ENCODER: u64 = 0x02;
const STREAM_QPACK_DECODER: u64 = 0x03;
const STREAM_WT_UNI: u64 = 0x54;
/// HTTP/3 frame types.
const FRAME_DATA: u64 = 0x00;
const FRAME_HEADERS: u64 = 0x01;
const FRAME_SETTINGS: u64 = 0x04;
const FRAME_WT_BI: u64 = 0x41;
/// Capsule types.
const CAPSULE_CLOSE_SESSION: u64 = 0x2843;

/// The largest request header section (or other frame) read whole.
const MAX_FRAME: u64 = 16 * 1024;
/// How long a new stream may take to say what it is.
const STREAM_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// WebTransport application error codes as HTTP/3 error codes (draft §4.4).
pub fn error_to_http3(code: u32) -> u64 {
    const FIRST: u64 = 0x52e4_a40f_a8db;
    FIRST + u64::from(code) + u64::from(code) / 0x1e
}

/// The WebTransport application error code an HTTP/3 error code carries, if any.
pub fn error_from_http3(code: u64) -> Option<u32> {
    const FIRST: u64 = 0x52e4_a40f_a8db;
    const LAST: u64 = 0x52e5_ac98_3162;
    if !(FIRST..=LAST).contains(&code) || (code - 0x21).is_multiple_of(0x1f) {
        return None;
    }
    let shifted = code - FIRST;
    u32::try_from(shifted - shifted / 0x1f).ok()
}

/// Append a QUIC variable-length integer (RFC 9000 §16). Values must be < 2^62.
pub fn put_varint(buf: &mut impl BufMut, v: u64) {
    if v < 1 << 6 {
        buf.put_u8(v as u8);
    } else if v < 1 << 14 {
        buf.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        buf.put_u32(0x8000_0000 | v as u32);
    } else {
        buf.put_u64(0xc000_0000_0000_0000 | v);
    }
}

/// Take a QUIC varint off the front of `buf`; `None` if it is cut short.
pub fn get_varint(buf: &mut impl Buf) -> Option<u64> {
    let first = *buf.chunk().first()?;
    let len = 1usize << (first >> 6);
    if buf.remaining() < len {
        return None;
    }
    let mut v = u64::from(buf.get_u8() & 0x3f);
    for _ in 1..len {
        v = (v << 8) | u64::from(buf.get_u8());
    }
    Some(v)
}

/// Read one QUIC varint from a stream; `None` at a clean end before its first byte.
async fn read_varint<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<u64>> {
    let mut first = [0u8; 1];
    if r.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let len = 1usize << (first[0] >> 6);
    let mut bytes = [0u8; 8];
    bytes[0] = first[0];
    r.read_exact(&mut bytes[1..len]).await?;
    Ok(get_varint(&mut &bytes[..len]))
}

/// The server's SETTINGS as a control stream begins: stream type, frame.
pub fn settings_stream_prefix() -> Vec<u8> {
    let mut body = Vec::new();
    for &(id, value, _) in SETTINGS {
        put_varint(&mut body, id);
        put_varint(&mut body, value);
    }
    let mut out = Vec::new();
    put_varint(&mut out, STREAM_CONTROL);
    put_varint(&mut out, FRAME_SETTINGS);
    put_varint(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out
}

/// Why a WebTransport request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The connection ended first.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The request stream ended or was reset before a whole request.
    #[error("the request stream ended early")]
    Stream,
}

/// A request that is not a WebTransport CONNECT this server can read: it is
/// answered with `400` (see [`Request::refuse`]).
#[derive(Debug)]
pub struct Malformed(pub String);

/// How a session ended, as the session layer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The peer sent `CLOSE_WEBTRANSPORT_SESSION` with this code and reason.
    Capsule(u32, String),
    /// The peer ended the session without a close capsule.
    WithoutCapsule(NoCapsule),
    /// This side closed it with this code and reason.
    Local(u32, String),
    /// The QUIC connection ended (timeout, reset, ...).
    Connection(quinn::ConnectionError),
}

/// How a peer ended a session without a `CLOSE_WEBTRANSPORT_SESSION` capsule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCapsule {
    /// It finished its CONNECT stream: the same as a capsule with code 0
    /// and no reason, says the draft.
    Finished,
    /// It reset its CONNECT stream.
    Reset,
    /// It closed the QUIC connection (code and reason in
    /// [`quinn::Connection::close_reason`]).
    ConnectionClosed,
}

impl NoCapsule {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            NoCapsule::Finished => "CONNECT stream finished",
            NoCapsule::Reset => "CONNECT stream reset",
            NoCapsule::ConnectionClosed => "connection closed by the peer",
        }
    }
}

/// The tasks that read the peer's HTTP/3 streams; stopped when the last
/// [`Request`] or [`Session`] handle goes.
struct Driver(Mutex<JoinSet<()>>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(mut tasks) = self.0.lock() {
            tasks.abort_all();
        }
    }
}

impl Driver {
    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Ok(mut tasks) = self.0.lock() {
            tasks.spawn(f);
        }
    }
}

/// Streams the peer opened for the session, with the session id they named.
type Incoming<T> = tokio::sync::Mutex<mpsc::Receiver<(u64, T)>>;

/// A WebTransport CONNECT, read and not yet answered.
pub struct Request {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// The request's URL (with its query, which may hold a join code: log its path only).
    pub url: url::Url,
    shared: Arc<Shared>,
}

struct Shared {
    driver: Driver,
    /// Our control stream: kept open for the connection's life (closing it
    /// is a connection error in HTTP/3).
    _control: quinn::SendStream,
    uni: Incoming<quinn::RecvStream>,
    bi: Incoming<(quinn::SendStream, quinn::RecvStream)>,
    rejected: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Request {
    /// Send the server's SETTINGS (at once, in 0.5-RTT), then read the
    /// client's first request. The caller bounds the wait. `Ok(Err(_))` is a
    /// request to answer with `400`.
    pub async fn accept(
        conn: quinn::Connection,
    ) -> Result<Result<Request, (Malformed, Refusable)>, RequestError> {
        let mut control = conn.open_uni().await?;
        control
            .write_all(&settings_stream_prefix())
            .await
            .map_err(|_| RequestError::Stream)?;
        let (uni_tx, uni_rx) = mpsc::channel(64);
        let (bi_tx, bi_rx) = mpsc::channel(4);
        let shared = Arc::new(Shared {
            driver: Driver(Mutex::new(JoinSet::new())),
            _control: control,
            uni: tokio::sync::Mutex::new(uni_rx),
            bi: tokio::sync::Mutex::new(bi_rx),
            rejected: Mutex::new(None),
        });
        shared
            .driver
            .spawn(accept_uni_streams(conn.clone(), uni_tx));
        let (send, mut recv) = conn.accept_bi().await?;
        let request = read_request(&mut recv).await;
        // From now on, any further request is reset unprocessed.
        shared.driver.spawn(accept_bi_streams(
            conn.clone(),
            bi_tx,
            Arc::downgrade(&shared),
        ));
        Ok(match request {
            Ok(req) => Ok(Request {
                conn,
                send,
                recv,
                url: req.url,
                shared,
            }),
            Err(Some(why)) => Err((
                Malformed(why),
                Refusable {
                    conn,
                    send,
                    _shared: shared,
                },
            )),
            Err(None) => return Err(RequestError::Stream),
        })
    }

    /// The QUIC connection underneath.
    pub fn conn(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Call `f` whenever a further request on this connection is reset (for a metric).
    pub fn on_rejected(&self, f: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut slot) = self.shared.rejected.lock() {
            *slot = Some(Box::new(f));
        }
    }

    /// The session this request asks for, not yet answered: answer it with
    /// [`Session::accept`] or [`Session::refuse`]. (The server opens its
    /// connection in the core first, and refuses it with a status if a limit says so.)
    pub fn session(self) -> Session {
        Session::new(self)
    }

    /// Answer with `status` (4xx/5xx), then close as [`Refusable::refuse`] does.
    pub async fn refuse(self, status: u16) {
        Refusable {
            conn: self.conn,
            send: self.send,
            _shared: self.shared,
        }
        .refuse(status)
        .await
    }
}

/// A request that can only be refused.
pub struct Refusable {
    conn: quinn::Connection,
    send: quinn::SendStream,
    _shared: Arc<Shared>,
}

impl Refusable {
    /// Send the response with `status`, finish the stream, wait until the
    /// client has acknowledged it (at most a few round trips, at most 3 s),
    /// then close the connection with `H3_NO_ERROR`.
    pub async fn refuse(mut self, status: u16) {
        if write_response(&mut self.send, status).await.is_ok() {
            let _ = self.send.finish();
            let wait =
                (self.conn.rtt() * 4 + Duration::from_millis(250)).min(Duration::from_secs(3));
            let acked = tokio::time::timeout(wait, self.send.stopped()).await;
            debug!(
                status,
                acked = matches!(acked, Ok(Ok(None))),
                "WebTransport request refused"
            );
        }
        self.conn.close(H3_NO_ERROR.into(), b"");
    }
}

/// A response with only `:status` (and the draft-02 header Chromium wants), as a HEADERS frame.
async fn write_response(send: &mut quinn::SendStream, status: u16) -> Result<(), RequestError> {
    let status = web_transport_proto::http::StatusCode::from_u16(status)
        .map_err(|_| RequestError::Stream)?;
    let mut buf = BytesMut::new();
    web_transport_proto::ConnectResponse::new(status)
        .encode(&mut buf)
        .map_err(|_| RequestError::Stream)?;
    send.write_all(&buf).await.map_err(|e| match e {
        quinn::WriteError::ConnectionLost(e) => RequestError::Connection(e),
        _ => RequestError::Stream,
    })
}

/// Read one HTTP frame's header; `None` at a clean end of stream.
async fn read_frame_header<R: AsyncRead + Unpin>(r: &mut R) -> Option<Option<(u64, u64)>> {
    let Ok(typ) = read_varint(r).await else {
        return None;
    };
    let Some(typ) = typ else {
        return Some(None);
    };
    let len = read_varint(r).await.ok()??;
    Some(Some((typ, len)))
}

/// The request on the first bidirectional stream. `Err(None)`: the stream
/// broke; `Err(Some(why))`: not a WebTransport CONNECT we can read.
async fn read_request(
    recv: &mut quinn::RecvStream,
) -> Result<web_transport_proto::ConnectRequest, Option<String>> {
    loop {
        let Some((typ, len)) = read_frame_header(recv).await.flatten() else {
            return Err(None);
        };
        if len > MAX_FRAME {
            return Err(Some(format!("a frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len as usize];
        recv.read_exact(&mut payload).await.map_err(|_| None)?;
        match typ {
            FRAME_HEADERS => {
                let mut frame = BytesMut::with_capacity(payload.len() + 16);
                put_varint(&mut frame, typ);
                put_varint(&mut frame, len);
                frame.extend_from_slice(&payload);
                return web_transport_proto::ConnectRequest::decode(&mut frame.freeze())
                    .map_err(|e| Some(e.to_string()));
            }
            // Reserved (grease) and unknown frame types are skipped (RFC 9114 §9).
            FRAME_DATA => return Err(Some("DATA before HEADERS".into())),
            _ => continue,
        }
    }
}

/// Every unidirectional stream the peer opens: its control stream (read and
/// ignored after its SETTINGS), QPACK streams (drained; the server uses no
/// dynamic table), WebTransport streams (handed to the session). Others are
/// refused, as HTTP/3 allows.
async fn accept_uni_streams(conn: quinn::Connection, tx: mpsc::Sender<(u64, quinn::RecvStream)>) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            s = conn.accept_uni() => {
                let Ok(mut recv) = s else { return };
                let tx = tx.clone();
                readers.spawn(async move {
                    let typ = tokio::time::timeout(STREAM_HEADER_TIMEOUT, read_varint(&mut recv)).await;
                    match typ {
                        Ok(Ok(Some(STREAM_WT_UNI))) => {
                            let id = tokio::time::timeout(STREAM_HEADER_TIMEOUT, read_varint(&mut recv)).await;
                            match id {
                                Ok(Ok(Some(id))) => { let _ = tx.send((id, recv)).await; }
                                _ => { let _ = recv.stop(H3_ID_ERROR.into()); }
                            }
                        }
                        Ok(Ok(Some(STREAM_CONTROL | STREAM_QPACK_ENCODER | STREAM_QPACK_DECODER))) => {
                            // Kept open and drained until the connection ends.
                            let mut buf = [0u8; 1024];
                            while let Ok(Some(_)) = recv.read(&mut buf).await {}
                        }
                        _ => { let _ = recv.stop(H3_STREAM_CREATION_ERROR.into()); }
                    }
                });
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// Bidirectional streams after the CONNECT: WebTransport streams go to the
/// session; a further request is reset with `H3_REQUEST_REJECTED`.
async fn accept_bi_streams(
    conn: quinn::Connection,
    tx: mpsc::Sender<(u64, (quinn::SendStream, quinn::RecvStream))>,
    shared: std::sync::Weak<Shared>,
) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            s = conn.accept_bi() => {
                let Ok((mut send, mut recv)) = s else { return };
                let tx = tx.clone();
                let shared = shared.clone();
                readers.spawn(async move {
                    let typ = tokio::time::timeout(STREAM_HEADER_TIMEOUT, read_varint(&mut recv)).await;
                    if let Ok(Ok(Some(FRAME_WT_BI))) = typ {
                        let id = tokio::time::timeout(STREAM_HEADER_TIMEOUT, read_varint(&mut recv)).await;
                        if let Ok(Ok(Some(id))) = id {
                            let _ = tx.send((id, (send, recv))).await;
                            return;
                        }
                    }
                    // A request (HEADERS) or anything else: not processed.
                    let _ = recv.stop(H3_REQUEST_REJECTED.into());
                    let _ = send.reset(H3_REQUEST_REJECTED.into());
                    debug!(stream = %send.id(), "a further request on a WebTransport connection: reset with H3_REQUEST_REJECTED");
                    if let Some(shared) = shared.upgrade() {
                        if let Ok(f) = shared.rejected.lock() {
                            if let Some(f) = f.as_ref() {
                                f();
                            }
                        }
                    }
                });
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// An open WebTransport session: the only one on its QUIC connection.
#[derive(Clone)]
pub struct Session {
    conn: quinn::Connection,
    id: u64,
    /// Datagram prefix: the quarter stream id.
    datagram_prefix: Bytes,
    shared: Arc<Shared>,
    state: Arc<SessionState>,
}

struct SessionState {
    /// The CONNECT stream's sending half, for the response and the close capsule.
    send: tokio::sync::Mutex<Option<quinn::SendStream>>,
    /// Whether the `200` went out: only then is there a session to close with a capsule.
    answered: std::sync::atomic::AtomicBool,
    closed: Mutex<Option<Closed>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("id", &self.id).finish()
    }
}

impl Session {
    fn new(req: Request) -> Session {
        // The session id is the CONNECT stream's id.
        let id = quinn::VarInt::from(req.send.id()).into_inner();
        let mut prefix = BytesMut::new();
        put_varint(&mut prefix, id / 4);
        let state = Arc::new(SessionState {
            send: tokio::sync::Mutex::new(Some(req.send)),
            answered: std::sync::atomic::AtomicBool::new(false),
            closed: Mutex::new(None),
        });
        req.shared
            .driver
            .spawn(read_capsules(req.conn.clone(), req.recv, state.clone()));
        Session {
            conn: req.conn,
            id,
            datagram_prefix: prefix.freeze(),
            shared: req.shared,
            state,
        }
    }

    /// The QUIC connection underneath.
    pub fn conn(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Answer the CONNECT with `200`: the session is open.
    pub async fn accept(&self) -> Result<(), Closed> {
        let mut send = self.state.send.lock().await;
        let Some(send) = send.as_mut() else {
            return Err(self.lost(quinn::ConnectionError::LocallyClosed));
        };
        match write_response(send, 200).await {
            Ok(()) => {
                self.state
                    .answered
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            Err(RequestError::Connection(e)) => Err(self.lost(e)),
            Err(RequestError::Stream) => Err(self.lost(quinn::ConnectionError::LocallyClosed)),
        }
    }

    /// Refuse the CONNECT with `status` instead, as [`Refusable::refuse`] does.
    pub async fn refuse(&self, status: u16) {
        if let Some(send) = self.state.send.lock().await.take() {
            Refusable {
                conn: self.conn.clone(),
                send,
                _shared: self.shared.clone(),
            }
            .refuse(status)
            .await;
        }
        self.conn.close(H3_NO_ERROR.into(), b"");
    }

    /// How the session ended, once it has.
    pub fn close_outcome(&self) -> Option<Closed> {
        if let Ok(c) = self.state.closed.lock() {
            if let Some(c) = c.as_ref() {
                return Some(c.clone());
            }
        }
        self.conn.close_reason().map(Closed::Connection)
    }

    fn lost(&self, e: quinn::ConnectionError) -> Closed {
        self.close_outcome().unwrap_or(Closed::Connection(e))
    }

    async fn gone(&self) -> Closed {
        let e = self.conn.closed().await;
        self.lost(e)
    }

    /// The next bidirectional stream the client opens on this session.
    pub async fn accept_bi(&self) -> Result<(quinn::SendStream, quinn::RecvStream), Closed> {
        let mut rx = self.shared.bi.lock().await;
        loop {
            match rx.recv().await {
                Some((id, s)) if id == self.id => return Ok(s),
                Some((_, (mut s, mut r))) => {
                    let _ = r.stop(H3_ID_ERROR.into());
                    let _ = s.reset(H3_ID_ERROR.into());
                }
                None => return Err(self.gone().await),
            }
        }
    }

    /// The next unidirectional stream the client opens on this session.
    pub async fn accept_uni(&self) -> Result<quinn::RecvStream, Closed> {
        let mut rx = self.shared.uni.lock().await;
        loop {
            match rx.recv().await {
                Some((id, r)) if id == self.id => return Ok(r),
                Some((_, mut r)) => {
                    let _ = r.stop(H3_ID_ERROR.into());
                }
                None => return Err(self.gone().await),
            }
        }
    }

    /// Open a bidirectional stream on the session.
    pub async fn open_bi(&self) -> Result<(quinn::SendStream, quinn::RecvStream), Closed> {
        let (mut s, r) = self.conn.open_bi().await.map_err(|e| self.lost(e))?;
        let mut header = BytesMut::new();
        put_varint(&mut header, FRAME_WT_BI);
        put_varint(&mut header, self.id);
        s.write_all(&header)
            .await
            .map_err(|_| self.lost(quinn::ConnectionError::LocallyClosed))?;
        Ok((s, r))
    }

    /// Open a unidirectional stream on the session.
    pub async fn open_uni(&self) -> Result<quinn::SendStream, Closed> {
        let mut s = self.conn.open_uni().await.map_err(|e| self.lost(e))?;
        let mut header = BytesMut::new();
        put_varint(&mut header, STREAM_WT_UNI);
        put_varint(&mut header, self.id);
        s.write_all(&header)
            .await
            .map_err(|_| self.lost(quinn::ConnectionError::LocallyClosed))?;
        Ok(s)
    }

    /// The next datagram of this session (others are dropped).
    pub async fn read_datagram(&self) -> Result<Bytes, Closed> {
        loop {
            let mut d = self.conn.read_datagram().await.map_err(|e| self.lost(e))?;
            if get_varint(&mut d) == Some(self.id / 4) {
                return Ok(d);
            }
        }
    }

    /// Queue a datagram (see [`quinn::Connection::send_datagram`]).
    pub fn send_datagram(&self, data: &[u8]) -> Result<(), quinn::SendDatagramError> {
        let mut d = BytesMut::with_capacity(self.datagram_prefix.len() + data.len());
        d.extend_from_slice(&self.datagram_prefix);
        d.extend_from_slice(data);
        self.conn.send_datagram(d.freeze())
    }

    /// The largest payload a datagram can carry now.
    pub fn max_datagram_size(&self) -> Option<usize> {
        self.conn
            .max_datagram_size()
            .map(|n| n.saturating_sub(self.datagram_prefix.len()))
    }

    /// Close the session: a `CLOSE_WEBTRANSPORT_SESSION` capsule with `code`
    /// and `reason` on the CONNECT stream, then (once acknowledged, or after
    /// a bounded wait) the QUIC connection with the code in HTTP/3's space.
    pub fn close(&self, code: u32, reason: &str) {
        if let Ok(mut c) = self.state.closed.lock() {
            if c.is_some() {
                return;
            }
            *c = Some(Closed::Local(code, reason.to_string()));
        }
        if !self
            .state
            .answered
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // No session yet, so no capsule: a request that is given up.
            self.conn.close(H3_NO_ERROR.into(), b"");
            return;
        }
        let (conn, state) = (self.conn.clone(), self.state.clone());
        let reason = reason.as_bytes()[..reason.len().min(1024)].to_vec();
        tokio::spawn(async move {
            let wait = (conn.rtt() * 3 + Duration::from_millis(50)).min(Duration::from_secs(1));
            if let Some(mut send) = state.send.lock().await.take() {
                let mut capsule = BytesMut::new();
                put_varint(&mut capsule, CAPSULE_CLOSE_SESSION);
                put_varint(&mut capsule, 4 + reason.len() as u64);
                capsule.put_u32(code);
                capsule.extend_from_slice(&reason);
                let mut frame = BytesMut::new();
                put_varint(&mut frame, FRAME_DATA);
                put_varint(&mut frame, capsule.len() as u64);
                frame.extend_from_slice(&capsule);
                let delivered = async {
                    if send.write_all(&frame).await.is_ok() && send.finish().is_ok() {
                        let _ = send.stopped().await;
                    }
                };
                let _ = tokio::time::timeout(wait, delivered).await;
            }
            conn.close(
                quinn::VarInt::from_u64(error_to_http3(code)).unwrap_or_default(),
                &reason,
            );
        });
    }

    /// Wait until the session has ended, and say how.
    pub async fn closed(&self) -> Closed {
        self.gone().await
    }
}

/// Read the capsules on the client's half of the CONNECT stream until the
/// session ends; record how, and close the connection (one session each).
async fn read_capsules(
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    state: Arc<SessionState>,
) {
    let outcome = loop {
        let header = match read_frame_header(&mut recv).await {
            None => break Closed::WithoutCapsule(NoCapsule::Reset),
            Some(None) => break Closed::WithoutCapsule(NoCapsule::Finished),
            Some(Some(h)) => h,
        };
        let (typ, len) = header;
        if typ != FRAME_DATA || len > MAX_FRAME {
            // Unknown frames are skipped; an oversized one is not worth reading.
            if skip(&mut recv, len).await.is_err() {
                break Closed::WithoutCapsule(NoCapsule::Reset);
            }
            continue;
        }
        let mut payload = vec![0u8; len as usize];
        if recv.read_exact(&mut payload).await.is_err() {
            break Closed::WithoutCapsule(NoCapsule::Reset);
        }
        // One DATA frame may hold several capsules; a capsule split across
        // frames is not expected from a client's single close.
        let mut buf = &payload[..];
        let mut found = None;
        while let (Some(ctype), Some(clen)) = (get_varint(&mut buf), get_varint(&mut buf)) {
            let Some(body) = usize::try_from(clen).ok().and_then(|n| buf.get(..n)) else {
                break;
            };
            if ctype == CAPSULE_CLOSE_SESSION && body.len() >= 4 {
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                found = Some(Closed::Capsule(
                    code,
                    String::from_utf8_lossy(&body[4..]).into_owned(),
                ));
                break;
            }
            buf = &buf[body.len()..];
        }
        if let Some(c) = found {
            break c;
        }
    };
    // A connection closed by the peer ends the stream too: say so, unless it
    // was this side that closed, or it timed out.
    let outcome = match (&outcome, conn.close_reason()) {
        (Closed::WithoutCapsule(_), Some(quinn::ConnectionError::ApplicationClosed(_)))
        | (Closed::WithoutCapsule(_), Some(quinn::ConnectionError::ConnectionClosed(_))) => {
            Closed::WithoutCapsule(NoCapsule::ConnectionClosed)
        }
        (Closed::WithoutCapsule(_), Some(e)) => Closed::Connection(e),
        _ => outcome,
    };
    let first = matches!(
        state.closed.lock().map(|mut c| {
            if c.is_some() {
                false
            } else {
                *c = Some(outcome.clone());
                true
            }
        }),
        Ok(true)
    );
    if !first {
        return;
    }
    // (A close without a capsule is logged and counted by the server, per connection.)
    // The session was the connection's only one.
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        if let Some(mut send) = state.send.lock().await.take() {
            let _ = send.finish();
        }
    })
    .await;
    conn.close(H3_NO_ERROR.into(), b"");
}

async fn skip(recv: &mut quinn::RecvStream, mut len: u64) -> Result<(), ()> {
    let mut buf = [0u8; 1024];
    while len > 0 {
        let n = (len as usize).min(buf.len());
        recv.read_exact(&mut buf[..n]).await.map_err(|_| ())?;
        len -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [
            0u64,
            63,
            64,
            16383,
            16384,
            (1 << 30) - 1,
            1 << 30,
            0x14e9_cd29,
            (1 << 62) - 1,
        ] {
            let mut buf = BytesMut::new();
            put_varint(&mut buf, v);
            assert_eq!(get_varint(&mut buf.freeze()), Some(v));
        }
        assert_eq!(get_varint(&mut &[0x40u8][..]), None, "cut short");
    }

    #[test]
    fn application_codes_map_to_http3_and_back() {
        for code in [0u32, 1, 6, 29, 30, 31, 4000, u32::MAX] {
            assert_eq!(error_from_http3(error_to_http3(code)), Some(code), "{code}");
        }
        assert_eq!(error_from_http3(u64::from(H3_NO_ERROR)), None);
    }
}
