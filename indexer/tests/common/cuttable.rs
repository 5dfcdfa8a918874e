//! A TCP forwarder in front of the relay that can cut every connection through it and refuse
//! new ones, then let them through again: a network outage between the indexer and its relay,
//! without the relay going away (the relay keeps storing what others publish meanwhile).
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

pub struct Cuttable {
    url: String,
    open: Arc<AtomicBool>,
    /// Connections being forwarded.
    alive: Arc<AtomicUsize>,
    /// Bumped by [`Cuttable::cut`]: every forwarding task ends when it changes.
    cuts: watch::Sender<u64>,
    accepting: JoinHandle<()>,
}

impl Cuttable {
    /// Forwards `ws://127.0.0.1:<port>` (the returned [`Cuttable::url`]) to `relay_url`.
    pub async fn start(relay_url: &str) -> Self {
        let relay: SocketAddr = relay_url
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .parse()
            .expect("the relay listens on a socket address");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let url = format!("ws://{}", listener.local_addr().expect("bound"));
        let open = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0);
        let alive = Arc::new(AtomicUsize::new(0));
        let accepting = tokio::spawn(accept(
            listener,
            relay,
            open.clone(),
            alive.clone(),
            cuts.clone(),
        ));
        Self {
            url,
            open,
            alive,
            cuts,
            accepting,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops every open connection and refuses new ones until [`Cuttable::restore`]; returns
    /// once no byte can pass any more.
    pub async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|cuts| *cuts += 1);
        let cut = async {
            while self.alive.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), cut)
            .await
            .expect("every forwarded connection ends");
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Cuttable {
    fn drop(&mut self) {
        self.accepting.abort();
        self.cuts.send_modify(|cuts| *cuts += 1);
    }
}

async fn accept(
    listener: TcpListener,
    relay: SocketAddr,
    open: Arc<AtomicBool>,
    alive: Arc<AtomicUsize>,
    cuts: watch::Sender<u64>,
) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if !open.load(Ordering::SeqCst) {
            // Refused: closed before a byte of the handshake.
            continue;
        }
        let mut cut = cuts.subscribe();
        alive.fetch_add(1, Ordering::SeqCst);
        let alive = alive.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(relay).await {
                tokio::select! {
                    biased;
                    _ = cut.changed() => {}
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                }
            }
            alive.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
