//! A TCP proxy on 127.0.0.1 in front of the test database, which can cut
//! every connection and refuse new ones (the database becomes unreachable
//! for the process under test, whatever server the harness chose), or
//! forget its open flows as a NAT does while a Lambda instance is frozen.

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
    generation: Arc<watch::Sender<u64>>,
}

enum Ended {
    Closed,
    Cut,
    Forgotten,
}

impl Proxy {
    pub async fn start(upstream: (String, u16)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(watch::Sender::new(true));
        let state = up.clone();
        let generation = Arc::new(watch::Sender::new(0u64));
        let flows = generation.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !*state.borrow() {
                    continue; // dropped at once: connection refused in effect
                }
                let mut down = state.subscribe();
                let mut forget = flows.subscribe();
                let born = *forget.borrow();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    let ended = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => Ended::Closed,
                        _ = down.wait_for(|up| !*up) => Ended::Cut,
                        _ = forget.wait_for(|g| *g != born) => Ended::Forgotten,
                    };
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
        }
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

    /// Forgets every open flow: each answers its client's next byte with a
    /// reset. New connections work.
    pub fn forget_flows(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}
