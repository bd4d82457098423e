//! What the emulated kubelet reports: pure builders of `pods/status` merge patches.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

/// The host IP every emulated pod reports (the node is this machine's loopback).
pub const HOST_IP: &str = "127.0.0.1";

/// What one container is doing, as a kubelet would see it.
#[derive(Debug, Clone, PartialEq)]
pub enum ContainerState {
    /// Being prepared (volumes, env); `reason` is `ContainerCreating` or an error reason.
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
        ready: bool,
    },
    Terminated {
        exit_code: i32,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

/// One container's reported status.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub restart_count: i32,
    pub state: ContainerState,
}

impl ContainerView {
    /// Every container of `pod` in `state` (for pods the node only simulates).
    pub fn all(pod: &Pod, state: &ContainerState) -> Vec<ContainerView> {
        let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        containers
            .iter()
            .map(|c| ContainerView {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                restart_count: 0,
                state: state.clone(),
            })
            .collect()
    }

    fn ready(&self) -> bool {
        matches!(self.state, ContainerState::Running { ready: true, .. })
    }
}

/// The pod phase implied by its containers, given whether exited containers will be restarted.
pub fn phase(containers: &[ContainerView], restarts: bool) -> &'static str {
    let exits: Vec<i32> = containers
        .iter()
        .filter_map(|c| match c.state {
            ContainerState::Terminated { exit_code, .. } => Some(exit_code),
            _ => None,
        })
        .collect();
    if containers.iter().any(|c| matches!(c.state, ContainerState::Waiting { .. })) {
        "Pending"
    } else if !restarts && !exits.is_empty() && exits.len() == containers.len() {
        if exits.iter().all(|&code| code == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else {
        "Running"
    }
}

/// A merge patch for `pods/status` that reports `containers` on `pod_ip`.
///
/// `claim_version`, when set, makes the patch conditional on the pod's resourceVersion, so that
/// two nodes watching the same pod cannot both take it (the loser gets `409 Conflict`).
pub fn status_patch(
    pod_ip: Ipv4Addr,
    start_time: Timestamp,
    containers: &[ContainerView],
    restarts: bool,
    claim_version: Option<&str>,
) -> Value {
    let phase = phase(containers, restarts);
    let all_ready = phase == "Running" && containers.iter().all(ContainerView::ready);
    // Only readiness changes after admission, so only its conditions carry "now".
    let (started, now) = (time(start_time), time(Timestamp::now()));
    let condition = |kind: &str, status: bool, at: &Value| {
        json!({
            "type": kind,
            "status": if status { "True" } else { "False" },
            "lastTransitionTime": at,
        })
    };
    let mut patch = json!({
        "status": {
            "phase": phase,
            "hostIP": HOST_IP,
            "podIP": pod_ip.to_string(),
            "podIPs": [{ "ip": pod_ip.to_string() }],
            "startTime": started,
            "conditions": [
                condition("PodScheduled", true, &started),
                condition("Initialized", true, &started),
                condition("ContainersReady", all_ready, &now),
                condition("Ready", all_ready, &now),
            ],
            "containerStatuses": containers.iter().map(container_status).collect::<Vec<_>>(),
        }
    });
    if let Some(version) = claim_version {
        patch["metadata"] = json!({ "resourceVersion": version });
    }
    patch
}

fn container_status(c: &ContainerView) -> Value {
    let state = match &c.state {
        ContainerState::Waiting { reason, message } => {
            json!({ "waiting": { "reason": reason, "message": message } })
        }
        ContainerState::Running { started_at, .. } => {
            json!({ "running": { "startedAt": time(*started_at) } })
        }
        ContainerState::Terminated { exit_code, started_at, finished_at } => json!({
            "terminated": {
                "exitCode": exit_code,
                "reason": if *exit_code == 0 { "Completed" } else { "Error" },
                "startedAt": time(*started_at),
                "finishedAt": time(*finished_at),
            }
        }),
    };
    let started = matches!(c.state, ContainerState::Running { .. });
    json!({
        "name": c.name,
        "image": c.image,
        "imageID": format!("tiepdan-node://{}", c.image),
        "containerID": format!("tiepdan-node://{}-{}", c.name, c.restart_count),
        "ready": c.ready(),
        "started": started,
        "restartCount": c.restart_count,
        "state": state,
    })
}

fn time(t: Timestamp) -> Value {
    serde_json::to_value(Time(t)).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: ContainerState) -> ContainerView {
        ContainerView { name: "c".into(), image: "img".into(), restart_count: 0, state }
    }

    fn running(ready: bool) -> ContainerState {
        ContainerState::Running { started_at: Timestamp::UNIX_EPOCH, ready }
    }

    fn exited(exit_code: i32) -> ContainerState {
        ContainerState::Terminated { exit_code, started_at: Timestamp::UNIX_EPOCH, finished_at: Timestamp::UNIX_EPOCH }
    }

    fn condition(patch: &Value, kind: &str) -> String {
        patch["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    }

    #[test]
    fn a_pod_is_ready_only_when_every_container_runs_ready() {
        let ip = Ipv4Addr::new(127, 0, 1, 7);
        let ready = status_patch(ip, Timestamp::UNIX_EPOCH, &[view(running(true))], true, None);
        assert_eq!(ready["status"]["phase"], "Running");
        assert_eq!(ready["status"]["podIP"], "127.0.1.7");
        assert_eq!(condition(&ready, "Ready"), "True");
        assert_eq!(condition(&ready, "ContainersReady"), "True");

        let mixed = [view(running(true)), view(running(false))];
        let not_ready = status_patch(ip, Timestamp::UNIX_EPOCH, &mixed, true, None);
        assert_eq!(condition(&not_ready, "Ready"), "False");
        assert_eq!(condition(&not_ready, "PodScheduled"), "True");
    }

    #[test]
    fn the_phase_follows_containers_and_restart_policy() {
        let waiting = ContainerState::Waiting { reason: "ContainerCreating".into(), message: None };
        assert_eq!(phase(&[view(waiting)], true), "Pending");
        assert_eq!(phase(&[view(exited(1))], true), "Running");
        assert_eq!(phase(&[view(exited(1))], false), "Failed");
        assert_eq!(phase(&[view(exited(0))], false), "Succeeded");
        assert_eq!(phase(&[view(exited(0)), view(running(true))], false), "Running");
    }

    #[test]
    fn a_claim_is_conditional_on_the_resource_version() {
        let patch = status_patch(Ipv4Addr::LOCALHOST, Timestamp::UNIX_EPOCH, &[], true, Some("42"));
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
    }
}
