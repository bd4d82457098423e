//! Pure status computations for sessions: merging a worker's report into per-point status,
//! the "3/15" summary, readiness by the deadline and the after-session summary.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{PointStatus, SessionSummary};
use crate::validate::Participant;
use crate::worker_client::WorkerReport;

/// Per-point status for `participants`, from the worker's `report` (if it answered) on top of
/// the previous status. Verification and having joined are sticky for the session.
pub fn merge_points(
    participants: &[Participant],
    report: Option<&WorkerReport>,
    previous: &[PointStatus],
    now: Timestamp,
) -> Vec<PointStatus> {
    participants
        .iter()
        .map(|p| {
            let prev = previous
                .iter()
                .find(|s| s.name == p.name)
                .cloned()
                .unwrap_or_else(|| PointStatus { name: p.name.clone(), ..Default::default() });
            let Some(r) = report.and_then(|r| r.points.iter().find(|x| x.name == p.name)) else {
                // The worker did not answer or does not know the point: it is not connected.
                return PointStatus { connected: false, ..prev };
            };
            let verified = prev.verified || r.verified;
            PointStatus {
                name: p.name.clone(),
                verified,
                verified_at: prev.verified_at.or_else(|| verified.then_some(Time(now))),
                connected: r.connected,
                joined: prev.joined || r.joined || r.connected,
                rtt_ms: r.rtt_ms.or(prev.rtt_ms),
                loss_percent: r.loss_percent.or(prev.loss_percent),
                jitter_ms: r.jitter_ms.or(prev.jitter_ms),
            }
        })
        .collect()
}

/// Names of points verified in `now` but not in `before`.
pub fn newly_verified<'a>(before: &[PointStatus], now: &'a [PointStatus]) -> Vec<&'a PointStatus> {
    now.iter().filter(|p| p.verified && !before.iter().any(|b| b.name == p.name && b.verified)).collect()
}

/// "verified/total", e.g. "3/15".
pub fn verified_summary(points: &[PointStatus]) -> String {
    format!("{}/{}", points.iter().filter(|p| p.verified).count(), points.len())
}

/// Whether every point is verified.
pub fn all_verified(points: &[PointStatus]) -> bool {
    !points.is_empty() && points.iter().all(|p| p.verified)
}

/// Whether every point was verified no later than `deadline`.
pub fn all_verified_by(points: &[PointStatus], deadline: Timestamp) -> bool {
    !points.is_empty() && points.iter().all(|p| p.verified_at.as_ref().is_some_and(|t| t.0 <= deadline))
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
            .map(|n| Participant { name: (*n).into(), display_name: (*n).into(), role: Role::Participant })
            .collect()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn verification_is_sticky_and_time_stamped_once() {
        let t0 = ts("2025-06-11T07:10:00Z");
        let report = WorkerReport {
            points: vec![PointReport {
                name: "a".into(),
                joined: true,
                connected: true,
                verified: true,
                rtt_ms: Some(20.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let s1 = merge_points(&parts(), Some(&report), &[], t0);
        assert_eq!(verified_summary(&s1), "1/2");
        assert_eq!(newly_verified(&[], &s1).len(), 1);
        // The point leaves; the worker no longer reports it as verified-and-connected.
        let gone = WorkerReport {
            points: vec![PointReport { name: "a".into(), joined: true, ..Default::default() }],
            ..Default::default()
        };
        let s2 = merge_points(&parts(), Some(&gone), &s1, ts("2025-06-11T07:20:00Z"));
        assert!(s2[0].verified && !s2[0].connected);
        assert_eq!(s2[0].verified_at, Some(Time(t0)));
        assert!(newly_verified(&s1, &s2).is_empty());
    }

    #[test]
    fn readiness_by_deadline_needs_every_point_verified_in_time() {
        let deadline = ts("2025-06-11T08:00:00Z");
        let mut pts = vec![
            PointStatus {
                name: "a".into(),
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
        let s = merge_points(&parts(), None, &prev, ts("2025-06-11T07:00:00Z"));
        assert!(s[0].verified && !s[0].connected);
        assert_eq!(s[1].name, "b");
    }

    #[test]
    fn summary_averages_reported_quality() {
        let pts = vec![
            PointStatus {
                name: "a".into(),
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
}
