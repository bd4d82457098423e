//! Routes from the Kubernetes API: the session's current worker is the Ready, not terminating
//! pod labelled for the session, exactly what the session's signaling Service selects. The entry
//! dials the pod's IP and signaling port itself rather than the Service's ClusterIP, so it needs
//! no kube-proxy (a hostNetwork worker's pod IP is its node's) and sees a replacement the moment
//! the new pod is Ready, not when status is next written.
//!
//! Read-only: `get` on ReceptionSessions and `list` on Pods; the entry holds no Secret.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::net::{IpAddr, SocketAddr};
use tiepdan_contract::ids::SessionId;
use tiepdan_operator::api::ReceptionSession;
use tiepdan_operator::build::{labels, signaling_service, worker_ports};
use tiepdan_operator::controller::pods::pod_ready;

use crate::routes::{RouteError, Upstream};

#[derive(Clone)]
pub struct KubeRoutes {
    client: kube::Client,
}

impl std::fmt::Debug for KubeRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeRoutes")
    }
}

impl KubeRoutes {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    pub async fn find(&self, session: &SessionId) -> Result<Upstream, RouteError> {
        let (namespace, name) = split(session);
        let api_error = |source| RouteError::Api { session: session.to_string(), source: Box::new(source) };
        let sessions = Api::<ReceptionSession>::namespaced(self.client.clone(), namespace);
        if sessions.get_opt(name).await.map_err(api_error)?.is_none() {
            return Err(RouteError::UnknownSession { session: session.to_string() });
        }
        let selector = format!("{}={name},{}={}", labels::SESSION, labels::COMPONENT, labels::COMPONENT_WORKER);
        let pods = Api::<Pod>::namespaced(self.client.clone(), namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(api_error)?;
        upstream(session, &pods.items)
    }
}

fn split(session: &SessionId) -> (&str, &str) {
    // A SessionId is always namespace/name (checked when parsed).
    session.as_str().split_once('/').unwrap_or(("", session.as_str()))
}

/// The upstream among the session's worker pods: one that is Ready, not being deleted, and has
/// an IP. Pure, for tests.
pub fn upstream(session: &SessionId, pods: &[Pod]) -> Result<Upstream, RouteError> {
    let (namespace, name) = split(session);
    let no_worker = |reason| RouteError::NoWorker { session: session.to_string(), reason };
    if pods.is_empty() {
        return Err(no_worker("no worker pod is allocated to it"));
    }
    let serving = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none() && pod_ready(p)).find_map(|p| {
        let ip: IpAddr = p.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
        let port = u16::try_from(worker_ports::of_pod(p).signaling).ok()?;
        Some(SocketAddr::new(ip, port))
    });
    let addr = serving.ok_or_else(|| no_worker("its worker pod is not ready"))?;
    Ok(Upstream { addr, server_name: format!("{}.{namespace}.svc", signaling_service::name(name)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(ip: &str, ready: bool, deleting: bool) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.deletion_timestamp = deleting.then_some(Time(jiff::Timestamp::UNIX_EPOCH));
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                ports: Some(vec![ContainerPort {
                    name: Some(worker_ports::SIGNALING_PORT_NAME.to_owned()),
                    container_port: 7003,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        });
        pod.status = Some(PodStatus {
            pod_ip: Some(ip.to_owned()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn the_ready_pod_that_is_not_terminating_is_the_upstream() {
        let session: SessionId = "my-hao/phien-6".parse().expect("id");
        let old = pod("127.0.0.1", true, true);
        let starting = pod("127.0.0.2", false, false);
        let new = pod("127.0.0.3", true, false);
        let up = upstream(&session, &[old.clone(), starting.clone(), new]).expect("routed");
        assert_eq!(up.addr, "127.0.0.3:7003".parse().expect("addr"));
        assert_eq!(up.server_name, "phien-6-signaling.my-hao.svc");
        for pods in [vec![], vec![old, starting]] {
            let e = upstream(&session, &pods).expect_err("no worker");
            assert_eq!(e.code(), tiepdan_contract::ErrorCode::SessionNotAllocated);
        }
    }
}
