//! The validate step of session reconciliation: spec plus observed points in, a validated
//! session (timeline and participants) out. Pure; no client.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;

use crate::api::{ReceptionPoint, ReceptionPointSpec, ReceptionSessionSpec};
use crate::timeline::{self, Timeline, TimelineConfig};
use crate::topology;

/// Why a session cannot run as specified. Each message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("spec.points: neither points nor pointSelector is set; a session needs points to connect")]
    NoPoints,
    #[error("spec.host: no ReceptionPoint named {0:?} in this namespace")]
    UnknownHost(String),
    #[error("spec.points: no ReceptionPoint named {0:?} in this namespace")]
    UnknownPoint(String),
    #[error("spec.pointSelector: {0}")]
    InvalidSelector(String),
    #[error("point {name:?} is not valid: {source}")]
    InvalidPoint { name: String, source: topology::Error },
    #[error(transparent)]
    Timeline(#[from] timeline::Error),
}

impl Error {
    /// A bounded reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoPoints => "NoPoints",
            Error::UnknownHost(_) => "UnknownHost",
            Error::UnknownPoint(_) => "UnknownPoint",
            Error::InvalidSelector(_) => "InvalidSelector",
            Error::InvalidPoint { .. } => "InvalidPoint",
            Error::Timeline(e) => e.reason(),
        }
    }
}

/// A point's role in a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Host,
    Participant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Participant => "participant",
        }
    }
}

/// A point taking part in a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Participant {
    pub name: String,
    pub display_name: String,
    pub role: Role,
}

/// A session that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSession {
    pub timeline: Timeline,
    /// The host first, then the other points by name.
    pub participants: Vec<Participant>,
}

/// Validates `spec` against the points of its namespace.
pub fn validate_session(
    spec: &ReceptionSessionSpec,
    points: &[ReceptionPoint],
    cfg: &TimelineConfig,
) -> Result<ValidSession, Error> {
    let timeline = timeline::compute(&spec.schedule, &spec.readiness, cfg)?;
    let by_name: BTreeMap<String, &ReceptionPoint> = points.iter().map(|p| (p.name_any(), p)).collect();
    let specs: BTreeMap<String, ReceptionPointSpec> =
        by_name.iter().map(|(n, p)| (n.clone(), p.spec.clone())).collect();

    let listed = spec.points.clone().unwrap_or_default();
    if listed.is_empty() && spec.point_selector.is_none() {
        return Err(Error::NoPoints);
    }
    let host = by_name.get(&spec.host).ok_or_else(|| Error::UnknownHost(spec.host.clone()))?;

    let mut names = std::collections::BTreeSet::new();
    for name in &listed {
        if !by_name.contains_key(name) {
            return Err(Error::UnknownPoint(name.clone()));
        }
        names.insert(name.clone());
    }
    if let Some(sel) = &spec.point_selector {
        let selector = Selector::try_from(sel.clone()).map_err(|e| Error::InvalidSelector(e.to_string()))?;
        names.extend(by_name.iter().filter(|(_, p)| selector.matches(p.labels())).map(|(n, _)| n.clone()));
    }
    names.remove(&spec.host);

    let mut participants =
        vec![Participant { name: spec.host.clone(), display_name: host.spec.display_name.clone(), role: Role::Host }];
    participants.extend(names.into_iter().map(|n| Participant {
        display_name: by_name[&n].spec.display_name.clone(),
        name: n,
        role: Role::Participant,
    }));
    for p in &participants {
        topology::validate_point(&p.name, &specs)
            .map_err(|source| Error::InvalidPoint { name: p.name.clone(), source })?;
    }
    Ok(ValidSession { timeline, participants })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Level, Readiness, Schedule};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};

    fn point(name: &str, level: Level, parent: Option<&str>, labels: &[(&str, &str)]) -> ReceptionPoint {
        let mut p = ReceptionPoint::new(
            name,
            ReceptionPointSpec {
                display_name: format!("Điểm {name}"),
                level,
                parent: parent.map(str::to_owned),
                contact: None,
                network: None,
            },
        );
        p.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        p
    }

    fn world() -> Vec<ReceptionPoint> {
        vec![
            point("tinh", Level::Province, None, &[]),
            point("my-hao", Level::Town, Some("tinh"), &[]),
            point("di-su", Level::Commune, Some("my-hao"), &[("tiepdan.io/town", "my-hao")]),
            point("nhan-hoa", Level::Commune, Some("my-hao"), &[("tiepdan.io/town", "my-hao")]),
        ]
    }

    fn spec() -> ReceptionSessionSpec {
        ReceptionSessionSpec {
            title: "Tiếp công dân định kỳ".into(),
            host: "my-hao".into(),
            points: Some(vec!["tinh".into()]),
            point_selector: Some(LabelSelector {
                match_labels: Some([("tiepdan.io/town".to_owned(), "my-hao".to_owned())].into()),
                ..Default::default()
            }),
            schedule: Schedule {
                start: Time("2025-06-12T01:00:00Z".parse().unwrap()),
                duration_minutes: 120,
                time_zone: "Asia/Ho_Chi_Minh".into(),
            },
            readiness: Readiness::default(),
            worker_pool: "default".into(),
            media: Default::default(),
            tls: None,
        }
    }

    #[test]
    fn participants_are_the_host_then_listed_and_selected_points() {
        let v = validate_session(&spec(), &world(), &TimelineConfig::default()).unwrap();
        let names: Vec<_> = v.participants.iter().map(|p| (p.name.as_str(), p.role)).collect();
        assert_eq!(
            names,
            vec![
                ("my-hao", Role::Host),
                ("di-su", Role::Participant),
                ("nhan-hoa", Role::Participant),
                ("tinh", Role::Participant)
            ]
        );
    }

    #[test]
    fn a_missing_point_is_named() {
        let mut s = spec();
        s.points = Some(vec!["xuan-duc".into()]);
        let e = validate_session(&s, &world(), &TimelineConfig::default()).unwrap_err();
        assert_eq!(e, Error::UnknownPoint("xuan-duc".into()));
        assert!(e.to_string().contains("spec.points"));
    }

    #[test]
    fn an_unknown_host_is_named() {
        let mut s = spec();
        s.host = "nowhere".into();
        assert_eq!(validate_session(&s, &world(), &TimelineConfig::default()).unwrap_err().reason(), "UnknownHost");
    }

    #[test]
    fn a_session_without_points_is_invalid() {
        let mut s = spec();
        s.points = None;
        s.point_selector = None;
        assert_eq!(validate_session(&s, &world(), &TimelineConfig::default()).unwrap_err(), Error::NoPoints);
    }

    #[test]
    fn a_participant_with_a_broken_hierarchy_makes_the_session_invalid() {
        let mut w = world();
        w.push(point("lost", Level::Commune, None, &[("tiepdan.io/town", "my-hao")]));
        let e = validate_session(&spec(), &w, &TimelineConfig::default()).unwrap_err();
        assert_eq!(e.reason(), "InvalidPoint");
        assert!(e.to_string().contains("lost"), "{e}");
    }
}
