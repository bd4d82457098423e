//! The Service in front of a session's worker, for signaling (HTTPS + WSS on 443).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::labels;
use super::session_child_meta;
use crate::api::ReceptionSession;

/// The Service's name for a session.
pub fn name(session: &str) -> String {
    format!("{session}-signaling")
}

/// The longest session name whose Service name still fits a DNS-1035 label (63 characters):
/// the Service name adds `-signaling`.
pub const MAX_SESSION_NAME: usize = 63 - "-signaling".len();

/// The Service's port: HTTPS' own, so links carry no port.
pub const PORT: i32 = 443;

/// The in-cluster signaling URL of a session (the name its certificate covers).
pub fn url(session: &ReceptionSession) -> String {
    format!("wss://{}.{}.svc/v1/ws", name(&session.name_any()), session.namespace().unwrap_or_default())
}

/// The signaling Service for `session`, selecting the worker allocated to it.
pub fn build(session: &ReceptionSession) -> Service {
    let sname = session.name_any();
    Service {
        metadata: session_child_meta(session, name(&sname), labels::COMPONENT_SIGNALING, &BTreeMap::new()),
        spec: Some(ServiceSpec {
            selector: Some(
                [
                    (labels::SESSION.to_owned(), sname.clone()),
                    (labels::COMPONENT.to_owned(), labels::COMPONENT_WORKER.to_owned()),
                ]
                .into(),
            ),
            ports: Some(vec![ServicePort {
                name: Some("signaling".to_owned()),
                port: PORT,
                target_port: Some(IntOrString::String("signaling".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::session;

    #[test]
    fn the_service_selects_only_this_sessions_worker() {
        let svc = build(&session());
        let sel = svc.spec.unwrap().selector.unwrap();
        assert_eq!(sel[labels::SESSION], "phien-thang-6");
        assert_eq!(sel[labels::COMPONENT], labels::COMPONENT_WORKER);
        assert_eq!(svc.metadata.labels.unwrap()[labels::SESSION], "phien-thang-6");
        assert_eq!(svc.metadata.owner_references.unwrap()[0].kind, "ReceptionSession");
        assert_eq!(url(&session()), "wss://phien-thang-6-signaling.my-hao.svc/v1/ws");
    }
}
