//! Table tests of the session reconcile's pure steps together: (from phase, event, clock) →
//! (to phase, action, events). Each row runs plan → a simulated apply → derive status → events,
//! and feeds its status to the next row, as the controller does, with no cluster.

use jiff::Timestamp;

use super::session_events::{from_diff, Note};
use super::session_plan::{plan, Release, Resources};
use super::session_status::{next, Allocated, Outcome, Provisioned, Replaced};
use super::worker_health::WorkerHealth;
use crate::api::{ConditionStatus as CS, ReceptionSessionStatus, SessionPhase};
use crate::validate::{self, Participant, Role, ValidSession};
use crate::worker_client::{PointReport, WorkerReport};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn session(day: u8, missing: &[&str]) -> ValidSession {
    let p = |n: &str, role| Participant { name: n.into(), display_name: n.into(), role, media: Default::default() };
    ValidSession {
        timeline: crate::timeline::example(day),
        participants: vec![p("tinh", Role::Host), p("a", Role::Participant), p("b", Role::Participant)]
            .into_iter()
            .filter(|p| !missing.contains(&p.name.as_str()))
            .collect(),
        missing: missing.iter().map(|m| (*m).to_owned()).collect(),
    }
}

/// What the cluster does when the plan says Provision.
#[derive(Clone)]
struct World {
    pod: &'static str,
    health: WorkerHealth,
    /// Points the worker reports verified, with the worker's time.
    verified: Vec<(&'static str, &'static str)>,
    /// Points whose link the worker saw taken over by a second connection, with the time.
    reused: Vec<(&'static str, &'static str)>,
    allocated: Option<Allocated>,
    replaced: Option<Replaced>,
    pool_missing: bool,
    certificate_serving: bool,
    /// Link generations ops asked for (the session's rotation annotations).
    rotated: Vec<(&'static str, u32)>,
    /// Points that must relay while the pool offers no TURN.
    relay_without_turn: Vec<&'static str>,
}

impl World {
    fn new() -> Self {
        World {
            pod: "w1",
            health: WorkerHealth::Ready,
            verified: vec![],
            reused: vec![],
            allocated: None,
            replaced: None,
            pool_missing: false,
            certificate_serving: true,
            rotated: vec![],
            relay_without_turn: vec![],
        }
    }

    fn apply(&self, resources: Resources) -> Outcome {
        if resources != Resources::Provision {
            return Outcome::Released;
        }
        if self.pool_missing {
            return Outcome::PoolMissing("pool".into());
        }
        let ready = self.health == WorkerHealth::Ready;
        let report = ready.then(|| WorkerReport {
            points: ["tinh", "a", "b"]
                .iter()
                .map(|n| {
                    let at = self.verified.iter().find(|(p, _)| p == n).map(|(_, at)| ts(at));
                    PointReport {
                        joined: true,
                        connected: true,
                        verified: at.is_some(),
                        verified_at: at,
                        link_reused_at: self.reused.iter().find(|(p, _)| p == n).map(|(_, at)| ts(at)),
                        ..PointReport::new(n.parse().unwrap())
                    }
                })
                .collect(),
            ..Default::default()
        });
        let certificate = if self.certificate_serving {
            (CS::True, "Serving", "Serving the session's certificate.".to_owned())
        } else {
            (CS::False, "Issuing", "Issuing.".to_owned())
        };
        Outcome::Provisioned(Box::new(Provisioned {
            pod: self.pod.into(),
            signaling_url: "https://s".into(),
            health: self.health.clone(),
            worker_message: "ok".into(),
            report,
            address: None,
            monitoring: (CS::True, "MonitoringApplied", "ok".into()),
            certificate,
            allocated: self.allocated.clone(),
            replaced: self.replaced.clone(),
            recheck: None,
            relay_without_turn: self.relay_without_turn.iter().map(|p| (*p).to_owned()).collect(),
        }))
    }
}

/// One row: what happens, then the clock; what must follow.
struct Row {
    what: &'static str,
    now: &'static str,
    valid: Result<ValidSession, validate::Error>,
    world: World,
    phase: SessionPhase,
    resources: Resources,
    events: &'static [&'static str],
}

/// Runs `rows` in order from `start`; returns the last status.
fn run(start: ReceptionSessionStatus, rows: Vec<Row>) -> ReceptionSessionStatus {
    let mut prev = start;
    for r in rows {
        let now = ts(r.now);
        let requested = r.world.rotated.iter().map(|(p, g)| ((*p).to_owned(), *g)).collect();
        let p = plan(&prev, r.valid.as_ref(), &requested, now);
        let outcome = r.world.apply(p.resources);
        let status = next(&prev, Some(1), r.valid.as_ref(), &p, &outcome, now);
        let events: Vec<&str> =
            from_diff(&prev, &status, r.valid.as_ref(), &p, &outcome).iter().map(|n: &Note| n.reason).collect();
        assert_eq!(
            (status.phase, p.resources, events.as_slice()),
            (Some(r.phase), r.resources, r.events),
            "{}",
            r.what
        );
        if r.events.is_empty() {
            assert_eq!(status, prev, "{}: nothing happened, so nothing may be written", r.what);
        }
        prev = status;
    }
    prev
}

fn row(
    what: &'static str,
    now: &'static str,
    world: &World,
    phase: SessionPhase,
    resources: Resources,
    events: &'static [&'static str],
) -> Row {
    Row { what, now, valid: Ok(session(11, &[])), world: world.clone(), phase, resources, events }
}

/// A session provisioned and in rehearsal, point `a` verified at 07:09.
fn rehearsing() -> (ReceptionSessionStatus, World) {
    use SessionPhase::*;
    let mut w = World::new();
    w.allocated = Some(Allocated::Created { pool: "pool".into() });
    let first = row(
        "provisioned",
        "2025-06-11T06:30:00Z",
        &w,
        Provisioning,
        Resources::Provision,
        &["WorkerCreated", "CertificateServing", "Provisioning"],
    );
    w.allocated = None;
    w.verified = vec![("a", "2025-06-11T07:09:00Z")];
    let second =
        row("a verified", "2025-06-11T07:10:00Z", &w, Rehearsal, Resources::Provision, &["Rehearsal", "PointVerified"]);
    (run(ReceptionSessionStatus::default(), vec![first, second]), w)
}

#[test]
fn a_session_lives_through_failover_a_missed_deadline_and_completion() {
    use Resources::Provision;
    use SessionPhase::*;
    let mut w = World::new();
    let early = row("not yet time", "2025-06-10T00:00:00Z", &w, Scheduled, Resources::Nothing, &["Scheduled"]);
    let start = run(ReceptionSessionStatus::default(), vec![early]);

    w.allocated = Some(Allocated::Created { pool: "pool".into() });
    w.health = WorkerHealth::Starting;
    w.certificate_serving = false;
    let mut rows = vec![row(
        "the window opens",
        "2025-06-11T06:30:00Z",
        &w,
        Provisioning,
        Provision,
        &["WorkerCreated", "Provisioning"],
    )];
    w.allocated = None;
    rows.push(row("the worker is starting, nothing new", "2025-06-11T06:30:10Z", &w, Provisioning, Provision, &[]));
    w.health = WorkerHealth::Ready;
    w.certificate_serving = true;
    rows.push(row("the worker serves", "2025-06-11T06:31:00Z", &w, Provisioning, Provision, &["CertificateServing"]));
    rows.push(row("the rehearsal opens", "2025-06-11T07:00:00Z", &w, Rehearsal, Provision, &["Rehearsal"]));
    w.verified = vec![("tinh", "2025-06-11T07:08:00Z"), ("a", "2025-06-11T07:09:00Z")];
    rows.push(row(
        "two points verify",
        "2025-06-11T07:10:00Z",
        &w,
        Rehearsal,
        Provision,
        &["PointVerified", "PointVerified"],
    ));
    rows.push(row("an idle poll writes nothing", "2025-06-11T07:10:10Z", &w, Rehearsal, Provision, &[]));

    // The worker stalls and heals in place within the grace: WorkerReady says since when.
    w.health = WorkerHealth::Unready { since: "2025-06-11T07:15:00Z".parse().unwrap() };
    rows.push(row("the worker stalls", "2025-06-11T07:15:02Z", &w, Rehearsal, Provision, &["WorkerUnready"]));
    w.health = WorkerHealth::Ready;
    rows.push(row("it answers again", "2025-06-11T07:15:04Z", &w, Rehearsal, Provision, &["WorkerRecovered"]));

    // The worker pod is deleted: a warm one replaces it, and the verification stays.
    w = World {
        pod: "w2",
        health: WorkerHealth::Starting,
        verified: vec![],
        allocated: Some(Allocated::TookIdle { pool: "pool".into() }),
        replaced: Some(Replaced { old: "w1".into(), why: "Terminating" }),
        ..World::new()
    };
    rows.push(row(
        "the worker dies",
        "2025-06-11T07:20:00Z",
        &w,
        Rehearsal,
        Provision,
        &["WorkerAllocated", "WorkerReplaced"],
    ));
    w.allocated = None;
    w.replaced = None;
    w.health = WorkerHealth::Ready;
    rows.push(row("the new worker serves", "2025-06-11T07:20:01Z", &w, Rehearsal, Provision, &["WorkerRestored"]));
    rows.push(row(
        "the deadline passes, b unverified",
        "2025-06-11T08:00:01Z",
        &w,
        NotReady,
        Provision,
        &["DeadlineMissed"],
    ));
    w.verified = vec![("b", "2025-06-11T08:09:00Z")];
    rows.push(row("b verifies late", "2025-06-11T08:10:00Z", &w, NotReady, Provision, &["PointVerifiedLate"]));
    rows.push(row("the session starts", "2025-06-12T01:00:00Z", &w, Live, Provision, &["Live"]));
    rows.push(row(
        "the session ends",
        "2025-06-12T03:15:00Z",
        &w,
        Completed,
        Resources::Release(Release::Ended),
        &["Completed"],
    ));
    rows.push(row("a day later", "2025-06-13T00:00:00Z", &w, Completed, Resources::Release(Release::Ended), &[]));
    let end = run(start, rows);
    assert_eq!(end.verified.as_deref(), Some("3/3"));
    assert!(end.points.iter().find(|p| p.name == "b").is_some_and(|p| p.verified_late));
    assert_eq!(end.worker, None);
}

#[test]
fn edits_and_losses_during_a_rehearsal() {
    use Resources::*;
    use SessionPhase::*;
    let (prev, w) = rehearsing();

    // A point is deleted: the session goes on without it.
    let lost = Row {
        valid: Ok(session(11, &["b"])),
        ..row("point b is deleted", "2025-06-11T07:15:00Z", &w, Rehearsal, Provision, &["PointRemoved"])
    };
    let s = run(prev.clone(), vec![lost]);
    assert_eq!(s.verified.as_deref(), Some("1/2"));

    // The schedule moves a week: the worker goes back, links get a new epoch, points verify again.
    let moved = Row {
        valid: Ok(session(18, &[])),
        ..row(
            "moved a week",
            "2025-06-11T07:15:00Z",
            &w,
            Scheduled,
            Release(super::session_plan::Release::Moved),
            &["Rescheduled", "Scheduled"],
        )
    };
    let s = run(prev.clone(), vec![moved]);
    assert_eq!((s.token_epoch, s.verified.as_deref(), s.worker.as_ref()), (prev.token_epoch + 1, Some("0/3"), None));

    // The host is deleted: the session fails and gives everything back, once.
    let invalid = || Row {
        valid: Err(validate::Error::UnknownHost("tinh".into())),
        ..row(
            "the host is deleted",
            "2025-06-11T07:15:00Z",
            &w,
            Failed,
            Release(super::session_plan::Release::Invalid),
            &["UnknownHost"],
        )
    };
    let again = Row { what: "still invalid", events: &[], ..invalid() };
    let s = run(prev.clone(), vec![invalid(), again]);
    assert_eq!(s.worker, None);

    // Point a must relay, and the pool offers no TURN: ops hear it when a worker is allocated,
    // not on every poll.
    let mut no_turn = w.clone();
    no_turn.relay_without_turn = vec!["a"];
    no_turn.allocated = Some(Allocated::TookIdle { pool: "pool".into() });
    no_turn.replaced = Some(Replaced { old: "w1".into(), why: "Terminating" });
    let mut polled = no_turn.clone();
    polled.allocated = None;
    polled.replaced = None;
    run(
        prev.clone(),
        vec![
            row(
                "a worker for a relay point without TURN",
                "2025-06-11T07:15:00Z",
                &no_turn,
                Rehearsal,
                Provision,
                &["WorkerAllocated", "TurnNotOffered", "WorkerReplaced"],
            ),
            row("polled again", "2025-06-11T07:15:10Z", &polled, Rehearsal, Provision, &["WorkerRestored"]),
        ],
    );

    // The pool is deleted.
    let mut no_pool = w.clone();
    no_pool.pool_missing = true;
    run(
        prev.clone(),
        vec![row("the pool is deleted", "2025-06-11T07:15:00Z", &no_pool, Rehearsal, Provision, &["PoolNotFound"])],
    );

    // Someone opens a's link while the office is in the session: ops are warned once.
    let mut reused = w.clone();
    reused.reused = vec![("a", "2025-06-11T07:14:00Z")];
    let s = run(
        prev.clone(),
        vec![
            row(
                "a's link is opened twice",
                "2025-06-11T07:15:00Z",
                &reused,
                Rehearsal,
                Provision,
                &["LinkInUseElsewhere"],
            ),
            row("nothing new", "2025-06-11T07:15:10Z", &reused, Rehearsal, Provision, &[]),
            row("the worker forgets it (replaced)", "2025-06-11T07:15:20Z", &w, Rehearsal, Provision, &[]),
        ],
    );
    assert!(s.points.iter().any(|p| p.name == "a" && p.link_reused_at.is_some()), "kept across workers");

    // Ops rotate a's leaked link: a new link, announced once; dropping the annotation later
    // does not bring the old link back.
    let mut rotated = w.clone();
    rotated.rotated = vec![("a", 1)];
    let s = run(
        prev.clone(),
        vec![
            row("ops rotate a's link", "2025-06-11T07:16:00Z", &rotated, Rehearsal, Provision, &["LinkRotated"]),
            row("nothing new", "2025-06-11T07:16:10Z", &rotated, Rehearsal, Provision, &[]),
            row("the annotation is removed", "2025-06-11T07:16:20Z", &w, Rehearsal, Provision, &[]),
        ],
    );
    let generation =
        |s: &ReceptionSessionStatus, n: &str| s.points.iter().find(|p| p.name == n).map(|p| p.link_generation);
    assert_eq!((generation(&s, "a"), generation(&s, "b")), (Some(1), Some(0)));

    // b is edited out of the spec, then back: the link it had must not work again.
    let without_b = || {
        let mut v = session(11, &[]);
        v.participants.retain(|p| p.name != "b");
        Ok(v)
    };
    let s = run(
        prev.clone(),
        vec![
            Row {
                valid: without_b(),
                ..row("b is edited out", "2025-06-11T07:17:00Z", &w, Rehearsal, Provision, &["PointRemoved"])
            },
            Row { valid: without_b(), ..row("still out", "2025-06-11T07:17:10Z", &w, Rehearsal, Provision, &[]) },
            row("b is back", "2025-06-11T07:17:20Z", &w, Rehearsal, Provision, &["LinkRotated"]),
            row("nothing new", "2025-06-11T07:17:30Z", &w, Rehearsal, Provision, &[]),
        ],
    );
    assert_eq!(generation(&s, "b"), Some(1));

    // The worker crash-loops, then recovers.
    let mut crashing = w.clone();
    crashing.health = WorkerHealth::Crashed { restarts: 2, exit_code: 1, message: Some("port in use".into()) };
    run(
        prev,
        vec![
            row("the worker crashes", "2025-06-11T07:15:00Z", &crashing, Rehearsal, Provision, &["WorkerCrashed"]),
            row("it recovers", "2025-06-11T07:16:00Z", &w, Rehearsal, Provision, &["WorkerRecovered"]),
        ],
    );
}
