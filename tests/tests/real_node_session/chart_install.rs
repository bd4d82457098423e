//! The Helm chart on the real API server: `helm install` creates the CRDs, the ServiceAccount,
//! its roles and the Deployment; the API server lets that ServiceAccount do exactly what
//! `tiepdan_operator::rbac::PERMISSIONS` lists and refuses the rest; and the operator, running as
//! a Deployment from its image on the real node, provisions a session, serves its admission
//! webhook, holds its Lease and cleans up. Each test installs its own release into its own
//! namespace and uninstalls it when done.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane, RealNode};
use tiepdan_operator::api::ReceptionSession;
use tiepdan_operator::build::labels;
use tiepdan_operator::rbac::{self, Grant, Scope};

use crate::common::{cluster, kubectl, kubectl_apply_yaml, kubectl_ok, repo};

/// The chart's default image: what scripts/images.sh builds and the node imports.
const OPERATOR_IMAGE: &str = concat!("ghcr.io/tiepdan/tiepdan-operator:", env!("CARGO_PKG_VERSION"));

const SESSION: &str = "tiep-dan-dinh-ky-thang-3";
const WAIT: Duration = Duration::from_secs(30);

/// Helm 3.18: `TIEPDAN_HELM`, else where `scripts/install-deps.sh` puts it. Never skips.
fn helm() -> PathBuf {
    let path = match std::env::var_os("TIEPDAN_HELM") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("TIEPDAN_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/tiepdan"))
            .join("helm-3.18/helm"),
    };
    assert!(
        path.is_file(),
        "helm 3.18 is missing at {}: run scripts/install-deps.sh (or set TIEPDAN_HELM)",
        path.display()
    );
    path
}

fn run_helm(cp: &ControlPlane, args: &[&str]) -> Output {
    Command::new(helm()).arg("--kubeconfig").arg(cp.kubeconfig()).args(args).current_dir(repo()).output().unwrap()
}

/// A release of the chart; uninstalled on drop.
pub(crate) struct Release<'a> {
    cp: &'a ControlPlane,
    name: String,
    namespace: String,
}

impl<'a> Release<'a> {
    /// `helm install` as release `name` with `set` (`--set` values, comma-separated).
    pub(crate) fn install(cp: &'a ControlPlane, namespace: &str, name: String, set: &str) -> Self {
        let out = run_helm(cp, &["install", &name, "charts/tiepdan", "--namespace", namespace, "--set", set]);
        assert!(out.status.success(), "helm install failed: {}", String::from_utf8_lossy(&out.stderr));
        Release { cp, name, namespace: namespace.to_owned() }
    }

    /// The chart's name for its objects (and the ServiceAccount): `<release>-operator`.
    fn fullname(&self) -> String {
        format!("{}-operator", self.name)
    }

    fn service_account_user(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.fullname())
    }
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let out = run_helm(self.cp, &["uninstall", &self.name, "--namespace", &self.namespace]);
        if !out.status.success() && !std::thread::panicking() {
            panic!("helm uninstall failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// `rbac::grants()` for this release: the ClusterRole it may read (the webhook configurations'
/// owner) and the webhook configurations are its own, named after the release rather than the
/// default render's.
fn release_grants(release: &Release<'_>) -> BTreeSet<Grant> {
    let per_release = |g: &Grant| match g.resource.as_str() {
        "clusterroles" => g.name.as_deref() == Some(rbac::OWNER_CLUSTER_ROLE),
        "validatingwebhookconfigurations" | "mutatingwebhookconfigurations" => {
            g.name.as_deref() == Some(rbac::WEBHOOK_CONFIGURATION)
        }
        _ => false,
    };
    rbac::grants()
        .into_iter()
        .map(|mut g| {
            if per_release(&g) {
                g.name = Some(release.fullname());
            }
            g
        })
        .collect()
}

/// `kubectl auth can-i --as=<the release's ServiceAccount> args...`.
fn can_i(cp: &ControlPlane, release: &Release<'_>, args: &[&str]) -> bool {
    let as_ = format!("--as={}", release.service_account_user());
    let mut all = vec!["auth", "can-i", as_.as_str()];
    all.extend_from_slice(args);
    let out = kubectl(cp, &all);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(answer == "yes" || answer == "no", "kubectl {all:?}: {answer} {}", String::from_utf8_lossy(&out.stderr));
    answer == "yes"
}

async fn established(crds: &Api<CustomResourceDefinition>, name: &str) -> Result<(), String> {
    let crd = crds.get(name).await.map_err(|e| e.to_string())?;
    let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
        Ok(())
    } else {
        Err(format!("{name} not established"))
    }
}

#[tokio::test]
async fn helm_install_creates_the_operator_and_its_service_account_may_do_only_what_the_operator_calls() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("chart");
    create_namespace(&client, &ns).await.unwrap();
    // The objects only: with the chart's defaults the operator's pod would call the API server
    // through the kubernetes Service, which this node cannot reach (see the next test).
    let release = Release::install(cp, &ns, unique_name("tiepdan"), "replicas=0");
    let name = release.fullname();

    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in ["receptionpoints.tiepdan.io", "receptionsessions.tiepdan.io", "mediaworkerpools.tiepdan.io"] {
        wait_for(WAIT, format!("CRD {crd} established"), || established(&crds, crd)).await.unwrap();
    }
    Api::<ServiceAccount>::namespaced(client.clone(), &ns).get(&name).await.unwrap();
    Api::<Service>::namespaced(client.clone(), &ns).get(&name).await.unwrap();
    // The installed roles grant what operator/src/rbac.rs lists (as operator/tests/chart.rs checks
    // on the render).
    // Namespaced by default: the watched namespace (the release's own here) has its Role, and no
    // ClusterRole but the cluster-scoped one exists.
    let cluster_rules = Api::<ClusterRole>::all(client.clone()).get(&name).await.unwrap().rules.unwrap_or_default();
    let roles = Api::<Role>::namespaced(client.clone(), &ns);
    let ns_rules = roles.get(&name).await.unwrap().rules.unwrap_or_default();
    let watch_rules = roles.get(&format!("{name}-watch")).await.unwrap().rules.unwrap_or_default();
    assert!(Api::<ClusterRole>::all(client.clone()).get_opt(&format!("{name}-watch")).await.unwrap().is_none());
    let mut installed = BTreeSet::new();
    for (scope, rules) in
        [(Scope::Cluster, cluster_rules), (Scope::InstallNamespace, ns_rules), (Scope::WatchNamespace, watch_rules)]
    {
        for r in rules {
            let (groups, names) = (r.api_groups.unwrap_or_default(), r.resource_names.unwrap_or_default());
            installed.extend(rbac::flatten(scope, &groups, &r.resources.unwrap_or_default(), &names, &r.verbs));
        }
    }
    assert_eq!(installed, release_grants(&release));
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns).get(&name).await.unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(name.as_str()));
    // The webhook configurations belong to the release's ClusterRole, deleted on uninstall.
    let args = pod.containers[0].args.clone().unwrap_or_default();
    let owner_flag = format!("--webhook-owner-cluster-role={name}");
    assert!(args.contains(&owner_flag), "{owner_flag} in {args:?}");

    // Every listed grant, asked of the API server's authorizer: in another namespace for the
    // cluster-scoped ones, in the install (and watched) namespace for the Roles'.
    let reviews = Api::<SubjectAccessReview>::all(client.clone());
    for g in release_grants(&release) {
        let (resource, subresource) = match g.resource.split_once('/') {
            Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
            None => (g.resource.clone(), None),
        };
        let namespace = match g.scope {
            Scope::Cluster => "default".to_owned(),
            Scope::InstallNamespace | Scope::WatchNamespace => ns.clone(),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(release.service_account_user()),
                groups: Some(vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{ns}"),
                    "system:authenticated".to_owned(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(g.group.clone()),
                    resource: Some(resource),
                    subresource,
                    name: g.name.clone(),
                    namespace: Some(namespace),
                    verb: Some(g.verb.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let status = reviews.create(&PostParams::default(), &review).await.unwrap().status.unwrap();
        assert!(status.allowed, "the API server refuses {g}: {:?}", status.reason);
    }

    // kubectl's view, as an administrator would check it.
    let own_role = format!("clusterroles.rbac.authorization.k8s.io/{name}");
    let own_webhook = format!("validatingwebhookconfigurations.admissionregistration.k8s.io/{name}");
    let sample_allowed: &[&[&str]] = &[
        &["list", "receptionsessions.tiepdan.io", "-n", &ns],
        &["patch", "receptionsessions.tiepdan.io", "--subresource=status", "-n", &ns],
        &["create", "pods", "-n", &ns],
        &["delete", "services", "-n", &ns],
        &["list", "secrets", "-n", &ns],
        &["create", "events.events.k8s.io", "-n", &ns],
        &["get", "customresourcedefinitions.apiextensions.k8s.io/podmonitors.monitoring.coreos.com"],
        &["patch", &own_webhook],
        &["delete", "mutatingwebhookconfigurations.admissionregistration.k8s.io/tiepdan"],
        &["create", "leases.coordination.k8s.io", "-n", &ns],
        &["update", "leases.coordination.k8s.io/tiepdan-operator", "-n", &ns],
        &["get", &own_role],
    ];
    for args in sample_allowed {
        assert!(can_i(cp, &release, args), "the operator's ServiceAccount may {args:?}");
    }
    let denied: &[&[&str]] = &[
        &["*", "*", "--all-namespaces"],
        // Namespaced: nothing in a namespace it does not watch, Secrets least of all.
        &["get", "secrets", "-n", "default"],
        &["list", "secrets", "--all-namespaces"],
        &["watch", "secrets", "--all-namespaces"],
        &["list", "receptionsessions.tiepdan.io", "--all-namespaces"],
        &["create", "pods", "-n", "default"],
        &["create", "clusterroles.rbac.authorization.k8s.io"],
        &["bind", "clusterroles.rbac.authorization.k8s.io"],
        &["impersonate", "serviceaccounts", "-n", &ns],
        &["delete", "nodes"],
        &["create", "namespaces"],
        &["update", "pods", "-n", &ns],
        &["create", "pods", "--subresource=exec", "-n", &ns],
        &["delete", "receptionsessions.tiepdan.io", "-n", &ns],
        &["create", "receptionpoints.tiepdan.io", "-n", &ns],
        &["get", "customresourcedefinitions.apiextensions.k8s.io/receptionsessions.tiepdan.io"],
        &["list", "customresourcedefinitions.apiextensions.k8s.io"],
        &["create", "leases.coordination.k8s.io", "-n", "default"],
        &["patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses"],
        // The legacy name: get and delete only; its own name: never delete (the owner does).
        &["patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/tiepdan"],
        &["delete", &own_webhook],
        &["update", "leases.coordination.k8s.io/kube-controller-manager", "-n", &ns],
        &["create", "servicemonitors.monitoring.coreos.com", "-n", &ns],
        &["get", "clusterroles.rbac.authorization.k8s.io/cluster-admin"],
        &["list", "clusterroles.rbac.authorization.k8s.io"],
        &["update", &own_role],
    ];
    for args in denied {
        assert!(!can_i(cp, &release, args), "the operator's ServiceAccount may not {args:?}");
    }
}

async fn condition(api: &Api<ReceptionSession>, type_: &str) -> Result<(String, String), String> {
    let s = api.get(SESSION).await.map_err(|e| e.to_string())?;
    let c = s.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == type_);
    c.map(|c| (c.status, c.reason)).ok_or_else(|| format!("no {type_} condition yet"))
}

/// How many pods, Services, Secrets, ConfigMaps and NetworkPolicies match `selector` in `ns`.
async fn labelled(client: &Client, ns: &str, selector: &ListParams) -> Result<[usize; 5], String> {
    async fn count<K>(client: &Client, ns: &str, selector: &ListParams) -> Result<usize, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Ok(Api::<K>::namespaced(client.clone(), ns)
            .list_metadata(selector)
            .await
            .map_err(|e| e.to_string())?
            .items
            .len())
    }
    Ok([
        count::<Pod>(client, ns, selector).await?,
        count::<Service>(client, ns, selector).await?,
        count::<Secret>(client, ns, selector).await?,
        count::<ConfigMap>(client, ns, selector).await?,
        count::<NetworkPolicy>(client, ns, selector).await?,
    ])
}

/// The release as tiepdan's own test node needs it: the operator's pod in the host network on
/// 127.0.0.1 (free ports), the API server at its loopback address, the webhook called at a URL
/// and scoped to `sessions_ns` (labelled for the release), watching only `sessions_ns`.
pub(crate) fn host_network_values(cp: &ControlPlane, release: &str, sessions_ns: &str) -> String {
    let metrics = tiepdan_harness::process::free_port_below_ephemeral().unwrap();
    let webhook = loop {
        let p = tiepdan_harness::process::free_port_below_ephemeral().unwrap();
        if p != metrics {
            break p;
        }
    };
    [
        "hostNetwork=true".to_owned(),
        "listenHost=127.0.0.1".to_owned(),
        "apiServer.host=127.0.0.1".to_owned(),
        format!("apiServer.port={}", cp.port()),
        format!("metrics.port={metrics}"),
        format!("webhook.port={webhook}"),
        format!("webhook.url=https://127.0.0.1:{webhook}"),
        format!("webhook.namespaceLabels.tiepdan\\.io/chart-test={release}"),
        format!("watchNamespace={sessions_ns}"),
        "statusPollSeconds=1".to_owned(),
        // The test node has no coturn image (only the ones scripts/images.sh builds).
        "turn.enabled=false".to_owned(),
    ]
    .join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_runs_the_operator_image_on_the_node_and_it_provisions_checks_and_cleans_up() {
    let cp = cluster().await;
    RealNode::shared().await.expect("the real node is Ready");
    let admin = cp.client().await.unwrap();
    let install_ns = unique_name("chart-op");
    create_namespace(&admin, &install_ns).await.unwrap();
    let ns = unique_name("chart-sessions");
    create_namespace(&admin, &ns).await.unwrap();
    let release_name = unique_name("tiepdan");
    kubectl_ok(cp, &["label", "namespace", &ns, &format!("tiepdan.io/chart-test={release_name}")]);
    let release = Release::install(cp, &install_ns, release_name.clone(), &host_network_values(cp, &release_name, &ns));

    // The Deployment's pod, from the operator image, on the node, Ready (its /readyz: the API
    // server lists every watched kind for the chart's ServiceAccount).
    let pods = Api::<Pod>::namespaced(admin.clone(), &install_ns);
    let operator_pod = wait_for(Duration::from_secs(90), "the operator's pod Ready on the node", || async {
        let list = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        match list.items.into_iter().find(tiepdan_operator::controller::pods::pod_ready) {
            Some(p) => Ok(p),
            None => Err("no Ready operator pod yet".to_owned()),
        }
    })
    .await
    .unwrap();
    let spec = operator_pod.spec.clone().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(tiepdan_harness::control_plane::NODE_NAME));
    assert_eq!(spec.service_account_name.as_deref(), Some(release.fullname().as_str()));
    assert_eq!(spec.containers[0].image.as_deref(), Some(OPERATOR_IMAGE));

    // A session in its rehearsal now (the operator runs on the real clock): the operator pod
    // provisions it and binds a warm worker container, which it reaches on 127.0.0.1.
    let now = jiff::Timestamp::now();
    let (deadline, start) = (now + jiff::SignedDuration::from_mins(59), now + jiff::SignedDuration::from_mins(120));
    let yaml = crate::common::small_live_topology(SESSION, "Tiếp dân định kỳ", start, deadline);
    let sessions = Api::<ReceptionSession>::namespaced(admin.clone(), &ns);
    // The webhook registers a moment after the pod is Ready; until then kubectl may be refused
    // for a missing CA bundle, so apply until it is accepted.
    wait_for(WAIT, "the topology applied", || async {
        let out = kubectl_apply_yaml(cp, &ns, &yaml);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await
    .unwrap();
    for (type_, reason) in [("Provisioned", "Provisioned"), ("WorkerReady", "WorkerReady")] {
        let want = ("True".to_owned(), reason.to_owned());
        wait_for(Duration::from_secs(60), format!("{type_} True from the operator pod"), || async {
            condition(&sessions, type_).await.and_then(|c| if c == want { Ok(()) } else { Err(format!("{c:?}")) })
        })
        .await
        .unwrap();
    }
    let selector = ListParams::default().labels(&labels::session_selector(SESSION));
    assert_eq!(
        labelled(&admin, &ns, &selector).await.unwrap(),
        [1, 1, 3, 1, 1],
        "the worker pod, signaling Service, Secrets (join tokens, the session's certificate, the worker pod's \
         copy of it), dashboard ConfigMap and NetworkPolicy"
    );
    let events = Api::<Event>::namespaced(admin.clone(), &ns).list(&ListParams::default()).await.unwrap();
    assert!(events.items.iter().any(|e| e.reporting_controller.as_deref() == Some("tiepdan-operator")));

    // Its admission webhook, at the URL, for the labelled namespace: a start in the past is
    // refused with the field named.
    let past = "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionSession\nmetadata: {name: qua-khu}\nspec:\n  title: T\n  \
                host: thi-xa-my-hao\n  points: [di-su]\n  schedule: {start: \"2020-01-01T08:00:00+07:00\", durationMinutes: 60}\n";
    let out = kubectl_apply_yaml(cp, &ns, past);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("validate.tiepdan.io") && err.contains("spec.schedule.start"),
        "{err}"
    );
    // The configurations are owned by the release's ClusterRole and scoped to the label.
    let vwc = Api::<ValidatingWebhookConfiguration>::all(admin.clone());
    // Named as the release (another release's, such as the entry test's running beside this one,
    // has its own).
    let fullname = release.fullname();
    let registered = vwc.get(&fullname).await.unwrap();
    let owners = registered.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), [release.fullname().as_str()]);
    let selector_labels = registered.webhooks.unwrap()[0].namespace_selector.clone().unwrap().match_labels.unwrap();
    assert_eq!(selector_labels.get("tiepdan.io/chart-test"), Some(&release_name));
    // The pod holds the Lease in the install namespace.
    let lease = Api::<Lease>::namespaced(admin.clone(), &install_ns).get(rbac::LEASE).await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity, operator_pod.metadata.name);

    // The finalizer and the clean-up, by the operator pod.
    sessions.delete(SESSION, &DeleteParams::default()).await.unwrap();
    wait_for(WAIT, "the session gone and everything labelled for it deleted", || async {
        let present = sessions.get_opt(SESSION).await.map_err(|e| e.to_string())?.is_some();
        match (present, labelled(&admin, &ns, &selector).await?) {
            (false, [0, 0, 0, 0, 0]) => Ok(()),
            other => Err(format!("session present, labelled pods, services, secrets, configmaps, policies: {other:?}")),
        }
    })
    .await
    .unwrap();

    // `helm uninstall`: the Deployment goes, and the garbage collector deletes the webhook
    // configurations with the release's ClusterRole.
    drop(release);
    wait_for(Duration::from_secs(60), "the webhook configurations deleted with the release", || async {
        match vwc.get_opt(&fullname).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still registered".to_owned()),
        }
    })
    .await
    .unwrap();
}
