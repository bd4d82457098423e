//! Leader election when the leader's connection to the API server breaks: a TCP proxy between
//! the leader and the real kube-apiserver refuses connections for a moment (the leader keeps the
//! Lease) or stalls every byte (the leader stops leading before another replica takes over, and
//! its controllers' client refuses to write from then on).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane};
use tiepdan_operator::leader::{self, LeaseConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::common::cluster;

/// What the proxy does with the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Pass,
    /// Close every open connection and refuse (accept and close) the next `n`, then pass again.
    Refuse(usize),
    /// Forward nothing, close nothing: every request hangs.
    Stall,
}

/// A TCP proxy on 127.0.0.1 in front of the API server, breaking connections on cue. TLS runs
/// end to end through it (the server certificate names 127.0.0.1, as the proxy's address does).
struct FaultyProxy {
    port: u16,
    mode: Arc<watch::Sender<Mode>>,
    refused: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Connection tasks end when the mode stops being Pass or Stall.
        self.mode.send_replace(Mode::Refuse(usize::MAX));
    }
}

impl FaultyProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(watch::channel(Mode::Pass).0);
        let refused = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (mode, refused) = (mode.clone(), refused.clone());
            async move {
                while let Ok((conn, _)) = listener.accept().await {
                    let now = *mode.borrow();
                    if matches!(now, Mode::Pass | Mode::Stall) {
                        tokio::spawn(pipe(conn, upstream, mode.subscribe()));
                        continue;
                    }
                    drop(conn);
                    refused.fetch_add(1, Ordering::SeqCst);
                    mode.send_modify(|m| {
                        if let Mode::Refuse(n) = m {
                            *m = if *n <= 1 { Mode::Pass } else { Mode::Refuse(*n - 1) };
                        }
                    });
                }
            }
        });
        Self { port, mode, refused, task }
    }

    /// A client of `cp` that goes through the proxy.
    async fn client(&self, cp: &ControlPlane) -> Client {
        let mut config = cp.config().await.unwrap();
        config.cluster_url = format!("https://127.0.0.1:{}", self.port).parse().unwrap();
        Client::try_from(config).unwrap()
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// Forwards one connection while the proxy passes; in Stall, holds it open and silent.
async fn pipe(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    if *mode.borrow_and_update() == Mode::Stall {
        let _held = client;
        let _ = mode.wait_for(|m| *m != Mode::Stall).await;
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    tokio::select! {
        _ = tokio::io::copy(&mut cr, &mut sw) => return,
        _ = tokio::io::copy(&mut sr, &mut cw) => return,
        _ = mode.wait_for(|m| *m != Mode::Pass) => {}
    }
    if *mode.borrow() == Mode::Stall {
        let _held = (cr, cw, sr, sw);
        let _ = mode.wait_for(|m| *m != Mode::Stall).await;
    }
}

/// A Lease of `secs` seconds renewed every 200 ms: the renew deadline is two thirds of it, each
/// attempt at most 400 ms.
fn cfg(ns: &str, identity: &str, secs: u64) -> LeaseConfig {
    LeaseConfig {
        namespace: ns.to_owned(),
        name: "tiepdan-operator".to_owned(),
        identity: identity.to_owned(),
        duration: Duration::from_secs(secs),
        retry: Duration::from_millis(200),
    }
}

/// Resolves with the instant `rx` first holds `want` (never, if it never does).
fn when(mut rx: watch::Receiver<bool>, want: bool) -> tokio::task::JoinHandle<Instant> {
    tokio::spawn(async move {
        if rx.wait_for(|l| *l == want).await.is_err() {
            std::future::pending::<()>().await;
        }
        Instant::now()
    })
}

async fn leading(rx: &watch::Receiver<bool>, what: &str) {
    wait_for(Duration::from_secs(20), what, || async {
        if *rx.borrow() {
            Ok(())
        } else {
            Err("not leading")
        }
    })
    .await
    .unwrap();
}

async fn setup(prefix: &str) -> (&'static ControlPlane, Client, String, FaultyProxy) {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name(prefix);
    create_namespace(&client, &ns).await.unwrap();
    let proxy = FaultyProxy::start(([127, 0, 0, 1], cp.port()).into()).await;
    (cp, client, ns, proxy)
}

#[tokio::test]
async fn a_leader_keeps_the_lease_through_a_brief_api_outage() {
    let (cp, client, ns, proxy) = setup("lease-outage").await;
    let (tx_a, rx_a) = watch::channel(false);
    let a = tokio::spawn(leader::run(proxy.client(cp).await, cfg(&ns, "replica-a", 3), tx_a));
    leading(&rx_a, "replica-a leads").await;
    let stepped_down = when(rx_a.clone(), false);
    let (tx_b, rx_b) = watch::channel(false);
    let b = tokio::spawn(leader::run(client.clone(), cfg(&ns, "replica-b", 3), tx_b));

    // Three refused connections in a row (each a failed renewal, 200 ms apart; the connection the
    // proxy closed may cost one more): well within the 2 s renew deadline.
    proxy.set(Mode::Refuse(3));
    wait_for(Duration::from_secs(10), "three refused connections", || async {
        if proxy.refused() >= 3 {
            Ok(())
        } else {
            Err(format!("{} refused", proxy.refused()))
        }
    })
    .await
    .unwrap();
    // a renews through the proxy again.
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);
    let after = jiff::Timestamp::now();
    wait_for(Duration::from_secs(10), "a renewal after the outage", || async {
        let spec = leases.get("tiepdan-operator").await.map_err(|e| e.to_string())?.spec.unwrap_or_default();
        match spec.renew_time {
            Some(t) if t.0 > after && spec.holder_identity.as_deref() == Some("replica-a") => Ok(()),
            other => Err(format!("renewed {other:?} by {:?}", spec.holder_identity)),
        }
    })
    .await
    .unwrap();
    assert!(!stepped_down.is_finished(), "the leader stepped down over a brief outage");
    assert!(*rx_a.borrow() && !*rx_b.borrow());
    a.abort();
    b.abort();
    stepped_down.abort();
}

#[tokio::test]
async fn a_leader_whose_renewals_hang_stops_leading_before_another_takes_over() {
    let (cp, client, ns, proxy) = setup("lease-hang").await;
    let (tx_a, rx_a) = watch::channel(false);
    let a = tokio::spawn(leader::run(proxy.client(cp).await, cfg(&ns, "replica-a", 2), tx_a));
    leading(&rx_a, "replica-a leads").await;
    let (tx_b, rx_b) = watch::channel(false);
    let b = tokio::spawn(leader::run(client.clone(), cfg(&ns, "replica-b", 2), tx_b));
    let a_down = when(rx_a.clone(), false);
    let b_up = when(rx_b.clone(), true);

    proxy.set(Mode::Stall);
    let b_led_at = tokio::time::timeout(Duration::from_secs(20), b_up).await.expect("b takes over").unwrap();
    assert!(a_down.is_finished(), "two leaders: replica-a still leads on a hung connection while replica-b leads");
    let a_down_at = a_down.await.unwrap();
    assert!(a_down_at < b_led_at, "replica-a stopped leading only after replica-b took over");
    let lease = Api::<Lease>::namespaced(client, &ns).get("tiepdan-operator").await.unwrap().spec.unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("replica-b"));
    a.abort();
    b.abort();
}

/// A deposed leader cannot write: replica-a's renewals hang (its elector talks through the
/// stalled proxy) while its controllers' client still reaches the API server directly. That
/// client is gated on replica-a's `leading`, so once replica-a has stepped down (before replica-b
/// takes over) each write it tries is refused with the typed error, counted, and never sent;
/// its reads still pass.
#[tokio::test]
async fn a_deposed_leaders_writes_are_refused_and_never_reach_the_api_server() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{DeleteParams, PostParams};
    use tiepdan_operator::api_requests::ApiRequests;
    use tiepdan_operator::write_gate::{self, WriteGate};

    let (cp, client, ns, proxy) = setup("lease-fence").await;
    let (tx_a, rx_a) = watch::channel(false);
    let a = tokio::spawn(leader::run(proxy.client(cp).await, cfg(&ns, "replica-a", 2), tx_a));
    leading(&rx_a, "replica-a leads").await;
    let requests = ApiRequests::new();
    let gate = WriteGate::new(rx_a.clone(), requests.clone());
    let a_writes = write_gate::client(cp.config().await.unwrap(), &requests, gate, Default::default()).unwrap();
    let configmaps = Api::<ConfigMap>::namespaced(a_writes, &ns);
    let cm = |name: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"by": "replica-a"}})).unwrap()
    };
    let pp = PostParams::default();
    configmaps.create(&pp, &cm("while-leading")).await.expect("the leader writes");

    let (tx_b, rx_b) = watch::channel(false);
    let b = tokio::spawn(leader::run(client.clone(), cfg(&ns, "replica-b", 2), tx_b));
    let b_up = when(rx_b.clone(), true);
    proxy.set(Mode::Stall);
    tokio::time::timeout(Duration::from_secs(20), b_up).await.expect("replica-b takes over").unwrap();
    assert!(!*rx_a.borrow(), "two leaders");

    let create = configmaps.create(&pp, &cm("after-deposed")).await.expect_err("the deposed leader created");
    let delete =
        configmaps.delete("while-leading", &DeleteParams::default()).await.expect_err("the deposed leader deleted");
    for (what, err) in [("create", create), ("delete", delete)] {
        let refused = write_gate::refusal(&err).unwrap_or_else(|| panic!("{what}: not refused by the gate: {err}"));
        assert_eq!(refused.category(), "not_leading", "{what}");
    }
    assert_eq!(requests.refused_writes(), 2);
    let direct = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    assert!(direct.get_opt("after-deposed").await.unwrap().is_none(), "the refused create reached the API server");
    assert!(direct.get_opt("while-leading").await.unwrap().is_some(), "the refused delete reached the API server");
    // Its reads (caches, watches) still pass.
    configmaps.get("while-leading").await.expect("reads pass");
    a.abort();
    b.abort();
}
