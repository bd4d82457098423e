//! Who may call the worker's admin endpoints (`/v1/allocation`, `/v1/status`): the operator, with
//! an admin token signed with the operator's admin key ([`PublicKeys::verify_admin`]) that names *this* pod and has not been used
//! before. The admin port is plain HTTP inside the cluster, so a token seen on the wire must
//! neither work on another worker nor work twice: each `jti` is remembered until its token has
//! expired.

use crate::tokens::{refused_from, PublicKeys, TokenError};
use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many admin tokens are remembered at once. The operator sends a few per
/// reconcile; a flood of *valid* tokens needs the operator's admin key, and is refused rather than remembered.
const MAX_REMEMBERED: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the admin token is for pod {token:?}, not for this worker ({worker})")]
    WrongPod { token: Option<String>, worker: String },
    #[error("the admin token was already used; every admin call needs a new one")]
    Replayed,
    #[error("too many admin tokens are in use at once")]
    TooMany,
}

/// The admin tokens this worker accepts.
#[derive(Debug)]
pub struct AdminAuth {
    keys: PublicKeys,
    /// This worker's pod; `None` outside a pod, where any pod's token is accepted.
    pod: Option<String>,
    /// `jti` → the first second its token is refused anyway.
    seen: Mutex<HashMap<String, i64>>,
}

impl AdminAuth {
    pub fn new(keys: PublicKeys, pod: Option<String>) -> Self {
        Self { keys, pod, seen: Mutex::new(HashMap::new()) }
    }

    /// Accepts `token` once, at `now` (Unix seconds).
    pub fn admit(&self, token: &str, now: i64) -> Result<(), Error> {
        let grant = self.keys.verify_admin(token, now)?;
        if let Some(worker) = &self.pod {
            if grant.pod.as_deref() != Some(worker.as_str()) {
                return Err(Error::WrongPod { token: grant.pod, worker: worker.clone() });
            }
        }
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|_, until| *until > now);
        if seen.contains_key(&grant.jti) {
            return Err(Error::Replayed);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Err(Error::TooMany);
        }
        seen.insert(grant.jti, refused_from(grant.exp));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{generate_keys, SigningKeys};

    const NOW: i64 = 1_750_000_000;

    fn keys() -> (SigningKeys, PublicKeys) {
        generate_keys()
    }

    #[test]
    fn a_token_works_once_on_its_own_pod_only() {
        let (key, public) = keys();
        let auth = AdminAuth::new(public, Some("w-1".into()));
        let token = key.admin.mint_admin(NOW, 30, Some("w-1")).expect("mint");
        auth.admit(&token, NOW).expect("first use");
        assert!(matches!(auth.admit(&token, NOW + 1), Err(Error::Replayed)));
        let other = key.admin.mint_admin(NOW, 30, Some("w-2")).expect("mint");
        assert!(matches!(auth.admit(&other, NOW), Err(Error::WrongPod { .. })));
        let unbound = key.admin.mint_admin(NOW, 30, None).expect("mint");
        assert!(matches!(auth.admit(&unbound, NOW), Err(Error::WrongPod { token: None, .. })));
        // Once its token has expired a jti is forgotten: the token is refused for its age.
        assert!(matches!(auth.admit(&token, NOW + 61), Err(Error::Token(TokenError::Expired))));
        assert!(auth.seen.lock().unwrap().len() <= 2);
    }

    #[test]
    fn outside_a_pod_any_pods_token_is_accepted_once() {
        let (key, public) = keys();
        let auth = AdminAuth::new(public, None);
        let token = key.admin.mint_admin(NOW, 30, Some("w-1")).expect("mint");
        auth.admit(&token, NOW).expect("first use");
        assert!(matches!(auth.admit(&token, NOW), Err(Error::Replayed)));
    }
}
