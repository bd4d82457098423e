//! The operator with real media-worker processes (the harness node runs them for worker pods):
//! a warm worker is bound to the session, two points exchange media through it, the worker
//! verifies them, and the session is Ready at the deadline.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use tiepdan_harness::wait_for;
use tiepdan_operator::api::{ReceptionPoint, ReceptionSession, SessionPhase};

use crate::common::{cluster, exchange_media, live_session, session_trust, small_live_topology, wait_condition};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_verified_by_a_real_worker_make_the_session_ready_at_the_deadline() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let live = live_session(
        cp,
        &client,
        "live",
        |c| c,
        |start, deadline| small_live_topology("chay-thu", "Chạy thử kết nối", 42000, start, deadline),
    )
    .await;
    let ns = live.ns.clone();

    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    // WorkerReady with this message means the warm worker answered the allocation call.
    let session = wait_condition(&sessions, "chay-thu", "WorkerReady", "the warm worker bound to the session", |c| {
        c.status == "True" && c.message.contains("serving the session")
    })
    .await;
    // And serves signaling with the session's certificate (the officers' consoles need it).
    wait_condition(&sessions, "chay-thu", "CertificateReady", "CertificateReady=True", |c| c.status == "True").await;
    let pod_name = session.status.unwrap().worker.unwrap().pod.unwrap();
    let pod = Api::<Pod>::namespaced(client.clone(), &ns).get(&pod_name).await.unwrap();
    let ip = pod.status.unwrap().pod_ip.unwrap();
    // Signaling is HTTPS/WSS with the session's certificate, which the trust bundle verifies.
    let url = format!("wss://{ip}:8443/v1/ws");
    let trust = session_trust(&client, &ns, "chay-thu").await;
    let tokens =
        Api::<Secret>::namespaced(client.clone(), &ns).get("chay-thu-join-tokens").await.unwrap().data.unwrap();
    let token = |p: &str| String::from_utf8(tokens[p].0.clone()).unwrap();

    // Two points publish and consume each other, as the officers' consoles do.
    let sender = exchange_media(&url, Some(&trust), &token("thi-xa-my-hao"), &token("di-su")).await;

    // The worker verifies both (10 s of clean media by default); the operator copies it over.
    wait_for(Duration::from_secs(60), "both points verified in the session status", || {
        let sessions = sessions.clone();
        async move {
            let st = sessions.get("chay-thu").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            if st.verified.as_deref() == Some("2/2") {
                Ok(())
            } else {
                Err(format!("{:?}", st.points))
            }
        }
    })
    .await
    .unwrap();
    sender.abort();

    live.clock.set(live.deadline);
    let s = wait_for(Duration::from_secs(30), "phase Ready at the deadline", || {
        let sessions = sessions.clone();
        async move {
            let s = sessions.get("chay-thu").await.map_err(|e| e.to_string())?;
            match s.status.as_ref().and_then(|st| st.phase) {
                Some(SessionPhase::Ready) => Ok(s),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap();
    let rbd = s.status.unwrap().conditions.into_iter().find(|c| c.type_ == "ReadyByDeadline").unwrap();
    assert_eq!((rbd.status.as_str(), rbd.reason.as_str()), ("True", "VerifiedBeforeDeadline"));

    // The point itself remembers its last verification.
    let point = Api::<ReceptionPoint>::namespaced(client.clone(), &ns).get("di-su").await.unwrap();
    let lv = point.status.unwrap().last_verification.expect("lastVerification recorded");
    assert_eq!(lv.session, "chay-thu");
}
