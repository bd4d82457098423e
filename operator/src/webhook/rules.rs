//! The admission rules an OpenAPI schema cannot express (kube-apiserver 1.20 has no CEL).
//! Pure: the object (and the old one on update) and the time in, violations out. Each violation
//! names the field and says what is allowed.

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{Level, MediaWorkerPool, ReceptionPoint, ReceptionSession, SessionPhase};
use crate::timeline::{self, TimelineConfig};

/// One rule broken, as `<field>: <what is allowed>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins violations into one admission message.
pub fn message(violations: &[Violation]) -> String {
    violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Whether the request creates or updates the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// Rules for a ReceptionSession.
pub fn session(
    op: Operation,
    new: &ReceptionSession,
    old: Option<&ReceptionSession>,
    now: Timestamp,
) -> Vec<Violation> {
    let mut v = vec![];
    let spec = &new.spec;
    if let Some(e) = crate::validate::name_too_long(&new.name_any()) {
        v.push(Violation { field: "metadata.name", message: e.to_string() });
    }
    let start = spec.schedule.start.0;
    if op == Operation::Create && start <= now {
        v.push(Violation {
            field: "spec.schedule.start",
            message: format!("must be in the future when the session is created (got {start}, now is {now})"),
        });
    }
    match timeline::compute(&spec.schedule, &spec.readiness, &TimelineConfig::default()) {
        Err(timeline::Error::DeadlineNotBeforeStart { deadline, start }) => v.push(Violation {
            field: "spec.readiness.deadline",
            message: format!("must be before spec.schedule.start ({start}); got {deadline}"),
        }),
        Err(timeline::Error::UnknownTimeZone(tz)) => v.push(Violation {
            field: "spec.schedule.timeZone",
            message: format!("must be an IANA time zone such as Asia/Ho_Chi_Minh; got {tz:?}"),
        }),
        Err(timeline::Error::OutOfRange) => {
            v.push(Violation { field: "spec.schedule.start", message: "is out of the supported range".to_owned() })
        }
        Ok(_) => {}
    }
    for bad in crate::link_generations::requested(new.annotations()).1 {
        v.push(Violation {
            field: "metadata.annotations",
            message: format!(
                "{}: must be a whole number from 1 to {} (the link generation wanted; `tiepdan-operator links \
                 <session> --rotate <point>` sets it); got {:?}",
                bad.key,
                crate::link_generations::MAX,
                bad.value
            ),
        });
    }
    if spec.points.as_ref().is_none_or(Vec::is_empty) && spec.point_selector.is_none() {
        v.push(Violation {
            field: "spec.points",
            message: "set spec.points (point names) or spec.pointSelector (a label selector), or both".to_owned(),
        });
    }
    if let Some(old) = old {
        let live = old.status.as_ref().and_then(|s| s.phase) == Some(SessionPhase::Live);
        if op == Operation::Update && live && old.spec.schedule != new.spec.schedule {
            v.push(Violation {
                field: "spec.schedule",
                message: "cannot change while the session is Live; end it and schedule a new session".to_owned(),
            });
        }
    }
    v
}

/// Rules for a ReceptionPoint.
pub fn point(new: &ReceptionPoint) -> Vec<Violation> {
    match (new.spec.level, new.spec.parent.as_deref()) {
        (Level::Province, _) => vec![],
        (level, None | Some("")) => vec![Violation {
            field: "spec.parent",
            message: format!("is required for a {level:?} point: name its parent ReceptionPoint in this namespace"),
        }],
        _ => vec![],
    }
}

/// Rules for a MediaWorkerPool.
pub fn pool(new: &MediaWorkerPool) -> Vec<Violation> {
    let mut v = Vec::new();
    let p = &new.spec.rtc_ports;
    if p.min > p.max {
        v.push(Violation {
            field: "spec.rtcPorts",
            message: format!("min must not exceed max (got min {} > max {})", p.min, p.max),
        });
    }
    if p.per_worker < 1 {
        v.push(Violation {
            field: "spec.rtcPorts.perWorker",
            message: format!("must be at least 1 port per worker (got {})", p.per_worker),
        });
    } else if new.spec.host_network && p.min <= p.max && p.per_worker > p.max - p.min + 1 {
        v.push(Violation {
            field: "spec.rtcPorts.perWorker",
            message: format!(
                "{} ports per worker do not fit spec.rtcPorts {}-{} ({} ports) with hostNetwork",
                p.per_worker,
                p.min,
                p.max,
                p.max - p.min + 1
            ),
        });
    }
    // In the pod network every worker listens on the fixed admin and signaling ports.
    let fixed = [crate::build::worker_ports::ADMIN_PORT, crate::build::worker_ports::SIGNALING_PORT];
    if !new.spec.host_network && fixed.iter().any(|f| (p.min..=p.max).contains(f)) {
        v.push(Violation {
            field: "spec.rtcPorts",
            message: format!(
                "must not include the workers' admin port {} or signaling port {} (got {}-{})",
                fixed[0], fixed[1], p.min, p.max
            ),
        });
    }
    let h = &new.spec.host_ports;
    if new.spec.host_network && h.max - h.min < 1 {
        v.push(Violation {
            field: "spec.hostPorts",
            message: format!(
                "must hold at least two ports (admin and signaling) per worker with hostNetwork (got {}-{})",
                h.min, h.max
            ),
        });
    }
    if new.spec.host_network && h.min <= p.max && p.min <= h.max {
        v.push(Violation {
            field: "spec.hostPorts",
            message: format!(
                "must not overlap spec.rtcPorts {}-{} with hostNetwork (got {}-{})",
                p.min, p.max, h.min, h.max
            ),
        });
    }
    for url in new.spec.turn.iter().flat_map(|t| &t.urls) {
        if let Some(why) = turn_url_problem(url) {
            v.push(Violation { field: "spec.turn.urls", message: format!("{url:?}: {why}") });
        }
    }
    v
}

/// What the schema's pattern lets through but the worker's `--turn-url` refuses (it would
/// crash-loop every worker of the pool).
fn turn_url_problem(url: &str) -> Option<&'static str> {
    if url.starts_with("turns:") && url.ends_with("?transport=udp") {
        return Some("turns: (TLS) runs over TCP; use ?transport=tcp or no query");
    }
    let authority = url.split_once(':').map_or("", |(_, rest)| rest.split('?').next().unwrap_or(""));
    let port = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(_, rest)| rest),
        None => Some(authority.rsplit_once(':').map_or("", |(_, port)| port)),
    }
    .map(|p| p.strip_prefix(':').unwrap_or(p));
    match port {
        Some("") => None,
        Some(p) if p.parse::<u16>().is_ok_and(|n| n != 0) => None,
        _ => Some("the port must be a number from 1 to 65535"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2027-03-01T00:00:00Z".parse().unwrap()
    }

    fn session_from(spec: serde_json::Value) -> ReceptionSession {
        serde_json::from_value(json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionSession",
            "metadata": {"name": "s", "namespace": "n"}, "spec": spec}))
        .unwrap()
    }

    fn good() -> serde_json::Value {
        json!({"title": "T", "host": "h", "points": ["a"],
               "schedule": {"start": "2027-03-15T01:00:00Z", "durationMinutes": 60}})
    }

    #[test]
    fn a_good_session_passes() {
        assert_eq!(session(Operation::Create, &session_from(good()), None, now()), vec![]);
    }

    #[test]
    fn a_name_too_long_for_its_service_is_refused() {
        let mut s = session_from(good());
        s.metadata.name = Some("x".repeat(54));
        let v = session(Operation::Create, &s, None, now());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "metadata.name");
        assert!(v[0].message.contains("at most 53"), "{}", v[0]);
        s.metadata.name = Some("x".repeat(53));
        assert_eq!(session(Operation::Create, &s, None, now()), vec![]);
    }

    #[test]
    fn a_start_in_the_past_is_refused_on_create_only() {
        let mut s = good();
        s["schedule"]["start"] = json!("2027-02-01T00:00:00Z");
        let s = session_from(s);
        let v = session(Operation::Create, &s, None, now());
        assert_eq!(v[0].field, "spec.schedule.start");
        assert!(v[0].message.contains("future"), "{}", v[0]);
        assert_eq!(session(Operation::Update, &s, Some(&s), now()), vec![]);
    }

    #[test]
    fn a_deadline_not_before_start_is_refused() {
        let mut s = good();
        s["readiness"] = json!({"deadline": "2027-03-15T01:00:00Z"});
        let v = session(Operation::Create, &session_from(s), None, now());
        assert_eq!(v[0].field, "spec.readiness.deadline");
    }

    #[test]
    fn a_session_without_points_or_selector_is_refused() {
        let mut s = good();
        s.as_object_mut().unwrap().remove("points");
        let v = session(Operation::Create, &session_from(s), None, now());
        assert_eq!(v[0].field, "spec.points");
        assert!(v[0].message.contains("pointSelector"));
    }

    #[test]
    fn a_link_rotation_annotation_must_be_a_generation() {
        let mut s = session_from(good());
        s.metadata.annotations = Some([("links.tiepdan.io/a".to_owned(), "soon".to_owned())].into_iter().collect());
        let v = session(Operation::Update, &s, None, now());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].field, "metadata.annotations");
        assert!(v[0].message.starts_with("links.tiepdan.io/a: must be a whole number"), "{}", v[0]);
        s.metadata.annotations = Some([("links.tiepdan.io/a".to_owned(), "2".to_owned())].into_iter().collect());
        assert_eq!(session(Operation::Update, &s, None, now()), vec![]);
    }

    #[test]
    fn the_schedule_is_frozen_while_live_but_other_fields_may_change() {
        let mut old = session_from(good());
        old.status = Some(crate::api::ReceptionSessionStatus { phase: Some(SessionPhase::Live), ..Default::default() });
        let mut moved = good();
        moved["schedule"]["durationMinutes"] = json!(90);
        let v = session(Operation::Update, &session_from(moved), Some(&old), now());
        assert_eq!(v[0].field, "spec.schedule");
        let mut retitled = good();
        retitled["title"] = json!("Tiêu đề mới");
        assert_eq!(session(Operation::Update, &session_from(retitled), Some(&old), now()), vec![]);
    }

    #[test]
    fn a_commune_or_town_needs_a_parent() {
        let p: ReceptionPoint =
            serde_json::from_value(json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionPoint",
            "metadata": {"name": "x"}, "spec": {"displayName": "X", "level": "Commune"}}))
            .unwrap();
        assert_eq!(point(&p)[0].field, "spec.parent");
    }

    #[test]
    fn host_ports_must_fit_a_worker_and_stay_clear_of_the_rtc_ports() {
        let pool = |spec: serde_json::Value| -> MediaWorkerPool {
            serde_json::from_value(json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
                "metadata": {"name": "p", "namespace": "n"}, "spec": spec}))
            .unwrap()
        };
        let one = pool(json!({"hostNetwork": true, "hostPorts": {"min": 7000, "max": 7000}}));
        assert_eq!(super::pool(&one)[0].field, "spec.hostPorts");
        let overlap = pool(json!({"hostNetwork": true, "hostPorts": {"min": 40500, "max": 41500}}));
        assert!(super::pool(&overlap)[0].message.contains("overlap"));
        assert!(super::pool(&pool(json!({"hostNetwork": true}))).is_empty(), "the defaults are valid");
        assert!(
            super::pool(&pool(json!({"hostPorts": {"min": 7000, "max": 7000}}))).is_empty(),
            "ignored off host network"
        );
    }

    #[test]
    fn turn_urls_the_worker_would_refuse_are_refused() {
        let pool = |urls: &[&str]| -> MediaWorkerPool {
            serde_json::from_value(json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
                "metadata": {"name": "p", "namespace": "n"},
                "spec": {"turn": {"urls": urls, "secretName": "tiepdan-turn"}}}))
            .unwrap()
        };
        let good = ["turn:turn.example:3478?transport=udp", "turns:turn.example:443?transport=tcp", "turns:[::1]:5349"];
        assert!(super::pool(&pool(&good)).is_empty(), "{:?}", super::pool(&pool(&good)));
        for bad in ["turns:turn.example:443?transport=udp", "turn:turn.example:0", "turn:turn.example:70000"] {
            let v = super::pool(&pool(&[bad]));
            assert_eq!(v.len(), 1, "{bad}: {v:?}");
            assert_eq!(v[0].field, "spec.turn.urls");
            assert!(v[0].message.contains(bad), "{v:?}");
        }
    }

    #[test]
    fn the_rtc_sub_range_size_must_be_positive_fit_the_range_and_spare_the_fixed_ports() {
        let pool = |spec: serde_json::Value| -> MediaWorkerPool {
            serde_json::from_value(json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
                "metadata": {"name": "p", "namespace": "n"}, "spec": spec}))
            .unwrap()
        };
        type Case = (&'static str, serde_json::Value, Option<(&'static str, &'static str)>);
        let cases: [Case; 8] = [
            ("the defaults", json!({"hostNetwork": true}), None),
            (
                "zero",
                json!({"hostNetwork": true, "rtcPorts": {"min": 40000, "max": 40999, "perWorker": 0}}),
                Some(("spec.rtcPorts.perWorker", "at least 1")),
            ),
            (
                "zero off host network too",
                json!({"rtcPorts": {"min": 40000, "max": 40999, "perWorker": 0}}),
                Some(("spec.rtcPorts.perWorker", "at least 1")),
            ),
            (
                "larger than the range",
                json!({"hostNetwork": true, "rtcPorts": {"min": 40000, "max": 40049, "perWorker": 100}}),
                Some(("spec.rtcPorts.perWorker", "do not fit spec.rtcPorts 40000-40049 (50 ports)")),
            ),
            (
                "exactly the range",
                json!({"hostNetwork": true, "rtcPorts": {"min": 40000, "max": 40099, "perWorker": 100}}),
                None,
            ),
            (
                "larger, but ignored in the pod network",
                json!({"rtcPorts": {"min": 40000, "max": 40049, "perWorker": 100}}),
                None,
            ),
            (
                "over the pod network's signaling port",
                json!({"rtcPorts": {"min": 8000, "max": 8999}}),
                Some(("spec.rtcPorts", "signaling port 8443")),
            ),
            (
                "sub-ranges over the host ports",
                json!({"hostNetwork": true, "hostPorts": {"min": 40050, "max": 40060}}),
                Some(("spec.hostPorts", "overlap spec.rtcPorts")),
            ),
        ];
        for (what, spec, want) in cases {
            let v = super::pool(&pool(spec));
            match want {
                None => assert!(v.is_empty(), "{what}: {v:?}"),
                Some((field, message)) => {
                    assert_eq!(v.len(), 1, "{what}: {v:?}");
                    assert_eq!(v[0].field, field, "{what}");
                    assert!(v[0].message.contains(message), "{what}: {}", v[0].message);
                }
            }
        }
    }

    #[test]
    fn rtc_ports_min_above_max_is_refused() {
        let p: MediaWorkerPool =
            serde_json::from_value(json!({"apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
            "metadata": {"name": "p"}, "spec": {"rtcPorts": {"min": 50000, "max": 40000}}}))
            .unwrap();
        let v = pool(&p);
        assert_eq!(v[0].field, "spec.rtcPorts");
        assert!(v[0].message.contains("50000"));
    }
}
