//! A `DATABASE_URL` may name several hosts, the nodes of one cluster:
//! `mysql://user:password@node1:3306,node2:3306,node3:3306/tickets`. A new
//! connection goes to the first of them, in the order given, that answers
//! and can take work (on Galera: `wsrep_ready` and Synced); a host that
//! failed is passed over for a few seconds, so that while a node is down
//! connections go straight to the next, and come back once it is up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a host that could not be used is passed over.
const PASS_OVER: Duration = Duration::from_secs(3);

/// The single-host URLs of a URL that may list several hosts, in its order.
/// `user:password@` and `/database?options` apply to every host.
pub fn single_host_urls(url: &str) -> Result<Vec<String>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not a URL: no scheme".to_owned())?;
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), authority),
    };
    hosts
        .split(',')
        .map(|host| {
            if host.trim().is_empty() {
                Err(format!("an empty host in the host list {hosts:?}"))
            } else {
                Ok(format!("{scheme}://{credentials}{}{path}", host.trim()))
            }
        })
        .collect()
}

/// The hosts of one `DATABASE_URL`, with which of them failed lately.
#[derive(Debug)]
pub struct Hosts {
    urls: Vec<String>,
    passed_over_until_ms: Vec<AtomicU64>,
}

impl Hosts {
    pub fn new(urls: Vec<String>) -> Self {
        let passed_over_until_ms = urls.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            urls,
            passed_over_until_ms,
        }
    }

    /// The hosts to try, in order: the ones not passed over first, then the
    /// rest (a host passed over may be all there is).
    pub fn in_order(&self) -> Vec<(usize, &str)> {
        let now = now_ms();
        let (fresh, passed_over): (Vec<_>, Vec<_>) = self
            .urls
            .iter()
            .enumerate()
            .map(|(index, url)| (index, url.as_str()))
            .partition(|(index, _)| {
                self.passed_over_until_ms[*index].load(Ordering::Relaxed) <= now
            });
        fresh.into_iter().chain(passed_over).collect()
    }

    /// The same hosts in sorted order: an order every server agrees on,
    /// whatever order its own URL gives.
    pub fn sorted(self) -> Self {
        let mut urls = self.urls;
        urls.sort();
        Self::new(urls)
    }

    pub fn failed(&self, index: usize) {
        self.passed_over_until_ms[index]
            .store(now_ms() + PASS_OVER.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_host_is_one_url() {
        assert_eq!(
            single_host_urls("mysql://root@127.0.0.1:3306/tickets").unwrap(),
            vec!["mysql://root@127.0.0.1:3306/tickets"]
        );
    }

    #[test]
    fn several_hosts_share_credentials_database_and_options() {
        assert_eq!(
            single_host_urls("mysql://app:p%40ss@a:1,b:2, c:3/db?prefer_socket=false").unwrap(),
            vec![
                "mysql://app:p%40ss@a:1/db?prefer_socket=false",
                "mysql://app:p%40ss@b:2/db?prefer_socket=false",
                "mysql://app:p%40ss@c:3/db?prefer_socket=false",
            ]
        );
        assert!(single_host_urls("mysql://root@a:1,,b:2/db").is_err());
        assert!(single_host_urls("no scheme").is_err());
    }

    #[test]
    fn sorted_hosts_are_the_same_whatever_the_order_given() {
        let one = Hosts::new(single_host_urls("mysql://u@b:2,a:1,c:3/db").unwrap()).sorted();
        let other = Hosts::new(single_host_urls("mysql://u@c:3,b:2,a:1/db").unwrap()).sorted();
        assert_eq!(one.in_order(), other.in_order());
        assert_eq!(one.in_order()[0], (0, "mysql://u@a:1/db"));
    }

    #[test]
    fn a_failed_host_is_tried_last_for_a_while() {
        let hosts = Hosts::new(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(hosts.in_order(), vec![(0, "a"), (1, "b"), (2, "c")]);
        hosts.failed(0);
        assert_eq!(hosts.in_order(), vec![(1, "b"), (2, "c"), (0, "a")]);
    }
}
