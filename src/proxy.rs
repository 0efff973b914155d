//! The client's address behind a reverse proxy, decided so that the client
//! cannot choose it.
//!
//! Every per-address budget (the failed-join lockout that stops code
//! guessing, the session quota, the connection cap, the signal budgets)
//! keys on the client's address. Behind a proxy the socket shows the
//! proxy's, and the client's comes in a header. A proxy *appends* the
//! address it saw to `X-Forwarded-For`; it does not replace what the client
//! wrote. So the leftmost entry is whatever the client likes, and only the
//! entries the operator's own proxies appended, counted from the right, can
//! be believed. This module takes the address as the platforms document it:
//!
//! - `X-Forwarded-For` walked from the right: skip the entries of the
//!   configured trusted proxies (`--trusted-proxies`), or take the entry
//!   `--proxy-hops` places from the right; never the leftmost by default;
//! - or a single-address header that the platform *overwrites* (Railway's
//!   `X-Real-IP`, Fly's `Fly-Client-IP`, nginx's `proxy_set_header X-Real-IP
//!   $remote_addr`), taken as it is.
//!
//! With `--trusted-proxies`, a request whose socket address is not one of
//! them did not come through the proxy: its headers are ignored and its
//! socket address is its address. Pure code: headers in, address out.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// How the server learns a WebSocket client's address behind a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTrust {
    /// The header that carries the client's address (lower case).
    /// `x-forwarded-for` is a list walked from the right; any other header
    /// must hold one address that the proxy overwrites.
    pub header: String,
    /// The operator's proxies. Empty: count `hops` instead. Non-empty: only
    /// requests from these addresses are believed, and their entries in
    /// `X-Forwarded-For` are skipped from the right.
    pub trusted: Vec<Cidr>,
    /// Without `trusted`: how many proxies append to `X-Forwarded-For` in
    /// front of the server (the client's address is this many entries from
    /// the right). At least 1.
    pub hops: usize,
}

impl Default for ProxyTrust {
    fn default() -> Self {
        ProxyTrust {
            header: FORWARDED_FOR.to_string(),
            trusted: Vec::new(),
            hops: 1,
        }
    }
}

/// The list header that proxies append to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

impl ProxyTrust {
    /// Whether a connection from `socket_ip` comes from one of the
    /// configured proxies. Without a list (hop counting), every connection
    /// is taken to come through the proxy: the port must be reachable only
    /// through it.
    pub fn is_proxy(&self, socket_ip: IpAddr) -> bool {
        self.trusted.is_empty() || self.trusted.iter().any(|c| c.contains(socket_ip))
    }

    /// The client's address. `header` looks a header up by its lower-case
    /// name and returns each of its values (a header may be sent more than
    /// once; the values are read in order, as one list).
    pub fn client_ip<'a>(
        &self,
        socket_ip: IpAddr,
        header: impl Fn(&str) -> Vec<&'a str>,
    ) -> IpAddr {
        let socket_ip = socket_ip.to_canonical();
        if !self.is_proxy(socket_ip) {
            return socket_ip;
        }
        let values = header(&self.header);
        if self.header != FORWARDED_FOR {
            // One address, overwritten by the platform. Sent twice, or not
            // an address: not believed.
            return match values.as_slice() {
                [one] => parse_entry(one).unwrap_or(socket_ip),
                _ => socket_ip,
            };
        }
        let entries: Vec<&str> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        self.read_forwarded_for(&entries).unwrap_or(socket_ip)
    }

    fn read_forwarded_for(&self, entries: &[&str]) -> Option<IpAddr> {
        if self.trusted.is_empty() {
            // The entry `hops` places from the right was appended by the
            // outermost proxy: the address it saw. Fewer entries than hops:
            // the leftmost, which some proxy of ours still wrote.
            let at = entries.len().saturating_sub(self.hops.max(1));
            return parse_entry(entries.get(at)?);
        }
        // From the right: skip our own proxies; the first other address is
        // the client. A garbage entry ends the walk (everything left of it
        // is the client's own writing).
        let mut last = None;
        for e in entries.iter().rev() {
            let ip = parse_entry(e)?;
            last = Some(ip);
            if !self.trusted.iter().any(|c| c.contains(ip)) {
                return Some(ip);
            }
        }
        // Every entry is one of our proxies: the leftmost is the nearest
        // thing to a client that we know.
        last
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`), as some proxies write.
fn parse_entry(e: &str) -> Option<IpAddr> {
    let e = e.trim();
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (addr, _) = rest.split_once(']')?;
        return addr.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (addr, port) = e.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// An address range, `10.0.0.0/8` or `2001:db8::/32` (a bare address is /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net = addr
            .parse::<IpAddr>()
            .map_err(|_| format!("'{s}' is not an address or range (e.g. 10.0.0.0/8, fd00::/8)"))?
            .to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn hdr<'a>(name: &'static str, values: &'a [&'a str]) -> impl Fn(&str) -> Vec<&'a str> {
        move |n: &str| {
            if n == name {
                values.to_vec()
            } else {
                Vec::new()
            }
        }
    }

    const PROXY: &str = "10.0.0.2";

    #[test]
    fn the_leftmost_entry_written_by_the_client_is_never_taken() {
        let t = ProxyTrust::default();
        // The client wrote 6.6.6.6; the proxy appended what it saw.
        for forged in ["6.6.6.6", "7.7.7.7", "1.1.1.1, 2.2.2.2"] {
            let v = format!("{forged}, 203.0.113.9");
            let got = t.client_ip(ip(PROXY), hdr(FORWARDED_FOR, &[v.as_str()]));
            assert_eq!(got, ip("203.0.113.9"), "{v}");
        }
    }

    #[test]
    fn two_proxies_by_hop_count() {
        let t = ProxyTrust {
            hops: 2,
            ..ProxyTrust::default()
        };
        // client → CDN (appends client) → nginx (appends CDN) → server
        let got = t.client_ip(
            ip("127.0.0.1"),
            hdr(FORWARDED_FOR, &["9.9.9.9, 203.0.113.9, 198.51.100.1"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
        // Fewer entries than hops: the leftmost, which a proxy of ours wrote.
        let got = t.client_ip(ip("127.0.0.1"), hdr(FORWARDED_FOR, &["203.0.113.9"]));
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn two_proxies_by_address() {
        let t = ProxyTrust {
            trusted: vec![
                "127.0.0.1".parse().unwrap(),
                "198.51.100.0/24".parse().unwrap(),
            ],
            ..ProxyTrust::default()
        };
        let got = t.client_ip(
            ip("127.0.0.1"),
            hdr(FORWARDED_FOR, &["9.9.9.9, 203.0.113.9, 198.51.100.1"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
        // The header sent twice reads as one list.
        let got = t.client_ip(
            ip("127.0.0.1"),
            hdr(FORWARDED_FOR, &["9.9.9.9", "203.0.113.9, 198.51.100.1"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
        // Garbage on the right of the client's entry stops the walk: not believed.
        let got = t.client_ip(ip("127.0.0.1"), hdr(FORWARDED_FOR, &["9.9.9.9, nonsense"]));
        assert_eq!(got, ip("127.0.0.1"));
    }

    #[test]
    fn a_request_that_bypassed_the_listed_proxies_keeps_its_socket_address() {
        let t = ProxyTrust {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            ..ProxyTrust::default()
        };
        let got = t.client_ip(ip("203.0.113.50"), hdr(FORWARDED_FOR, &["6.6.6.6"]));
        assert_eq!(got, ip("203.0.113.50"));
        assert!(!t.is_proxy(ip("203.0.113.50")));
        assert!(t.is_proxy(ip("10.1.2.3")));
        assert!(ProxyTrust::default().is_proxy(ip("203.0.113.50")));
    }

    #[test]
    fn an_overwritten_single_address_header() {
        let t = ProxyTrust {
            header: "x-real-ip".into(),
            ..ProxyTrust::default()
        };
        let got = t.client_ip(ip(PROXY), hdr("x-real-ip", &["203.0.113.9"]));
        assert_eq!(got, ip("203.0.113.9"));
        // X-Forwarded-For is not looked at when another header is named.
        let got = t.client_ip(ip(PROXY), hdr(FORWARDED_FOR, &["203.0.113.9"]));
        assert_eq!(got, ip(PROXY));
        // Two values: someone added one; believe neither.
        let got = t.client_ip(ip(PROXY), hdr("x-real-ip", &["6.6.6.6", "203.0.113.9"]));
        assert_eq!(got, ip(PROXY));
    }

    #[test]
    fn missing_or_garbage_headers_give_the_socket_address() {
        let t = ProxyTrust::default();
        assert_eq!(t.client_ip(ip(PROXY), hdr(FORWARDED_FOR, &[])), ip(PROXY));
        assert_eq!(
            t.client_ip(ip(PROXY), hdr(FORWARDED_FOR, &["nope"])),
            ip(PROXY)
        );
        assert_eq!(t.client_ip(ip(PROXY), hdr(FORWARDED_FOR, &[""])), ip(PROXY));
    }

    #[test]
    fn entries_with_ports_and_mapped_addresses() {
        assert_eq!(parse_entry("203.0.113.9:4711"), Some(ip("203.0.113.9")));
        assert_eq!(parse_entry("[2001:db8::1]:443"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_entry("::ffff:203.0.113.9"), Some(ip("203.0.113.9")));
        assert_eq!(parse_entry("unknown"), None);
        assert_eq!(parse_entry("1.2.3.4:99999"), None);
    }

    #[test]
    fn ranges() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.255.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("example.com".parse::<Cidr>().is_err());
        assert!("::/129".parse::<Cidr>().is_err());
        assert!("::/128".parse::<Cidr>().is_ok());
    }
}
