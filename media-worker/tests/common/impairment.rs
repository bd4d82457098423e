//! An impairment relay on loopback: a UDP forwarder between browsers and a TURN server that,
//! once switched on, makes the downlink (TURN server to browser) a bad commune line: a rate limit
//! with a bounded queue, random loss and a fixed delay. Only points whose media goes through the
//! TURN server (their token says `relay`) see it; every other point connects directly.
//!
//! Each browser socket gets its own upstream socket, so the TURN server sees one client per
//! browser socket, as it would without the relay. Dropping the relay stops its tasks.

use rand::Rng as _;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The downlink a relay imposes once [`ImpairmentRelay::impair`] is called.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    pub rate_bps: u64,
    pub loss: f64,
    pub delay: Duration,
    /// The longest a packet may wait in the rate limiter's queue; later ones are dropped, as a
    /// router's buffer overflows.
    pub queue: Duration,
}

pub struct ImpairmentRelay {
    pub addr: SocketAddr,
    on: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl ImpairmentRelay {
    /// Relays between 127.0.0.1:<ephemeral> and `upstream`, transparent until [`Self::impair`].
    pub async fn start(upstream: SocketAddr, impairment: Impairment) -> ImpairmentRelay {
        let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind the relay"));
        let addr = front.local_addr().expect("relay address");
        let on = Arc::new(AtomicBool::new(false));
        // The downlink: one FIFO (departure times only grow), drained by one task.
        let (down_tx, mut down_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>, SocketAddr)>();
        let sender = Arc::clone(&front);
        let drain = tokio::spawn(async move {
            while let Some((at, packet, to)) = down_rx.recv().await {
                tokio::time::sleep_until(at).await;
                let _ = sender.send_to(&packet, to).await;
            }
        });
        let accept = tokio::spawn(relay_loop(front, upstream, impairment, Arc::clone(&on), down_tx));
        ImpairmentRelay { addr, on, tasks: vec![drain, accept] }
    }

    /// From now on the downlink is impaired.
    pub fn impair(&self) {
        self.on.store(true, Ordering::SeqCst);
    }
}

impl Drop for ImpairmentRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Decides each downlink packet's fate: dropped (loss, or a full queue) or sent at a time.
struct Shaper {
    impairment: Impairment,
    /// When the rate limiter is free again.
    free_at: Instant,
}

impl Shaper {
    fn schedule(&mut self, now: Instant, bytes: usize) -> Option<Instant> {
        if rand::rng().random_bool(self.impairment.loss) {
            return None;
        }
        let start = self.free_at.max(now);
        if start.duration_since(now) > self.impairment.queue {
            return None;
        }
        let serialisation = Duration::from_secs_f64(bytes as f64 * 8.0 / self.impairment.rate_bps as f64);
        self.free_at = start + serialisation;
        Some(self.free_at + self.impairment.delay)
    }
}

async fn relay_loop(
    front: Arc<UdpSocket>,
    upstream: SocketAddr,
    impairment: Impairment,
    on: Arc<AtomicBool>,
    down: mpsc::UnboundedSender<(Instant, Vec<u8>, SocketAddr)>,
) {
    let shaper = Arc::new(std::sync::Mutex::new(Shaper { impairment, free_at: Instant::now() }));
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    // Dropped (so aborted) with this task.
    let mut readers = tokio::task::JoinSet::new();
    let mut buffer = vec![0u8; 65_536];
    loop {
        let Ok((len, from)) = front.recv_from(&mut buffer).await else { return };
        let socket = match clients.entry(from) {
            std::collections::hash_map::Entry::Occupied(known) => Arc::clone(known.get()),
            std::collections::hash_map::Entry::Vacant(new) => {
                let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream"));
                socket.connect(upstream).await.expect("connect upstream");
                let reader = Arc::clone(&socket);
                let (front, on, down, shaper) =
                    (Arc::clone(&front), Arc::clone(&on), down.clone(), Arc::clone(&shaper));
                readers.spawn(async move {
                    let mut buffer = vec![0u8; 65_536];
                    while let Ok(len) = reader.recv(&mut buffer).await {
                        let packet = buffer[..len].to_vec();
                        if on.load(Ordering::SeqCst) {
                            let at = shaper.lock().expect("shaper").schedule(Instant::now(), len);
                            if let Some(at) = at {
                                let _ = down.send((at, packet, from));
                            }
                        } else {
                            let _ = front.send_to(&packet, from).await;
                        }
                    }
                });
                Arc::clone(new.insert(socket))
            }
        };
        let _ = socket.send(&buffer[..len]).await;
    }
}
