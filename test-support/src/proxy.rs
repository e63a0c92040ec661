//! A TCP proxy on 127.0.0.1 in front of the test database, which can cut
//! every connection and refuse new ones (the database becomes unreachable
//! for the process under test, whatever server the harness chose), or
//! forget its open flows as a NAT does while a Lambda instance is frozen,
//! or send new connections to another server (a failover: the endpoint's
//! DNS name moved, open flows still reach the old server), or hold every
//! chunk it forwards for a while (a slow network).

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    generation: Arc<watch::Sender<u64>>,
    hole: Arc<watch::Sender<bool>>,
    upstream: Arc<watch::Sender<(String, u16)>>,
    delay: Arc<watch::Sender<Duration>>,
}

enum Ended {
    Closed,
    Cut,
    Forgotten,
    Stalled,
}

impl Proxy {
    pub async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(watch::Sender::new(true));
        let state = up.clone();
        let generation = Arc::new(watch::Sender::new(0u64));
        let flows = generation.clone();
        let hole = Arc::new(watch::Sender::new(false));
        let holes = hole.clone();
        let upstream = Arc::new(watch::Sender::new(upstream));
        let target = upstream.clone();
        let delay = Arc::new(watch::Sender::new(Duration::ZERO));
        let delays = delay.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // dropped at once: connection refused in effect
                }
                let mut stalled = holes.subscribe();
                if *stalled.borrow() {
                    // Accepted, then silence until healed: a black hole.
                    tokio::spawn(async move {
                        let _held = client;
                        let _ = stalled.wait_for(|h| !*h).await;
                    });
                    continue;
                }
                let mut down = state.subscribe();
                let mut forget = flows.subscribe();
                let mut stalled = holes.subscribe();
                let born = *forget.borrow();
                let upstream = target.borrow().clone();
                let delay = delays.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    let ended = tokio::select! {
                        _ = forward(&mut client, &mut server, &delay) => Ended::Closed,
                        _ = down.wait_for(|up| !*up) => Ended::Cut,
                        _ = forget.wait_for(|g| *g != born) => Ended::Forgotten,
                        _ = stalled.wait_for(|h| *h) => Ended::Stalled,
                    };
                    if let Ended::Stalled = ended {
                        // Both ends held open, nothing forwarded, until healed.
                        let _ = stalled.wait_for(|h| !*h).await;
                    }
                    if let Ended::Forgotten = ended {
                        // The flow is gone: the client's next byte is answered
                        // with a reset, as by a NAT that no longer knows it.
                        drop(server);
                        let _ = client.read(&mut [0u8; 1]).await;
                        // A zero linger resets at once: the warning (a close that
                        // blocks) is about non-zero lingers.
                        #[allow(deprecated)]
                        let _ = client.set_linger(Some(Duration::ZERO));
                    }
                });
            }
        });
        Self {
            addr,
            up,
            generation,
            hole,
            upstream,
            delay,
        }
    }

    /// Holds every chunk read from either side for `delay` before passing
    /// it on, on open and new connections alike; zero forwards at once.
    pub fn delay(&self, delay: Duration) {
        self.delay.send_replace(delay);
    }

    /// New connections go to `upstream` from now on; open ones stay where
    /// they are.
    pub fn retarget(&self, upstream: (String, u16)) {
        self.upstream.send_replace(upstream);
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Cuts every open connection and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// Accepts connections but forwards nothing, on new and open ones
    /// alike, until `heal`: a database that went silent.
    pub fn black_hole(&self) {
        self.hole.send_replace(true);
    }

    pub fn heal(&self) {
        self.hole.send_replace(false);
    }

    /// Forgets every open flow: each answers its client's next byte with a
    /// reset. New connections work.
    pub fn forget_flows(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Both directions until each has ended, each chunk held for the delay in
/// force when it arrived.
async fn forward(
    client: &mut TcpStream,
    server: &mut TcpStream,
    delay: &watch::Receiver<Duration>,
) {
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    tokio::join!(
        pump(client_read, server_write, delay.clone()),
        pump(server_read, client_write, delay.clone()),
    );
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    delay: watch::Receiver<Duration>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let hold = *delay.borrow();
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
