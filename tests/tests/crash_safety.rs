//! Crash safety of the operator (issue #12, item 4): the `tiepdan-operator` binary, as a process
//! against the real control plane, is killed with SIGKILL at seeded random points while it
//! provisions sessions, and etcd and kube-apiserver are killed and restarted under it; every
//! session still converges, with no duplicate worker, no orphan and no lost session. With two
//! replicas under leader election, the leader is SIGKILLed and the standby takes over
//! (`leader_failover`).
//!
//! ```text
//!  test ── creates sessions ──► kube-apiserver ◄── etcd          (killed and restarted by PID)
//!    │                              ▲
//!    └── SIGKILL / restart ──► tiepdan-operator run --namespace <test ns>
//!                                   (a pool with replicas: 0 and no node: worker pods stay
//!                                    Pending, every other child is created for real)
//! ```
//!
//! The seed (`TIEPDAN_CRASH_SEED`) fixes where the kills land, counted in the operator's own
//! API writes (its `tiepdan_operator_api_requests_total`), and which sessions are created and
//! deleted when; the interleaving with the API server is not reproducible to the request.
//! The tests kill processes of the control plane this binary shares, so they take turns. The
//! binary is `$CARGO_TARGET_DIR/debug/tiepdan-operator` (`TIEPDAN_OPERATOR_BIN` overrides); its
//! logs stay in a temp dir when a test fails (`TIEPDAN_OPERATOR_RUST_LOG` sets their filter).
// Helpers outside `#[test]` functions fail a test by panicking, as the tests do.
#![allow(clippy::unwrap_used)]

#[path = "crash_safety/leader_failover.rs"]
mod leader_failover;
#[path = "crash_safety/support.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{
    cluster, converge, create_sessions, delete_sessions, session_names, topology, Census, OperatorProcess, Rng,
};
use tiepdan_harness::{create_namespace, unique_name};
use tokio::sync::Mutex;
use tokio::time::Instant;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Sessions that must converge in the kill test, and how many more are created only to be
/// deleted along the way.
const SESSIONS: usize = 100;
const DELETED: usize = 6;
/// SIGKILLs of the operator (`TIEPDAN_CRASH_KILLS` overrides).
const KILLS: usize = 8;

/// 60 sessions, then the operator binary started; 8 times it is SIGKILLed after a seeded number
/// of its API writes and, while it lies dead, more sessions are created (106 in all) and some
/// deleted (6), before it starts again. After the last restart: 100 sessions Provisioned, each
/// with one worker pod, Service, join-token Secret, certificate (and its worker's copy),
/// NetworkPolicy and dashboard ConfigMap; nothing of the deleted ones; no session with two
/// worker pods at any kill.
#[tokio::test]
async fn the_operator_killed_at_random_points_while_provisioning_100_sessions_converges_without_duplicates_orphans_or_losses(
) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let test_began = Instant::now();
    let mut rng = Rng::seeded("sigkill");
    let kills: usize = std::env::var("TIEPDAN_CRASH_KILLS").map_or(KILLS, |k| k.parse().expect("a number")).max(1);
    let (cp, client) = cluster().await;
    let ns = unique_name("crash-kill");
    create_namespace(&client, &ns).await.unwrap();
    topology(&client, &ns).await;

    // 60 sessions before the first run, the rest in batches while the operator lies dead; six
    // of the first ones are deleted while it is dead, so their clean-up runs after a crash.
    let names = session_names(SESSIONS + DELETED);
    let first = 60;
    let doomed = rng.choose(&names[..first], DELETED);
    let expected: BTreeSet<String> = names.iter().filter(|n| !doomed.contains(n)).cloned().collect();
    let mut deleted = BTreeSet::new();
    create_sessions(&client, &ns, &names[..first]).await;
    let mut created = first;
    let batches = split(names.len() - first, kills);

    let mut op = OperatorProcess::start(cp, &ns);
    let mut peak_duplicates = 0;
    for (k, batch) in batches.iter().enumerate() {
        // Kill after a random number of API writes into the run: early ones land in the first
        // reconciles (finalizers, the CA), later ones among pods, Services, tokens, certificates
        // and status writes. A run with nothing left to do is killed when idle for 2 s.
        let threshold = rng.between(5, 600);
        let progress = op.until_progress(threshold, Duration::from_secs(2), Duration::from_secs(30)).await;
        let ran = op.run_elapsed();
        let pid = op.sigkill();
        let census = Census::take(&client, &ns).await.unwrap();
        let report = census.report(&expected, &deleted);
        peak_duplicates = peak_duplicates.max(report.duplicates.len());
        eprintln!(
            "kill {}/{kills}: SIGKILL pid {pid} after {progress} (aimed at {threshold} writes) {:.1?} into run {}: {} \
             of the {created} sessions created so far Provisioned, {} worker pods, {} duplicates",
            k + 1,
            ran,
            op.runs(),
            census.provisioned(),
            census.pods(),
            report.duplicates.len(),
        );
        // While it is dead: more sessions, and some deleted.
        create_sessions(&client, &ns, &names[created..created + batch]).await;
        created += batch;
        let due =
            doomed.iter().filter(|d| !deleted.contains(*d)).take(DELETED.div_ceil(kills)).cloned().collect::<Vec<_>>();
        delete_sessions(&client, &ns, &due).await;
        deleted.extend(due);
        op.restart();
    }
    let rest: Vec<String> = doomed.iter().filter(|d| !deleted.contains(*d)).cloned().collect();
    delete_sessions(&client, &ns, &rest).await;
    deleted.extend(rest);
    assert_eq!(created, names.len());

    let (census, report, took) = converge(&client, &ns, &mut op, &expected, &deleted, Duration::from_secs(120)).await;
    op.assert_running();
    eprintln!(
        "{} sessions (+{} deleted along the way), {kills} kills, converged {took:.1?} after the last restart: {} \
         (peak duplicates while killed: {peak_duplicates}); test took {:.1?}",
        expected.len(),
        deleted.len(),
        report.counts(&census),
        test_began.elapsed(),
    );
    assert_eq!(peak_duplicates, 0, "a session had two worker pods after a kill");
    assert_eq!(report.provisioned, SESSIONS);
    assert_eq!(census.pods(), SESSIONS, "one worker pod per session");
}

/// They are killed once the finalizers are in (the first write of each session's first
/// reconcile), and stay down until the sessions have failed twice as many reconciles as there are
/// sessions: a failure retried after the operator's 15 s back-off fails again, so the outage lasts
/// 10-20 s, as an API server upgrade might. After the restart, a watch resumed from an older
/// resourceVersion gets 410 Gone (the new API server's watch cache starts at etcd's current
/// revision) and re-lists. If sessions created or deleted after the restart are still "never
/// acted on" or "deleted but present" when this times out, the operator's watches have not come
/// back: its caches are stale.
#[tokio::test]
async fn the_operator_rides_out_etcd_and_the_api_server_being_killed_and_restarted_and_every_session_converges() {
    ride_out_outage("crash-cp", &["etcd", "kube-apiserver"], 20, 60, 40).await;
}

#[tokio::test]
async fn the_operator_rides_out_etcd_alone_being_killed_and_restarted_and_every_session_converges() {
    // Without etcd the API server holds requests for up to a minute: the first failure will do.
    ride_out_outage("crash-etcd", &["etcd"], 10, 10, 1).await;
}

/// `sessions` sessions being provisioned by one operator process when `components` of the control
/// plane are killed (SIGKILL by PID, in this order) at a seeded point after at least `min_writes`
/// of its writes; they stay down until the operator has failed `failures` reconciles on the
/// outage, then start again with their flags and data. Afterwards a
/// fifth more sessions are created (the operator's watches must have come back to see them) and a
/// tenth deleted (its clean-up must run). The operator must never exit, and everything converges.
async fn ride_out_outage(prefix: &str, components: &[&str], sessions: usize, min_writes: u64, failures: u64) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let test_began = Instant::now();
    let what = components.join(" and ");
    let mut rng = Rng::seeded(&format!("{what} restart"));
    let (cp, client) = cluster().await;
    let ns = unique_name(prefix);
    create_namespace(&client, &ns).await.unwrap();
    topology(&client, &ns).await;
    let names = session_names(sessions + sessions / 5);
    let (before, after) = names.split_at(sessions);
    let doomed = rng.choose(before, sessions / 10);
    let expected: BTreeSet<String> = names.iter().filter(|n| !doomed.contains(n)).cloned().collect();
    create_sessions(&client, &ns, before).await;
    let mut op = OperatorProcess::start(cp, &ns);

    let threshold = rng.between(min_writes, 6 * sessions as u64);
    let progress = op.until_progress(threshold, Duration::from_secs(2), Duration::from_secs(30)).await;
    let census = Census::take(&client, &ns).await.unwrap();
    let pids: Vec<u32> = components.iter().map(|c| cp.kill(c).unwrap()).collect();
    let outage = Instant::now();
    let failed_before = op.failed_reconciles().await.unwrap_or(0);
    eprintln!(
        "killed {what} (pids {pids:?}) after {progress} of the operator (aimed at {threshold} writes): {} of {sessions} \
         sessions Provisioned, {} worker pods",
        census.provisioned(),
        census.pods()
    );
    // The outage lasts until the operator has failed on it (counted from just after the kill): a
    // reconcile in flight fails at once (connection refused, or a 500 from an API server without
    // etcd), a session in its rehearsal is reconciled every 10 s (the status poll) and retried 15 s
    // after a failure; without etcd, a request the API server holds ends in a 504 after about a
    // minute at the latest.
    let failed = tiepdan_harness::wait_for(
        Duration::from_secs(90),
        format!("{failures} reconciles failing on the outage"),
        || {
            let op = &op;
            async move {
                match op.failed_reconciles().await {
                    Some(n) if n >= failed_before + failures => Ok(n - failed_before),
                    other => Err(format!("failed reconciles {other:?}, {failed_before} before the outage")),
                }
            }
        },
    )
    .await
    .unwrap();
    op.assert_running();
    let down_for = outage.elapsed();
    let restarted = cp.restart_stopped(Duration::from_secs(60)).await.unwrap();
    let back = Instant::now();
    eprintln!(
        "the operator failed {failed} reconciles in {down_for:.1?} of outage and kept running; restarted \
         {restarted:?}, the API server ready {:.1?} after the kill",
        outage.elapsed()
    );
    op.assert_running();
    create_sessions(&client, &ns, after).await;
    delete_sessions(&client, &ns, &doomed).await;
    let deleted: BTreeSet<String> = doomed.into_iter().collect();

    // Twice the operator's own back-off is ample: it retries a failed reconcile after 15 s and
    // polls a session in its rehearsal every 10 s, and watches resume (re-listing on 410 Gone)
    // within seconds. (With stalled watches this took 43 s to over 3 minutes; once they resume
    // at once, 7-14 s on this 2-core machine under load.)
    let (census, report, _) = converge(&client, &ns, &mut op, &expected, &deleted, Duration::from_secs(30)).await;
    op.assert_running();
    eprintln!(
        "{} sessions (+{} deleted after the restart), converged {:.1?} after the API server was ready again ({:.1?} \
         after the kill), the operator never exited (1 run): {}; test took {:.1?}",
        expected.len(),
        deleted.len(),
        back.elapsed(),
        outage.elapsed(),
        report.counts(&census),
        test_began.elapsed(),
    );
    assert_eq!(op.runs(), 1);
    assert_eq!(census.pods(), expected.len(), "one worker pod per session");
}

/// A pod is sent SIGTERM, then SIGKILL after its grace period: the operator must stop on SIGTERM
/// whether or not it can reach the API server (a node drained during an outage, a bad
/// kubeconfig), and not sit out the grace period.
#[tokio::test]
async fn the_operator_stops_on_sigterm_also_while_the_api_server_is_unreachable() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (cp, client) = cluster().await;
    let ns = unique_name("crash-term");
    create_namespace(&client, &ns).await.unwrap();
    topology(&client, &ns).await;
    create_sessions(&client, &ns, &session_names(3)).await;
    // A kubeconfig like the cluster's, for a port on which nothing listens.
    let dir = tiepdan_harness::process::make_temp_dir("tiepdan-crash-term").unwrap();
    let unreachable = dir.join("kubeconfig");
    let port = tiepdan_harness::process::free_ports(1).unwrap()[0];
    let text =
        std::fs::read_to_string(cp.kubeconfig()).unwrap().replace(cp.server(), &format!("https://127.0.0.1:{port}"));
    std::fs::write(&unreachable, text).unwrap();

    let mut outcomes = Vec::new();
    for (case, kubeconfig, ready) in
        [("API server reachable", cp.kubeconfig(), 200), ("API server unreachable", unreachable.as_path(), 503)]
    {
        let mut op = OperatorProcess::start_with(kubeconfig, &ns);
        // Up: /readyz answers (200 once it has listed every kind, 503 while it cannot).
        tiepdan_harness::wait_for(
            Duration::from_secs(30),
            format!("{case}: the operator's /readyz answers {ready}"),
            || {
                let op = &op;
                async move {
                    match op.http_status("/readyz").await {
                        Some(s) if s == ready => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await
        .unwrap();
        let outcome = op.terminate(Duration::from_secs(10)).await;
        eprintln!("{case}: SIGTERM → {outcome:?}");
        outcomes.push((case, outcome));
    }
    let _ = std::fs::remove_dir_all(&dir);
    for (case, outcome) in outcomes {
        let (status, took) = outcome.unwrap_or_else(|| panic!("{case}: the operator still ran 10 s after SIGTERM"));
        assert!(status.success(), "{case}: the operator ended with {status} after SIGTERM");
        eprintln!("{case}: the operator stopped {took:.1?} after SIGTERM");
    }
}

/// `total` split into `parts` batches as even as can be.
fn split(total: usize, parts: usize) -> Vec<usize> {
    (0..parts).map(|i| total / parts + usize::from(i < total % parts)).collect()
}
