//! Listeners: binding their sockets, accepting connections under `max_connections`, and the
//! [`ListenerHandle`] a running listener is known by.
//!
//! A listener is one `[[listener]]` of the config. It may have several sockets (a `bind` name
//! that resolves to several addresses) and has one accept loop for all of them, so its
//! connection limit is checked in one place. Its connections run on its own task tracker: the
//! tracker's length is the listener's count of open connections, at no cost to the connection
//! tasks (each carries a tracker token either way).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::Poll;
use std::time::Instant;

use midge_broker::{Broker, LimitCounter};
use midge_store::WriterHandle;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::ListenerSecurity;
use crate::config::{ListenerConfig, ListenerProtocol, SnSettings};
use crate::conn::{self as connection, ListenerContext, ProxyListener, WebSocketListener};
use crate::gate::ConnectionGate;
use crate::limits::ACCEPT_ERROR_PAUSE;
use crate::roster::Roster;
use crate::server::ServerError;
use crate::tls::TlsListener;

/// A listener whose sockets are bound but which does not accept yet: binding every listener
/// before anything else starts lets a taken port stop the start with nothing to undo.
#[derive(Debug)]
pub struct BoundListener {
    index: usize,
    config: ListenerConfig,
    /// Its security and TLS, loaded from its settings.
    files: ListenerFiles,
    sockets: Sockets,
    local_addrs: Vec<SocketAddr>,
}

/// What a listener reads from the files its settings name: who may connect and what its
/// clients may do (password, ACL, JWT key files), and its TLS acceptor (certificate, key, CAs,
/// CRLs). Loaded whole before anything uses it, so a file that cannot be used changes nothing.
#[derive(Debug)]
pub struct ListenerFiles {
    security: ListenerSecurity,
    /// `None` for plain TCP.
    tls: Option<TlsListener>,
}

impl ListenerFiles {
    /// Reads the files `config`, listener number `index`'s settings, names.
    pub fn load(index: usize, config: &ListenerConfig) -> Result<Self, ServerError> {
        let security =
            ListenerSecurity::load(config).map_err(|source| ServerError::Security { listener: index, source })?;
        let tls = TlsListener::load(config).map_err(|source| ServerError::Tls { listener: index, source })?;
        Ok(Self { security, tls })
    }
}

/// What every listener is given by the server: the broker and the services its connections
/// share. Kept by each listener's handle, so that a reload can build its new settings.
#[derive(Debug, Clone)]
pub struct ListenerServices {
    /// The broker core.
    pub broker: Arc<Broker>,
    /// The limits every listener shares.
    pub gate: Arc<ConnectionGate>,
    /// The store's writer whose commits release held acknowledgements; `None` without
    /// persistence.
    pub store: Option<WriterHandle>,
    /// Whether the server is ready (HTTP listeners' `/readyz`).
    pub readiness: Arc<crate::http::Readiness>,
    /// What HTTP listeners' `/metrics` reads.
    pub metrics: Arc<crate::metrics::Source>,
    /// Where HTTP listeners' `POST /api/v1/reload` asks for a reload; `None`: nowhere (a
    /// server whose reloads nobody runs).
    pub reload: Option<crate::server::ReloadRequests>,
    /// The node's cluster, when it is one: a client's session is claimed there first.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A listener's sockets: TCP for MQTT, UDP for an MQTT-SN gateway (`crate::sn`) and its
/// settings.
#[derive(Debug)]
enum Sockets {
    Stream(Vec<TcpListener>),
    Datagram(Vec<UdpSocket>, SnSettings),
}

impl BoundListener {
    /// Binds every address of listener number `index` (from 1, for messages): one socket per
    /// address its `bind` resolves to. With port 0, the first socket picks a free port and the
    /// others take the same one, so a name listens on one port whatever its addresses.
    pub async fn bind(index: usize, config: ListenerConfig) -> Result<Self, ServerError> {
        let bind = &config.bind;
        let resolved = match &config.bind_interface {
            Some(interface) => interface_addresses(interface, bind),
            None => bind.resolve().await,
        };
        let addrs = resolved.map_err(|source| ServerError::Resolve { listener: index, bind: bind.clone(), source })?;
        let mut sockets = Vec::with_capacity(addrs.len());
        let mut datagram_sockets = Vec::new();
        let datagram = config.protocol == ListenerProtocol::MqttSn;
        let mut local_addrs: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
        for mut addr in addrs {
            if let Some(first) = local_addrs.first() {
                if addr.port() == 0 {
                    addr.set_port(first.port());
                }
            }
            let failed = |source| ServerError::Bind { listener: index, bind: bind.clone(), addr, source };
            if datagram {
                let socket = UdpSocket::bind(addr).await.map_err(failed)?;
                local_addrs.push(socket.local_addr().map_err(failed)?);
                datagram_sockets.push(socket);
            } else {
                let socket = TcpListener::bind(addr).await.map_err(failed)?;
                local_addrs.push(socket.local_addr().map_err(failed)?);
                sockets.push(socket);
            }
        }
        let sockets = if datagram {
            let settings = SnSettings::from_listener(&config)
                .map_err(|problem| ServerError::Listener { listener: index, problem })?;
            Sockets::Datagram(datagram_sockets, settings)
        } else {
            Sockets::Stream(sockets)
        };
        let files = ListenerFiles::load(index, &config)?;
        Ok(Self { index, config, files, sockets, local_addrs })
    }

    /// The addresses its sockets are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Starts accepting. Its clients are authenticated by the listener's own settings; the
    /// store's commits (`services.store`) release held acknowledgements. Connections before
    /// CONNECT end when the listener ends its connections ([`ListenerHandle::end_connections`],
    /// [`ListenerHandle::shut_down`]); connected ones are stopped through the broker
    /// ([`Broker::shut_down`]) or the listener's roster.
    pub fn start(self, services: &ListenerServices) -> ListenerHandle {
        let Self { index, config, files, sockets, local_addrs } = self;
        let counters = Arc::new(Counters::default());
        let connections = TaskTracker::new();
        services.gate.register(connections.clone());
        let (stop, stop_rx) = watch::channel(false);
        let (closing, _) = watch::channel(false);
        let roster = Arc::new(Roster::default());
        let current = settings(index, config.clone(), files, services, &closing, &roster, None);
        let transport = match (&sockets, &current.websocket, current.tls.is_some()) {
            (Sockets::Datagram(..), ..) => "mqtt-sn over udp",
            (Sockets::Stream(_), None, true) if current.http.is_some() => "http api over tls",
            (Sockets::Stream(_), None, false) if current.http.is_some() => "http api",
            (Sockets::Stream(_), Some(_), true) => "mqtt over websockets over tls",
            (Sockets::Stream(_), Some(_), false) => "mqtt over websockets",
            (Sockets::Stream(_), None, true) => "mqtt over tls",
            (Sockets::Stream(_), None, false) => "mqtt over tcp",
        };
        let transport = match &current.proxy {
            Some(proxy) => format!("{transport}, behind PROXY protocol v{}", proxy.version().number()),
            None => transport.to_owned(),
        };
        for local_addr in &local_addrs {
            info!(
                listener = index, %local_addr, bind = %config.bind, protocol = %config.protocol,
                allow_anonymous = config.allow_anonymous, max_connections = %config.max_connections,
                "listening ({transport})"
            );
        }
        let current = Arc::new(RwLock::new(current));
        let accept_loop = TaskTracker::new();
        let gate = Arc::clone(&services.gate);
        let mut sn = None;
        match sockets {
            Sockets::Stream(sockets) => {
                accept_loop.spawn(
                    AcceptLoop {
                        index,
                        bind: config.bind.to_string(),
                        current: Arc::clone(&current),
                        counters: Arc::clone(&counters),
                        connections: connections.clone(),
                        gate,
                    }
                    .run(sockets, stop_rx),
                );
            }
            Sockets::Datagram(sockets, settings) => {
                let shared = Arc::new(crate::sn::Shared::new(index, settings));
                sn = Some(Arc::clone(&shared));
                let sockets: Vec<Arc<tokio::net::UdpSocket>> = sockets.into_iter().map(Arc::new).collect();
                if let Some(advertise) = shared.settings.advertise {
                    // From the first socket of the address's family.
                    let family = |socket: &&Arc<tokio::net::UdpSocket>| {
                        socket.local_addr().is_ok_and(|local| local.is_ipv4() == advertise.address.is_ipv4())
                    };
                    match sockets.iter().find(family) {
                        Some(socket) => {
                            let gw_id = shared.settings.gateway_id;
                            let run = crate::sn::advertise::run(Arc::clone(socket), gw_id, advertise, stop_rx.clone());
                            accept_loop.spawn(run);
                        }
                        None => tracing::warn!(
                            listener = index, address = %advertise.address,
                            "mqtt-sn: no socket of the listener can reach sn_advertise_address: no ADVERTISE"
                        ),
                    }
                }
                for socket in sockets {
                    let gateway = crate::sn::Gateway {
                        config: config.clone(),
                        socket,
                        shared: Arc::clone(&shared),
                        current: Arc::clone(&current),
                        counters: Arc::clone(&counters),
                        connections: connections.clone(),
                        gate: Arc::clone(&gate),
                    };
                    accept_loop.spawn(gateway.run(stop_rx.clone()));
                }
            }
        }
        accept_loop.close();
        ListenerHandle {
            index,
            protocol: config.protocol,
            local_addrs,
            counters,
            sn,
            current,
            services: services.clone(),
            roster,
            closing,
            connections,
            stop,
            accept_loop,
        }
    }
}

/// What listener number `index` gives new connections with `config` and `files`:
/// `previous`'s counters and event ids carried on, when it replaces them in a reload.
fn settings(
    index: usize,
    config: ListenerConfig,
    files: ListenerFiles,
    services: &ListenerServices,
    closing: &watch::Sender<bool>,
    roster: &Arc<Roster>,
    previous: Option<&Current>,
) -> Current {
    let ListenerFiles { security, tls } = files;
    let tls = tls.map(|tls| Arc::new(tls.counting_on(previous.and_then(|previous| previous.tls.as_deref()))));
    let http = (config.protocol == ListenerProtocol::Http).then(|| {
        let http = crate::http::HttpListener::new(
            index,
            &config,
            Arc::clone(&services.readiness),
            Arc::clone(&services.metrics),
            services.reload.clone(),
        );
        Arc::new(http.keeping_resume(previous.and_then(|previous| previous.http.as_deref())))
    });
    let max_packet_size = services.broker.limits().max_packet_size;
    let websocket = (config.protocol == ListenerProtocol::Websockets).then(|| {
        let websocket = WebSocketListener::new(index, &config, max_packet_size, Arc::clone(&services.gate));
        Arc::new(websocket.counting_on(previous.and_then(|previous| previous.websocket.as_deref())))
    });
    let proxy = ProxyListener::new(index, &config, Arc::clone(&services.gate))
        .map(|proxy| Arc::new(proxy.counting_on(previous.and_then(|previous| previous.proxy.as_deref()))));
    let context = ListenerContext {
        broker: Arc::clone(&services.broker),
        authenticator: security.authenticator,
        authorizer: security.authorizer,
        store: services.store.clone(),
        shutdown: closing.subscribe(),
        roster: Arc::clone(roster),
        use_username_as_clientid: config.use_username_as_clientid,
        cluster: services.cluster.clone(),
    };
    Current { config: Arc::new(config), context: Arc::new(context), tls, websocket, proxy, http }
}

/// A running listener: its addresses, its config, its counters, and a way to change or close it
/// without touching the other listeners, so that a reload can add, change or close listeners
/// one by one. Dropping the handle closes the listener too.
#[derive(Debug)]
pub struct ListenerHandle {
    /// Its number, as logs and errors name it: its place in the config it started with, from
    /// 1; a listener a reload adds is numbered after every listener so far.
    index: usize,
    /// What it speaks (never changes: another protocol is another listener).
    protocol: ListenerProtocol,
    local_addrs: Vec<SocketAddr>,
    counters: Arc<Counters>,
    /// An MQTT-SN listener's shared gateway state (its drop counters); `None` for the others.
    sn: Option<Arc<crate::sn::Shared>>,
    /// What new connections are given, swapped by [`ListenerHandle::apply`].
    current: Arc<RwLock<Current>>,
    /// What its settings are built with.
    services: ListenerServices,
    /// Its connected clients, to close when a reload removes it.
    roster: Arc<Roster>,
    /// Tells its connections still before CONNECT (and HTTP connections) to end.
    closing: watch::Sender<bool>,
    /// Its connections; their number is the listener's count of open connections.
    connections: TaskTracker,
    /// Tells the accept loop to stop.
    stop: watch::Sender<bool>,
    /// The accept loop alone, to learn when it has ended and dropped the sockets.
    accept_loop: TaskTracker,
}

impl ListenerHandle {
    /// Its number, from 1.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The config it runs with now.
    pub fn config(&self) -> Arc<ListenerConfig> {
        Arc::clone(&read(&self.current).config)
    }

    /// What it speaks.
    pub fn protocol(&self) -> ListenerProtocol {
        self.protocol
    }

    /// The addresses it listens on (several when its `bind` name resolved to several).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Its counters now.
    pub fn counters(&self) -> ListenerCounters {
        let current = read(&self.current);
        ListenerCounters {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            refused_max_connections: self.counters.refused_max_connections.get(),
            accept_errors: self.counters.accept_errors.load(Ordering::Relaxed),
            open: self.connections.len(),
            tls_handshake_failures: current.tls.as_ref().map_or(0, |tls| tls.handshake_failures()),
            websocket_upgrade_failures: current.websocket.as_ref().map_or(0, |websocket| websocket.upgrade_failures()),
            proxy_header_failures: current.proxy.as_ref().map_or(0, |proxy| proxy.header_failures()),
            mqtt_sn: self.sn.as_ref().map(|sn| sn.counters.snapshot()),
        }
    }

    /// Stops accepting and closes the sockets, and returns once they are closed, so their
    /// addresses can be bound again. Connections it accepted carry on until they end, the
    /// server shuts down, or [`end_connections`](Self::end_connections); other listeners are
    /// not touched. Closing twice does nothing more.
    ///
    /// # Cancel safety
    /// Cancel safe: once called, the listener closes whether or not the call is awaited to the
    /// end.
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        self.connections.close();
        self.accept_loop.wait().await;
    }

    /// Ends its connections: those before CONNECT and HTTP connections at once, connected
    /// clients kicked with `reason` (v5 clients are sent DISCONNECT with it), and any that
    /// connects later. For a listener a reload removes, after [`close`](Self::close).
    pub fn end_connections(&self, reason: midge_codec::ReasonCode) {
        self.shut_down();
        self.roster.close(reason);
    }

    /// Tells its connections still before CONNECT, and its HTTP connections, that the server is
    /// shutting down (connected clients are kicked through the broker: [`Broker::shut_down`]).
    pub fn shut_down(&self) {
        let _ = self.closing.send(true);
    }

    /// Reads its files again (password file, ACL file, JWT keys, TLS certificate, key, CAs and
    /// CRLs) and gives what they now say to every connection accepted from now on; connected
    /// clients keep what they started with and stay connected. A file that cannot be used
    /// changes nothing: the error names it, and the listener keeps its last good settings.
    pub fn reload(&self) -> Result<(), ServerError> {
        let config = ListenerConfig::clone(&self.config());
        let files = ListenerFiles::load(self.index, &config)?;
        self.apply(config, files);
        Ok(())
    }

    /// Gives `config`, with `files` loaded from it, to every connection accepted from now on:
    /// its security, TLS, `max_connections`, WebSocket, PROXY protocol and HTTP settings (an
    /// MQTT-SN listener's gateway settings stay as they started). Connected clients keep what
    /// they started with and stay connected; its counters and its HTTP readers' event ids carry
    /// on. `config` must have the listener's protocol and bind.
    pub fn apply(&self, config: ListenerConfig, files: ListenerFiles) {
        debug_assert_eq!(config.protocol, self.protocol);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let next = settings(self.index, config, files, &self.services, &self.closing, &self.roster, Some(&current));
        *current = next;
    }

    /// Whether it has stopped accepting.
    pub fn is_closed(&self) -> bool {
        self.accept_loop.is_empty()
    }

    /// Waits until every connection it accepted has ended; after [`close`](Self::close) only.
    pub(crate) async fn connections_ended(&self) {
        self.connections.wait().await;
    }
}

/// Every listener a server has started, in the order they started: closed ones too while they
/// have connections, so that shutdown waits for them.
#[derive(Debug, Default)]
pub struct Listeners(RwLock<Vec<Arc<ListenerHandle>>>);

impl Listeners {
    /// The listeners now. A copy: the lock is not held while the caller uses them.
    pub fn snapshot(&self) -> Vec<Arc<ListenerHandle>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The listeners still accepting.
    pub fn open(&self) -> Vec<Arc<ListenerHandle>> {
        self.snapshot().into_iter().filter(|listener| !listener.is_closed()).collect()
    }

    /// Adds one that has just started, and forgets those closed whose connections have all
    /// ended (nothing is left for shutdown to wait for), so reloads do not pile them up.
    pub(crate) fn push(&self, listener: Arc<ListenerHandle>) {
        let mut listeners = self.0.write().unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| !listener.is_closed() || !listener.connections.is_empty());
        listeners.push(listener);
    }
}

/// A listener's counters at one moment, from [`ListenerHandle::counters`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerCounters {
    /// Connections accepted and handed to a connection task.
    pub accepted: u64,
    /// Connections closed as soon as they were accepted because `max_connections` were open.
    pub refused_max_connections: u64,
    /// Failed accepts (out of file descriptors and the like).
    pub accept_errors: u64,
    /// Connections open now.
    pub open: usize,
    /// TLS handshakes that failed or did not finish within the connect timeout (0 on a TCP
    /// listener).
    pub tls_handshake_failures: u64,
    /// WebSocket upgrades refused with an HTTP status, or not finished (closed, or not within
    /// the connect timeout); 0 on a listener that is not `protocol = "websockets"`.
    pub websocket_upgrade_failures: u64,
    /// Connections closed for their PROXY protocol header: none, malformed, too long, not in
    /// time or cut short; 0 on a listener without `enable_proxy_protocol`.
    pub proxy_header_failures: u64,
    /// What an MQTT-SN listener dropped, by reason; `None` on the others.
    pub mqtt_sn: Option<crate::SnDrops>,
}

/// The counters an accept loop adds to and its handle reads. Relaxed: each is a statistic read
/// on its own, nothing is ordered by them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    /// Also reports when a warning is due: at most one a second per listener.
    pub(crate) refused_max_connections: LimitCounter,
    pub(crate) accept_errors: AtomicU64,
}

/// The task that accepts a listener's connections.
struct AcceptLoop {
    index: usize,
    /// Its `bind` as written, for the log.
    bind: String,
    /// What each new connection is given; a reload swaps it.
    current: Arc<RwLock<Current>>,
    counters: Arc<Counters>,
    connections: TaskTracker,
    /// The limits every listener shares.
    gate: Arc<ConnectionGate>,
}

/// What a listener gives each new connection, built from its config and files when it is bound
/// and again on every reload ([`ListenerHandle::apply`]). Swapped whole, so a connection keeps
/// what it started with: new settings apply to new connections, and connected clients stay.
#[derive(Debug)]
pub(crate) struct Current {
    /// Its config (`max_connections` is read from here).
    pub(crate) config: Arc<ListenerConfig>,
    /// The broker, the listener's authenticator and authorizer, the store's writer.
    pub(crate) context: Arc<ListenerContext>,
    /// The TLS acceptor each connection's task runs its handshake with; `None` for plain TCP.
    tls: Option<Arc<TlsListener>>,
    /// Set on a WebSocket listener: its connections upgrade before they speak MQTT.
    websocket: Option<Arc<WebSocketListener>>,
    /// Set on a listener behind a PROXY protocol proxy: its connections start with its header.
    proxy: Option<Arc<ProxyListener>>,
    /// Set on an HTTP API listener: its connections are served by `crate::http`.
    http: Option<Arc<crate::http::HttpListener>>,
}

impl AcceptLoop {
    /// Accepts on every socket until told to stop (or the handle is dropped), then drops them.
    async fn run(mut self, sockets: Vec<TcpListener>, mut stop: watch::Receiver<bool>) {
        let mut first = 0;
        loop {
            tokio::select! {
                accepted = accept_any(&sockets, &mut first) => match accepted {
                    Ok((stream, peer)) => self.admit(stream, peer),
                    Err(error) => {
                        self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                        warn!(listener = self.index, %error, "accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                },
                _ = stop.changed() => break,
            }
        }
        drop(sockets);
        info!(listener = self.index, bind = %self.bind, "listener closed");
    }

    /// Hands an accepted connection to its own task, or closes it at once when the listener
    /// already has `max_connections` open, or the broker is full, or its address is over its
    /// connection rate (`[connections]`): before any buffer, task or broker state exists for it.
    /// When its address is a proxy's (a PROXY protocol listener, or a trusted proxy of a
    /// WebSocket listener) the connection rate is the client's, checked by the connection's task
    /// once its header has said who that is.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let now = Instant::now();
        let (max_connections, context, tls, websocket, proxy, http) = {
            let current = read(&self.current);
            (
                current.config.max_connections,
                Arc::clone(&current.context),
                current.tls.clone(),
                current.websocket.clone(),
                current.proxy.clone(),
                current.http.clone(),
            )
        };
        if let Some(max) = max_connections.get() {
            if self.connections.len() >= max {
                drop(stream);
                self.gate.broker().stats().limits.listener_max_connections.hit(now);
                if let Some(report) = self.counters.refused_max_connections.hit(now) {
                    warn!(
                        listener = self.index, bind = %self.bind, max_connections = max,
                        refused = report.since_last, total = report.total, %peer,
                        "listener full: closing new connections at once (max_connections)"
                    );
                }
                return;
            }
        }
        let proxied = proxy.is_some() || websocket.as_ref().is_some_and(|ws| ws.trusts(peer.ip()));
        let admitted = if proxied { self.gate.admit_open(peer, now) } else { self.gate.admit(peer, now) };
        if !admitted {
            drop(stream);
            return;
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = stream.set_nodelay(true) {
            warn!(%peer, %error, "cannot set TCP_NODELAY");
        }
        // Handshakes run in the connection's task, never here: a slow client cannot hold up the
        // accept loop.
        if let Some(http) = http {
            self.connections.spawn(crate::http::serve(stream, peer, tls, http, context));
            return;
        }
        match (websocket, tls) {
            (Some(websocket), tls) => {
                self.connections.spawn(connection::serve_websocket(stream, peer, proxy, tls, websocket, context))
            }
            (None, Some(tls)) => self.connections.spawn(connection::serve_tls(stream, peer, proxy, tls, context)),
            (None, None) => self.connections.spawn(connection::serve(stream, peer, proxy, context)),
        };
    }
}

/// The current settings. A panic while they were being swapped left them whole (the swap is one
/// assignment), so a poisoned lock is read as it is.
pub(crate) fn read(current: &RwLock<Current>) -> std::sync::RwLockReadGuard<'_, Current> {
    current.read().unwrap_or_else(PoisonError::into_inner)
}

/// The next connection on any of `sockets`, trying them from `first` on (which then moves on by
/// one) so that a busy socket cannot starve the others.
///
/// # Cancel safety
/// Cancel safe: a socket gives up a connection only in the poll that returns it.
async fn accept_any(sockets: &[TcpListener], first: &mut usize) -> std::io::Result<(TcpStream, SocketAddr)> {
    poll_fn(|cx| {
        let count = sockets.len();
        for offset in 0..count {
            let socket = &sockets[(*first + offset) % count];
            if let Poll::Ready(result) = socket.poll_accept(cx) {
                *first = (*first + 1) % count;
                return Poll::Ready(result);
            }
        }
        Poll::Pending
    })
    .await
}

/// The addresses of `interface` a listener with `bind` listens on (`bind_interface`).
fn interface_addresses(interface: &str, bind: &crate::bind::BindAddr) -> std::io::Result<Vec<SocketAddr>> {
    let all = crate::interface::addresses(interface, bind.port())?;
    let host = bind.ip().unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    crate::interface::bind_addresses(&all, host).map_err(|problem| {
        std::io::Error::new(std::io::ErrorKind::NotFound, format!("bind_interface {interface:?}: {problem}"))
    })
}
