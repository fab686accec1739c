//! The connection limits every listener shares (`[connections]`): connections open at once, and
//! new connections a second from one source address. Checked by each accept loop before any
//! per-connection state exists; the listener's own `max_connections` is checked first, by the
//! listener.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use midge_broker::Broker;
use tracing::warn;

use crate::config::ConnectionsConfig;
use crate::limits::{FILE_RESERVE, MAX_TRACKED_ADDRESSES};
use crate::rate::TokenBucket;

/// The shared limits and their state.
#[derive(Debug)]
pub struct ConnectionGate {
    broker: Arc<Broker>,
    /// Most connections open at once; `usize::MAX` for none.
    max_connections: usize,
    open: AtomicUsize,
    /// Per-address buckets, when `max_connection_rate` is set.
    rates: Option<Mutex<AddressRates>>,
}

/// One connection's place under the global limit, given back when the connection ends (its
/// task drops it).
#[derive(Debug)]
pub struct Permit(Arc<ConnectionGate>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionGate {
    /// The gate `config` describes; `open_files` is the process's open-file limit, which bounds
    /// connections when `max_connections` is left out.
    pub fn new(config: &ConnectionsConfig, open_files: usize, broker: Arc<Broker>) -> Arc<Self> {
        let max_connections = match config.max_connections {
            Some(max) => max.get().unwrap_or(usize::MAX),
            None => open_files.saturating_sub(FILE_RESERVE).max(1),
        };
        let rates = (config.max_connection_rate > 0).then(|| Mutex::new(AddressRates::new(config.max_connection_rate)));
        Arc::new(Self { broker, max_connections, open: AtomicUsize::new(0), rates })
    }

    /// The broker whose counters the limits add to.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The global connection limit in force (`usize::MAX`: none).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Connections open now across every listener.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Lets a connection from `peer` in, or says no (counted, and logged at a bounded rate).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr, now: Instant) -> Option<Permit> {
        if let Some(rates) = &self.rates {
            let allowed = rates.lock().unwrap_or_else(PoisonError::into_inner).admit(peer.ip(), now);
            if !allowed {
                let counter = &self.broker.stats().limits.max_connection_rate;
                if let Some(report) = counter.hit(now) {
                    warn!(%peer, refused = report.since_last, total = report.total,
                        "limit reached: max_connection_rate: closing new connections from this address at once");
                }
                return None;
            }
        }
        let open = self.open.fetch_add(1, Ordering::Relaxed);
        if open >= self.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            if let Some(report) = self.broker.stats().limits.max_connections.hit(now) {
                warn!(%peer, max_connections = self.max_connections, refused = report.since_last, total = report.total,
                    "limit reached: max_connections: broker full, closing new connections at once");
            }
            return None;
        }
        Some(Permit(Arc::clone(self)))
    }
}

/// New connections per source address: a token bucket per address (IPv6: per /64).
#[derive(Debug)]
struct AddressRates {
    rate: u32,
    buckets: HashMap<IpAddr, TokenBucket>,
    /// When full buckets were last forgotten, so a map full of busy addresses is not scanned
    /// at every accept.
    last_prune: Option<Instant>,
}

impl AddressRates {
    fn new(rate: u32) -> Self {
        Self { rate, buckets: HashMap::new(), last_prune: None }
    }

    /// Whether one more connection from `ip` at `now` is within its rate.
    fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        let key = address_key(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_TRACKED_ADDRESSES {
            self.prune(now);
            if self.buckets.len() >= MAX_TRACKED_ADDRESSES {
                // Bounded memory comes first: beyond the tracked addresses, not limited.
                return true;
            }
        }
        let rate = u64::from(self.rate);
        self.buckets.entry(key).or_insert_with(|| TokenBucket::new(rate, now)).take(1, now).is_none()
            || self.refund(key, now)
    }

    /// A refused connection costs its address nothing more: only admitted ones are taken, so
    /// a client that keeps trying gets in at the rate, not never.
    fn refund(&mut self, key: IpAddr, now: Instant) -> bool {
        if let Some(bucket) = self.buckets.get_mut(&key) {
            bucket.take_back(1, now);
        }
        false
    }

    /// Forgets the addresses whose bucket is full again (a new one would be the same), at most
    /// once a second.
    fn prune(&mut self, now: Instant) {
        if self.last_prune.is_some_and(|last| now.saturating_duration_since(last) < Duration::from_secs(1)) {
            return;
        }
        self.last_prune = Some(now);
        self.buckets.retain(|_, bucket| !bucket.is_full(now));
    }
}

/// The key an address is limited by: itself, or for IPv6 its /64 (one host's usual share), so
/// one host cannot escape the limit by walking its addresses.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// The process's open-file limit after raising its soft limit to the hard one, so that as many
/// clients as the system allows can connect (`[connections] max_connections` left out is
/// derived from it).
pub fn raise_open_files_limit() -> u64 {
    // SAFETY: getrlimit and setrlimit read and write only the plain struct they are given.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
        limit.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use midge_broker::Limits;

    use super::*;
    use crate::config::MaxConnections;

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 40000)
    }

    #[test]
    fn the_global_limit_counts_open_connections_and_frees_a_place_when_one_ends() {
        let config = ConnectionsConfig {
            max_connections: Some(MaxConnections::at_most(2.try_into().unwrap())),
            max_connection_rate: 0,
        };
        let broker = Broker::new(Limits::default());
        let gate = ConnectionGate::new(&config, 1 << 20, Arc::clone(&broker));
        let now = Instant::now();
        let first = gate.admit(peer("127.0.0.1"), now).expect("first");
        let _second = gate.admit(peer("127.0.0.2"), now).expect("second");
        assert!(gate.admit(peer("127.0.0.3"), now).is_none());
        assert_eq!(broker.stats().limits.max_connections.get(), 1);
        drop(first);
        assert_eq!(gate.open(), 1);
        assert!(gate.admit(peer("127.0.0.3"), now).is_some());
    }

    #[test]
    fn left_out_the_limit_is_the_open_file_limit_less_the_reserve() {
        let broker = Broker::new(Limits::default());
        let gate = ConnectionGate::new(&ConnectionsConfig::default(), 20_000, broker);
        assert_eq!(gate.max_connections(), 20_000 - FILE_RESERVE);
    }

    #[test]
    fn one_address_gets_its_rate_and_others_are_not_held_up_by_it() {
        let start = Instant::now();
        let mut rates = AddressRates::new(10);
        let attacker: IpAddr = "10.0.0.1".parse().unwrap();
        let admitted = (0..100).filter(|_| rates.admit(attacker, start)).count();
        assert_eq!(admitted, 10, "a burst of one second's worth");
        assert!(rates.admit("10.0.0.2".parse().unwrap(), start));
        // Refusals cost nothing: a tenth of a second later, one more gets in.
        assert!(rates.admit(attacker, start + Duration::from_millis(100)));
        assert!(!rates.admit(attacker, start + Duration::from_millis(100)));
    }

    #[test]
    fn an_ipv6_host_counts_with_its_whole_64() {
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a.into()), address_key(b.into()));
        assert_ne!(address_key(a.into()), address_key(c.into()));
        let mapped: Ipv6Addr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped.into()), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_tracked_addresses_stay_bounded() {
        let start = Instant::now();
        let mut rates = AddressRates::new(1);
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 1000) {
            rates.admit(IpAddr::V4(i.into()), start);
        }
        assert!(rates.buckets.len() <= MAX_TRACKED_ADDRESSES);
        // A second on, every bucket is full again and is forgotten to make room.
        assert!(rates.admit("10.9.9.9".parse().unwrap(), start + Duration::from_secs(2)));
        assert_eq!(rates.buckets.len(), 1);
    }
}
