//! The session lifecycle around the happy path, on the real node: an idle session costs no API
//! writes; rotating a point's link or losing the point revokes its old link on the worker within 5 s, and losing a point does not fail the session; a failed session gives back what it held; a
//! session moved after its rehearsal gets new links and must verify again; a lost worker is
//! replaced with the same links and the verification kept.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use tiepdan_harness::{wait_for, ControlPlane};
use tiepdan_media_worker::probe::client::SignalingClient;
use tiepdan_media_worker::signaling::protocol::{ClientMessage, ErrorCode, ServerMessage};
use tiepdan_operator::api::{ReceptionSession, SessionPhase};
use tiepdan_operator::api_requests::ApiRequests;
use tiepdan_operator::build::{labels, worker_ports};

use super::common::{exchange_media, session_trust, wait_condition};
use super::{cluster, event_reasons, host_ports, live, topology, SESSION};

/// A client whose requests are counted.
async fn counted_client(cp: &ControlPlane) -> (Client, ApiRequests) {
    let config = cp.config().await.unwrap();
    let requests = ApiRequests::new();
    (requests.client(config, Default::default()).unwrap(), requests)
}

/// Waits until the session's worker serves it with its certificate: the steady state.
async fn steady(sessions: &Api<ReceptionSession>) -> ReceptionSession {
    wait_condition(sessions, SESSION, "WorkerReady", "WorkerReady=True", |c| c.status == "True").await;
    wait_condition(sessions, SESSION, "CertificateReady", "CertificateReady=True", |c| c.status == "True").await
}

pub(super) async fn session(sessions: &Api<ReceptionSession>) -> ReceptionSession {
    sessions.get(SESSION).await.unwrap()
}

/// The join tokens of the session, by point.
pub(super) async fn tokens(client: &Client, ns: &str) -> std::collections::BTreeMap<String, String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns).get(&format!("{SESSION}-join-tokens")).await.unwrap();
    secret.data.unwrap().into_iter().map(|(k, v)| (k, String::from_utf8(v.0).unwrap())).collect()
}

/// The signaling URL of the session's current worker (a hostNetwork pod on 127.0.0.1).
pub(super) async fn worker_url(client: &Client, ns: &str, pod: &str) -> String {
    let pod = Api::<Pod>::namespaced(client.clone(), ns).get(pod).await.unwrap();
    format!("wss://127.0.0.1:{}/v1/ws", worker_ports::of_pod(&pod).signaling)
}

/// Waits until the operator has emitted an event with `reason` about the session (events follow
/// the status write that records the transition).
pub(super) async fn wait_event(client: &Client, ns: &str, reason: &str) {
    wait_for(Duration::from_secs(30), format!("a {reason} event"), || async {
        let reasons = event_reasons(client, ns).await;
        reasons.iter().any(|r| r == reason).then_some(()).ok_or(format!("{reasons:?}"))
    })
    .await
    .unwrap();
}

pub(super) fn worker_of(s: &ReceptionSession) -> Option<String> {
    s.status.as_ref().and_then(|st| st.worker.as_ref()).and_then(|w| w.pod.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_costs_no_api_writes() {
    let cp = cluster().await;
    let (client, requests) = counted_client(cp).await;
    let base = host_ports();
    let before = requests.writes();
    let started = Instant::now();
    // No warm workers: the session gets its own, so the pool has nothing to do and only the
    // session's own costs are counted.
    let live = live(cp, &client, "rn-idle", |s, d| topology(base, 0, "{}", s, d)).await;
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &live.ns);
    steady(&sessions).await;
    // The test's own namespace is created through the same client.
    let provisioned = requests.writes() - before - requests.count("create", "namespaces");
    let to_steady = started.elapsed();
    let by_kind: Vec<String> = requests
        .snapshot()
        .into_iter()
        .filter(|((verb, resource), _)| {
            tiepdan_operator::api_requests::WRITE_VERBS.contains(&verb.as_str()) && resource != "namespaces"
        })
        .map(|((verb, resource), n)| format!("{verb} {resource} ×{n}"))
        .collect();
    eprintln!("provisioning writes by kind: {by_kind:?}");

    // Points come from the operator's cache now; what every reconcile of this session still reads
    // from the API server is its worker's node (a hostNetwork pool without announcedAddress
    // announces the node's address): 20 of those, a poll every 500 ms, is the idle window.
    let (w0, l0, t0) = (requests.writes(), requests.count("get", "nodes"), Instant::now());
    let before_idle = requests.snapshot();
    wait_for(Duration::from_secs(60), "20 idle reconciles", || async {
        let n = requests.count("get", "nodes") - l0;
        if n >= 20 {
            Ok(())
        } else {
            Err(format!("{n} reconciles so far"))
        }
    })
    .await
    .unwrap();
    let idle = requests.writes() - w0;
    eprintln!(
        "writes: {provisioned} by the operator to provision one session (its own worker, no warm pool) in \
         {to_steady:.1?}; {idle} in {:.1?} idle ({} reconciles)",
        t0.elapsed(),
        requests.count("get", "nodes") - l0
    );
    let after = requests.snapshot();
    let wrote: Vec<_> = after
        .iter()
        .filter(|((verb, _), _)| tiepdan_operator::api_requests::WRITE_VERBS.contains(&verb.as_str()))
        .filter_map(|(k, n)| {
            let d = n - before_idle.get(k).copied().unwrap_or(0);
            (d > 0).then(|| format!("{} {} ×{d}", k.0, k.1))
        })
        .collect();
    assert_eq!(idle, 0, "an idle session wrote to the API server: {wrote:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_or_lost_point_loses_its_link_at_once_and_a_failed_session_gives_back_its_resources() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let base = host_ports();
    let live = live(cp, &client, "rn-points", |s, d| {
        topology(base, 1, "{}", s, d).replace("points: [di-su]", "points: [di-su, tinh-hung-yen]")
    })
    .await;
    let ns = live.ns.clone();
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    let s = steady(&sessions).await;
    let pod = worker_of(&s).unwrap();
    let link = tokens(&client, &ns).await.remove("di-su").expect("di-su has a link");
    // di-su's office is connected when its point is deleted.
    let url = worker_url(&client, &ns, &pod).await;
    let trust = session_trust(&client, &ns, SESSION).await;
    let join = |link: String| {
        let (url, trust) = (url.clone(), trust.clone());
        async move {
            wait_for(Duration::from_secs(60), "di-su's office joins", || async {
                let mut c = SignalingClient::connect_with(&url, Some(&trust)).await.map_err(|e| e.to_string())?;
                c.request(ClientMessage::Join { token: link.clone() }).await.map_err(|e| e.to_string())?;
                Ok::<_, String>(c)
            })
            .await
            .unwrap()
        }
    };
    let mut leaked = join(link.clone()).await;

    // di-su's link leaked: ops rotate it with the CLI's own code. The connection holding the old
    // link is closed and the old link refused within 5 s; the new link joins; tinh-hung-yen's
    // link is untouched.
    let other = tokens(&client, &ns).await.remove("tinh-hung-yen").expect("tinh-hung-yen has a link");
    let asked = Instant::now();
    let base = tiepdan_operator::links::LinkBase::Given(url.replace("wss://", "https://").replace("/v1/ws", ""));
    let rotate = tiepdan_operator::links::rotate(&client, &ns, SESSION, "di-su", &base, Duration::from_secs(30));
    let (rotated, kicked) = tokio::join!(rotate, async {
        let kicked = leaked.wait_for(|m| matches!(m, ServerMessage::Error { .. })).await;
        (kicked, asked.elapsed())
    });
    let rotated = rotated.expect("rotate");
    let (kicked, rotation) = (kicked.0.expect("the old link's office is told"), kicked.1);
    assert!(matches!(kicked, ServerMessage::Error { code: ErrorCode::TokenRevoked, .. }), "{kicked:?}");
    println!("di-su's link rotated → the old link's office disconnected after {rotation:?}");
    assert!(rotation < Duration::from_secs(5), "rotation took {rotation:?}");
    let mut again = SignalingClient::connect_with(&url, Some(&trust)).await.unwrap();
    let refused =
        again.request(ClientMessage::Join { token: link.clone() }).await.expect_err("the old link is refused");
    assert_eq!(refused.code(), Some(ErrorCode::TokenRevoked), "{refused}");
    assert_eq!(tiepdan_operator::links::link_generation_of(&rotated.url), Some(1));
    let link = rotated.url.split_once("#token=").expect("a token in the link").1.to_owned();
    assert_eq!(tokens(&client, &ns).await.get("di-su"), Some(&link), "the Secret holds the new link");
    assert_eq!(tokens(&client, &ns).await.get("tinh-hung-yen"), Some(&other), "the other point keeps its link");
    wait_event(&client, &ns, "LinkRotated").await;
    let mut office = join(link.clone()).await;

    // One commune's point is deleted during the rehearsal: the session goes on without it, and
    // its link, still validly signed, stops working at once.
    let points = Api::<tiepdan_operator::api::ReceptionPoint>::namespaced(client.clone(), &ns);
    let deleted = Instant::now();
    points.delete("di-su", &DeleteParams::default()).await.unwrap();
    let kicked = office.wait_for(|m| matches!(m, ServerMessage::Error { .. })).await.expect("the office is told");
    let disconnected = deleted.elapsed();
    assert!(matches!(kicked, ServerMessage::Error { code: ErrorCode::TokenRevoked, .. }), "{kicked:?}");
    let mut again = SignalingClient::connect_with(&url, Some(&trust)).await.unwrap();
    let refused = again.request(ClientMessage::Join { token: link.clone() }).await.expect_err("the link is refused");
    assert_eq!(refused.code(), Some(ErrorCode::TokenRevoked), "{refused}");
    println!("di-su deleted → its office disconnected and its link refused after {disconnected:?}");
    assert!(disconnected < Duration::from_secs(5), "revocation took {disconnected:?}");
    let s = wait_for(Duration::from_secs(30), "di-su marked removed", || async {
        let s = session(&sessions).await;
        let st = s.status.clone().unwrap_or_default();
        match st.points.iter().find(|p| p.name == "di-su") {
            Some(p) if p.removed => Ok(s),
            other => Err(format!("phase {:?}, di-su {other:?}", st.phase)),
        }
    })
    .await
    .unwrap();
    let st = s.status.clone().unwrap();
    assert_eq!(st.phase, Some(SessionPhase::Rehearsal), "{:?}", st.conditions);
    assert_eq!(st.verified.as_deref(), Some("0/2"), "two points left");
    assert_eq!(worker_of(&s).as_deref(), Some(pod.as_str()), "the same worker serves on");
    wait_for(Duration::from_secs(30), "di-su's token withdrawn", || async {
        let t = tokens(&client, &ns).await;
        if t.contains_key("di-su") {
            Err(format!("{:?}", t.keys()))
        } else {
            Ok(())
        }
    })
    .await
    .unwrap();
    wait_event(&client, &ns, "PointRemoved").await;

    // The host goes: now the session cannot run. It fails, keeps its spec and status, and gives
    // back its worker, Service, tokens, certificates and NetworkPolicy.
    points.delete("thi-xa-my-hao", &DeleteParams::default()).await.unwrap();
    let s = wait_for(Duration::from_secs(30), "phase Failed", || async {
        let s = session(&sessions).await;
        match s.status.as_ref().and_then(|st| st.phase) {
            Some(SessionPhase::Failed) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    let valid = s.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Valid").unwrap().clone();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "UnknownHost"));
    assert!(valid.message.starts_with("spec.host:"), "{}", valid.message);
    let sel = labels::session_selector(SESSION);
    wait_for(Duration::from_secs(60), "the failed session's resources released", || async {
        let lp = ListParams::default().labels(&sel);
        let live_pods = Api::<Pod>::namespaced(client.clone(), &ns)
            .list(&lp)
            .await
            .map_err(|e| e.to_string())?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count();
        let services = Api::<Service>::namespaced(client.clone(), &ns).list(&lp).await.map_err(|e| e.to_string())?;
        let secrets = Api::<Secret>::namespaced(client.clone(), &ns).list(&lp).await.map_err(|e| e.to_string())?;
        let policies =
            Api::<NetworkPolicy>::namespaced(client.clone(), &ns).list(&lp).await.map_err(|e| e.to_string())?;
        let left = (live_pods, services.items.len(), secrets.items.len(), policies.items.len());
        if left == (0, 0, 0, 0) {
            Ok(())
        } else {
            Err(format!("(pods, services, secrets, policies) left: {left:?}"))
        }
    })
    .await
    .unwrap();
    let kept = session(&sessions).await;
    assert_eq!(kept.spec.host, "thi-xa-my-hao", "the spec is kept");
    assert!(worker_of(&kept).is_none());
}

/// A session in its rehearsal whose two points were verified through its worker.
pub(super) struct Verified {
    pub(super) live: super::Live,
    pub(super) sessions: Api<ReceptionSession>,
    pub(super) pod: String,
    pub(super) links: std::collections::BTreeMap<String, String>,
}

pub(super) async fn verified_session(cp: &ControlPlane, client: &Client, prefix: &str) -> Verified {
    let base = host_ports();
    let live = live(cp, client, prefix, |s, d| topology(base, 1, "{}", s, d)).await;
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &live.ns);
    let pod = worker_of(&steady(&sessions).await).unwrap();
    let links = tokens(client, &live.ns).await;
    let url = worker_url(client, &live.ns, &pod).await;
    let trust = session_trust(client, &live.ns, SESSION).await;
    let sender = exchange_media(&url, Some(&trust), &links["thi-xa-my-hao"], &links["di-su"]).await;
    wait_for(Duration::from_secs(60), "both points verified", || async {
        let st = session(&sessions).await.status.unwrap_or_default();
        (st.verified.as_deref() == Some("2/2")).then_some(()).ok_or(format!("{:?}", st.verified))
    })
    .await
    .unwrap();
    sender.abort();
    Verified { live, sessions, pod, links }
}

/// Joins the session's worker `pod` with `token`, retrying for a minute while the worker's
/// certificate arrives through the kubelet's Secret sync.
pub(super) async fn joins(client: &Client, ns: &str, pod: &str, token: &str) {
    let url = worker_url(client, ns, pod).await;
    let trust = session_trust(client, ns, SESSION).await;
    wait_for(Duration::from_secs(60), format!("a join to {pod}"), || async {
        join_once(&url, &trust, token).await.map_err(|e| e.to_string())
    })
    .await
    .unwrap();
}

/// One signaling join with a point's link, as its console's first step.
async fn join_once(
    url: &str,
    trust: &tiepdan_media_worker::probe::tls::ClientTls,
    token: &str,
) -> Result<(), tiepdan_media_worker::probe::client::ClientError> {
    use tiepdan_media_worker::signaling::protocol::ClientMessage;
    let mut c = tiepdan_media_worker::probe::client::SignalingClient::connect_with(url, Some(trust)).await?;
    c.request(ClientMessage::Join { token: token.to_owned() }).await?;
    c.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescheduled_session_gets_new_links_and_verifies_again() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let Verified { live, sessions, pod: old_pod, links: old_tokens } =
        verified_session(cp, &client, "rn-resched").await;
    let ns = live.ns.clone();

    // The deadline moves half an hour later; the rehearsal grows by as much, so it has still
    // begun (join tokens are valid from the rehearsal's start).
    let deadline = live.deadline + jiff::SignedDuration::from_mins(30);
    let patch = json!({"spec": {"readiness": {"deadline": deadline.to_string(), "rehearsalMinutes": 90}}});
    sessions.patch(SESSION, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let s = wait_for(Duration::from_secs(60), "new links on a new worker", || async {
        let s = session(&sessions).await;
        let st = s.status.clone().unwrap_or_default();
        let moved = worker_of(&s).is_some_and(|p| p != old_pod);
        if st.token_epoch == 1 && moved && st.verified.as_deref() == Some("0/2") {
            Ok(s)
        } else {
            Err(format!("epoch {}, worker {:?}, verified {:?}", st.token_epoch, worker_of(&s), st.verified))
        }
    })
    .await
    .unwrap();
    let new_tokens = tokens(&client, &ns).await;
    assert_ne!(new_tokens["di-su"], old_tokens["di-su"], "links are issued again");
    wait_event(&client, &ns, "Rescheduled").await;

    // The new worker refuses the old links and serves the new ones.
    wait_condition(&sessions, SESSION, "WorkerReady", "the new worker ready", |c| c.status == "True").await;
    let new_pod = worker_of(&s).unwrap();
    joins(&client, &ns, &new_pod, &new_tokens["di-su"]).await;
    let url = worker_url(&client, &ns, &new_pod).await;
    let trust = session_trust(&client, &ns, SESSION).await;
    let old = join_once(&url, &trust, &old_tokens["di-su"]).await.expect_err("an old link was accepted");
    assert!(old.code().is_some(), "the worker refuses an old link with a reason: {old}");

    // Ops' synthetic probe (`links --probe`): minted at the new epoch, it measures the new worker
    // over plain RTP (comedia, through the worker container's host network).
    let probe =
        tiepdan_operator::links::probe(&client, &ns, SESSION, "probe-ops", jiff::Timestamp::now()).await.unwrap();
    let mut options = tiepdan_media_worker::probe::ProbeOptions::new(url.clone(), probe.token);
    options.tls = Some(trust.clone());
    options.duration = Duration::from_millis(500);
    let report = tiepdan_media_worker::probe::run_probe(&options).await.expect("the probe runs");
    assert!(report.audio.received > 0 && report.video.received > 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_worker_is_replaced_with_the_same_links_and_verification_kept() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let Verified { live, sessions, pod: old_pod, links } = verified_session(cp, &client, "rn-failover").await;
    let ns = live.ns.clone();

    let lost = Instant::now();
    Api::<Pod>::namespaced(client.clone(), &ns).delete(&old_pod, &DeleteParams::default()).await.unwrap();
    let s = wait_for(Duration::from_secs(30), "another worker serving the session", || async {
        let s = session(&sessions).await;
        let ready = s
            .status
            .as_ref()
            .and_then(|st| st.conditions.iter().find(|c| c.type_ == "WorkerReady"))
            .is_some_and(|c| c.status == "True");
        match worker_of(&s) {
            Some(p) if p != old_pod && ready => Ok(s),
            other => Err(format!("worker {other:?}, ready {ready}")),
        }
    })
    .await
    .unwrap();
    let failover = lost.elapsed();
    eprintln!("failover: a new worker served the session {failover:.1?} after the old one was deleted");
    wait_event(&client, &ns, "WorkerReplaced").await;
    let st = s.status.clone().unwrap();
    assert_eq!(st.verified.as_deref(), Some("2/2"), "verification survives the worker");
    assert_eq!(tokens(&client, &ns).await, links, "the same links");
    joins(&client, &ns, &worker_of(&s).unwrap(), &links["di-su"]).await;
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get(&tiepdan_operator::build::signaling_service::name(SESSION))
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().selector.unwrap()[labels::SESSION], SESSION, "the Service follows the session");
}
