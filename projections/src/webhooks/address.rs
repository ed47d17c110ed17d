//! Where a webhook may post: public addresses only, unless the server allows private ones.
//!
//! A URL's literal address is checked when the webhook is registered; a host name is checked
//! where it is used: the senders' HTTP client resolves every name through [`PublicOnly`], which
//! keeps only public addresses, and connects to what it kept. A name that resolves to this
//! machine or a private network (a public name pointed at `10.0.0.5`, or at the cloud's
//! metadata address, or re-pointed there after the registration) is never posted to.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Loopback, private, link-local, carrier-grade NAT, unspecified or broadcast: an address an
/// organizer must not make the server post to.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, ..] = ip.octets();
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                // 100.64.0.0/10, carrier-grade NAT.
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || ip.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

/// A host name that resolved to no address a webhook may be posted to.
#[derive(Debug, thiserror::Error)]
#[error(
    "{host} resolves only to loopback, private or link-local addresses ({found}): not posted \
     to (webhooks.allow_private_urls)"
)]
pub struct PrivateHost {
    host: String,
    found: String,
}

/// The addresses of `host` a webhook may be posted to: the public ones of `found`, or all of
/// them when private ones are allowed.
pub fn postable(
    host: &str,
    found: Vec<SocketAddr>,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, PrivateHost> {
    if allow_private {
        return Ok(found);
    }
    let (public, private): (Vec<SocketAddr>, Vec<SocketAddr>) =
        found.into_iter().partition(|addr| !is_private(addr.ip()));
    if public.is_empty() && !private.is_empty() {
        return Err(PrivateHost {
            host: host.to_owned(),
            found: private
                .iter()
                .map(|addr| addr.ip().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(public)
}

/// The senders' resolver: the system's (`getaddrinfo`), filtered by [`postable`].
#[derive(Clone, Copy, Debug)]
pub struct PublicOnly {
    pub allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = postable(&host, found, allow_private)?;
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        SocketAddr::new(text.parse().expect("an address"), 0)
    }

    #[test]
    fn only_public_addresses_are_kept() {
        let found = vec![addr("10.0.0.5"), addr("93.184.215.14"), addr("::1")];
        assert_eq!(
            postable("mixed.example", found, false).expect("one public"),
            vec![addr("93.184.215.14")]
        );
        let private = vec![addr("169.254.169.254"), addr("fd00::7")];
        let refused = postable("metadata.example", private.clone(), false)
            .expect_err("nothing public")
            .to_string();
        assert!(
            refused.contains("metadata.example") && refused.contains("169.254.169.254"),
            "{refused}"
        );
        assert_eq!(
            postable("metadata.example", private.clone(), true).expect("allowed"),
            private
        );
    }

    #[test]
    fn private_addresses_are_recognised() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(private.parse().expect("ip")), "{private}");
        }
        for public in [
            "93.184.215.14",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(public.parse().expect("ip")), "{public}");
        }
    }

    #[tokio::test]
    async fn a_name_of_this_machine_is_not_resolved_for_a_webhook() {
        let name: Name = "localhost".parse().expect("a name");
        let strict = PublicOnly {
            allow_private: false,
        };
        let refused = match strict.resolve(name).await {
            Ok(addrs) => panic!("resolved: {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e.to_string(),
        };
        assert!(refused.contains("localhost"), "{refused}");
        let name: Name = "localhost".parse().expect("a name");
        let allowed: Vec<SocketAddr> = PublicOnly {
            allow_private: true,
        }
        .resolve(name)
        .await
        .expect("allowed")
        .collect();
        assert!(allowed.iter().any(|a| a.ip().is_loopback()), "{allowed:?}");
    }
}
