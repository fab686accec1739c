//! The connection limits every listener shares (`[connections]`): connections open at once, and
//! new connections a second from one source address. Checked by each accept loop before any
//! per-connection state exists; the listener's own `max_connections` is checked first, by the
//! listener.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use midge_broker::Broker;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::config::ConnectionsConfig;
use crate::limits::{FILE_RESERVE, MAX_TRACKED_ADDRESSES};
use crate::rate::TokenBucket;

/// The shared limits and their state.
#[derive(Debug)]
pub struct ConnectionGate {
    broker: Arc<Broker>,
    /// Most connections open at once; `usize::MAX` for none. A reload may change it
    /// ([`ConnectionGate::set`]); relaxed: each accept reads it on its own.
    max_connections: AtomicUsize,
    /// The process's open-file limit, which bounds connections when `max_connections` is left
    /// out.
    open_files: usize,
    /// Every listener's connections: the sum of their lengths is the broker's count of open
    /// connections, which costs the connection tasks nothing (each carries its listener's
    /// tracker token either way).
    listeners: RwLock<Vec<TaskTracker>>,
    /// Per-address buckets, when `max_connection_rate` is set (`None` inside: no limit, and
    /// `rate_limited` says so without the lock).
    rates: Mutex<Option<AddressRates>>,
    /// Whether `rates` holds buckets: read at every accept, so a broker without a connection
    /// rate takes no lock for it.
    rate_limited: AtomicBool,
}

impl ConnectionGate {
    /// The gate `config` describes; `open_files` is the process's open-file limit, which bounds
    /// connections when `max_connections` is left out.
    pub fn new(config: &ConnectionsConfig, open_files: usize, broker: Arc<Broker>) -> Arc<Self> {
        let gate = Self {
            broker,
            max_connections: AtomicUsize::new(usize::MAX),
            open_files,
            listeners: RwLock::new(Vec::new()),
            rates: Mutex::new(None),
            rate_limited: AtomicBool::new(false),
        };
        gate.set(config);
        Arc::new(gate)
    }

    /// Takes `config`'s limits from now on (a reload): connections already open stay, and count
    /// toward the new `max_connections`; a new `max_connection_rate` starts every address with
    /// a full bucket.
    pub fn set(&self, config: &ConnectionsConfig) {
        let max_connections = match config.max_connections {
            Some(max) => max.get().unwrap_or(usize::MAX),
            None => self.open_files.saturating_sub(FILE_RESERVE).max(1),
        };
        self.max_connections.store(max_connections, Ordering::Relaxed);
        let mut rates = self.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = config.max_connection_rate;
        if rates.as_ref().map_or(0, |rates| rates.rate) != rate {
            *rates = (rate > 0).then(|| AddressRates::new(rate));
        }
        self.rate_limited.store(rate > 0, Ordering::Relaxed);
    }

    /// The broker whose counters the limits add to.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// The global connection limit in force (`usize::MAX`: none).
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// Counts `connections`, a listener's, toward the broker's open connections.
    pub fn register(&self, connections: TaskTracker) {
        self.listeners.write().unwrap_or_else(PoisonError::into_inner).push(connections);
    }

    /// Connections open now across every listener.
    pub fn open(&self) -> usize {
        self.listeners.read().unwrap_or_else(PoisonError::into_inner).iter().map(TaskTracker::len).sum()
    }

    /// Whether a connection from `peer` may come in: within its address's connection rate
    /// ([`admit_address`](Self::admit_address)) and the broker-wide limit
    /// ([`admit_open`](Self::admit_open)).
    pub fn admit(&self, peer: SocketAddr, now: Instant) -> bool {
        self.admit_address(peer, now) && self.admit_open(peer, now)
    }

    /// Whether one more connection from `peer`'s address is within `max_connection_rate` (said
    /// no: counted, and logged at a bounded rate). Asked at accept, or on a listener behind a
    /// proxy once the client's own address is known (its PROXY header, or a trusted proxy's
    /// forwarded header), so that the proxy's address does not take every client's rate.
    pub fn admit_address(&self, peer: SocketAddr, now: Instant) -> bool {
        if !self.rate_limited.load(Ordering::Relaxed) {
            return true;
        }
        let allowed = match self.rates.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            Some(rates) => rates.admit(peer.ip(), now),
            None => true,
        };
        if !allowed {
            let counter = &self.broker.stats().limits.max_connection_rate;
            if let Some(report) = counter.hit(now) {
                warn!(%peer, refused = report.since_last, total = report.total,
                    "limit reached: max_connection_rate: closing new connections from this address at once");
            }
        }
        allowed
    }

    /// Whether one more connection fits under the broker-wide `max_connections` (said no:
    /// counted, and logged at a bounded rate). Accept loops of different listeners check at
    /// the same time, so the limit may be passed by one connection per other listener.
    pub fn admit_open(&self, peer: SocketAddr, now: Instant) -> bool {
        let max_connections = self.max_connections();
        if max_connections != usize::MAX && self.open() >= max_connections {
            if let Some(report) = self.broker.stats().limits.max_connections.hit(now) {
                warn!(%peer, max_connections, refused = report.since_last, total = report.total,
                    "limit reached: max_connections: broker full, closing new connections at once");
            }
            return false;
        }
        self.broker.stats().sockets_accepted.add(1);
        true
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
    fn a_reload_changes_the_limits_for_the_next_connections() {
        let broker = Broker::new(Limits::default());
        let gate = ConnectionGate::new(&ConnectionsConfig::default(), 20_000, Arc::clone(&broker));
        let listener = TaskTracker::new();
        gate.register(listener.clone());
        let now = Instant::now();
        let _open = listener.token();
        assert!(gate.admit(peer("127.0.0.1"), now) && gate.admit(peer("127.0.0.1"), now));
        let max_one = MaxConnections::at_most(1.try_into().unwrap());
        gate.set(&ConnectionsConfig { max_connections: Some(max_one), max_connection_rate: 1 });
        assert_eq!(gate.max_connections(), 1);
        assert!(!gate.admit_open(peer("127.0.0.2"), now), "the open connection counts");
        assert!(gate.admit_address(peer("127.0.0.3"), now));
        assert!(!gate.admit_address(peer("127.0.0.3"), now), "one a second now");
        gate.set(&ConnectionsConfig::default());
        assert_eq!(gate.max_connections(), 20_000 - FILE_RESERVE);
        assert!(gate.admit(peer("127.0.0.3"), now), "no rate any more");
    }

    #[test]
    fn the_global_limit_counts_every_listeners_connections_and_frees_a_place_when_one_ends() {
        let config = ConnectionsConfig {
            max_connections: Some(MaxConnections::at_most(2.try_into().unwrap())),
            max_connection_rate: 0,
        };
        let broker = Broker::new(Limits::default());
        let gate = ConnectionGate::new(&config, 1 << 20, Arc::clone(&broker));
        let (first_listener, second_listener) = (TaskTracker::new(), TaskTracker::new());
        gate.register(first_listener.clone());
        gate.register(second_listener.clone());
        let now = Instant::now();
        assert!(gate.admit(peer("127.0.0.1"), now));
        let first = first_listener.token();
        assert!(gate.admit(peer("127.0.0.2"), now));
        let _second = second_listener.token();
        assert!(!gate.admit(peer("127.0.0.3"), now));
        assert_eq!(broker.stats().limits.max_connections.get(), 1);
        drop(first);
        assert_eq!(gate.open(), 1);
        assert!(gate.admit(peer("127.0.0.3"), now));
    }

    /// Behind a proxy the two are asked apart: the open connections at accept, the rate once
    /// the client's address is known.
    #[test]
    fn the_rate_and_the_open_connections_are_asked_apart() {
        let config = ConnectionsConfig {
            max_connections: Some(MaxConnections::at_most(1.try_into().unwrap())),
            max_connection_rate: 1,
        };
        let broker = Broker::new(Limits::default());
        let gate = ConnectionGate::new(&config, 1 << 20, Arc::clone(&broker));
        let listener = TaskTracker::new();
        gate.register(listener.clone());
        let now = Instant::now();
        assert!(gate.admit_open(peer("10.0.0.1"), now) && gate.admit_open(peer("10.0.0.1"), now), "no rate taken");
        assert!(gate.admit_address(peer("203.0.113.7"), now));
        assert!(!gate.admit_address(peer("203.0.113.7"), now));
        assert!(gate.admit_address(peer("203.0.113.8"), now), "another client behind the same proxy");
        let _open = listener.token();
        assert!(!gate.admit_open(peer("10.0.0.1"), now));
        assert_eq!(broker.stats().limits.max_connection_rate.get(), 1);
        assert_eq!(broker.stats().limits.max_connections.get(), 1);
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
