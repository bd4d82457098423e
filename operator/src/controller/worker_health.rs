//! What a session's worker pod says about its worker container, for the WorkerReady condition.
//!
//! A pod that is not Ready is not always "starting": on a real node a worker that cannot bind its
//! port, or that runs out of memory, is restarted by the kubelet with a growing back-off and never
//! gets Ready. The session names that (the exit code or the OOM kill, how often, and the worker's
//! own last words from its termination message) so an officer's admin knows what to fix instead
//! of waiting. Pure: table-tested without a cluster.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};

use crate::build::worker_pod::CONTAINER;
use crate::controller::failover::{self, UNREADY_GRACE};
use crate::controller::pods::pod_ready;

/// The kubelet's reason for a container killed by the kernel's OOM killer.
const OOM_KILLED: &str = "OOMKilled";
/// Termination messages can be up to 4 KiB; a condition message stays readable.
const MAX_MESSAGE_CHARS: usize = 300;

/// The worker container's health, as its pod status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerHealth {
    Ready,
    /// Not Ready, and the container has not died since it was created.
    Starting,
    /// It was Ready and stopped passing its readiness probe at `since`, without dying: stalled
    /// or overloaded. Failover replaces it after [`UNREADY_GRACE`].
    Unready {
        since: Timestamp,
    },
    /// The container was killed for exceeding its memory limit.
    OomKilled {
        restarts: i32,
        limit: Option<String>,
    },
    /// The container exited on its own (e.g. a port already in use) and was restarted.
    Crashed {
        restarts: i32,
        exit_code: i32,
        message: Option<String>,
    },
}

impl WorkerHealth {
    pub fn of(pod: &Pod) -> Self {
        if pod_ready(pod) {
            return WorkerHealth::Ready;
        }
        let not_ready =
            || failover::unready_since(pod).map_or(WorkerHealth::Starting, |since| WorkerHealth::Unready { since });
        let Some(status) = worker_status(pod) else { return not_ready() };
        // The current state while it is down (Waiting: CrashLoopBackOff) keeps the cause in
        // lastState; a container that died and has not been restarted yet shows it in state.
        let died = status
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| status.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
        match died {
            Some(t) if t.reason.as_deref() == Some(OOM_KILLED) => {
                WorkerHealth::OomKilled { restarts: status.restart_count, limit: memory_limit(pod) }
            }
            Some(ContainerStateTerminated { exit_code, message, .. }) => WorkerHealth::Crashed {
                restarts: status.restart_count,
                exit_code: *exit_code,
                message: message.as_deref().map(str::trim).filter(|m| !m.is_empty()).map(shorten),
            },
            None => not_ready(),
        }
    }

    /// The WorkerReady reason: a bounded set, also used as an event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            WorkerHealth::Ready => "WorkerReady",
            WorkerHealth::Starting => "WorkerStarting",
            WorkerHealth::Unready { .. } => "WorkerUnready",
            WorkerHealth::OomKilled { .. } => "WorkerOOMKilled",
            WorkerHealth::Crashed { .. } => "WorkerCrashed",
        }
    }

    /// Whether this is a failure a human must look at (a Warning event on the way in).
    pub fn failed(&self) -> bool {
        // A stall too: it is replaced if it lasts, but a stall that heals in place is worth knowing.
        matches!(self, WorkerHealth::OomKilled { .. } | WorkerHealth::Crashed { .. } | WorkerHealth::Unready { .. })
    }

    /// Whether a WorkerReady reason read back from status is one of the failure reasons, so a
    /// recovery can be announced once.
    pub fn is_failure_reason(reason: &str) -> bool {
        reason == "WorkerOOMKilled" || reason == "WorkerCrashed" || reason == "WorkerUnready"
    }

    /// The WorkerReady message: `observed` (what talking to the worker showed) while it is ready
    /// or starting, else what killed it.
    pub fn message(&self, pod: &str, observed: &str) -> String {
        match self {
            WorkerHealth::Ready | WorkerHealth::Starting => observed.to_owned(),
            WorkerHealth::Unready { since } => format!(
                "Worker pod {pod} served the session but has not answered its readiness probe since {since}; it is \
                 replaced once that lasts {}s.",
                UNREADY_GRACE.as_secs()
            ),
            WorkerHealth::OomKilled { restarts, limit } => format!(
                "Worker pod {pod} was killed for running out of memory (limit {}; {restarts} restarts). Raise the \
                 pool's spec.resources.limits.memory; the kubelet keeps restarting it.",
                limit.as_deref().unwrap_or("none set")
            ),
            WorkerHealth::Crashed { restarts, exit_code, message } => format!(
                "Worker pod {pod} exited with code {exit_code} ({restarts} restarts){}; the kubelet keeps \
                 restarting it.",
                message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        }
    }
}

fn worker_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == CONTAINER)
}

fn memory_limit(pod: &Pod) -> Option<String> {
    let c = pod.spec.as_ref()?.containers.iter().find(|c| c.name == CONTAINER)?;
    Some(c.resources.as_ref()?.limits.as_ref()?.get("memory")?.0.clone())
}

/// One line, at most [`MAX_MESSAGE_CHARS`] characters.
fn shorten(m: &str) -> String {
    let line = m.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStateWaiting, PodSpec, PodStatus};
    use k8s_openapi::api::core::v1::{PodCondition, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn terminated(reason: &str, exit_code: i32, message: Option<&str>) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some(reason.to_owned()),
                exit_code,
                message: message.map(str::to_owned),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn back_off() -> ContainerState {
        ContainerState {
            waiting: Some(ContainerStateWaiting { reason: Some("CrashLoopBackOff".to_owned()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn pod(ready: bool, state: Option<ContainerState>, last: Option<ContainerState>, restarts: i32) -> Pod {
        let limits = [("memory".to_owned(), Quantity("64Mi".to_owned()))].into();
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: CONTAINER.to_owned(),
                    resources: Some(ResourceRequirements { limits: Some(limits), ..Default::default() }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: if ready { "True" } else { "False" }.to_owned(),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: CONTAINER.to_owned(),
                    state,
                    last_state: last,
                    restart_count: restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn health_from_pod_status() {
        let bind = "the worker failed: failed to bind the HTTP listener on 127.0.0.1:7001: Address in use";
        let cases = [
            ("ready", pod(true, None, None, 0), WorkerHealth::Ready),
            ("no container status yet", Pod::default(), WorkerHealth::Starting),
            ("running, probe not passed", pod(false, None, None, 0), WorkerHealth::Starting),
            // Ready again after a crash: the history does not matter.
            ("recovered", pod(true, None, Some(terminated("Error", 1, None)), 3), WorkerHealth::Ready),
            (
                "crash loop, port in use",
                pod(false, Some(back_off()), Some(terminated("Error", 1, Some(bind))), 2),
                WorkerHealth::Crashed { restarts: 2, exit_code: 1, message: Some(bind.to_owned()) },
            ),
            (
                "died, not restarted yet",
                pod(false, Some(terminated("Error", 137, Some("  \n"))), None, 0),
                WorkerHealth::Crashed { restarts: 0, exit_code: 137, message: None },
            ),
            (
                "OOM killed",
                pod(false, Some(back_off()), Some(terminated(OOM_KILLED, 137, None)), 1),
                WorkerHealth::OomKilled { restarts: 1, limit: Some("64Mi".to_owned()) },
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(WorkerHealth::of(&pod), want, "{name}");
        }
        // Ready, then not: stamped well after the pod started.
        let mut stalled = pod(false, None, None, 0);
        let status = stalled.status.as_mut().unwrap();
        status.start_time = Some(Time("2026-12-05T10:00:00Z".parse().unwrap()));
        status.conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time("2026-12-05T10:05:00Z".parse().unwrap()));
        let since = "2026-12-05T10:05:00Z".parse().unwrap();
        assert_eq!(WorkerHealth::of(&stalled), WorkerHealth::Unready { since });
        let unready = WorkerHealth::Unready { since };
        assert_eq!(unready.reason(), "WorkerUnready");
        assert!(unready.failed(), "a Warning event, and WorkerRecovered if it heals in place");
        assert!(WorkerHealth::is_failure_reason(unready.reason()));
        assert!(unready.message("w-1", "").contains("since 2026-12-05T10:05:00Z"), "{}", unready.message("w-1", ""));
    }

    #[test]
    fn messages_name_the_cause_and_the_fix() {
        let crashed = WorkerHealth::Crashed { restarts: 2, exit_code: 1, message: Some("port in use".into()) };
        assert_eq!(crashed.reason(), "WorkerCrashed");
        assert!(crashed.failed());
        assert_eq!(
            crashed.message("w-1", "ignored"),
            "Worker pod w-1 exited with code 1 (2 restarts): port in use; the kubelet keeps restarting it."
        );
        let oom = WorkerHealth::OomKilled { restarts: 1, limit: None };
        assert!(oom.message("w-1", "").contains("limit none set; 1 restarts"));
        assert!(oom.message("w-1", "").contains("spec.resources.limits.memory"));
        assert_eq!(WorkerHealth::Starting.message("w-1", "not ready yet"), "not ready yet");
        assert!(!WorkerHealth::Starting.failed());
    }

    #[test]
    fn long_termination_messages_are_cut_to_one_line() {
        let long = format!("first\nsecond {}", "x".repeat(400));
        let s = shorten(&long);
        assert!(s.starts_with("first second x"));
        assert_eq!(s.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(s.ends_with('…'));
    }
}
