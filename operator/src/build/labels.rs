//! The labels every object the operator creates carries. Orphans are found (and deleted) by them.

use std::collections::BTreeMap;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// The session an object belongs to (its name; objects are in the session's namespace).
pub const SESSION: &str = "tiepdan.io/session";
/// The pool a worker pod belongs to.
pub const POOL: &str = "tiepdan.io/pool";
/// `idle` or `allocated`, for worker pods.
pub const WORKER_STATE: &str = "tiepdan.io/worker-state";

pub const MANAGER: &str = "tiepdan-operator";
pub const STATE_IDLE: &str = "idle";
pub const STATE_ALLOCATED: &str = "allocated";

pub const COMPONENT_WORKER: &str = "media-worker";
pub const COMPONENT_SIGNALING: &str = "signaling";
pub const COMPONENT_TOKENS: &str = "join-tokens";
pub const COMPONENT_TOKEN_KEYS: &str = "token-keys";
pub const COMPONENT_MONITORING: &str = "monitoring";
pub const COMPONENT_DASHBOARD: &str = "dashboard";
pub const COMPONENT_TLS: &str = "tls";

/// The common labels of an object belonging to `instance`.
pub fn common(instance: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), "tiepdan".to_owned()),
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
        (MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (PART_OF.to_owned(), "tiepdan".to_owned()),
    ])
}

/// The labels of an object belonging to session `session`.
pub fn for_session(session: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = common(session, component);
    l.insert(SESSION.to_owned(), session.to_owned());
    l
}

/// The selector (as a string) of everything the operator made for `session`.
pub fn session_selector(session: &str) -> String {
    format!("{SESSION}={session},{MANAGED_BY}={MANAGER}")
}

/// The selector of a pool's worker pods.
pub fn pool_selector(pool: &str) -> String {
    format!("{POOL}={pool},{COMPONENT}={COMPONENT_WORKER},{MANAGED_BY}={MANAGER}")
}
