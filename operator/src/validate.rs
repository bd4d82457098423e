//! The validate step of session reconciliation: spec plus observed points in, a validated
//! session (timeline and participants) out. Pure; no client.

use std::collections::BTreeMap;

use kube::core::{Selector, SelectorExt};
use kube::ResourceExt;

use crate::api::{ReceptionPoint, ReceptionPointSpec, ReceptionSessionSpec, VideoSpec};
use crate::timeline::{self, Timeline, TimelineConfig};
use crate::topology;
use tiepdan_contract::VideoCaps;

/// Why a session cannot run as specified. Each message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("spec.points: neither points nor pointSelector is set; a session needs points to connect")]
    NoPoints,
    #[error("spec.host: no ReceptionPoint named {0:?} in this namespace")]
    UnknownHost(String),
    #[error(
        "metadata.name: {name:?} has {len} characters; a session name may have at most {max}, because its \
         signaling Service is named <name>-signaling and a Service name is a DNS label of at most 63"
    )]
    NameTooLong { name: String, len: usize, max: usize },
    #[error(
        "spec.points: none of the session's points exist any more (missing: {}); a session needs at least one \
         point besides the host",
        missing.join(", ")
    )]
    NoPointsLeft { missing: Vec<String> },
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
            Error::NameTooLong { .. } => "NameTooLong",
            Error::NoPointsLeft { .. } => "NoPointsLeft",
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
    /// From the point's `spec.network`, signed into its join token.
    pub media: MediaLimits,
}

/// What a point's link needs, from `ReceptionPoint.spec.network`: the worker enforces both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaLimits {
    /// `turnRequired`: the point's browser uses TURN relay candidates only.
    pub relay: bool,
    /// `uplinkKbps`: the most the point sends; 0 means no cap.
    pub uplink_kbps: u32,
    /// `spec.media.audioOnly`: the point has no camera, so its checklist leaves out the video items.
    pub audio_only: bool,
    /// The session's `spec.media.video`: the worker refuses a camera above it.
    pub video: VideoCaps,
}

impl MediaLimits {
    /// The point's limits under the session's `video` caps.
    pub fn of(spec: &ReceptionPointSpec, video: &VideoSpec) -> Self {
        let audio_only = spec.media.as_ref().is_some_and(|m| m.audio_only);
        // The schema bounds both (100..8000 kbit/s, 144..2160 px); a negative one is no cap.
        let video = VideoCaps {
            max_bitrate_kbps: u32::try_from(video.max_bitrate_kbps).unwrap_or(0),
            max_height: u32::try_from(video.max_height).unwrap_or(0),
        };
        spec.network.as_ref().map_or(Self { audio_only, video, ..Self::default() }, |n| Self {
            relay: n.turn_required,
            // The schema says at least 256; a larger value than u32 kbit/s is no cap at all.
            uplink_kbps: u32::try_from(n.uplink_kbps.max(0)).unwrap_or(0),
            audio_only,
            video,
        })
    }
}

/// A session that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidSession {
    pub timeline: Timeline,
    /// The host first, then the other points by name.
    pub participants: Vec<Participant>,
    /// Points named in `spec.points` that do not exist (deleted, or never created). The session
    /// goes on without them, as a meeting goes on when one room drops out; the controller marks
    /// them removed and warns. Only a missing host, or no point left, fails a session.
    pub missing: Vec<String>,
}

/// `Some` when a session called `name` could not get valid child names.
pub fn name_too_long(name: &str) -> Option<Error> {
    let max = crate::build::signaling_service::MAX_SESSION_NAME;
    let len = name.chars().count();
    (len > max).then(|| Error::NameTooLong { name: name.to_owned(), len, max })
}

/// Validates the session called `name` with `spec` against the points of its namespace.
pub fn validate_session(
    name: &str,
    spec: &ReceptionSessionSpec,
    points: &[impl std::borrow::Borrow<ReceptionPoint>],
    cfg: &TimelineConfig,
) -> Result<ValidSession, Error> {
    if let Some(e) = name_too_long(name) {
        return Err(e);
    }
    let timeline = timeline::compute(&spec.schedule, &spec.readiness, cfg)?;
    let by_name: BTreeMap<String, &ReceptionPoint> =
        points.iter().map(|p| (p.borrow().name_any(), p.borrow())).collect();
    let specs: BTreeMap<String, ReceptionPointSpec> =
        by_name.iter().map(|(n, p)| (n.clone(), p.spec.clone())).collect();

    let listed = spec.points.clone().unwrap_or_default();
    if listed.is_empty() && spec.point_selector.is_none() {
        return Err(Error::NoPoints);
    }
    let host = by_name.get(&spec.host).ok_or_else(|| Error::UnknownHost(spec.host.clone()))?;

    let mut names = std::collections::BTreeSet::new();
    let mut missing = vec![];
    for name in listed.iter().filter(|n| **n != spec.host) {
        if by_name.contains_key(name) {
            names.insert(name.clone());
        } else if !missing.contains(name) {
            missing.push(name.clone());
        }
    }
    if let Some(sel) = &spec.point_selector {
        let selector = Selector::try_from(sel.clone()).map_err(|e| Error::InvalidSelector(e.to_string()))?;
        names.extend(by_name.iter().filter(|(_, p)| selector.matches(p.labels())).map(|(n, _)| n.clone()));
    }
    names.remove(&spec.host);
    if names.is_empty() && !missing.is_empty() {
        return Err(Error::NoPointsLeft { missing });
    }

    let mut participants = vec![Participant {
        name: spec.host.clone(),
        display_name: host.spec.display_name.clone(),
        role: Role::Host,
        media: MediaLimits::of(&host.spec, &spec.media.video),
    }];
    participants.extend(names.into_iter().map(|n| Participant {
        display_name: by_name[&n].spec.display_name.clone(),
        media: MediaLimits::of(&by_name[&n].spec, &spec.media.video),
        name: n,
        role: Role::Participant,
    }));
    for p in &participants {
        topology::validate_point(&p.name, &specs)
            .map_err(|source| Error::InvalidPoint { name: p.name.clone(), source })?;
    }
    Ok(ValidSession { timeline, participants, missing })
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
                media: None,
            },
        );
        p.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        p
    }

    fn validate(name: &str, s: &ReceptionSessionSpec, points: &[ReceptionPoint]) -> Result<ValidSession, Error> {
        validate_session(name, s, points, &TimelineConfig::default())
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
        let v = validate("s", &spec(), &world()).unwrap();
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
    fn a_points_network_becomes_its_media_limits() {
        let mut points = world();
        points[2].spec.network =
            Some(crate::api::NetworkProfile { uplink_kbps: 768, link: Default::default(), turn_required: true });
        let mut session = spec();
        session.media.video = VideoSpec { max_bitrate_kbps: 500, max_height: 360 };
        let v = validate("s", &session, &points).unwrap();
        let limits = |name: &str| v.participants.iter().find(|p| p.name == name).unwrap().media;
        let video = VideoCaps { max_bitrate_kbps: 500, max_height: 360 };
        assert_eq!(limits("di-su"), MediaLimits { relay: true, uplink_kbps: 768, audio_only: false, video });
        assert_eq!(limits("tinh"), MediaLimits { video, ..MediaLimits::default() });
    }

    #[test]
    fn a_point_whose_spec_says_audio_only_takes_part_audio_only() {
        let mut points = world();
        points[2].spec.media = Some(crate::api::PointMedia { audio_only: true });
        let v = validate("s", &spec(), &points).unwrap();
        let audio_only: Vec<_> =
            v.participants.iter().filter(|p| p.media.audio_only).map(|p| p.name.as_str()).collect();
        assert_eq!(audio_only, ["di-su"]);
    }

    #[test]
    fn a_missing_point_is_left_out_not_fatal() {
        let mut s = spec();
        s.points = Some(vec!["tinh".into(), "xuan-duc".into()]);
        let v = validate("s", &s, &world()).unwrap();
        assert_eq!(v.missing, vec!["xuan-duc".to_owned()]);
        assert!(v.participants.iter().all(|p| p.name != "xuan-duc"));
        assert!(v.participants.iter().any(|p| p.name == "tinh"));
    }

    #[test]
    fn no_point_left_besides_the_host_fails_and_names_the_missing() {
        let mut s = spec();
        s.point_selector = None;
        s.points = Some(vec!["xuan-duc".into(), "my-hao".into()]);
        let e = validate("s", &s, &world()).unwrap_err();
        assert_eq!(e, Error::NoPointsLeft { missing: vec!["xuan-duc".into()] });
        assert!(e.to_string().starts_with("spec.points:"), "{e}");
    }

    #[test]
    fn a_name_whose_service_would_not_fit_is_refused() {
        let ok = "a".repeat(53);
        assert!(validate(&ok, &spec(), &world()).is_ok());
        assert!(crate::build::signaling_service::name(&ok).len() <= 63);
        let e = validate(&"a".repeat(54), &spec(), &world()).unwrap_err();
        assert_eq!(e.reason(), "NameTooLong");
        assert!(e.to_string().starts_with("metadata.name:"), "{e}");
    }

    #[test]
    fn an_unknown_host_is_named() {
        let mut s = spec();
        s.host = "nowhere".into();
        assert_eq!(validate("s", &s, &world()).unwrap_err().reason(), "UnknownHost");
    }

    #[test]
    fn a_session_without_points_is_invalid() {
        let mut s = spec();
        s.points = None;
        s.point_selector = None;
        assert_eq!(validate("s", &s, &world()).unwrap_err(), Error::NoPoints);
    }

    #[test]
    fn a_participant_with_a_broken_hierarchy_makes_the_session_invalid() {
        let mut w = world();
        w.push(point("lost", Level::Commune, None, &[("tiepdan.io/town", "my-hao")]));
        let e = validate("s", &spec(), &w).unwrap_err();
        assert_eq!(e.reason(), "InvalidPoint");
        assert!(e.to_string().contains("lost"), "{e}");
    }
}
