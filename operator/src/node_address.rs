//! What a worker announces in ICE candidates: the public address of the node it runs on, like
//! an Agones GameServer's `status.address` or LiveKit's `use_external_ip` per node.
//!
//! ```text
//! pool.spec.announcedAddress set ──▶ that, for every worker (pod argument, known at creation)
//! hostNetwork, no override ───────▶ node annotation tiepdan.io/public-address
//!                                     else the node's ExternalIP, else its InternalIP
//!                                     (sent with the allocation call once the pod is scheduled)
//! pod network, no override ───────▶ the pod's IP (the worker's default)
//! ```
//!
//! Why the allocation call: the node is known only once the scheduler has placed the pod, the
//! downward API cannot expose a node's annotations or addresses, and reading the Node from the
//! worker would give an internet-facing pod API access. The operator already reads the pod and
//! calls the worker before it serves anyone, so it picks the address and sends it; the worker
//! refuses joins until it has it (`--announced-address-from-allocation`).

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use crate::api::MediaWorkerPoolSpec;

/// The node annotation naming the address workers on that node announce: an IP or a host name
/// (resolved by the worker), e.g. the public IP a NAT maps to the node.
pub const PUBLIC_ADDRESS_ANNOTATION: &str = "tiepdan.io/public-address";

/// Where an announced address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The pool's `spec.announcedAddress`.
    Pool,
    /// The node's [`PUBLIC_ADDRESS_ANNOTATION`].
    NodeAnnotation,
    /// The node's `status.addresses` of type ExternalIP.
    ExternalIp,
    /// The node's `status.addresses` of type InternalIP.
    InternalIp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Pool => "spec.announcedAddress",
            Source::NodeAnnotation => PUBLIC_ADDRESS_ANNOTATION,
            Source::ExternalIp => "ExternalIP",
            Source::InternalIp => "InternalIP",
        }
    }
}

/// An address to announce and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub address: String,
    pub source: Source,
}

/// Why no address could be chosen.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("node {0} has no annotation {PUBLIC_ADDRESS_ANNOTATION}, no ExternalIP and no InternalIP to announce")]
    NoAddress(String),
}

/// Whether workers of a pool with `spec` announce their node's address (and so wait for it).
pub fn from_node(spec: &MediaWorkerPoolSpec) -> bool {
    spec.host_network && spec.announced_address.is_none()
}

/// The address a worker of a pool with `spec` announces on `node`; `None` in the pod network
/// without an override (the pod's own IP). Pure.
pub fn choose(spec: &MediaWorkerPoolSpec, node: &Node) -> Result<Option<Announced>, Error> {
    if let Some(address) = &spec.announced_address {
        return Ok(Some(Announced { address: address.clone(), source: Source::Pool }));
    }
    if !spec.host_network {
        return Ok(None);
    }
    let annotated = node.annotations().get(PUBLIC_ADDRESS_ANNOTATION).map(|a| a.trim()).filter(|a| !a.is_empty());
    if let Some(address) = annotated {
        return Ok(Some(Announced { address: address.to_owned(), source: Source::NodeAnnotation }));
    }
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_deref()).unwrap_or_default();
    let of_type = |type_: &str| addresses.iter().find(|a| a.type_ == type_ && !a.address.is_empty());
    let found = of_type("ExternalIP")
        .map(|a| (a, Source::ExternalIp))
        .or_else(|| of_type("InternalIP").map(|a| (a, Source::InternalIp)));
    match found {
        Some((a, source)) => Ok(Some(Announced { address: a.address.clone(), source })),
        None => Err(Error::NoAddress(node.name_any())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(host_network: bool, announced: Option<&str>) -> MediaWorkerPoolSpec {
        serde_json::from_value(json!({"hostNetwork": host_network, "announcedAddress": announced})).unwrap()
    }

    fn node(annotation: Option<&str>, addresses: &[(&str, &str)]) -> Node {
        let addresses: Vec<_> = addresses.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
        let mut n = json!({"metadata": {"name": "media-1"}, "status": {"addresses": addresses}});
        if let Some(a) = annotation {
            n["metadata"]["annotations"] = json!({PUBLIC_ADDRESS_ANNOTATION: a});
        }
        serde_json::from_value(n).unwrap()
    }

    #[test]
    fn the_address_comes_from_the_pool_then_the_annotation_then_external_then_internal_ip() {
        let both = [("InternalIP", "10.0.0.5"), ("Hostname", "media-1"), ("ExternalIP", "203.0.113.5")];
        let internal = [("Hostname", "media-1"), ("InternalIP", "10.0.0.5")];
        type Case<'a> = (&'a str, MediaWorkerPoolSpec, Node, Option<(&'a str, Source)>);
        let cases: [Case; 8] = [
            (
                "override wins",
                spec(true, Some("media.example")),
                node(Some("198.51.100.1"), &both),
                Some(("media.example", Source::Pool)),
            ),
            (
                "override in the pod network",
                spec(false, Some("203.0.113.9")),
                node(None, &both),
                Some(("203.0.113.9", Source::Pool)),
            ),
            ("pod network: the pod's IP", spec(false, None), node(Some("198.51.100.1"), &both), None),
            (
                "annotation (IP)",
                spec(true, None),
                node(Some("198.51.100.1"), &both),
                Some(("198.51.100.1", Source::NodeAnnotation)),
            ),
            (
                "annotation (host name, trimmed)",
                spec(true, None),
                node(Some(" media-1.hungyen.gov.vn "), &both),
                Some(("media-1.hungyen.gov.vn", Source::NodeAnnotation)),
            ),
            (
                "empty annotation: ExternalIP",
                spec(true, None),
                node(Some(""), &both),
                Some(("203.0.113.5", Source::ExternalIp)),
            ),
            (
                "ExternalIP before InternalIP",
                spec(true, None),
                node(None, &both),
                Some(("203.0.113.5", Source::ExternalIp)),
            ),
            ("InternalIP last", spec(true, None), node(None, &internal), Some(("10.0.0.5", Source::InternalIp))),
        ];
        for (what, spec, node, want) in cases {
            let got = choose(&spec, &node).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(got.as_ref().map(|a| (a.address.as_str(), a.source)), want, "{what}");
        }
    }

    #[test]
    fn a_node_without_any_address_is_an_error_naming_it_and_the_annotation() {
        let e = choose(&spec(true, None), &node(None, &[("Hostname", "media-1")])).unwrap_err();
        assert_eq!(e, Error::NoAddress("media-1".into()));
        assert!(e.to_string().contains(PUBLIC_ADDRESS_ANNOTATION), "{e}");
    }

    #[test]
    fn only_host_network_pools_without_an_override_wait_for_the_node() {
        assert!(from_node(&spec(true, None)));
        assert!(!from_node(&spec(true, Some("203.0.113.9"))));
        assert!(!from_node(&spec(false, None)));
    }
}
