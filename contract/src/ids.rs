//! Names that cross module boundaries: the session a worker is bound to and the points in it.
//!
//! Both come from the operator (Kubernetes object names) and end up in metric labels and logs,
//! so they are validated once, where they enter the process.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a session id or point name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("session id must look like <namespace>/<name>, got {0:?}")]
    SessionFormat(String),
    #[error(
        "{0:?} is not a valid Kubernetes object name (lowercase letters, digits, '-', '.'; at most 253 characters)"
    )]
    ObjectName(String),
}

/// `<namespace>/<session name>`, the `aud` of join tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = s.split_once('/').ok_or_else(|| IdError::SessionFormat(s.to_owned()))?;
        if !is_object_name(namespace) || !is_object_name(name) {
            return Err(IdError::SessionFormat(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }
}

impl TryFrom<String> for SessionId {
    type Error = IdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<SessionId> for String {
    fn from(value: SessionId) -> Self {
        value.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reception point's `metadata.name`: the identity behind a join token's `sub`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PointName(String);

impl PointName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PointName {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if is_object_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::ObjectName(s.to_owned()))
        }
    }
}

impl TryFrom<String> for PointName {
    type Error = IdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<PointName> for String {
    fn from(value: PointName) -> Self {
        value.0
    }
}

impl fmt::Display for PointName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Both ids are plain strings to the console (`web/src/generated`). Written by hand because the
/// derive would not read `serde(try_from, into)` (and warns about them on every build).
macro_rules! a_string_in_typescript {
    ($($id:ty),*) => {$(
        impl ts_rs::TS for $id {
            type WithoutGenerics = Self;
            type OptionInnerType = Self;

            fn name(_: &ts_rs::Config) -> String {
                "string".to_owned()
            }

            fn inline(cfg: &ts_rs::Config) -> String {
                Self::name(cfg)
            }
        }
    )*};
}

a_string_in_typescript!(SessionId, PointName);

/// RFC 1123 subdomain, the rule Kubernetes applies to `metadata.name`. Checking it here keeps
/// arbitrary token text out of metric labels.
fn is_object_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_need_namespace_and_name() {
        assert!("ubnd-hanoi/tiep-dan-2025-06".parse::<SessionId>().is_ok());
        assert!("no-slash".parse::<SessionId>().is_err());
        assert!("a/b/c".parse::<SessionId>().is_err());
        assert!("/name".parse::<SessionId>().is_err());
        assert!("Ns/name".parse::<SessionId>().is_err());
    }

    #[test]
    fn point_names_follow_kubernetes_rules() {
        assert!("xa-phu-dien".parse::<PointName>().is_ok());
        assert!("-bad".parse::<PointName>().is_err());
        assert!("has space".parse::<PointName>().is_err());
        assert!("".parse::<PointName>().is_err());
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<PointName>("\"Bad Name\"").is_err());
        let point: PointName = serde_json::from_str("\"ok-1\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(point.as_str(), "ok-1");
    }
}
