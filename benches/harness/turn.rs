//! A minimal TURN client (RFC 8656) for the coturn baseline: Allocate with
//! long-term credentials, CreatePermission, ChannelBind, then ChannelData.
//! Only what the benchmark needs; no retransmission (loopback), no refresh
//! (runs are shorter than the allocation lifetime).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::net::UdpSocket;

const MAGIC: u32 = 0x2112_A442;
const ALLOCATE: u16 = 0x0003;
const CREATE_PERMISSION: u16 = 0x0008;
const CHANNEL_BIND: u16 = 0x0009;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;

const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_ERROR_CODE: u16 = 0x0009;
const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
const ATTR_REALM: u16 = 0x0014;
const ATTR_NONCE: u16 = 0x0015;
const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;

pub struct TurnClient {
    pub socket: UdpSocket,
    server: SocketAddr,
    username: String,
    realm: String,
    nonce: Vec<u8>,
    key: [u8; 16],
    pub relayed: SocketAddr,
    next_channel: u16,
}

fn put_attr(out: &mut Vec<u8>, ty: u16, value: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn xor_addr(addr: SocketAddrV4) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(&(addr.port() ^ (MAGIC >> 16) as u16).to_be_bytes());
    v.extend_from_slice(&(u32::from(*addr.ip()) ^ MAGIC).to_be_bytes());
    v
}

fn parse_xor_addr(v: &[u8]) -> Option<SocketAddr> {
    if v.len() < 8 || v[1] != 1 {
        return None;
    }
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC >> 16) as u16;
    let ip = u32::from_be_bytes([v[4], v[5], v[6], v[7]]) ^ MAGIC;
    Some(SocketAddr::V4(SocketAddrV4::new(ip.into(), port)))
}

/// Attributes of a STUN message: (type, value).
fn attrs(msg: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 20;
    while at + 4 <= msg.len() {
        let ty = u16::from_be_bytes([msg[at], msg[at + 1]]);
        let len = u16::from_be_bytes([msg[at + 2], msg[at + 3]]) as usize;
        if at + 4 + len > msg.len() {
            break;
        }
        out.push((ty, &msg[at + 4..at + 4 + len]));
        at += 4 + len.div_ceil(4) * 4;
    }
    out
}

/// An error response from coturn.
#[derive(Debug)]
pub struct StunError {
    pub method: u16,
    pub code: u16,
}

impl std::fmt::Display for StunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "coturn refused method {:#06x}: error {}",
            self.method, self.code
        )
    }
}

impl std::error::Error for StunError {}

impl TurnClient {
    /// Allocate a relayed address on `server` with REST-API credentials.
    ///
    /// coturn keeps an allocation per client address until its lifetime runs
    /// out; when the kernel hands this run a port an earlier step's client
    /// used, coturn answers 437 (allocation mismatch): take another port.
    pub async fn allocate(server: SocketAddr, username: &str, password: &str) -> Result<Self> {
        let mut attempt = 0;
        loop {
            match Self::allocate_once(server, username, password).await {
                Err(e)
                    if attempt < 5
                        && e.downcast_ref::<StunError>().is_some_and(|s| s.code == 437) =>
                {
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    async fn allocate_once(server: SocketAddr, username: &str, password: &str) -> Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let mut c = TurnClient {
            socket,
            server,
            username: username.to_string(),
            realm: String::new(),
            nonce: Vec::new(),
            key: [0; 16],
            relayed: "0.0.0.0:0".parse()?,
            next_channel: 0x4000,
        };
        // First attempt without credentials: the 401 carries realm and nonce.
        let mut transport = Vec::new();
        put_attr(&mut transport, ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        let resp = c.transact(ALLOCATE, &transport, false).await?;
        for (ty, v) in attrs(&resp) {
            match ty {
                ATTR_REALM => c.realm = String::from_utf8_lossy(v).into_owned(),
                ATTR_NONCE => c.nonce = v.to_vec(),
                _ => {}
            }
        }
        if c.realm.is_empty() {
            bail!("coturn sent no realm");
        }
        let key_src = format!("{}:{}:{}", c.username, c.realm, password);
        c.key = md5::compute(key_src.as_bytes()).0;
        let resp = c.transact(ALLOCATE, &transport, true).await?;
        c.relayed = attrs(&resp)
            .into_iter()
            .find(|(t, _)| *t == ATTR_XOR_RELAYED_ADDRESS)
            .and_then(|(_, v)| parse_xor_addr(v))
            .context("no relayed address")?;
        Ok(c)
    }

    /// Permission and a channel towards `peer` (another client's relayed address).
    pub async fn bind_channel(&mut self, peer: SocketAddr) -> Result<u16> {
        let SocketAddr::V4(p4) = peer else {
            bail!("IPv4 only")
        };
        let mut a = Vec::new();
        put_attr(&mut a, ATTR_XOR_PEER_ADDRESS, &xor_addr(p4));
        self.transact(CREATE_PERMISSION, &a, true).await?;
        let ch = self.next_channel;
        self.next_channel += 1;
        let mut a = Vec::new();
        put_attr(
            &mut a,
            ATTR_CHANNEL_NUMBER,
            &[(ch >> 8) as u8, ch as u8, 0, 0],
        );
        put_attr(&mut a, ATTR_XOR_PEER_ADDRESS, &xor_addr(p4));
        self.transact(CHANNEL_BIND, &a, true).await?;
        Ok(ch)
    }

    /// A ChannelData message: 4-byte header, payload padded to 4 bytes.
    pub fn channel_data(channel: u16, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    pub fn server(&self) -> SocketAddr {
        self.server
    }

    async fn transact(&mut self, method: u16, body: &[u8], auth: bool) -> Result<Vec<u8>> {
        for _ in 0..2 {
            let txid: [u8; 12] = rand::random();
            let mut msg = Vec::with_capacity(200);
            msg.extend_from_slice(&method.to_be_bytes());
            msg.extend_from_slice(&[0, 0]);
            msg.extend_from_slice(&MAGIC.to_be_bytes());
            msg.extend_from_slice(&txid);
            msg.extend_from_slice(body);
            if auth {
                put_attr(&mut msg, ATTR_USERNAME, self.username.as_bytes());
                put_attr(&mut msg, ATTR_REALM, self.realm.as_bytes());
                put_attr(&mut msg, ATTR_NONCE, &self.nonce.clone());
                // Length covers everything up to and including MESSAGE-INTEGRITY.
                let len = (msg.len() - 20 + 24) as u16;
                msg[2..4].copy_from_slice(&len.to_be_bytes());
                let key =
                    ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &self.key);
                let tag = ring::hmac::sign(&key, &msg);
                put_attr(&mut msg, ATTR_MESSAGE_INTEGRITY, tag.as_ref());
            } else {
                let len = (msg.len() - 20) as u16;
                msg[2..4].copy_from_slice(&len.to_be_bytes());
            }
            self.socket.send_to(&msg, self.server).await?;
            let mut buf = vec![0u8; 2048];
            let resp = loop {
                let (n, _) =
                    tokio::time::timeout(Duration::from_secs(2), self.socket.recv_from(&mut buf))
                        .await
                        .map_err(|_| anyhow!("no answer from coturn"))??;
                if n >= 20 && buf[8..20] == txid {
                    break buf[..n].to_vec();
                }
            };
            let class = u16::from_be_bytes([resp[0], resp[1]]) & 0x0110;
            if class == SUCCESS {
                return Ok(resp);
            }
            if class == ERROR {
                let a = attrs(&resp);
                let code = a
                    .iter()
                    .find(|(t, _)| *t == ATTR_ERROR_CODE)
                    .map(|(_, v)| {
                        if v.len() >= 4 {
                            u16::from(v[2]) * 100 + u16::from(v[3])
                        } else {
                            0
                        }
                    })
                    .unwrap_or(0);
                if let Some((_, n)) = a.iter().find(|(t, _)| *t == ATTR_NONCE) {
                    self.nonce = n.to_vec();
                }
                if let Some((_, r)) = a.iter().find(|(t, _)| *t == ATTR_REALM) {
                    self.realm = String::from_utf8_lossy(r).into_owned();
                }
                // 401 on the first (unauthenticated) Allocate is expected; 438 = stale nonce.
                if (code == 401 && !auth) || code == 438 {
                    if !auth {
                        return Ok(resp);
                    }
                    continue;
                }
                return Err(StunError { method, code }.into());
            }
            bail!("unexpected STUN class {class:#06x}");
        }
        bail!("coturn kept refusing the nonce")
    }
}
