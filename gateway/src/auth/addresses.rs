//! Which peers are trusted proxies, and the client address a request stands for.
//!
//! Headers that say who the caller is (`X-User-Id` in `trusted-header` mode, `X-Forwarded-For`)
//! are believed only from the addresses in `auth.trusted_proxies` (single addresses or CIDR
//! ranges): from anyone else they are the caller's own claims.

use std::net::IpAddr;

/// A set of addresses and address ranges.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    ranges: Vec<(IpAddr, u8)>,
}

impl Proxies {
    /// Parse `10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`; the error names the entry.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut ranges = Vec::with_capacity(entries.len());
        for entry in entries {
            let (address, bits) = match entry.split_once('/') {
                Some((address, bits)) => (address, Some(bits)),
                None => (entry.as_str(), None),
            };
            let address: IpAddr = address.trim().parse().map_err(|_| {
                format!("auth.trusted_proxies: {entry:?} is not an address or CIDR range")
            })?;
            let most = if address.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => most,
                Some(bits) => bits
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= most)
                    .ok_or_else(|| {
                        format!("auth.trusted_proxies: {entry:?} has a bad prefix length")
                    })?,
            };
            ranges.push((address, bits));
        }
        Ok(Self { ranges })
    }

    /// Whether `peer` is one of the trusted proxies.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        self.ranges
            .iter()
            .any(|(range, bits)| within(peer, canonical(*range), *bits))
    }

    /// The client a request stands for: the peer, or, when the peer is a trusted proxy, the
    /// right-most address of `X-Forwarded-For` that is not itself a trusted proxy (the ones to
    /// its left were written by the client and prove nothing).
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let Some(forwarded_for) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in forwarded_for.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(address) => {
                    client = address;
                    if !self.trusts(address) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`, how a dual-stack socket shows it) is
/// the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn within(address: IpAddr, range: IpAddr, bits: u8) -> bool {
    match (address, range) {
        (IpAddr::V4(a), IpAddr::V4(r)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(r) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(r)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(r) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn addresses_and_ranges_are_trusted_and_nothing_else() {
        let proxies = Proxies::parse(&[
            "10.1.0.0/16".into(),
            "192.168.0.7".into(),
            "fd00::/8".into(),
        ])
        .expect("parses");
        assert!(proxies.trusts(ip("10.1.200.3")));
        assert!(proxies.trusts(ip("::ffff:10.1.0.1")));
        assert!(!proxies.trusts(ip("10.2.0.1")));
        assert!(proxies.trusts(ip("192.168.0.7")));
        assert!(!proxies.trusts(ip("192.168.0.8")));
        assert!(proxies.trusts(ip("fd12::1")));
        assert!(!proxies.trusts(ip("fe80::1")));
        assert!(Proxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Proxies::parse(&["proxy.local".into()]).is_err());
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let proxies = Proxies::parse(&["10.0.0.0/8".into()]).expect("parses");
        // From the proxy: the right-most untrusted hop; what the client wrote before it is not.
        assert_eq!(
            proxies.client(ip("10.0.0.5"), Some("6.6.6.6, 203.0.113.9, 10.0.0.4")),
            ip("203.0.113.9")
        );
        // From anyone else the header is ignored.
        assert_eq!(
            proxies.client(ip("198.51.100.2"), Some("6.6.6.6")),
            ip("198.51.100.2")
        );
        assert_eq!(proxies.client(ip("10.0.0.5"), None), ip("10.0.0.5"));
    }
}
