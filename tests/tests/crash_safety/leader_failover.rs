//! Leader failover with the real binary (issue #12, item 4): two `tiepdan-operator run
//! --leader-elect` processes share one Lease; the leader is killed with SIGKILL by its PID, as an
//! OOM kill or a lost node would. The standby takes the Lease once it has seen it unchanged for
//! its duration, and provisions what was created after the kill.
//!
//! ```text
//!  replica-a (leads) ──renews every 500 ms──▶ Lease tiepdan-operator (4 s) ◀──reads── replica-b
//!       ╳ SIGKILL                                                                │
//!                                  4 s after b last saw it change: b takes it ───┘ and provisions
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::Api;
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::api::ReceptionSession;
use tiepdan_operator::controller::session::condition_true;
use tokio::time::Instant;

use super::support::{cluster, converge, create_sessions, session_names, topology, OperatorProcess, Progress};
use super::ONE_AT_A_TIME;

/// A short Lease so the test stays short: a standby takes over 4 s after the leader's last
/// renewal (plus up to two of its 500 ms attempts); the leader would stop acting after 2.67 s
/// without a renewal.
const LEASE_SECONDS: u64 = 4;
const RETRY: Duration = Duration::from_millis(500);
const LEASE: &str = "tiepdan-operator";

/// The Lease's spec (default while there is none).
async fn lease(leases: &Api<Lease>) -> Result<LeaseSpec, String> {
    Ok(leases.get_opt(LEASE).await.map_err(|e| e.to_string())?.and_then(|l| l.spec).unwrap_or_default())
}

/// Polls `check` every 50 ms (finer than `wait_for`'s back-off, since the time it turns true is
/// the figure measured) until it holds, at most `timeout`; returns when it first held.
async fn first_time<F, Fut>(timeout: Duration, what: &str, mut check: F) -> jiff::Timestamp
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut last = String::new();
    while Instant::now() < deadline {
        tick.tick().await;
        match check().await {
            Ok(()) => return jiff::Timestamp::now(),
            Err(e) => last = e,
        }
    }
    panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}");
}

async fn provisioned(client: &Client, ns: &str, name: &str) -> Result<(), String> {
    let s = Api::<ReceptionSession>::namespaced(client.clone(), ns).get(name).await.map_err(|e| e.to_string())?;
    if condition_true(&s, "Provisioned") {
        Ok(())
    } else {
        Err(format!("{name} not Provisioned yet"))
    }
}

/// replica-a leads and provisions a session while replica-b stands by (ready, writing nothing);
/// a SIGKILL to replica-a's PID, then a second session. replica-b holds the Lease within its
/// duration (plus the retry period at which it looks) of the kill, never before replica-a's last
/// renewal had lapsed, and provisions the new session; both sessions end with exactly one of
/// each child, nothing lost.
#[tokio::test]
async fn the_standby_replica_takes_over_within_the_lease_duration_when_the_leader_is_sigkilled() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let test_began = Instant::now();
    let (cp, client) = cluster().await;
    let ns = unique_name("failover");
    create_namespace(&client, &ns).await.unwrap();
    topology(&client, &ns).await;
    let names = session_names(2);
    let leases = Api::<Lease>::namespaced(client.clone(), &ns);

    // replica-a first, so that it is the one leading; then replica-b.
    let mut a = OperatorProcess::start_replica(cp, &ns, "replica-a", LEASE_SECONDS, RETRY);
    wait_for(Duration::from_secs(30), "replica-a to hold the Lease", || async {
        match lease(&leases).await?.holder_identity {
            Some(h) if h == "replica-a" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await
    .unwrap();
    let mut b = OperatorProcess::start_replica(cp, &ns, "replica-b", LEASE_SECONDS, RETRY);
    wait_for(Duration::from_secs(30), "replica-b's /readyz to answer 200", || async {
        match b.http_status("/readyz").await {
            Some(200) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    create_sessions(&client, &ns, &names[..1]).await;
    first_time(Duration::from_secs(30), "the leader to provision the first session", || {
        provisioned(&client, &ns, &names[0])
    })
    .await;
    a.assert_running();
    // The standby read the Lease all along and wrote nothing.
    let standby = b.progress().await;
    assert_eq!(standby, Some(Progress::Writes(0)), "the standby wrote to the API server");

    let pid = a.sigkill();
    let killed = jiff::Timestamp::now();
    // replica-a's last renewal, as it stands now that nobody renews it.
    let last = lease(&leases).await.unwrap();
    assert_eq!(last.holder_identity.as_deref(), Some("replica-a"), "replica-b took over before the kill");
    let last_renewal = last.renew_time.expect("a renewed Lease").0;
    create_sessions(&client, &ns, &names[1..]).await;

    first_time(Duration::from_secs(20), "replica-b to hold the Lease", || async {
        match lease(&leases).await?.holder_identity {
            Some(h) if h == "replica-b" => Ok(()),
            other => Err(format!("holder {other:?}")),
        }
    })
    .await;
    let taken = lease(&leases).await.unwrap();
    let acquired = taken.acquire_time.expect("an acquired Lease").0;
    let acted =
        first_time(Duration::from_secs(20), "replica-b to provision the session created after the kill", || {
            provisioned(&client, &ns, &names[1])
        })
        .await;

    let expected: BTreeSet<String> = names.iter().cloned().collect();
    let (census, report, _) =
        converge(&client, &ns, &mut b, &expected, &BTreeSet::new(), Duration::from_secs(20)).await;
    b.assert_running();
    let secs = |d: jiff::SignedDuration| d.as_secs_f64();
    let (takeover, lapse, acting) =
        (acquired.duration_since(killed), acquired.duration_since(last_renewal), acted.duration_since(killed));
    eprintln!(
        "SIGKILL replica-a (pid {pid}); replica-b held the {LEASE_SECONDS} s Lease (retry {RETRY:?}) {:.2} s after the \
         kill ({:.2} s after replica-a's last renewal), and provisioned the session created after the kill {:.2} s \
         after the kill; {} Lease transitions; {}; test took {:.1?}",
        secs(takeover),
        secs(lapse),
        secs(acting),
        taken.lease_transitions.unwrap_or(0),
        report.counts(&census),
        test_began.elapsed(),
    );
    let duration = jiff::SignedDuration::from_secs(LEASE_SECONDS as i64);
    let retry = jiff::SignedDuration::try_from(RETRY).unwrap();
    // Safety: never before replica-a's claim had lapsed, as replica-b observed it.
    assert!(lapse >= duration, "replica-b took the Lease {lapse} after replica-a's last renewal, before it lapsed");
    // Liveness: the lapse, plus at most one retry period for replica-b to see the last renewal
    // and one for its next attempt (and the attempts' own round trips).
    let bound = duration + retry * 2 + jiff::SignedDuration::from_millis(500);
    assert!(takeover <= bound, "replica-b took over {takeover} after the kill, more than {bound}");
    assert_eq!(taken.lease_transitions, Some(1));
    assert_eq!(census.pods(), names.len(), "one worker pod per session");
}
