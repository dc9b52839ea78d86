//! A fault-injecting TCP proxy for loopback tests.
//!
//! Every connection is forwarded to the upstream server. The mode, read for each chunk of the answer,
//! decides what the till sees: [`Mode::Pass`] forwards, [`Mode::HoldResponse`] forwards the request
//! (so the server commits) but delays the answer past the till's timeout, [`Mode::Refuse`] closes new
//! connections at once. Threads end with their connections; dropping the proxy stops accepting.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Forward the request, hold each chunk of the answer this long before passing it on.
    HoldResponse(Duration),
    /// Close new connections without forwarding anything.
    Refuse,
}

/// A running proxy on a free loopback port.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` in [`Mode::Pass`].
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, s) = (mode.clone(), stop.clone());
        let accept = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    if *m.lock() == Mode::Refuse {
                        drop(client);
                        continue;
                    }
                    let m = m.clone();
                    let _ = std::thread::Builder::new()
                        .name("fault-proxy-conn".into())
                        .spawn(move || forward(client, upstream, &m));
                }
            })
            .expect("spawn proxy");
        FaultProxy { addr, mode, stop, accept: Some(accept) }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the mode for what follows.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock() = mode;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn forward(client: TcpStream, upstream: SocketAddr, mode: &Mutex<Mode>) {
    let Ok(server) = TcpStream::connect(upstream) else { return };
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match server_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let current = *mode.lock();
        if let Mode::HoldResponse(delay) = current {
            std::thread::sleep(delay);
        }
        if client_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client_write.shutdown(Shutdown::Both);
    let _ = server_read.shutdown(Shutdown::Both);
    let _ = up.join();
}
