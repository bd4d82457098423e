//! What the operator calls on the API server: the one list its RBAC is checked against.
//!
//! The chart's roles (`charts/tiepdan/templates/rbac.yaml`) grant exactly [`PERMISSIONS`], no
//! more: `operator/tests/chart.rs` fails on any difference (and on any `*`), and
//! `tests/tests/real_node_session/chart_install.rs` installs the chart, asks the API server what
//! its ServiceAccount may do, and runs the operator as that ServiceAccount. A new API call needs a
//! row here and a rule in the chart.
//!
//! By default the install is namespaced: what the controllers touch (sessions, pods, Secrets, …)
//! is granted by a Role in the one watched namespace, the operator's own CA, trust bundle and
//! Lease by a Role in its install namespace, and only what has no namespace (CRDs, webhook
//! configurations, the chart's own ClusterRole) by a ClusterRole, each limited to named objects.
//! Only `rbac.clusterWide: true` turns the watched-namespace Role into a ClusterRole.
//!
//! ```text
//!  Permission { scope, group, resources, resource_names, verbs, why }
//!        │ grants(): one Grant per (scope, group, resource, name, verb)
//!        ▼
//!  BTreeSet<Grant>  ==  the rendered chart's rules, flattened the same way
//! ```

use std::collections::BTreeSet;

/// Where a permission is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Cluster-scoped objects: a ClusterRole.
    Cluster,
    /// Only the namespace the operator is installed in: a Role.
    InstallNamespace,
    /// The namespace the controllers watch (`--namespace`): a Role there, or a ClusterRole
    /// when the chart is installed with `rbac.clusterWide: true`.
    WatchNamespace,
}

/// One rule: some verbs on some resources of one API group, and why the operator needs them.
#[derive(Clone, Copy, Debug)]
pub struct Permission {
    pub scope: Scope,
    /// The API group; `""` is the core group.
    pub group: &'static str,
    /// Plural resource names, `resource/subresource` for a subresource.
    pub resources: &'static [&'static str],
    /// Only these objects (empty: any).
    pub resource_names: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// The code that makes the calls.
    pub why: &'static str,
}

/// Everything the operator calls. `apply::apply` first `get`s the object (to skip an unchanged
/// build), then server-side applies it: a `patch` that creates
/// the object when it is missing, which the API server authorizes as `create` too.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        scope: Scope::WatchNamespace,
        group: "tiepdan.io",
        resources: &["receptionsessions"],
        resource_names: &[],
        verbs: &["list", "watch", "patch"],
        why: "controller::session watches sessions and controller::become_ready lists them; \
              kube-runtime's finalizer helper JSON-patches metadata.finalizers on the session",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "tiepdan.io",
        resources: &["receptionpoints"],
        resource_names: &[],
        verbs: &["list", "watch"],
        why: "controller::point and controller::session watch points and list a namespace's points",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "tiepdan.io",
        resources: &["mediaworkerpools"],
        resource_names: &[],
        verbs: &["get", "list", "watch"],
        why: "controller::pool and controller::session watch pools; session::provision gets the session's pool",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "tiepdan.io",
        resources: &["receptionsessions/status", "receptionpoints/status", "mediaworkerpools/status"],
        resource_names: &[],
        verbs: &["patch"],
        why: "each controller server-side applies its kind's status; session::record_point_verification \
              merge-patches a point's status",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "tiepdan.io",
        resources: &["receptionsessions/finalizers", "mediaworkerpools/finalizers"],
        resource_names: &[],
        verbs: &["update"],
        why: "build::owner_ref sets blockOwnerDeletion on children of sessions and pools, which the \
              OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift) allows only with \
              update on the owner's finalizers",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "",
        resources: &["pods"],
        resource_names: &[],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "worker pods: watched by the pool and session controllers, applied (pool scale-up, \
              allocation::allocate), merge-patched to allocate an idle one, deleted on scale-down, when an \
              idle one is out of date (pool::delete_idle) and on clean-up",
    },
    Permission {
        scope: Scope::Cluster,
        group: "",
        resources: &["nodes"],
        resource_names: &[],
        verbs: &["get"],
        why: "allocation::allocate reads the node of a session's unready worker, to replace one whose node is \
              lost (controller::failover); a hostNetwork worker is told its node's public address \
              (node_address::choose)",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "",
        resources: &["services"],
        resource_names: &[],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "signaling Services: owned (watched) by sessions, applied, deleted by apply::delete_orphans",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "",
        resources: &["secrets"],
        resource_names: &[],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "join tokens and certificate Secrets (owned by sessions, applied, deleted; \
              controller::certificate gets the session's certificate Secret); token_keys::ensure_signing_keys gets \
              and creates each pool's private token keys once; token_keys::delete_legacy_key deletes an older \
              operator's HS256 key once no worker mounts it",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "",
        resources: &["configmaps"],
        resource_names: &[],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "controller::monitoring applies and deletes each session's dashboard ConfigMap (watched as \
              metadata by controller::caches); token_keys::apply_public_keys applies each pool's public token \
              keys, which its workers mount",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "events.k8s.io",
        resources: &["events"],
        resource_names: &[],
        verbs: &["create", "patch"],
        why: "controller::events publishes through kube-runtime's Recorder, which patches a repeated event",
    },
    Permission {
        scope: Scope::Cluster,
        group: "apiextensions.k8s.io",
        resources: &["customresourcedefinitions"],
        resource_names: &[
            "podmonitors.monitoring.coreos.com",
            "prometheusrules.monitoring.coreos.com",
            "certificates.cert-manager.io",
        ],
        verbs: &["get"],
        why: "crds::Detector gets the prometheus-operator CRDs (monitoring::PROMETHEUS_OPERATOR_CRDS) and \
              cert-manager's (certificate::CERT_MANAGER_CRDS)",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "cert-manager.io",
        resources: &["certificates"],
        resource_names: &[],
        verbs: &["get", "list", "create", "patch", "delete"],
        why: "controller::certificate applies a session's Certificate when it names an issuer, and deletes it by \
              label when the session ends",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "monitoring.coreos.com",
        resources: &["podmonitors", "prometheusrules"],
        resource_names: &[],
        verbs: &["get", "list", "create", "patch", "delete"],
        why: "controller::monitoring applies each session's PodMonitor and PrometheusRule and deletes them by label",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "networking.k8s.io",
        resources: &["networkpolicies"],
        resource_names: &[],
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        why: "session::provision applies each session's NetworkPolicy (watched as metadata by \
              controller::caches); apply::delete_orphans deletes it by label",
    },
    Permission {
        scope: Scope::WatchNamespace,
        group: "policy",
        resources: &["poddisruptionbudgets"],
        resource_names: &[],
        verbs: &["get", "create", "patch"],
        why: "pool::ensure_disruption_budget gets each pool's PodDisruptionBudget (policy/v1beta1) over its \
              allocated workers and server-side applies it when it differs",
    },
    Permission {
        scope: Scope::Cluster,
        group: "admissionregistration.k8s.io",
        resources: &["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
        resource_names: &[WEBHOOK_CONFIGURATION],
        verbs: &["get", "create", "patch"],
        why: "webhook::runner::start applies both configurations (webhook::registration::register, server-side \
              apply, so even create names the object) with the CA bundle",
    },
    Permission {
        scope: Scope::Cluster,
        group: "admissionregistration.k8s.io",
        resources: &["validatingwebhookconfigurations", "mutatingwebhookconfigurations"],
        resource_names: &[LEGACY_WEBHOOK_CONFIGURATION],
        verbs: &["get", "delete"],
        why: "webhook::registration::remove_replaced deletes the configurations an older version registered \
              under the name every release shared, when this release's ClusterRole owns them",
    },
    Permission {
        scope: Scope::Cluster,
        group: "rbac.authorization.k8s.io",
        resources: &["clusterroles"],
        resource_names: &[OWNER_CLUSTER_ROLE],
        verbs: &["get"],
        why: "webhook::runner::cluster_role_owner gets the chart's own ClusterRole (--webhook-owner-cluster-role) \
              for its uid: both webhook configurations name it as their owner, so the garbage collector deletes \
              them on helm uninstall (no blockOwnerDeletion, which would need update on clusterroles/finalizers)",
    },
    Permission {
        scope: Scope::InstallNamespace,
        group: "",
        resources: &["secrets"],
        resource_names: &[],
        verbs: &["create"],
        why: "webhook::registration::ensure_ca creates the CA Secret once, and controller::turn_secret::ensure \
              the chart's coturn shared secret (--turn-secret-name) once (a create cannot name its object; the \
              operator can read no Secret here but its CA's)",
    },
    Permission {
        scope: Scope::InstallNamespace,
        group: "",
        resources: &["secrets"],
        resource_names: &[CA_SECRET],
        verbs: &["get", "update"],
        why: "webhook::registration::ensure_ca and rotate read the CA Secret and replace it (fenced on the \
              resourceVersion read) when they replace or rotate the CA",
    },
    Permission {
        scope: Scope::InstallNamespace,
        group: "",
        resources: &["configmaps"],
        resource_names: &[TRUST_BUNDLE],
        verbs: &["get", "create", "patch"],
        why: "webhook::registration::ensure_ca server-side applies the trust bundle (apply names the object \
              even when it creates it)",
    },
    Permission {
        scope: Scope::InstallNamespace,
        group: "coordination.k8s.io",
        resources: &["leases"],
        resource_names: &[],
        verbs: &["create"],
        why: "leader::KubeLease creates the replicas' Lease when there is none (a create cannot name its object)",
    },
    Permission {
        scope: Scope::InstallNamespace,
        group: "coordination.k8s.io",
        resources: &["leases"],
        resource_names: &[LEASE],
        verbs: &["get", "update"],
        why: "leader::KubeLease and leader::release read and replace the replicas' Lease (replace is fenced \
              on the resourceVersion read)",
    },
];

/// The name of the webhook configurations `tiepdan-operator run --webhook-addr` registers by
/// default (`--webhook-configuration-name`): the chart's full name in the default render, as the
/// chart passes its own full name, so that two releases in a cluster never share them.
pub const WEBHOOK_CONFIGURATION: &str = OWNER_CLUSTER_ROLE;
/// The one name every release registered its webhook configurations under in older builds (two
/// releases overwrote each other's); removed when this release owns them.
pub const LEGACY_WEBHOOK_CONFIGURATION: &str = "tiepdan";
/// The chart's ClusterRole in the default render (`tiepdan.fullname` of a release named
/// `tiepdan`), which the chart passes as `--webhook-owner-cluster-role`; another release name
/// grants `get` on its own `<release>…-operator` instead.
pub const OWNER_CLUSTER_ROLE: &str = "tiepdan-operator";
/// The name of the Lease `tiepdan-operator run --leader-elect` holds.
pub const LEASE: &str = "tiepdan-operator";
/// The operator's CA Secret and trust bundle ConfigMap, in its install namespace.
pub const CA_SECRET: &str = crate::webhook::registration::CA_SECRET;
pub const TRUST_BUNDLE: &str = crate::webhook::registration::TRUST_BUNDLE;

/// One verb on one resource (or one named object of it), the unit RBAC rules are compared in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub scope: Scope,
    pub group: String,
    pub resource: String,
    /// `None`: any object of the resource.
    pub name: Option<String>,
    pub verb: String,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        let name = self.name.as_deref().map(|n| format!("/{n}")).unwrap_or_default();
        write!(f, "{:?}: {} {group}/{}{name}", self.scope, self.verb, self.resource)
    }
}

/// Flattens rules (`apiGroups` × `resources` × `resourceNames` or any × `verbs`) into grants.
pub fn flatten<S: AsRef<str>>(
    scope: Scope,
    groups: &[S],
    resources: &[S],
    names: &[S],
    verbs: &[S],
) -> BTreeSet<Grant> {
    let names: Vec<Option<String>> =
        if names.is_empty() { vec![None] } else { names.iter().map(|n| Some(n.as_ref().to_owned())).collect() };
    let mut out = BTreeSet::new();
    for g in groups {
        for r in resources {
            for n in &names {
                for v in verbs {
                    out.insert(Grant {
                        scope,
                        group: g.as_ref().to_owned(),
                        resource: r.as_ref().to_owned(),
                        name: n.clone(),
                        verb: v.as_ref().to_owned(),
                    });
                }
            }
        }
    }
    out
}

/// Every grant in [`PERMISSIONS`].
pub fn grants() -> BTreeSet<Grant> {
    PERMISSIONS.iter().flat_map(|p| flatten(p.scope, &[p.group], p.resources, p.resource_names, p.verbs)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_no_wildcards_no_duplicates_and_says_why() {
        let mut seen = BTreeSet::new();
        for p in PERMISSIONS {
            assert!(!p.why.trim().is_empty(), "{p:?} says why");
            // Secrets are read only in the watched namespace (and the CA's, by name): never
            // cluster-wide.
            if p.resources.contains(&"secrets") {
                assert_ne!(p.scope, Scope::Cluster, "{p:?} grants Secrets cluster-wide");
            }
            for s in [&[p.group][..], p.resources, p.resource_names, p.verbs].concat() {
                assert!(!s.contains('*'), "{p:?} has a wildcard");
            }
            for g in flatten(p.scope, &[p.group], p.resources, p.resource_names, p.verbs) {
                assert!(seen.insert(g.clone()), "{g} is listed twice");
            }
        }
    }

    #[test]
    fn rules_flatten_into_one_grant_per_verb_resource_and_name() {
        let g = flatten(Scope::Cluster, &["a"], &["x", "y"], &["n1", "n2"], &["get"]);
        assert_eq!(g.len(), 4);
        let any = flatten(Scope::Cluster, &[""], &["pods"], &[] as &[&str], &["list", "watch"]);
        assert_eq!(
            any.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["Cluster: list core/pods", "Cluster: watch core/pods"]
        );
    }
}
