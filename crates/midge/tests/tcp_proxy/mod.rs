//! A TCP proxy a test controls, to make a link's outages: [`Proxy::cut`] closes every
//! connection and refuses new ones, [`Proxy::stall`] stops forwarding either way while the
//! sockets stay open (the kernel's buffers fill, the peers see nothing), [`Proxy::resume`]
//! ends either; [`Proxy::retarget`] sends new connections to another address (a broker
//! restarted on a new port). Listens on 127.0.0.1 only. Threads, not a runtime: a test drives
//! it from plain code.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What the proxy does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Open,
    Stalled,
    Cut,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    target: SocketAddr,
    /// Both sockets of every live connection, to close them at a cut.
    connections: Vec<(TcpStream, TcpStream)>,
    /// Connections accepted so far.
    accepted: usize,
}

/// The proxy; its threads end when it is dropped (the listener is closed by a last
/// connection to itself).
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<(Mutex<State>, Condvar)>,
    closed: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    /// A proxy to `target`, open.
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new((
            Mutex::new(State { mode: Mode::Open, target, connections: Vec::new(), accepted: 0 }),
            Condvar::new(),
        ));
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (accept_shared, accept_closed) = (Arc::clone(&shared), Arc::clone(&closed));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accept_closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let (mode, target) = {
                    let state = accept_shared.0.lock().unwrap();
                    (state.mode, state.target)
                };
                if mode == Mode::Cut {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut state = accept_shared.0.lock().unwrap();
                    state.accepted += 1;
                    state.connections.push((client.try_clone().unwrap(), server.try_clone().unwrap()));
                }
                for (from, to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let shared = Arc::clone(&accept_shared);
                    std::thread::spawn(move || pump(from, to, &shared));
                }
            }
        });
        Self { addr, shared, closed }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every connection and refuses new ones until [`Proxy::resume`].
    pub fn cut(&self) {
        let mut state = self.shared.0.lock().unwrap();
        state.mode = Mode::Cut;
        for (client, server) in state.connections.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        self.shared.1.notify_all();
    }

    /// Stops forwarding, either way, until [`Proxy::resume`]; connections stay open.
    pub fn stall(&self) {
        self.shared.0.lock().unwrap().mode = Mode::Stalled;
    }

    /// Forwards again and accepts new connections.
    pub fn resume(&self) {
        self.shared.0.lock().unwrap().mode = Mode::Open;
        self.shared.1.notify_all();
    }

    /// New connections go to `target` from now on.
    pub fn retarget(&self, target: SocketAddr) {
        self.shared.0.lock().unwrap().target = target;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.0.lock().unwrap().accepted
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so that it sees `closed`.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` while the proxy forwards; waits while it is stalled; ends at a cut
/// or when either side closes.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        {
            let mut state = shared.0.lock().unwrap();
            while state.mode == Mode::Stalled {
                state = shared.1.wait(state).unwrap();
            }
            if state.mode == Mode::Cut {
                break;
            }
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
