//! Link generations: how a point's link is replaced (rotated) without touching the rest of the
//! session.
//!
//! Every join token carries its point's generation (`gen`). The worker accepts a point's link only
//! at or above the generation the operator last gave it, so raising a point's generation refuses
//! its older links and closes their connections, while every other point keeps its link.
//!
//! A generation rises when:
//! - ops ask for it (`tiepdan-operator links <session> --rotate <point>` sets the annotation
//!   `links.tiepdan.io/<point>` to the generation wanted), for a link that leaked;
//! - a point comes back after being taken out of the session: the link it had before must not
//!   work again (taking it out already refused it).
//!
//! The generation in use is kept in the point's status (`status.points[].linkGeneration`), which
//! is what makes the second rule work across reconciles. Pure: table-tested below.

use std::collections::BTreeMap;

use crate::api::PointStatus;
use crate::validate::Participant;

/// The annotation prefix; the key's name part is the point's name.
pub const ANNOTATION_PREFIX: &str = "links.tiepdan.io/";

/// The highest generation: far beyond any real number of rotations, and it keeps the token claim
/// a small number.
pub const MAX: u32 = 1_000_000;

/// The annotation key asking for a point's link generation.
pub fn annotation(point: &str) -> String {
    format!("{ANNOTATION_PREFIX}{point}")
}

/// A rotation annotation that is not a generation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "metadata.annotations[{key}]: must be a whole number from 1 to {MAX} (the link generation wanted); got {value:?}"
)]
pub struct BadAnnotation {
    pub key: String,
    pub value: String,
}

/// The generations ops asked for, by point, and the annotations that are not generations (the
/// admission webhook refuses those; the reconciler treats them as absent).
pub fn requested(annotations: &BTreeMap<String, String>) -> (BTreeMap<String, u32>, Vec<BadAnnotation>) {
    let mut wanted = BTreeMap::new();
    let mut bad = vec![];
    for (key, value) in annotations {
        let Some(point) = key.strip_prefix(ANNOTATION_PREFIX) else { continue };
        match value.trim().parse::<u32>() {
            Ok(n) if (1..=MAX).contains(&n) => {
                wanted.insert(point.to_owned(), n);
            }
            _ => bad.push(BadAnnotation { key: key.clone(), value: value.clone() }),
        }
    }
    (wanted, bad)
}

/// Each participant's link generation for this reconcile: the highest of what ops asked for and
/// what its status holds, one up for a point that was taken out and is back.
pub fn plan(
    previous: &[PointStatus],
    requested: &BTreeMap<String, u32>,
    participants: &[Participant],
) -> BTreeMap<String, u32> {
    participants
        .iter()
        .map(|p| {
            let held = previous.iter().find(|s| s.name == p.name).map_or(0, |s| {
                let back = u32::from(s.removed);
                s.link_generation.saturating_add(back)
            });
            let asked = requested.get(&p.name).copied().unwrap_or(0);
            (p.name.clone(), held.max(asked).min(MAX))
        })
        .collect()
}

/// The generations a worker must enforce: only those above 0 (0 is what every link starts at).
pub fn raised(generations: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    generations.iter().filter(|(_, g)| **g > 0).map(|(p, g)| (p.clone(), *g)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Role;

    fn participant(name: &str) -> Participant {
        Participant { name: name.to_owned(), display_name: name.to_owned(), role: Role::Participant, audio_only: false }
    }

    fn point(name: &str, link_generation: u32, removed: bool) -> PointStatus {
        PointStatus { name: name.to_owned(), link_generation, removed, ..Default::default() }
    }

    #[test]
    fn annotations_ask_for_generations_and_bad_values_are_named() {
        let annotations: BTreeMap<String, String> = [
            ("links.tiepdan.io/xa-a", "2"),
            ("links.tiepdan.io/xa-b", " 1 "),
            ("links.tiepdan.io/xa-c", "two"),
            ("links.tiepdan.io/xa-d", "0"),
            ("links.tiepdan.io/xa-e", "1000001"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (wanted, bad) = requested(&annotations);
        assert_eq!(wanted, BTreeMap::from([("xa-a".to_owned(), 2), ("xa-b".to_owned(), 1)]));
        let keys: Vec<&str> = bad.iter().map(|b| b.key.as_str()).collect();
        assert_eq!(keys, ["links.tiepdan.io/xa-c", "links.tiepdan.io/xa-d", "links.tiepdan.io/xa-e"]);
        assert_eq!(
            bad[0].to_string(),
            "metadata.annotations[links.tiepdan.io/xa-c]: must be a whole number from 1 to 1000000 (the link \
             generation wanted); got \"two\""
        );
    }

    #[test]
    fn generations_rise_on_request_and_when_a_point_comes_back() {
        let ps = [participant("tinh"), participant("xa-a"), participant("xa-b")];
        let none = BTreeMap::new();
        // (what, previous points, requested) → generations of tinh, xa-a, xa-b
        type Case = (&'static str, Vec<PointStatus>, BTreeMap<String, u32>, [u32; 3]);
        let cases: Vec<Case> = vec![
            ("a new session: every link at 0", vec![], none.clone(), [0, 0, 0]),
            ("ops rotate xa-a", vec![], BTreeMap::from([("xa-a".to_owned(), 1)]), [0, 1, 0]),
            (
                "status holds the rotation; the annotation is the same",
                vec![point("xa-a", 1, false)],
                BTreeMap::from([("xa-a".to_owned(), 1)]),
                [0, 1, 0],
            ),
            (
                "the annotation was removed: a generation never goes down",
                vec![point("xa-a", 3, false)],
                none.clone(),
                [0, 3, 0],
            ),
            ("xa-b was taken out and is back: one up", vec![point("xa-b", 0, true)], none.clone(), [0, 0, 1]),
            (
                "back after a rotation, and ops ask lower: one up from status",
                vec![point("xa-b", 4, true)],
                BTreeMap::from([("xa-b".to_owned(), 2)]),
                [0, 0, 5],
            ),
            (
                "a point not in the session is not planned",
                vec![point("gone", 7, true)],
                BTreeMap::from([("gone".to_owned(), 9)]),
                [0, 0, 0],
            ),
        ];
        for (what, previous, asked, want) in cases {
            let got = plan(&previous, &asked, &ps);
            let got: Vec<u32> = ["tinh", "xa-a", "xa-b"].iter().map(|p| got[*p]).collect();
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn workers_are_told_only_raised_generations() {
        let g = BTreeMap::from([("tinh".to_owned(), 0), ("xa-a".to_owned(), 2)]);
        assert_eq!(raised(&g), BTreeMap::from([("xa-a".to_owned(), 2)]));
    }
}
