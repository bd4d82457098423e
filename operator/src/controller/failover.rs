//! When a session's worker pod that still exists can no longer serve: it served the session and
//! then stayed unready for more than [`UNREADY_GRACE`], or its node is lost. Pure: the caller
//! observes the pod and (for an unready pod) its node, and passes the time; table-tested without
//! a cluster.
//!
//! ```text
//!  pod Ready=False since t ─┬─ it had been Ready (t is after the pod started) ─ now - t > 5 s ─► Unready
//!                           └─ never Ready: starting or crash-looping ─────────► kept (WorkerHealth names it)
//!  node Ready=False/Unknown, or the Node gone ──────────────────────────────────► NodeLost
//! ```
//!
//! Both facts come from the cluster, not from the operator's memory, so a restarted operator
//! decides the same: the kubelet stamps the pod's Ready condition with `lastTransitionTime`, and
//! the node lifecycle controller (or the kubelet) the Node's.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Node, Pod};

/// How long a worker that served may stay unready before it is replaced. Shorter blips (a slow
/// probe under load, a kubelet restart) keep the worker and its connections.
pub const UNREADY_GRACE: SignedDuration = SignedDuration::from_secs(5);

/// The kubelet stamps a pod's `startTime` and its first `Ready=False` in the same instant, but
/// the API keeps whole seconds, so the two can read one second apart. A Ready condition that was
/// True and went False again took at least one passing and two failing probes a second apart
/// (see `build::worker_pod`), so it reads at least two seconds after the start.
const FIRST_STAMP_SLACK: SignedDuration = SignedDuration::from_secs(1);

/// What the worker pod's node says, as far as it was looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeHealth {
    /// Not looked up: the pod is Ready (the node lifecycle controller marks every pod of a lost
    /// node NotReady in the pass that marks the node) or it has no node yet.
    Unchecked,
    /// The node's Ready condition is True, or not reported yet (a node still registering).
    Ready,
    /// The node's Ready condition is False (the kubelet says it cannot run pods) or Unknown (the
    /// kubelet stopped reporting): its pods will not serve again soon.
    NotReady,
    /// The Node object is gone: its pods never run again.
    Gone,
}

impl NodeHealth {
    /// From the Node as read from the API server (`None`: it does not exist).
    pub fn of(node: Option<&Node>) -> Self {
        let Some(node) = node else { return NodeHealth::Gone };
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready").map(|c| c.status.as_str()));
        match ready {
            Some("False" | "Unknown") => NodeHealth::NotReady,
            _ => NodeHealth::Ready,
        }
    }

    pub fn lost(self) -> bool {
        matches!(self, NodeHealth::NotReady | NodeHealth::Gone)
    }
}

/// The pod's node, to look up when the pod is not Ready (see [`NodeHealth::Unchecked`]).
pub fn node_to_check(pod: &Pod) -> Option<&str> {
    if ready_condition(pod).is_some_and(|(status, _)| status == "True") {
        return None;
    }
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Since when the pod is unready after having been Ready; `None` while it is Ready, or when it
/// was never Ready (a worker that cannot start keeps its crash diagnosis instead of being
/// replaced every few seconds).
pub fn unready_since(pod: &Pod) -> Option<Timestamp> {
    let (status, since) = ready_condition(pod)?;
    let since = since?;
    let started = pod.status.as_ref()?.start_time.as_ref()?.0;
    (status != "True" && since > started + FIRST_STAMP_SLACK).then_some(since)
}

/// Whether the pod served and has been unready for longer than [`UNREADY_GRACE`] at `now` (real
/// time: the kubelet's clock, whatever clock drives the session's timeline).
pub fn unready_too_long(pod: &Pod, now: Timestamp) -> bool {
    unready_since(pod).is_some_and(|since| now.duration_since(since) > UNREADY_GRACE)
}

/// How long until an unready pod that served has been unready for [`UNREADY_GRACE`], so the
/// reconcile that replaces it comes then rather than at the next status poll. `None` when no
/// such deadline is pending.
pub fn recheck_in(pod: &Pod, now: Timestamp) -> Option<Duration> {
    let since = unready_since(pod)?;
    let left = (since + UNREADY_GRACE).duration_since(now);
    // Just past the grace (it is compared with `>`), never in the past.
    (left >= SignedDuration::ZERO).then(|| (left + SignedDuration::from_millis(100)).unsigned_abs())
}

/// The pod's Ready condition: its status and when it last changed.
fn ready_condition(pod: &Pod) -> Option<(&str, Option<Timestamp>)> {
    let c = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.as_str(), c.last_transition_time.as_ref().map(|t| t.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ready: &str, since: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "w"},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {
                "startTime": "2026-12-05T10:00:00Z",
                "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": since}],
            },
        }))
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_worker_that_served_is_replaced_after_five_unready_seconds_and_one_that_never_served_is_kept() {
        let now = ts("2026-12-05T10:01:00Z");
        // (what, pod, unready_since, too long at now, recheck in)
        let cases = [
            ("ready", pod("True", "2026-12-05T10:00:02Z"), None, false, None),
            // Never Ready: the Ready=False stamp is the pod's start (or a second after it).
            ("never ready", pod("False", "2026-12-05T10:00:00Z"), None, false, None),
            ("never ready, stamp a second later", pod("False", "2026-12-05T10:00:01Z"), None, false, None),
            (
                "unready 3 s after serving",
                pod("False", "2026-12-05T10:00:57Z"),
                Some(ts("2026-12-05T10:00:57Z")),
                false,
                Some(Duration::from_millis(2100)),
            ),
            (
                "unready exactly 5 s",
                pod("False", "2026-12-05T10:00:55Z"),
                Some(ts("2026-12-05T10:00:55Z")),
                false,
                Some(Duration::from_millis(100)),
            ),
            ("unready 6 s", pod("False", "2026-12-05T10:00:54Z"), Some(ts("2026-12-05T10:00:54Z")), true, None),
            // The node lifecycle controller marks pods of a lost node Ready=Unknown... or False.
            ("Ready Unknown for a minute", pod("Unknown", "2026-12-05T10:00:00.5Z"), None, false, None),
            (
                "Ready Unknown after serving",
                pod("Unknown", "2026-12-05T10:00:30Z"),
                Some(ts("2026-12-05T10:00:30Z")),
                true,
                None,
            ),
            ("no status", Pod::default(), None, false, None),
        ];
        for (what, p, since, too_long, recheck) in cases {
            assert_eq!(unready_since(&p), since, "{what}: unready since");
            assert_eq!(unready_too_long(&p, now), too_long, "{what}: too long");
            assert_eq!(recheck_in(&p, now), recheck, "{what}: recheck");
        }
    }

    #[test]
    fn a_node_is_lost_when_not_ready_unknown_or_gone() {
        let node = |ready: Option<&str>| -> Node {
            let conditions = ready.map_or(json!([]), |s| json!([{"type": "Ready", "status": s}]));
            serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": {"conditions": conditions}})).unwrap()
        };
        let cases = [
            (Some(node(Some("True"))), NodeHealth::Ready, false),
            (Some(node(Some("False"))), NodeHealth::NotReady, true),
            (Some(node(Some("Unknown"))), NodeHealth::NotReady, true),
            // Registering: the kubelet has not posted a status yet.
            (Some(node(None)), NodeHealth::Ready, false),
            (None, NodeHealth::Gone, true),
        ];
        for (n, want, lost) in cases {
            assert_eq!(NodeHealth::of(n.as_ref()), want, "{n:?}");
            assert_eq!(want.lost(), lost, "{want:?}");
        }
        assert!(!NodeHealth::Unchecked.lost());
    }

    /// The readiness probe, the grace and a new worker fit the 10 s a session may go without one.
    #[test]
    fn an_unready_worker_is_seen_and_replaced_within_ten_seconds() {
        use crate::build::worker_pod::{READINESS_FAILURES, READINESS_PERIOD_SECONDS, READINESS_TIMEOUT_SECONDS};
        // The kubelet probes again a period after the last probe began, or at once when the
        // last one waited out its timeout; the first failing probe may start a period late.
        let probe = i64::from(READINESS_PERIOD_SECONDS.max(READINESS_TIMEOUT_SECONDS));
        let seen = i64::from(READINESS_PERIOD_SECONDS) + i64::from(READINESS_FAILURES) * probe;
        let replaced = SignedDuration::from_secs(seen) + UNREADY_GRACE;
        // Left for the reconcile and a warm worker to take over (measured: see docs/reliability.md).
        assert!(replaced <= SignedDuration::from_secs(8), "{replaced:?}");
        // unready_since tells a served pod from one that never got Ready by this much.
        let first_unready = i64::from(READINESS_FAILURES) * i64::from(READINESS_PERIOD_SECONDS);
        assert!(SignedDuration::from_secs(first_unready) > FIRST_STAMP_SLACK);
    }

    #[test]
    fn only_an_unready_pod_s_node_is_looked_up() {
        assert_eq!(node_to_check(&pod("True", "2026-12-05T10:00:02Z")), None);
        assert_eq!(node_to_check(&pod("False", "2026-12-05T10:00:00Z")), Some("n1"));
        assert_eq!(node_to_check(&pod("Unknown", "2026-12-05T10:00:00Z")), Some("n1"));
        assert_eq!(node_to_check(&Pod::default()), None, "not scheduled yet");
    }
}
