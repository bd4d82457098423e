//! Validates the reception-point hierarchy (Province ◀ Town ◀ Commune), as a pure function of
//! the points in one namespace.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{Level, ReceptionPointSpec};

/// Why a point's place in the hierarchy is not valid. Messages name the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("spec.parent: a {level:?} point needs a parent point")]
    MissingParent { level: Level },
    #[error("spec.parent: a Province point has no parent, got {parent:?}")]
    ProvinceWithParent { parent: String },
    #[error("spec.parent: no ReceptionPoint named {0:?} in this namespace")]
    UnknownParent(String),
    #[error("spec.parent: a {level:?} point cannot have the {parent_level:?} point {parent:?} as parent")]
    ParentLevel { level: Level, parent: String, parent_level: Level },
    #[error("spec.parent: the parent chain loops back: {0}")]
    Cycle(String),
}

impl Error {
    /// A bounded reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::MissingParent { .. } => "MissingParent",
            Error::ProvinceWithParent { .. } => "ProvinceWithParent",
            Error::UnknownParent(_) => "UnknownParent",
            Error::ParentLevel { .. } => "InvalidParentLevel",
            Error::Cycle(_) => "ParentCycle",
        }
    }
}

/// Checks the point `name` against all points of its namespace.
pub fn validate_point(name: &str, points: &BTreeMap<String, ReceptionPointSpec>) -> Result<(), Error> {
    let Some(spec) = points.get(name) else { return Ok(()) };
    // A cycle is reported first: it is the root cause when levels are also inconsistent.
    let mut chain = vec![name.to_owned()];
    let mut seen = BTreeSet::from([name.to_owned()]);
    let mut cur = spec;
    while let Some(parent) = &cur.parent {
        chain.push(parent.clone());
        if !seen.insert(parent.clone()) {
            return Err(Error::Cycle(chain.join(" → ")));
        }
        match points.get(parent) {
            Some(p) => cur = p,
            None => break,
        }
    }
    match (&spec.level, &spec.parent) {
        (Level::Province, Some(parent)) => Err(Error::ProvinceWithParent { parent: parent.clone() }),
        (Level::Province, None) => Ok(()),
        (level, None) => Err(Error::MissingParent { level: *level }),
        (level, Some(parent)) => {
            let p = points.get(parent).ok_or_else(|| Error::UnknownParent(parent.clone()))?;
            if level.may_have_parent(p.level) {
                Ok(())
            } else {
                Err(Error::ParentLevel { level: *level, parent: parent.clone(), parent_level: p.level })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(level: Level, parent: Option<&str>) -> ReceptionPointSpec {
        ReceptionPointSpec {
            display_name: "x".into(),
            level,
            parent: parent.map(str::to_owned),
            contact: None,
            network: None,
            media: None,
        }
    }

    fn world() -> BTreeMap<String, ReceptionPointSpec> {
        BTreeMap::from([
            ("tinh".to_owned(), p(Level::Province, None)),
            ("my-hao".to_owned(), p(Level::Town, Some("tinh"))),
            ("dị-sử".to_owned(), p(Level::Commune, Some("my-hao"))),
        ])
    }

    #[test]
    fn a_well_formed_hierarchy_is_valid() {
        let w = world();
        for name in w.keys() {
            assert_eq!(validate_point(name, &w), Ok(()), "{name}");
        }
    }

    #[test]
    fn a_commune_without_parent_is_invalid() {
        let mut w = world();
        w.insert("xuan-duc".into(), p(Level::Commune, None));
        let e = validate_point("xuan-duc", &w).unwrap_err();
        assert_eq!(e.reason(), "MissingParent");
        assert!(e.to_string().starts_with("spec.parent"));
    }

    #[test]
    fn an_unknown_parent_is_invalid() {
        let mut w = world();
        w.insert("x".into(), p(Level::Commune, Some("nowhere")));
        assert_eq!(validate_point("x", &w), Err(Error::UnknownParent("nowhere".into())));
    }

    #[test]
    fn a_cycle_is_reported_with_its_chain() {
        let mut w = world();
        w.insert("a".into(), p(Level::Town, Some("b")));
        w.insert("b".into(), p(Level::Town, Some("a")));
        assert_eq!(validate_point("a", &w), Err(Error::Cycle("a → b → a".into())));
    }

    #[test]
    fn a_commune_cannot_parent_a_town() {
        let mut w = world();
        w.insert("t".into(), p(Level::Town, Some("dị-sử")));
        assert_eq!(validate_point("t", &w).unwrap_err().reason(), "InvalidParentLevel");
    }

    #[test]
    fn a_province_with_a_parent_is_invalid() {
        let mut w = world();
        w.insert("p2".into(), p(Level::Province, Some("tinh")));
        assert_eq!(validate_point("p2", &w).unwrap_err().reason(), "ProvinceWithParent");
    }
}
