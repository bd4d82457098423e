//! The Helm chart on the real API server: `helm install` creates the CRDs, the ServiceAccount,
//! its roles and the Deployment; the API server lets that ServiceAccount do exactly what
//! `tiepdan_operator::rbac::PERMISSIONS` lists and refuses the rest; and the controllers, running
//! as that ServiceAccount, provision a session and clean it up. Each test installs its own
//! release into its own namespace and uninstalls it when done.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for, ControlPlane, Node, NodeMode, NodeOptions};
use tiepdan_operator::api::{MediaWorkerPool, ReceptionPoint, ReceptionSession};
use tiepdan_operator::build::labels;
use tiepdan_operator::clock::SimClock;
use tiepdan_operator::leader::{self, LeaseConfig};
use tiepdan_operator::rbac::{self, Grant, Scope};
use tiepdan_operator::webhook::registration::{self, Endpoint, Registration};
use tiepdan_operator::webhook::runner;

use crate::common::{cluster, kubectl, kubectl_ok, repo, start_operator};

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
struct Release<'a> {
    cp: &'a ControlPlane,
    name: String,
    namespace: String,
}

impl<'a> Release<'a> {
    fn install(cp: &'a ControlPlane, namespace: &str) -> Self {
        let name = unique_name("tiepdan");
        let out = run_helm(cp, &["install", &name, "charts/tiepdan", "--namespace", namespace]);
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
/// owner) is its own, named after the release rather than the default render's.
fn release_grants(release: &Release<'_>) -> BTreeSet<Grant> {
    rbac::grants()
        .into_iter()
        .map(|mut g| {
            if g.resource == "clusterroles" && g.name.as_deref() == Some(rbac::OWNER_CLUSTER_ROLE) {
                g.name = Some(release.fullname());
            }
            g
        })
        .collect()
}

/// A client acting as `user` (the API server adds a ServiceAccount's groups itself).
async fn impersonating(cp: &ControlPlane, user: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(cp.kubeconfig()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap()
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
    let release = Release::install(cp, &ns);
    let name = release.fullname();

    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    for crd in ["receptionpoints.tiepdan.io", "receptionsessions.tiepdan.io", "mediaworkerpools.tiepdan.io"] {
        wait_for(WAIT, format!("CRD {crd} established"), || established(&crds, crd)).await.unwrap();
    }
    Api::<ServiceAccount>::namespaced(client.clone(), &ns).get(&name).await.unwrap();
    Api::<Service>::namespaced(client.clone(), &ns).get(&name).await.unwrap();
    // The installed roles grant what operator/src/rbac.rs lists (as operator/tests/chart.rs checks
    // on the render).
    let cluster_rules = Api::<ClusterRole>::all(client.clone()).get(&name).await.unwrap().rules.unwrap_or_default();
    let ns_rules = Api::<Role>::namespaced(client.clone(), &ns).get(&name).await.unwrap().rules.unwrap_or_default();
    let mut installed = BTreeSet::new();
    for (scope, rules) in [(Scope::Cluster, cluster_rules), (Scope::InstallNamespace, ns_rules)] {
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
    // cluster-wide ones, in the install namespace for the Role's.
    let reviews = Api::<SubjectAccessReview>::all(client.clone());
    for g in release_grants(&release) {
        let (resource, subresource) = match g.resource.split_once('/') {
            Some((r, s)) => (r.to_owned(), Some(s.to_owned())),
            None => (g.resource.clone(), None),
        };
        let namespace = match g.scope {
            Scope::Cluster => "default".to_owned(),
            Scope::InstallNamespace => ns.clone(),
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
    let sample_allowed: &[&[&str]] = &[
        &["list", "receptionsessions.tiepdan.io", "--all-namespaces"],
        &["patch", "receptionsessions.tiepdan.io", "--subresource=status", "-n", "default"],
        &["create", "pods", "-n", "default"],
        &["delete", "services", "-n", "default"],
        &["create", "events.events.k8s.io", "-n", "default"],
        &["get", "customresourcedefinitions.apiextensions.k8s.io/podmonitors.monitoring.coreos.com"],
        &["patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/tiepdan"],
        &["create", "leases.coordination.k8s.io", "-n", &ns],
        &["update", "leases.coordination.k8s.io/tiepdan-operator", "-n", &ns],
        &["get", &own_role],
    ];
    for args in sample_allowed {
        assert!(can_i(cp, &release, args), "the operator's ServiceAccount may {args:?}");
    }
    let denied: &[&[&str]] = &[
        &["*", "*", "--all-namespaces"],
        &["create", "clusterroles.rbac.authorization.k8s.io"],
        &["bind", "clusterroles.rbac.authorization.k8s.io"],
        &["impersonate", "serviceaccounts", "-n", &ns],
        &["delete", "nodes"],
        &["create", "namespaces"],
        &["update", "pods", "-n", "default"],
        &["create", "pods", "--subresource=exec", "-n", "default"],
        &["delete", "receptionsessions.tiepdan.io", "-n", "default"],
        &["create", "receptionpoints.tiepdan.io", "-n", "default"],
        &["get", "customresourcedefinitions.apiextensions.k8s.io/receptionsessions.tiepdan.io"],
        &["list", "customresourcedefinitions.apiextensions.k8s.io"],
        &["create", "leases.coordination.k8s.io", "-n", "default"],
        &["patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/someone-elses"],
        &["delete", "validatingwebhookconfigurations.admissionregistration.k8s.io/tiepdan"],
        &["update", "leases.coordination.k8s.io/kube-controller-manager", "-n", &ns],
        &["create", "servicemonitors.monitoring.coreos.com", "-n", "default"],
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

#[tokio::test]
async fn the_operator_as_the_charts_service_account_provisions_a_session_and_cleans_it_up() {
    let cp = cluster().await;
    let admin = cp.client().await.unwrap();
    let install_ns = unique_name("chart-op");
    create_namespace(&admin, &install_ns).await.unwrap();
    let release = Release::install(cp, &install_ns);
    let sa = impersonating(cp, &release.service_account_user()).await;

    // The controllers, as the chart's ServiceAccount, in a namespace of their own.
    let ns = unique_name("chart-sessions");
    create_namespace(&admin, &ns).await.unwrap();
    let _node = Node::start(admin.clone(), NodeOptions::new(NodeMode::Simulated).in_namespace(&ns)).unwrap();
    // Inside the rehearsal: everything is provisioned at once.
    let clock = SimClock::new("2027-03-14T07:10:00Z".parse().unwrap());
    let operator = start_operator(sa.clone(), &ns, Arc::new(clock.clone()));
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "examples/my-hao/"]);

    let sessions = Api::<ReceptionSession>::namespaced(admin.clone(), &ns);
    let provisioned = ("True".to_owned(), "Provisioned".to_owned());
    wait_for(WAIT, "the session Provisioned", || async {
        condition(&sessions, "Provisioned").await.and_then(|c| {
            if c == provisioned {
                Ok(())
            } else {
                Err(format!("{c:?}"))
            }
        })
    })
    .await
    .unwrap();
    // Monitoring: the CRD check is allowed (and finds no prometheus-operator here), the dashboard
    // ConfigMap is applied.
    let monitoring = ("False".to_owned(), "PrometheusOperatorMissing".to_owned());
    wait_for(WAIT, "MonitoringReady to say prometheus-operator is missing", || async {
        condition(&sessions, "MonitoringReady").await.and_then(|c| {
            if c == monitoring {
                Ok(())
            } else {
                Err(format!("{c:?}"))
            }
        })
    })
    .await
    .unwrap();
    let selector = ListParams::default().labels(&labels::session_selector(SESSION));
    assert_eq!(
        labelled(&admin, &ns, &selector).await.unwrap(),
        [1, 1, 3, 1, 1],
        "the worker pod, signaling Service, Secrets (join tokens, the session's certificate, the worker pod's \
         copy of it), dashboard ConfigMap and NetworkPolicy"
    );
    // Status of the other two kinds, and events.
    wait_for(WAIT, "pool and point status, and events", || async {
        let pool =
            Api::<MediaWorkerPool>::namespaced(admin.clone(), &ns).get("default").await.map_err(|e| e.to_string())?;
        let point = Api::<ReceptionPoint>::namespaced(admin.clone(), &ns)
            .get("thi-xa-my-hao")
            .await
            .map_err(|e| e.to_string())?;
        let events = Api::<Event>::namespaced(admin.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ours =
            events.items.iter().filter(|e| e.reporting_controller.as_deref() == Some("tiepdan-operator")).count();
        match (pool.status.is_some(), point.status.is_some_and(|s| !s.conditions.is_empty()), ours) {
            (true, true, n) if n > 0 => Ok(()),
            other => Err(format!("pool status, point conditions, events: {other:?}")),
        }
    })
    .await
    .unwrap();

    // The finalizer and the clean-up, as the ServiceAccount.
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
    drop(operator);

    // Leader election in the install namespace: acquire, renew, release; nowhere else.
    let lease = |namespace: &str| LeaseConfig {
        namespace: namespace.to_owned(),
        name: rbac::LEASE.to_owned(),
        identity: "chart-test".to_owned(),
        duration: Duration::from_secs(15),
        retry: Duration::from_secs(2),
    };
    let leases = Api::<Lease>::namespaced(sa.clone(), &install_ns);
    let now = jiff::Timestamp::now();
    assert!(leader::try_acquire(&leases, &lease(&install_ns), now).await.unwrap(), "acquires the Lease");
    assert!(leader::try_acquire(&leases, &lease(&install_ns), now).await.unwrap(), "renews the Lease");
    leader::release(&leases, &lease(&install_ns)).await.unwrap();
    let elsewhere = Api::<Lease>::namespaced(sa.clone(), &ns);
    assert!(leader::try_acquire(&elsewhere, &lease(&ns), now).await.is_err(), "no Lease outside the install namespace");

    // The webhook's CA and configurations, under the one name the ServiceAccount may use, owned
    // by the release's ClusterRole (the only one it may read). The namespace selector matches no
    // namespace, so the other tests sharing this API server never call this (absent) webhook; the
    // configurations are deleted right after.
    let ca = registration::ensure_ca(&sa, &install_ns, now).await.unwrap();
    let owner = runner::cluster_role_owner(&sa, &release.fullname()).await.unwrap();
    assert!(runner::cluster_role_owner(&sa, "cluster-admin").await.is_err(), "no other ClusterRole");
    let reg = Registration {
        name: rbac::WEBHOOK_CONFIGURATION.to_owned(),
        endpoint: Endpoint::Service { namespace: install_ns.clone(), name: release.fullname(), port: 8443 },
        namespace_selector: Some(LabelSelector {
            match_labels: Some([("tiepdan.io/chart-test".to_owned(), release.name.clone())].into()),
            ..Default::default()
        }),
        owner: Some(owner),
    };
    let registered = registration::register(&sa, &reg, &ca).await;
    for kind in ["validatingwebhookconfiguration", "mutatingwebhookconfiguration"] {
        kubectl_ok(cp, &["delete", kind, rbac::WEBHOOK_CONFIGURATION, "--ignore-not-found"]);
    }
    registered.unwrap();
    let other = Registration { name: release.name.clone(), ..reg };
    assert!(registration::register(&sa, &other, &ca).await.is_err(), "no webhook configuration of another name");
}
