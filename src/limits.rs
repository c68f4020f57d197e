//! Abuse control per client address: how many GraphQL requests (and
//! websocket upgrades) and how many entries (`registerUser`, `issueToken`,
//! `chargeBalance`) one address may send a minute, and which address a
//! request comes from when the server stands behind proxies.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::config::Config;

/// The mutations that make users, places in line or money: a script that
/// sends many of them is the bot farm the line must not fill with.
pub const ENTRY_FIELDS: [&str; 3] = ["registerUser", "issueToken", "chargeBalance"];

/// The per-address limits of one process. Each is off (`None`) when its
/// setting is 0, as in benchmarks that drive the server from one address.
pub struct RateLimits {
    requests: Option<DefaultKeyedRateLimiter<IpAddr>>,
    entries: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

/// A refusal: the address may try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    pub seconds: u64,
}

impl RetryAfter {
    fn of(wait: Duration) -> Self {
        // Whole seconds, rounded up: "0" would invite an instant retry.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self {
            seconds: seconds.max(1),
        }
    }
}

impl RateLimits {
    pub fn from_config(config: &Config) -> Self {
        Self::per_minute(config.rate_limit_per_minute, config.entry_limit_per_minute)
    }

    /// Limits of `requests` and `entries` a minute per address; 0 is off.
    pub fn per_minute(requests: u32, entries: u32) -> Self {
        let limiter = |per_minute: u32| {
            NonZeroU32::new(per_minute)
                .map(|per_minute| RateLimiter::keyed(Quota::per_minute(per_minute)))
        };
        Self {
            requests: limiter(requests),
            entries: limiter(entries),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request (or websocket upgrade) of `client`.
    pub fn request(&self, client: IpAddr) -> Result<(), RetryAfter> {
        let Some(limiter) = &self.requests else {
            return Ok(());
        };
        limiter
            .check_key(&client)
            .map_err(|refused| RetryAfter::of(refused.wait_time_from(self.clock.now())))
    }

    /// Counts `count` entries of `client` in one go: all pass or none do,
    /// so a refused request changes nothing.
    pub fn entries(&self, client: IpAddr, count: u32) -> Result<(), RetryAfter> {
        let (Some(limiter), Some(count)) = (&self.entries, NonZeroU32::new(count)) else {
            return Ok(());
        };
        match limiter.check_key_n(&client, count) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(RetryAfter::of(refused.wait_time_from(self.clock.now()))),
            // More entries in one request than a minute allows: never.
            Err(_) => Err(RetryAfter { seconds: 60 }),
        }
    }

    /// Drops the addresses whose limits have fully recovered, so that the
    /// memory held is that of the recent addresses, not of every one seen.
    pub fn forget_idle(&self) {
        for limiter in [&self.requests, &self.entries].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many addresses the limits remember now.
    pub fn remembered(&self) -> usize {
        [&self.requests, &self.entries]
            .into_iter()
            .flatten()
            .map(|limiter| limiter.len())
            .sum()
    }
}

/// The address a request is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub IpAddr);

impl ClientAddress {
    /// The peer's address; when the peer is a trusted proxy, the nearest
    /// address of `X-Forwarded-For` that is not one (read right to left:
    /// the entries left of it were written by the client, who may lie).
    pub fn of(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Self {
        let mut client = canonical(peer.ip());
        if !is_trusted(client, trusted) {
            return Self::keyed(client);
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect::<Vec<_>>();
        for hop in forwarded.into_iter().rev() {
            // A hop that is no address ends the walk: what is left of it
            // cannot be trusted, and the last proxy is the best we know.
            let Ok(address) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = canonical(address);
            if !is_trusted(client, trusted) {
                break;
            }
        }
        Self::keyed(client)
    }

    /// One key per IPv4 address, one per IPv6 /64: a single subscriber
    /// usually holds a whole /64, and must not get 2^64 limits.
    fn keyed(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(_) => Self(address),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

/// IPv4 addresses that arrive mapped into IPv6 count as themselves.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|network| network.contains(&address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    fn networks(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    fn peer(address: &str) -> SocketAddr {
        SocketAddr::new(address.parse().expect("ip"), 4000)
    }

    fn ip(address: &str) -> IpAddr {
        address.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded("1.2.3.4");
        let client = ClientAddress::of(peer("203.0.113.9"), &headers, &networks(&["10.0.0.0/8"]));
        assert_eq!(client.0, ip("203.0.113.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted = networks(&["10.0.0.0/8"]);
        // The client claims 6.6.6.6; the edge proxy saw 198.51.100.7.
        let headers = forwarded("6.6.6.6, 198.51.100.7, 10.0.0.3");
        let client = ClientAddress::of(peer("10.0.0.2"), &headers, &trusted);
        assert_eq!(client.0, ip("198.51.100.7"));
    }

    #[test]
    fn garbage_in_the_header_stops_at_the_last_known_hop() {
        let trusted = networks(&["10.0.0.0/8"]);
        let headers = forwarded("198.51.100.7, not-an-address");
        let client = ClientAddress::of(peer("10.0.0.2"), &headers, &trusted);
        assert_eq!(client.0, ip("10.0.0.2"));
        let no_header = ClientAddress::of(peer("10.0.0.2"), &HeaderMap::new(), &trusted);
        assert_eq!(no_header.0, ip("10.0.0.2"));
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let none = HeaderMap::new();
        let a = ClientAddress::of(peer("2001:db8:1:2:aaaa::1"), &none, &[]);
        let b = ClientAddress::of(peer("2001:db8:1:2:bbbb::9"), &none, &[]);
        let other = ClientAddress::of(peer("2001:db8:1:3::1"), &none, &[]);
        assert_eq!(a, b);
        assert_ne!(a, other);
        let mapped = ClientAddress::of(peer("::ffff:192.0.2.1"), &none, &[]);
        assert_eq!(mapped.0, ip("192.0.2.1"));
    }

    #[test]
    fn a_limit_refuses_past_its_quota_and_all_at_once() {
        let limits = RateLimits::per_minute(3, 5);
        let client = ip("192.0.2.1");
        for _ in 0..3 {
            assert!(limits.request(client).is_ok());
        }
        let refused = limits.request(client).expect_err("the fourth is refused");
        assert!(refused.seconds >= 1);
        assert!(limits.request(ip("192.0.2.2")).is_ok(), "others unaffected");
        // Six entries at once can never pass a limit of five; nothing is spent.
        assert_eq!(limits.entries(client, 6), Err(RetryAfter { seconds: 60 }));
        assert!(limits.entries(client, 5).is_ok());
        assert!(limits.entries(client, 1).is_err());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limits = RateLimits::per_minute(0, 0);
        let client = ip("192.0.2.1");
        for _ in 0..10_000 {
            assert!(limits.request(client).is_ok());
        }
        assert!(limits.entries(client, 1_000).is_ok());
        assert_eq!(limits.remembered(), 0);
    }
}
