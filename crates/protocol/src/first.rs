//! The first request, carried in the connection's URL.
//!
//! A browser cannot send anything on a WebTransport session or a WebSocket
//! before the server has answered the CONNECT (200) or the upgrade (101); a
//! `Hello` and a `JoinSession` sent after that cost one more round trip.
//! Carried in the URL's `first` query parameter instead, they reach the
//! server with the request, and the answers (`Welcome`, `SessionJoined`) go
//! out in the same flight as the 200 or 101: a player is in the session one
//! round trip after the QUIC handshake (WebTransport) or the TCP handshake
//! (WebSocket). PROTOCOL.md §1 and §10 specify it.
//!
//! The value is base64url (RFC 4648 §5, no padding) of control frames exactly
//! as on the control stream (`varint(len) || postcard body`): a `Hello`,
//! optionally followed by one `CreateSession` or `JoinSession`. The request
//! is encoded at the version the `Hello` says (version 4 and later: with
//! its `region_rtts`, see [`crate::decode_client`]).

use base64::Engine;

use crate as protocol;
use crate::{ClientMsg, DecodeError, FrameDecoder};

/// The query parameter that carries the first request.
pub const FIRST_PARAM: &str = "first";

/// The most decoded bytes `first` may carry: a Hello with a long name and a
/// join with a password fit many times over; URLs much longer than this are
/// refused by some proxies.
pub const MAX_FIRST_BYTES: usize = 2048;

/// Why a `first` parameter was refused (HTTP 400; the client's fault).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FirstError {
    /// Not base64url without padding.
    #[error("`first` is not base64url (RFC 4648 §5, no padding)")]
    Base64,
    /// Longer than [`MAX_FIRST_BYTES`] once decoded.
    #[error("`first` is longer than {MAX_FIRST_BYTES} bytes")]
    TooLong,
    /// A frame or message does not decode.
    #[error("`first` does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The last frame is cut short.
    #[error("`first` ends inside a frame")]
    Truncated,
    /// Frames that decode but are not `Hello` then at most one session request.
    #[error("`first` must be Hello, then at most one CreateSession or JoinSession")]
    Shape,
}

/// The `first` value for these messages (the client side): each at the
/// version of the `Hello` before it (the layout without `region_rtts` when
/// there is none).
pub fn encode_first(msgs: &[ClientMsg]) -> String {
    let mut frames = Vec::new();
    let mut version = protocol::MIN_PROTOCOL_VERSION;
    for m in msgs {
        if let ClientMsg::Hello(h) = m {
            version = h.version;
        }
        frames.extend_from_slice(&protocol::encode_client_frame(m, version));
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(frames)
}

/// The messages a `first` value carries, checked for shape.
pub fn decode_first(value: &str) -> Result<Vec<ClientMsg>, FirstError> {
    if value.len() > MAX_FIRST_BYTES * 4 / 3 + 4 {
        return Err(FirstError::TooLong);
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| FirstError::Base64)?;
    if bytes.len() > MAX_FIRST_BYTES {
        return Err(FirstError::TooLong);
    }
    let mut decoder = FrameDecoder::new(MAX_FIRST_BYTES as u32);
    decoder.extend(&bytes);
    let mut msgs = Vec::new();
    // What follows the Hello is read at the version it says.
    let mut version = protocol::MIN_PROTOCOL_VERSION;
    while let Some(frame) = decoder.next_frame()? {
        let msg = protocol::decode_client(&frame, version)?;
        if let ClientMsg::Hello(h) = &msg {
            version = h.version;
        }
        msgs.push(msg);
    }
    if decoder.buffered() != 0 {
        return Err(FirstError::Truncated);
    }
    match msgs.as_slice() {
        [ClientMsg::Hello(_)]
        | [ClientMsg::Hello(_), ClientMsg::CreateSession(_) | ClientMsg::JoinSession(_)] => {
            Ok(msgs)
        }
        _ => Err(FirstError::Shape),
    }
}

/// The raw value of the `first` parameter in a URL query, if there is one.
pub fn first_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == FIRST_PARAM)
        .map(|(_, v)| v)
}

/// The query parameter that carries the access token on the WebTransport
/// CONNECT and the WebSocket upgrade (SignalR's name for it: browsers
/// cannot set headers on either).
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// The access token in a URL query (`access_token=`), percent-decoded.
/// `None` when there is none, or when it is not valid percent-encoding of
/// UTF-8 or longer than a token may be (the core then sees no token and
/// says `token_required`, or the one in `Hello`).
pub fn access_token_param(query: Option<&str>) -> Option<String> {
    let raw = query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == ACCESS_TOKEN_PARAM)
        .map(|(_, v)| v)?;
    if raw.len() > 3 * protocol::MAX_ACCESS_TOKEN_BYTES {
        return None;
    }
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientKind, Hello, JoinSession, RelayMode};

    /// A version-1 Hello: the document's vector predates version 2.
    fn hello() -> ClientMsg {
        ClientMsg::Hello(Hello {
            version: 1,
            client: ClientKind::Browser,
            relay_mode: RelayMode::Datagram,
            name: String::new(),
            resume_token: None,
            access_token: None,
        })
    }

    fn join() -> ClientMsg {
        ClientMsg::JoinSession(JoinSession {
            code: "7KQ2MX".into(),
            password: None,
            region_rtts: Vec::new(),
        })
    }

    /// The golden vector of PROTOCOL.md §1: Hello (browser, datagrams, no
    /// name, no token) then JoinSession("7KQ2MX").
    #[test]
    fn golden_vector() {
        let v = encode_first(&[hello(), join()]);
        assert_eq!(v, "BgABAgAAAAkCBjdLUTJNWAA");
        assert_eq!(decode_first(&v).unwrap(), vec![hello(), join()]);
        assert_eq!(
            first_param(Some(&format!("x=1&first={v}"))),
            Some(v.as_str())
        );
        assert_eq!(first_param(Some("x=1")), None);
        assert_eq!(first_param(None), None);
    }

    /// A version-4 Hello carries the request's `region_rtts`; the same
    /// request after a version-3 Hello carries none (and a version-4 body
    /// after it is refused).
    #[test]
    fn the_request_is_read_at_the_hellos_version() {
        let v4 = |version| {
            ClientMsg::Hello(Hello {
                version,
                client: ClientKind::Rust,
                relay_mode: RelayMode::Datagram,
                name: String::new(),
                resume_token: None,
                access_token: None,
            })
        };
        let rtts = vec![crate::RegionRtt {
            region: "eu".into(),
            rtt_ms: 12,
        }];
        let join = ClientMsg::JoinSession(JoinSession {
            code: "7KQ2MX".into(),
            password: None,
            region_rtts: rtts.clone(),
        });
        let v = encode_first(&[v4(4), join.clone()]);
        assert_eq!(decode_first(&v).unwrap(), vec![v4(4), join.clone()]);
        // At version 3 the list is not sent, and reads as empty.
        let v = encode_first(&[v4(3), join]);
        let ClientMsg::JoinSession(j) = &decode_first(&v).unwrap()[1] else {
            panic!("not a join")
        };
        assert!(j.region_rtts.is_empty());
        // A version-4 body after a version-3 Hello has trailing bytes.
        let mut frames = crate::encode_frame(&v4(3)).to_vec();
        frames.extend_from_slice(&crate::encode_client_frame(
            &ClientMsg::JoinSession(JoinSession {
                code: "7KQ2MX".into(),
                password: None,
                region_rtts: rtts,
            }),
            4,
        ));
        let bad = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(frames);
        assert!(matches!(decode_first(&bad), Err(FirstError::Decode(_))));
    }

    #[test]
    fn the_access_token_is_read_from_the_query_and_percent_decoded() {
        assert_eq!(
            access_token_param(Some("first=x&access_token=a.b-c_d")),
            Some("a.b-c_d".into())
        );
        assert_eq!(
            access_token_param(Some("access_token=a%2Eb%2e")),
            Some("a.b.".into())
        );
        assert_eq!(access_token_param(Some("first=x")), None);
        assert_eq!(access_token_param(Some("access_token=")), None);
        assert_eq!(access_token_param(Some("access_token=%zz")), None);
        assert_eq!(access_token_param(Some("access_token=%4")), None);
        assert_eq!(access_token_param(Some("access_token=%ff")), None);
        let long = "a".repeat(3 * crate::MAX_ACCESS_TOKEN_BYTES + 1);
        assert_eq!(
            access_token_param(Some(&format!("access_token={long}"))),
            None
        );
        assert_eq!(access_token_param(None), None);
    }

    #[test]
    fn anything_but_hello_then_one_request_is_refused() {
        let ping = ClientMsg::Ping { client_time_ms: 1 };
        for bad in [
            vec![],
            vec![join()],
            vec![hello(), ping.clone()],
            vec![hello(), join(), join()],
            vec![ping],
        ] {
            assert_eq!(decode_first(&encode_first(&bad)), Err(FirstError::Shape));
        }
        assert_eq!(decode_first("AAA*"), Err(FirstError::Base64));
        assert_eq!(
            decode_first("BgABAgAAAAkCBjdLUTJNWAA="),
            Err(FirstError::Base64)
        );
        let long = "A".repeat(4000);
        assert_eq!(decode_first(&long), Err(FirstError::TooLong));
        // A frame cut short.
        let v = encode_first(&[hello()]);
        let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&v)
            .unwrap();
        bytes.pop();
        let cut = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        assert_eq!(decode_first(&cut), Err(FirstError::Truncated));
    }
}
