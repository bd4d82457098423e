//! Pure status computations for sessions: merging a worker's report into per-point status,
//! the "3/15" summary, readiness by the deadline and the after-session summary.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    CheckItem, CheckState, IcePath, PointCheck, PointStatus, ReceptionSessionStatus, SessionPhase, SessionSummary,
};
use crate::timeline::Timeline;
use crate::validate::{Participant, ValidSession};
use crate::worker_client::WorkerReport;
use tiepdan_contract::checks as wire;

/// How often per-point quality figures (RTT, loss, jitter) may be copied into status. They change
/// with every poll; the live figures are in the metrics, and a status write per poll per session
/// is what made idle sessions cost API writes.
pub const QUALITY_SAMPLE_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// What the per-point merge sees.
pub struct PointInputs<'a> {
    /// The points taking part, host first.
    pub participants: &'a [Participant],
    /// Points the spec names that no longer exist.
    pub missing: &'a [String],
    /// The worker's report, if it answered.
    pub report: Option<&'a WorkerReport>,
    /// The readiness deadline: verification after it is late.
    pub deadline: Timestamp,
    pub now: Timestamp,
    /// Whether quality figures may be copied from the report this time.
    pub copy_quality: bool,
    /// Each participant's link generation, as planned.
    pub link_generations: &'a BTreeMap<String, u32>,
}

/// Whether quality figures may be copied into status at `now`, given when they last were.
pub fn quality_due(last: Option<&Time>, now: Timestamp) -> bool {
    last.is_none_or(|t| now.duration_since(t.0) >= QUALITY_SAMPLE_EVERY)
}

/// Per-point status from the worker's report on top of the previous status. Verification and
/// having joined are sticky for the session; a point that is gone (its ReceptionPoint deleted, or
/// edited out of the spec) stays listed as removed, with its link generation, so a link it had
/// never works again if it comes back.
pub fn merge_points(input: &PointInputs<'_>, previous: &[PointStatus]) -> Vec<PointStatus> {
    let prev_of = |name: &str| {
        previous
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| PointStatus { name: name.to_owned(), ..Default::default() })
    };
    let mut out: Vec<PointStatus> = input
        .participants
        .iter()
        .map(|p| {
            let link_generation = input.link_generations.get(&p.name).copied().unwrap_or(0);
            let prev = PointStatus { removed: false, link_generation, ..prev_of(&p.name) };
            let Some(r) = input.report.and_then(|r| r.points.iter().find(|x| x.name.as_str() == p.name)) else {
                // The worker did not answer or does not know the point: it is not connected.
                return PointStatus { connected: false, ..prev };
            };
            let verified = prev.verified || r.verified;
            let verified_at = prev.verified_at.or_else(|| verified.then(|| Time(r.verified_at.unwrap_or(input.now))));
            let copy = input.copy_quality;
            // The newest reuse either worker saw: a replacement worker starts with none.
            let link_reused_at = match (prev.link_reused_at.clone(), r.link_reused_at) {
                (Some(old), Some(new)) if new <= old.0 => Some(old),
                (old, new) => new.map(Time).or(old),
            };
            PointStatus {
                name: p.name.clone(),
                link_reused_at,
                link_generation,
                verified,
                verified_late: verified_at.as_ref().is_some_and(|t| t.0 > input.deadline),
                verified_at,
                removed: false,
                connected: r.connected,
                joined: prev.joined || r.joined || r.connected,
                rtt_ms: sampled(copy, r.rtt_ms, prev.rtt_ms),
                loss_percent: sampled(copy, r.loss_percent, prev.loss_percent),
                jitter_ms: sampled(copy, r.jitter_ms, prev.jitter_ms),
                received_layer: sampled(copy, r.received_layer, prev.received_layer),
                send_kbps: sampled(copy, r.send_kbps, prev.send_kbps),
                receive_kbps: sampled(copy, r.receive_kbps, prev.receive_kbps),
                estimate_kbps: sampled(copy, r.estimate_kbps, prev.estimate_kbps),
                freezes: sampled(copy, r.joined.then_some(r.freezes), prev.freezes),
                // Each item carries the time it last changed on the worker, so copying an
                // unchanged checklist changes nothing and costs no write.
                checks: if r.checks.is_empty() { prev.checks } else { r.checks.iter().map(check_status).collect() },
            }
        })
        .collect();
    out.extend(input.missing.iter().map(|n| PointStatus { removed: true, connected: false, ..prev_of(n) }));
    let listed: BTreeSet<String> = out.iter().map(|p| p.name.clone()).collect();
    let edited_out = previous.iter().filter(|p| !listed.contains(&p.name));
    out.extend(edited_out.map(|p| PointStatus { removed: true, connected: false, ..p.clone() }));
    out
}

/// A quality figure: the worker's when due (`copy`) and measured, else the last one copied.
fn sampled<T>(copy: bool, new: Option<T>, old: Option<T>) -> Option<T> {
    if copy {
        new.or(old)
    } else {
        old
    }
}

/// The figures copied at most once a minute: live numbers belong in metrics, and copying them
/// each poll would write the session every few seconds.
type Quality = (Option<f64>, Option<f64>, Option<f64>, Option<u8>, Option<u32>, Option<u32>, Option<u32>, Option<u64>);

fn quality_of(p: &PointStatus) -> Quality {
    (p.rtt_ms, p.loss_percent, p.jitter_ms, p.received_layer, p.send_kbps, p.receive_kbps, p.estimate_kbps, p.freezes)
}

/// A worker's check item as the session's status shows it. The two enums are kept apart (the
/// API's carry the CRD schema, the contract has no schema crate); these matches break the build
/// when one gains a variant the other lacks.
fn check_status(r: &wire::CheckStatus) -> PointCheck {
    let item = match r.item {
        wire::CheckItem::Signaling => CheckItem::Signaling,
        wire::CheckItem::IcePath => CheckItem::IcePath,
        wire::CheckItem::Microphone => CheckItem::Microphone,
        wire::CheckItem::Camera => CheckItem::Camera,
        wire::CheckItem::HostVideo => CheckItem::HostVideo,
        wire::CheckItem::HostAudio => CheckItem::HostAudio,
        wire::CheckItem::SfuAudio => CheckItem::SfuAudio,
        wire::CheckItem::SfuVideo => CheckItem::SfuVideo,
        wire::CheckItem::MediaFlow => CheckItem::MediaFlow,
        wire::CheckItem::Reconnect => CheckItem::Reconnect,
    };
    let state = match r.state {
        wire::CheckState::Pending => CheckState::Pending,
        wire::CheckState::Passed => CheckState::Passed,
        wire::CheckState::Failed => CheckState::Failed,
    };
    let path = r.path.map(|p| match p {
        wire::IcePath::Udp => IcePath::Udp,
        wire::IcePath::Tcp => IcePath::Tcp,
        wire::IcePath::TurnUdp => IcePath::TurnUdp,
        wire::IcePath::TurnTcp => IcePath::TurnTcp,
        wire::IcePath::TurnTls => IcePath::TurnTls,
    });
    PointCheck { item, state, path, since: r.since.map(Time) }
}

/// Check items failed in `now` that were not failed in `before`, per point still in the session.
pub fn newly_failed_checks<'a>(before: &[PointStatus], now: &'a [PointStatus]) -> Vec<(&'a PointStatus, CheckItem)> {
    let failed =
        |p: &PointStatus, item: CheckItem| p.checks.iter().any(|c| c.item == item && c.state == CheckState::Failed);
    present(now)
        .flat_map(|p| {
            let was = before.iter().find(|b| b.name == p.name);
            p.checks
                .iter()
                .filter(move |c| c.state == CheckState::Failed && !was.is_some_and(|b| failed(b, c.item)))
                .map(move |c| (p, c.item))
        })
        .collect()
}

/// The points that count: those still in the session.
pub fn present(points: &[PointStatus]) -> impl Iterator<Item = &PointStatus> {
    points.iter().filter(|p| !p.removed)
}

/// Points verified in `now` but not in `before`.
pub fn newly_verified<'a>(before: &[PointStatus], now: &'a [PointStatus]) -> Vec<&'a PointStatus> {
    present(now).filter(|p| p.verified && !before.iter().any(|b| b.name == p.name && b.verified)).collect()
}

/// Points removed in `now` but present (or unknown) in `before`.
pub fn newly_removed<'a>(before: &[PointStatus], now: &'a [PointStatus]) -> Vec<&'a PointStatus> {
    now.iter().filter(|p| p.removed && !before.iter().any(|b| b.name == p.name && b.removed)).collect()
}

/// Every point's verification undone, for a session whose schedule moved: a rehearsal proves a
/// connection for one day, not for any day.
pub fn reset_verification(points: &[PointStatus]) -> Vec<PointStatus> {
    points
        .iter()
        .map(|p| PointStatus { verified: false, verified_at: None, verified_late: false, ..p.clone() })
        .collect()
}

/// "verified/total", e.g. "3/15", over the points still in the session.
pub fn verified_summary(points: &[PointStatus]) -> String {
    format!("{}/{}", present(points).filter(|p| p.verified).count(), present(points).count())
}

/// Whether every point still in the session is verified.
pub fn all_verified(points: &[PointStatus]) -> bool {
    present(points).next().is_some() && present(points).all(|p| p.verified)
}

/// Whether every point still in the session was verified no later than `deadline`.
pub fn all_verified_by(points: &[PointStatus], deadline: Timestamp) -> bool {
    present(points).next().is_some() && present(points).all(|p| p.verified_at.as_ref().is_some_and(|t| t.0 <= deadline))
}

/// The points and phase derived from one observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Derived {
    pub points: Vec<PointStatus>,
    pub phase: SessionPhase,
    pub quality_sampled_at: Option<Time>,
}

/// Derives the points and the phase: pure, from the previous status, the validated session, the
/// worker's report, the plan's (rescheduled, link generations) and the clock. Rescheduled undoes
/// every verification first.
pub fn derive(
    prev: &ReceptionSessionStatus,
    valid: &ValidSession,
    report: Option<&WorkerReport>,
    (rescheduled, link_generations): (bool, &BTreeMap<String, u32>),
    now: Timestamp,
) -> Derived {
    let t = &valid.timeline;
    let base = if rescheduled { reset_verification(&prev.points) } else { prev.points.clone() };
    let copy_quality = quality_due(prev.quality_sampled_at.as_ref(), now);
    let input = PointInputs {
        participants: &valid.participants,
        missing: &valid.missing,
        report,
        deadline: t.deadline,
        now,
        copy_quality,
        link_generations,
    };
    let points = merge_points(&input, &base);
    let quality_changed = points
        .iter()
        .any(|p| base.iter().find(|b| b.name == p.name).map_or_else(Quality::default, quality_of) != quality_of(p));
    let quality_sampled_at =
        if copy_quality && quality_changed { Some(Time(now)) } else { prev.quality_sampled_at.clone() };
    // Completed is final; otherwise the clock and verification *by the deadline* decide, so a
    // point verified late is recorded but never turns NotReady into Ready.
    let phase = if prev.phase == Some(SessionPhase::Completed) {
        SessionPhase::Completed
    } else {
        t.phase_at(now, all_verified_by(&points, t.deadline))
    };
    Derived { points, phase, quality_sampled_at }
}

/// Whether the timeline the session was provisioned for differs from `t`: the schedule or the
/// deadline was edited after the operator had acted on it.
pub fn rescheduled(prev: &ReceptionSessionStatus, t: &Timeline) -> bool {
    let was = (&prev.rehearsal_start, &prev.readiness_deadline, &prev.end);
    // Status times are written with whole seconds, while a spec may carry fractions: compare
    // seconds, or every reconcile would look like a reschedule.
    let s = |t: Timestamp| t.as_second();
    match was {
        (Some(r), Some(d), Some(e)) => (s(r.0), s(d.0), s(e.0)) != (s(t.rehearsal_start), s(t.deadline), s(t.end)),
        // Never provisioned against a timeline: nothing to redo.
        _ => false,
    }
}

/// The summary kept after the session: averages over points that reported quality.
pub fn summarize(points: &[PointStatus], mut summary: SessionSummary) -> SessionSummary {
    let avg = |f: fn(&PointStatus) -> Option<f64>| {
        let v: Vec<f64> = points.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    summary.points_joined = i32::try_from(points.iter().filter(|p| p.joined).count()).unwrap_or(i32::MAX);
    summary.average_loss_percent = avg(|p| p.loss_percent).or(summary.average_loss_percent);
    summary.average_rtt_ms = avg(|p| p.rtt_ms).or(summary.average_rtt_ms);
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Role;
    use crate::worker_client::PointReport;

    fn parts() -> Vec<Participant> {
        ["a", "b"]
            .iter()
            .map(|n| Participant {
                name: (*n).into(),
                display_name: (*n).into(),
                role: Role::Participant,
                media: Default::default(),
            })
            .collect()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const DEADLINE: &str = "2025-06-11T08:00:00Z";

    fn merge(report: Option<&WorkerReport>, prev: &[PointStatus], now: Timestamp) -> Vec<PointStatus> {
        let parts = parts();
        let input = PointInputs {
            participants: &parts,
            missing: &[],
            report,
            deadline: ts(DEADLINE),
            now,
            copy_quality: true,
            link_generations: &BTreeMap::new(),
        };
        merge_points(&input, prev)
    }

    fn check(item: wire::CheckItem, state: wire::CheckState, since: &str) -> wire::CheckStatus {
        wire::CheckStatus { item, state, path: None, since: Some(ts(since)) }
    }

    fn reporting(checks: Vec<wire::CheckStatus>) -> WorkerReport {
        WorkerReport {
            points: vec![PointReport {
                joined: true,
                connected: true,
                checks,
                ..PointReport::new("a".parse().unwrap())
            }],
            ..Default::default()
        }
    }

    #[test]
    fn checks_are_copied_without_churn_and_failures_are_found_once() {
        let t0 = ts("2025-06-11T07:10:00Z");
        let pending =
            reporting(vec![check(wire::CheckItem::Camera, wire::CheckState::Pending, "2025-06-11T07:09:00Z")]);
        let s1 = merge(Some(&pending), &[], t0);
        assert_eq!(s1[0].checks[0].since, Some(Time(ts("2025-06-11T07:09:00Z"))));
        // The same report again, later: nothing changes, so nothing is written.
        let s2 = merge(Some(&pending), &s1, ts("2025-06-11T07:10:30Z"));
        assert_eq!(s1, s2);
        assert!(newly_failed_checks(&s1, &s2).is_empty());

        let black = reporting(vec![check(wire::CheckItem::Camera, wire::CheckState::Failed, "2025-06-11T07:10:40Z")]);
        let s3 = merge(Some(&black), &s2, ts("2025-06-11T07:11:00Z"));
        let failed: Vec<_> = newly_failed_checks(&s2, &s3).into_iter().map(|(p, i)| (p.name.clone(), i)).collect();
        assert_eq!(failed, [("a".to_owned(), CheckItem::Camera)]);
        let s4 = merge(Some(&black), &s3, ts("2025-06-11T07:12:00Z"));
        assert!(newly_failed_checks(&s3, &s4).is_empty(), "one event per failure, not per poll");
        // The worker did not answer: the last known checklist stays.
        let s5 = merge(None, &s4, ts("2025-06-11T07:13:00Z"));
        assert_eq!(s5[0].checks, s4[0].checks);
    }

    #[test]
    fn verification_is_sticky_and_time_stamped_once() {
        let t0 = ts("2025-06-11T07:10:00Z");
        let report = WorkerReport {
            points: vec![PointReport {
                joined: true,
                connected: true,
                verified: true,
                rtt_ms: Some(20.0),
                ..PointReport::new("a".parse().unwrap())
            }],
            ..Default::default()
        };
        let s1 = merge(Some(&report), &[], t0);
        assert_eq!(verified_summary(&s1), "1/2");
        assert_eq!(newly_verified(&[], &s1).len(), 1);
        // The point leaves; the worker no longer reports it as verified-and-connected.
        let gone = WorkerReport {
            points: vec![PointReport { joined: true, ..PointReport::new("a".parse().unwrap()) }],
            ..Default::default()
        };
        let s2 = merge(Some(&gone), &s1, ts("2025-06-11T07:20:00Z"));
        assert!(s2[0].verified && !s2[0].connected);
        assert_eq!(s2[0].verified_at, Some(Time(t0)));
        assert!(newly_verified(&s1, &s2).is_empty());
    }

    #[test]
    fn readiness_by_deadline_needs_every_point_verified_in_time() {
        let deadline = ts("2025-06-11T08:00:00Z");
        let mut pts = vec![
            PointStatus {
                name: "a".parse().unwrap(),
                verified: true,
                verified_at: Some(Time(ts("2025-06-11T07:30:00Z"))),
                ..Default::default()
            },
            PointStatus {
                name: "b".into(),
                verified: true,
                verified_at: Some(Time(ts("2025-06-11T08:05:00Z"))),
                ..Default::default()
            },
        ];
        assert!(all_verified(&pts));
        assert!(!all_verified_by(&pts, deadline));
        pts[1].verified_at = Some(Time(deadline));
        assert!(all_verified_by(&pts, deadline));
        assert!(!all_verified(&[]));
    }

    #[test]
    fn an_unreachable_worker_leaves_points_disconnected_but_verified() {
        let prev = vec![PointStatus { name: "a".into(), verified: true, connected: true, ..Default::default() }];
        let s = merge(None, &prev, ts("2025-06-11T07:00:00Z"));
        assert!(s[0].verified && !s[0].connected);
        assert_eq!(s[1].name, "b");
    }

    #[test]
    fn summary_averages_reported_quality() {
        let pts = vec![
            PointStatus {
                name: "a".parse().unwrap(),
                joined: true,
                rtt_ms: Some(10.0),
                loss_percent: Some(1.0),
                ..Default::default()
            },
            PointStatus { name: "b".into(), joined: true, rtt_ms: Some(30.0), ..Default::default() },
            PointStatus { name: "c".into(), ..Default::default() },
        ];
        let s = summarize(&pts, SessionSummary::default());
        assert_eq!(s.points_joined, 2);
        assert_eq!(s.average_rtt_ms, Some(20.0));
        assert_eq!(s.average_loss_percent, Some(1.0));
    }

    fn report(name: &str, verified_at: Option<&str>, rtt: Option<f64>) -> WorkerReport {
        WorkerReport {
            points: vec![PointReport {
                joined: true,
                connected: true,
                verified: verified_at.is_some(),
                verified_at: verified_at.map(ts),
                rtt_ms: rtt,
                ..PointReport::new(name.parse().unwrap())
            }],
            ..Default::default()
        }
    }

    #[test]
    fn verification_time_is_the_workers_and_late_is_marked() {
        // (worker's verifiedAt, operator's poll time) → (recorded verifiedAt, late)
        let cases = [
            (Some("2025-06-11T07:59:00Z"), "2025-06-11T08:03:00Z", "2025-06-11T07:59:00Z", false),
            (Some("2025-06-11T08:01:00Z"), "2025-06-11T08:03:00Z", "2025-06-11T08:01:00Z", true),
            // An older worker without verifiedAt: the poll time stands in.
            (None, "2025-06-11T07:30:00Z", "2025-06-11T07:30:00Z", false),
        ];
        for (worker_at, poll, want_at, want_late) in cases {
            let mut r = report("a", worker_at, None);
            r.points[0].verified = true;
            let s = merge(Some(&r), &[], ts(poll));
            assert_eq!(s[0].verified_at, Some(Time(ts(want_at))), "{worker_at:?}");
            assert_eq!(s[0].verified_late, want_late, "{worker_at:?}");
        }
    }

    #[test]
    fn a_missing_point_is_kept_as_removed_and_no_longer_counts() {
        let parts = parts();
        let prev = vec![PointStatus { name: "c".into(), joined: true, connected: true, ..Default::default() }];
        let missing = vec!["c".to_owned()];
        let input = PointInputs {
            participants: &parts,
            missing: &missing,
            report: None,
            deadline: ts(DEADLINE),
            now: ts("2025-06-11T07:00:00Z"),
            copy_quality: false,
            link_generations: &BTreeMap::new(),
        };
        let mut s = merge_points(&input, &prev);
        let c = s.iter().find(|p| p.name == "c").unwrap();
        assert!(c.removed && !c.connected && c.joined);
        assert_eq!(newly_removed(&prev, &s).len(), 1);
        assert!(newly_removed(&s, &s).is_empty());
        assert_eq!(verified_summary(&s), "0/2");
        for p in s.iter_mut().filter(|p| !p.removed) {
            p.verified = true;
            p.verified_at = Some(Time(ts("2025-06-11T07:30:00Z")));
        }
        assert!(all_verified(&s) && all_verified_by(&s, ts(DEADLINE)), "a removed point blocks nothing");
    }

    #[test]
    fn a_point_edited_out_is_kept_as_removed_with_its_link_generation() {
        let parts = parts();
        let prev = vec![PointStatus { name: "c".into(), joined: true, link_generation: 2, ..Default::default() }];
        let generations = BTreeMap::from([("a".to_owned(), 1)]);
        let input = PointInputs {
            participants: &parts,
            missing: &[],
            report: None,
            deadline: ts(DEADLINE),
            now: ts("2025-06-11T07:00:00Z"),
            copy_quality: false,
            link_generations: &generations,
        };
        let s = merge_points(&input, &prev);
        let c = s.iter().find(|p| p.name == "c").expect("c is still listed");
        assert!(c.removed && c.joined && c.link_generation == 2, "{c:?}");
        assert_eq!(s.iter().find(|p| p.name == "a").map(|p| p.link_generation), Some(1));
    }

    #[test]
    fn quality_is_copied_at_most_once_a_minute() {
        let t = ts("2025-06-11T07:00:00Z");
        let cases = [(None, true), (Some("2025-06-11T06:59:30Z"), false), (Some("2025-06-11T06:59:00Z"), true)];
        for (last, want) in cases {
            let last = last.map(|l| Time(ts(l)));
            assert_eq!(quality_due(last.as_ref(), t), want, "{last:?}");
        }
        let parts = parts();
        let r = report("a", None, Some(42.0));
        let prev = vec![PointStatus { name: "a".into(), rtt_ms: Some(10.0), ..Default::default() }];
        let none = BTreeMap::new();
        let input = |copy_quality| PointInputs {
            participants: &parts,
            missing: &[],
            report: Some(&r),
            deadline: ts(DEADLINE),
            now: t,
            copy_quality,
            link_generations: &none,
        };
        assert_eq!(merge_points(&input(false), &prev)[0].rtt_ms, Some(10.0));
        assert_eq!(merge_points(&input(true), &prev)[0].rtt_ms, Some(42.0));

        // The layer, bitrates, estimate and freezes go the same way; an unmeasured figure keeps
        // the last one copied.
        let mut r = report("a", None, None);
        let p = &mut r.points[0];
        (p.received_layer, p.send_kbps, p.receive_kbps, p.estimate_kbps, p.freezes) =
            (Some(1), Some(900), Some(1800), None, 3);
        let prev = vec![PointStatus {
            name: "a".into(),
            received_layer: Some(2),
            estimate_kbps: Some(2500),
            ..Default::default()
        }];
        let input = |copy_quality| PointInputs { report: Some(&r), ..input(copy_quality) };
        let figures = |p: &PointStatus| (p.received_layer, p.send_kbps, p.receive_kbps, p.estimate_kbps, p.freezes);
        assert_eq!(figures(&merge_points(&input(false), &prev)[0]), (Some(2), None, None, Some(2500), None));
        assert_eq!(
            figures(&merge_points(&input(true), &prev)[0]),
            (Some(1), Some(900), Some(1800), Some(2500), Some(3))
        );
    }

    #[test]
    fn a_reset_undoes_verification_but_keeps_the_rest() {
        let p = vec![PointStatus {
            name: "a".into(),
            verified: true,
            verified_at: Some(Time(ts("2025-06-11T07:30:00Z"))),
            verified_late: true,
            joined: true,
            ..Default::default()
        }];
        let r = reset_verification(&p);
        assert!(!r[0].verified && r[0].verified_at.is_none() && !r[0].verified_late && r[0].joined);
        assert!(!all_verified(&r));
    }

    fn timeline() -> Timeline {
        Timeline {
            provisioning_start: ts("2025-06-11T06:30:00Z"),
            rehearsal_start: ts("2025-06-11T07:00:00Z"),
            deadline: ts(DEADLINE),
            start: ts("2025-06-12T01:00:00Z"),
            end: ts("2025-06-12T03:00:00Z"),
            complete_at: ts("2025-06-12T03:15:00Z"),
        }
    }

    fn verified(name: &str, at: &str) -> PointStatus {
        PointStatus { name: name.into(), verified: true, verified_at: Some(Time(ts(at))), ..Default::default() }
    }

    #[test]
    fn phase_transitions() {
        let valid = ValidSession { timeline: timeline(), participants: parts(), missing: vec![] };
        let with_c_missing = ValidSession { missing: vec!["c".into()], ..valid.clone() };
        let on_time = "2025-06-11T07:30:00Z";
        let late = "2025-06-11T08:10:00Z";
        let both = vec![verified("a", on_time), verified("b", on_time)];
        let b_late = vec![verified("a", on_time), verified("b", late)];
        let only_a = vec![verified("a", on_time), PointStatus { name: "b".into(), ..Default::default() }];
        let with_c = vec![
            verified("a", on_time),
            verified("b", on_time),
            PointStatus { name: "c".into(), ..Default::default() },
        ];
        use SessionPhase::*;
        /// (from phase, points before, session, the worker verifies b at, rescheduled, clock) → phase
        struct Case<'a> {
            what: &'a str,
            from: SessionPhase,
            points: &'a [PointStatus],
            valid: &'a ValidSession,
            b_verified_at: Option<&'a str>,
            rescheduled: bool,
            now: &'a str,
            want: SessionPhase,
        }
        let case = |what, from, points, valid, b_verified_at, rescheduled, now, want| Case {
            what,
            from,
            points,
            valid,
            b_verified_at,
            rescheduled,
            now,
            want,
        };
        let (v, vc) = (&valid, &with_c_missing);
        let cases = [
            case(
                "before the deadline all verified is still Rehearsal",
                Rehearsal,
                &both,
                v,
                None,
                false,
                "2025-06-11T07:45:00Z",
                Rehearsal,
            ),
            case(
                "the deadline passes, all verified in time",
                Rehearsal,
                &both,
                v,
                None,
                false,
                "2025-06-11T08:00:01Z",
                Ready,
            ),
            case(
                "the deadline passes with one point unverified",
                Rehearsal,
                &only_a,
                v,
                None,
                false,
                "2025-06-11T08:00:01Z",
                NotReady,
            ),
            case(
                "a late verification stays NotReady",
                NotReady,
                &only_a,
                v,
                Some(late),
                false,
                "2025-06-11T08:11:00Z",
                NotReady,
            ),
            case(
                "a late verification already recorded stays NotReady",
                NotReady,
                &b_late,
                v,
                None,
                false,
                "2025-06-11T09:00:00Z",
                NotReady,
            ),
            case(
                "verified on the worker before the deadline, polled after",
                Rehearsal,
                &only_a,
                v,
                Some("2025-06-11T07:59:59Z"),
                false,
                "2025-06-11T08:00:05Z",
                Ready,
            ),
            case(
                "a removed unverified point does not block Ready",
                Rehearsal,
                &with_c,
                vc,
                None,
                false,
                "2025-06-11T08:00:01Z",
                Ready,
            ),
            case("rescheduled: verification is undone", Ready, &both, v, None, true, "2025-06-11T08:00:01Z", NotReady),
            case(
                "Live at the start whatever was verified",
                NotReady,
                &only_a,
                v,
                None,
                false,
                "2025-06-12T01:00:00Z",
                Live,
            ),
            case("Completed after the grace", Live, &both, v, None, false, "2025-06-12T03:15:00Z", Completed),
            case("Completed is final", Completed, &both, v, None, false, "2025-06-11T07:00:00Z", Completed),
        ];
        for c in cases {
            let prev = ReceptionSessionStatus { phase: Some(c.from), points: c.points.to_vec(), ..Default::default() };
            let r = c.b_verified_at.map(|at| report("b", Some(at), None));
            let d = derive(&prev, c.valid, r.as_ref(), (c.rescheduled, &BTreeMap::new()), ts(c.now));
            assert_eq!(d.phase, c.want, "{}", c.what);
        }
    }

    #[test]
    fn a_session_is_rescheduled_only_when_its_provisioned_timeline_moved() {
        let t = timeline();
        let mut prev = ReceptionSessionStatus::default();
        assert!(!rescheduled(&prev, &t), "never provisioned");
        prev.rehearsal_start = Some(Time(t.rehearsal_start));
        prev.readiness_deadline = Some(Time(t.deadline));
        prev.end = Some(Time(t.end));
        assert!(!rescheduled(&prev, &t));
        let moved = Timeline { deadline: ts("2025-06-18T08:00:00Z"), ..t.clone() };
        assert!(rescheduled(&prev, &moved));
        let longer = Timeline { end: ts("2025-06-12T04:00:00Z"), ..t.clone() };
        assert!(rescheduled(&prev, &longer));
        // A spec with fractions of a second, read back from a status written in whole seconds.
        let fractional = Timeline { deadline: ts("2025-06-11T08:00:00.123456789Z"), ..t };
        assert!(!rescheduled(&prev, &fractional), "sub-second precision is not a reschedule");
    }

    #[test]
    fn idle_quality_does_not_move_the_sample_time() {
        let valid = ValidSession { timeline: timeline(), participants: parts(), missing: vec![] };
        let prev = ReceptionSessionStatus {
            // As the last copy left it: a joined point's freezes are counted, 0 included.
            points: vec![PointStatus { name: "a".into(), rtt_ms: Some(10.0), freezes: Some(0), ..Default::default() }],
            quality_sampled_at: Some(Time(ts("2025-06-11T07:00:00Z"))),
            ..Default::default()
        };
        let same = report("a", None, Some(10.0));
        let d = derive(&prev, &valid, Some(&same), (false, &BTreeMap::new()), ts("2025-06-11T07:05:00Z"));
        assert_eq!(d.quality_sampled_at, prev.quality_sampled_at, "nothing changed: no new sample time");
        let moved = report("a", None, Some(30.0));
        let d = derive(&prev, &valid, Some(&moved), (false, &BTreeMap::new()), ts("2025-06-11T07:05:00Z"));
        assert_eq!(d.quality_sampled_at, Some(Time(ts("2025-06-11T07:05:00Z"))));
        assert_eq!(d.points[0].rtt_ms, Some(30.0));
    }
}
