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
use crate::server::ServerError;
use crate::tls::TlsListener;

/// A listener whose sockets are bound but which does not accept yet: binding every listener
/// before anything else starts lets a taken port stop the start with nothing to undo.
#[derive(Debug)]
pub struct BoundListener {
    index: usize,
    config: ListenerConfig,
    /// Who may connect and what its clients may do, loaded from its settings.
    security: ListenerSecurity,
    /// Its TLS acceptor, loaded from its settings; `None` for plain TCP.
    tls: Option<Arc<TlsListener>>,
    sockets: Sockets,
    local_addrs: Vec<SocketAddr>,
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
        let addrs = bind.resolve().await.map_err(|source| ServerError::Resolve {
            listener: index,
            bind: bind.clone(),
            source,
        })?;
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
        let security =
            ListenerSecurity::load(&config).map_err(|source| ServerError::Security { listener: index, source })?;
        let tls =
            TlsListener::load(&config).map_err(|source| ServerError::Tls { listener: index, source })?.map(Arc::new);
        Ok(Self { index, config, security, tls, sockets, local_addrs })
    }

    /// The addresses its sockets are bound to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Starts accepting. Its clients are authenticated by the listener's own settings; `store`
    /// is the store's writer whose commits release held acknowledgements. Connections before
    /// CONNECT watch `shutdown`; connected ones are stopped through the broker
    /// ([`Broker::shut_down`]).
    /// `gate` holds the limits every listener shares.
    pub fn start(
        self,
        broker: Arc<Broker>,
        gate: Arc<ConnectionGate>,
        store: Option<WriterHandle>,
        shutdown: watch::Receiver<bool>,
        readiness: Arc<crate::http::Readiness>,
        metrics: Arc<crate::metrics::Source>,
    ) -> ListenerHandle {
        let Self { index, config, security, tls, sockets, local_addrs } = self;
        let http = (config.protocol == ListenerProtocol::Http)
            .then(|| Arc::new(crate::http::HttpListener::new(index, &config, readiness, metrics)));
        let max_packet_size = broker.limits().max_packet_size;
        let websocket = (config.protocol == ListenerProtocol::Websockets)
            .then(|| Arc::new(WebSocketListener::new(index, &config, max_packet_size, Arc::clone(&gate))));
        let proxy = ProxyListener::new(index, &config, Arc::clone(&gate)).map(Arc::new);
        let transport = match (&sockets, &websocket, tls.is_some()) {
            (Sockets::Datagram(..), ..) => "mqtt-sn over udp",
            (Sockets::Stream(_), None, true) if http.is_some() => "http api over tls",
            (Sockets::Stream(_), None, false) if http.is_some() => "http api",
            (Sockets::Stream(_), Some(_), true) => "mqtt over websockets over tls",
            (Sockets::Stream(_), Some(_), false) => "mqtt over websockets",
            (Sockets::Stream(_), None, true) => "mqtt over tls",
            (Sockets::Stream(_), None, false) => "mqtt over tcp",
        };
        let transport = match &proxy {
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
        let counters = Arc::new(Counters::default());
        let connections = TaskTracker::new();
        gate.register(connections.clone());
        let (stop, stop_rx) = watch::channel(false);
        let accept_loop = TaskTracker::new();
        let context = ListenerContext {
            broker,
            authenticator: security.authenticator,
            authorizer: security.authorizer,
            store,
            shutdown,
        };
        let current = Arc::new(RwLock::new(Current { context: Arc::new(context), tls }));
        let mut sn = None;
        match sockets {
            Sockets::Stream(sockets) => {
                accept_loop.spawn(
                    AcceptLoop {
                        index,
                        config: config.clone(),
                        current: Arc::clone(&current),
                        counters: Arc::clone(&counters),
                        websocket: websocket.clone(),
                        proxy: proxy.clone(),
                        http,
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
            config,
            local_addrs,
            counters,
            websocket,
            proxy,
            sn,
            current,
            connections,
            stop,
            accept_loop,
        }
    }
}

/// A running listener: its addresses, its config, its counters, and a way to close it without
/// touching the other listeners, so that a reload can add, change or close listeners one by one.
/// Dropping the handle closes the listener too.
#[derive(Debug)]
pub struct ListenerHandle {
    /// Its place in the config, from 1, as logs and errors name it.
    index: usize,
    config: ListenerConfig,
    local_addrs: Vec<SocketAddr>,
    counters: Arc<Counters>,
    /// A WebSocket listener's settings and upgrade counter; `None` for MQTT over TCP or TLS.
    websocket: Option<Arc<WebSocketListener>>,
    /// A listener behind a PROXY protocol proxy: its version and header counter.
    proxy: Option<Arc<ProxyListener>>,
    /// An MQTT-SN listener's shared gateway state (its drop counters); `None` for the others.
    sn: Option<Arc<crate::sn::Shared>>,
    /// What new connections are given, swapped by [`ListenerHandle::reload`].
    current: Arc<RwLock<Current>>,
    /// Its connections; their number is the listener's count of open connections.
    connections: TaskTracker,
    /// Tells the accept loop to stop.
    stop: watch::Sender<bool>,
    /// The accept loop alone, to learn when it has ended and dropped the sockets.
    accept_loop: TaskTracker,
}

impl ListenerHandle {
    /// Its place in the config, from 1.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The config it runs with.
    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// The addresses it listens on (several when its `bind` name resolved to several).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Its counters now.
    pub fn counters(&self) -> ListenerCounters {
        ListenerCounters {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            refused_max_connections: self.counters.refused_max_connections.get(),
            accept_errors: self.counters.accept_errors.load(Ordering::Relaxed),
            open: self.connections.len(),
            tls_handshake_failures: read(&self.current).tls.as_ref().map_or(0, |tls| tls.handshake_failures()),
            websocket_upgrade_failures: self.websocket.as_ref().map_or(0, |websocket| websocket.upgrade_failures()),
            proxy_header_failures: self.proxy.as_ref().map_or(0, |proxy| proxy.header_failures()),
            mqtt_sn: self.sn.as_ref().map(|sn| sn.counters.snapshot()),
        }
    }

    /// Stops accepting and closes the sockets, and returns once they are closed, so their
    /// addresses can be bound again. Connections it accepted carry on until they end or the
    /// server shuts down; other listeners are not touched. Closing twice does nothing more.
    ///
    /// # Cancel safety
    /// Cancel safe: once called, the listener closes whether or not the call is awaited to the
    /// end.
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        self.connections.close();
        self.accept_loop.wait().await;
    }

    /// Reads its files again (password file, ACL file, JWT keys, TLS certificate, key, CAs and
    /// CRLs) and gives what they now say to every connection accepted from now on; connected
    /// clients keep what they started with and stay connected. A file that cannot be used
    /// changes nothing: the error names it, and the listener keeps its last good settings.
    pub fn reload(&self) -> Result<(), ServerError> {
        let listener = self.index;
        let security =
            ListenerSecurity::load(&self.config).map_err(|source| ServerError::Security { listener, source })?;
        let tls =
            TlsListener::load(&self.config).map_err(|source| ServerError::Tls { listener, source })?.map(Arc::new);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let old = &current.context;
        let context = ListenerContext {
            broker: Arc::clone(&old.broker),
            authenticator: security.authenticator,
            authorizer: security.authorizer,
            store: old.store.clone(),
            shutdown: old.shutdown.clone(),
        };
        *current = Current { context: Arc::new(context), tls };
        Ok(())
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
    config: ListenerConfig,
    /// What each new connection is given; a reload swaps it.
    current: Arc<RwLock<Current>>,
    counters: Arc<Counters>,
    /// Set on a WebSocket listener: its connections upgrade before they speak MQTT.
    websocket: Option<Arc<WebSocketListener>>,
    /// Set on a listener behind a PROXY protocol proxy: its connections start with its header.
    proxy: Option<Arc<ProxyListener>>,
    /// Set on an HTTP API listener: its connections are served by `crate::http`.
    http: Option<Arc<crate::http::HttpListener>>,
    connections: TaskTracker,
    /// The limits every listener shares.
    gate: Arc<ConnectionGate>,
}

/// What a listener gives each new connection, read from its files when it is bound and again on
/// every reload ([`ListenerHandle::reload`]). Swapped whole, so a connection keeps what it
/// started with: new settings apply to new connections, and connected clients stay.
#[derive(Debug)]
pub(crate) struct Current {
    /// The broker, the listener's authenticator and authorizer, the store's writer.
    pub(crate) context: Arc<ListenerContext>,
    /// The TLS acceptor each connection's task runs its handshake with; `None` for plain TCP.
    tls: Option<Arc<TlsListener>>,
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
        info!(listener = self.index, bind = %self.config.bind, "listener closed");
    }

    /// Hands an accepted connection to its own task, or closes it at once when the listener
    /// already has `max_connections` open, or the broker is full, or its address is over its
    /// connection rate (`[connections]`): before any buffer, task or broker state exists for it.
    /// When its address is a proxy's (a PROXY protocol listener, or a trusted proxy of a
    /// WebSocket listener) the connection rate is the client's, checked by the connection's task
    /// once its header has said who that is.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        let now = Instant::now();
        if let Some(max) = self.config.max_connections.get() {
            if self.connections.len() >= max {
                drop(stream);
                self.gate.broker().stats().limits.listener_max_connections.hit(now);
                if let Some(report) = self.counters.refused_max_connections.hit(now) {
                    warn!(
                        listener = self.index, bind = %self.config.bind, max_connections = max,
                        refused = report.since_last, total = report.total, %peer,
                        "listener full: closing new connections at once (max_connections)"
                    );
                }
                return;
            }
        }
        let proxied = self.proxy.is_some() || self.websocket.as_ref().is_some_and(|ws| ws.trusts(peer.ip()));
        let admitted = if proxied { self.gate.admit_open(peer, now) } else { self.gate.admit(peer, now) };
        if !admitted {
            drop(stream);
            return;
        }
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = stream.set_nodelay(true) {
            warn!(%peer, %error, "cannot set TCP_NODELAY");
        }
        let (context, tls) = {
            let current = read(&self.current);
            (Arc::clone(&current.context), current.tls.clone())
        };
        // Handshakes run in the connection's task, never here: a slow client cannot hold up the
        // accept loop.
        let proxy = self.proxy.clone();
        if let Some(http) = &self.http {
            self.connections.spawn(crate::http::serve(stream, peer, tls, Arc::clone(http), context));
            return;
        }
        match (&self.websocket, tls) {
            (Some(websocket), tls) => {
                let websocket = Arc::clone(websocket);
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
