//! The Helm chart (`charts/tiepdan`): its committed render is what Helm prints, its copies of the
//! generated CRDs and rules are current, it lints, its RBAC is exactly what the operator calls
//! (`tiepdan_operator::rbac::PERMISSIONS`) with no wildcard, and its pod is restricted.
//!
//! Needs Helm 3.18 (`scripts/install-deps.sh` puts it in `~/.cache/tiepdan/helm-3.18/helm`;
//! `TIEPDAN_HELM` overrides). Regenerate with `scripts/render-chart.sh`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;
use tiepdan_operator::rbac::{self, Grant, Scope};

const NAMESPACE: &str = "tiepdan-system";
const REGENERATE: &str = "run scripts/render-chart.sh";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Helm 3.18: `TIEPDAN_HELM`, else the cache path `scripts/install-deps.sh` installs to. Never
/// skips: a missing helm fails the test.
fn helm() -> PathBuf {
    let path = match std::env::var_os("TIEPDAN_HELM") {
        Some(p) => PathBuf::from(p),
        None => {
            let cache = std::env::var_os("TIEPDAN_CACHE").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tiepdan")
            });
            cache.join("helm-3.18/helm")
        }
    };
    assert!(
        path.is_file(),
        "helm 3.18 is missing at {}: run scripts/install-deps.sh (or set TIEPDAN_HELM)",
        path.display()
    );
    path
}

/// Runs helm in the repository root and returns stdout, failing the test with stderr.
fn run_helm(args: &[&str]) -> String {
    let out = Command::new(helm()).args(args).current_dir(repo()).output().expect("run helm");
    assert!(out.status.success(), "helm {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

/// `helm template tiepdan charts/tiepdan --namespace tiepdan-system` plus `extra` flags.
fn template(extra: &[&str]) -> String {
    let mut args = vec!["template", "tiepdan", "charts/tiepdan", "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    run_helm(&args)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("the render is YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The committed render, parsed.
fn rendered() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("charts/rendered/tiepdan.yaml"))
        .unwrap_or_else(|e| panic!("charts/rendered/tiepdan.yaml: {e}; {REGENERATE}"));
    documents(&text)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "exactly one {kind} in the render");
    found[0]
}

/// The object of `kind` called `name` (the chart has two Deployments and two Services: the
/// operator's and coturn's).
fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<_> =
        of_kind(docs, kind).into_iter().filter(|d| d["metadata"]["name"].as_str() == Some(name)).collect();
    assert_eq!(found.len(), 1, "exactly one {kind} {name} in the render");
    found[0]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().map(|x| x.as_str().expect("a string").to_owned()).collect()).unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, k| &v[*k]).as_str().unwrap_or_else(|| panic!("{path:?} is a string in {v:?}"))
}

fn yaml_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".yaml"))
        .collect()
}

#[test]
fn the_committed_render_is_what_helm_template_prints() {
    let committed = std::fs::read_to_string(repo().join("charts/rendered/tiepdan.yaml")).unwrap_or_default();
    assert!(committed == template(&[]), "charts/rendered/tiepdan.yaml drifted from the chart; {REGENERATE}");
}

#[test]
fn the_charts_crds_are_copies_of_the_generated_crds() {
    let (src, copy) = (repo().join("crds"), repo().join("charts/tiepdan/crds"));
    assert_eq!(yaml_files(&copy), yaml_files(&src), "charts/tiepdan/crds/ holds exactly crds/*.yaml; {REGENERATE}");
    for f in yaml_files(&src) {
        let (a, b) = (std::fs::read(src.join(&f)).unwrap(), std::fs::read(copy.join(&f)).unwrap());
        assert!(a == b, "charts/tiepdan/crds/{f} differs from crds/{f}; {REGENERATE}");
    }
}

#[test]
fn the_charts_global_rules_are_a_copy_of_the_generated_rules() {
    let src = std::fs::read(repo().join("deploy/prometheus/global-rules.yaml")).ok();
    let copy = std::fs::read(repo().join("charts/tiepdan/files/global-rules.yaml")).ok();
    assert!(
        src == copy,
        "charts/tiepdan/files/global-rules.yaml differs from deploy/prometheus/global-rules.yaml; {REGENERATE}"
    );
}

#[test]
fn helm_lint_passes_strictly() {
    run_helm(&["lint", "--strict", "charts/tiepdan"]);
}

#[test]
fn with_prometheus_operator_the_chart_adds_the_global_rules_and_a_service_monitor() {
    // Without prometheus-operator (the committed render) neither is there.
    let plain = rendered();
    assert!(of_kind(&plain, "PrometheusRule").is_empty() && of_kind(&plain, "ServiceMonitor").is_empty());

    let docs = documents(&template(&[
        "--api-versions",
        "monitoring.coreos.com/v1",
        "--set",
        "monitoring.labels.release=prom",
    ]));
    let rule = one(&docs, "PrometheusRule");
    let generated: Value = serde_yaml::from_slice(
        &std::fs::read(repo().join("deploy/prometheus/global-rules.yaml"))
            .expect("deploy/prometheus/global-rules.yaml"),
    )
    .expect("the global rules are YAML");
    assert_eq!(rule["spec"]["groups"], generated["groups"], "the PrometheusRule holds the generated groups");
    assert_eq!(str_at(rule, &["metadata", "labels", "release"]), "prom", "monitoring.labels reach the rule");

    // The global alerts match job="tiepdan-operator": the ServiceMonitor takes the job from the
    // Service's app.kubernetes.io/name.
    let monitor = one(&docs, "ServiceMonitor");
    let job_label = str_at(monitor, &["spec", "jobLabel"]);
    let service = named(&docs, "Service", FULLNAME);
    assert_eq!(
        str_at(service, &["metadata", "labels", job_label]),
        tiepdan_operator::build::prometheus_rule::OPERATOR_JOB
    );
    assert_eq!(str_at(&monitor["spec"]["endpoints"][0], &["port"]), "metrics");

    let off =
        documents(&template(&["--api-versions", "monitoring.coreos.com/v1", "--set", "monitoring.globalRules=false"]));
    assert!(of_kind(&off, "PrometheusRule").is_empty(), "monitoring.globalRules=false turns the rule off");
}

/// The chart's name for its objects in a release named `tiepdan`.
const FULLNAME: &str = "tiepdan-operator";

/// The role (and binding) holding the watched namespace's grants.
fn watch_role_name() -> String {
    format!("{FULLNAME}-watch")
}

/// The stable entry's objects (`entry.enabled`), which have least-privilege RBAC of their own,
/// checked by `entry/tests/chart.rs`.
fn is_entrys(doc: &Value) -> bool {
    doc["metadata"]["labels"]["app.kubernetes.io/component"].as_str() == Some("entry")
}

/// The render's ClusterRoles and Roles as grants, refusing wildcards and non-resource URLs:
/// `<fullname>` is the cluster-scoped ClusterRole and the install namespace's Role,
/// `<fullname>-watch` the watched namespace's (a Role in `watch`, or a ClusterRole for `None`).
fn rendered_grants(docs: &[Value], watch: Option<&str>) -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for kind in ["ClusterRole", "Role"] {
        for role in of_kind(docs, kind).into_iter().filter(|r| !is_entrys(r)) {
            let name = str_at(role, &["metadata", "name"]);
            let scope = match (kind, name == FULLNAME) {
                ("ClusterRole", true) => Scope::Cluster,
                (_, true) => {
                    assert_eq!(
                        str_at(role, &["metadata", "namespace"]),
                        NAMESPACE,
                        "{name} is in the install namespace"
                    );
                    Scope::InstallNamespace
                }
                (_, false) => {
                    assert_eq!(name, watch_role_name(), "an unexpected {kind}");
                    match watch {
                        Some(ns) => {
                            assert_eq!(kind, "Role", "the watched namespace's grants are a Role");
                            assert_eq!(
                                str_at(role, &["metadata", "namespace"]),
                                ns,
                                "{name} is in the watched namespace"
                            );
                        }
                        None => assert_eq!(kind, "ClusterRole", "rbac.clusterWide renders a ClusterRole"),
                    }
                    Scope::WatchNamespace
                }
            };
            assert!(role.get("aggregationRule").is_none(), "{kind} aggregates no other role");
            for rule in role["rules"].as_sequence().expect("rules") {
                assert!(rule.get("nonResourceURLs").is_none(), "no non-resource URLs: {rule:?}");
                let fields = ["apiGroups", "resources", "resourceNames", "verbs"]
                    .map(|f| strings(rule.get(f).unwrap_or(&Value::Null)));
                for s in fields.iter().flatten() {
                    assert!(!s.contains('*'), "{kind} has a wildcard: {rule:?}");
                }
                let [groups, resources, names, verbs] = &fields;
                assert!(!groups.is_empty() && !resources.is_empty() && !verbs.is_empty(), "incomplete rule {rule:?}");
                grants.extend(rbac::flatten(scope, groups, resources, names, verbs));
            }
        }
    }
    grants
}

fn assert_grants_are_the_operators(got: &BTreeSet<Grant>) {
    let want = rbac::grants();
    let show = |s: BTreeSet<&Grant>| s.iter().map(|g| format!("\n  {g}")).collect::<String>();
    let missing = show(want.difference(got).collect());
    let extra = show(got.difference(&want).collect());
    assert!(
        missing.is_empty() && extra.is_empty(),
        "charts/tiepdan/templates/rbac.yaml differs from operator/src/rbac.rs\nmissing:{missing}\nbeyond what the operator calls:{extra}"
    );
}

#[test]
fn rbac_has_no_wildcard_and_grants_exactly_what_the_operator_calls() {
    assert_grants_are_the_operators(&rendered_grants(&rendered(), Some(NAMESPACE)));
    let cluster_wide = documents(&template(&["--set", "rbac.clusterWide=true"]));
    assert_grants_are_the_operators(&rendered_grants(&cluster_wide, None));
    // The stable entry adds nothing to the operator's roles.
    let entry = documents(&template(&["--set", "entry.enabled=true,entry.host=tiepdan.example.vn"]));
    assert_grants_are_the_operators(&rendered_grants(&entry, Some(NAMESPACE)));
}

fn deployment_args(docs: &[Value]) -> Vec<String> {
    strings(&named(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]["args"])
}

/// Every (kind, resource) a ClusterRole of `docs` grants.
fn cluster_wide_resources(docs: &[Value]) -> BTreeSet<String> {
    of_kind(docs, "ClusterRole")
        .into_iter()
        .flat_map(|r| r["rules"].as_sequence().cloned().unwrap_or_default())
        .flat_map(|rule| strings(&rule["resources"]))
        .collect()
}

/// The default install is namespaced: no ClusterRole grants Secrets (or anything with a
/// namespace), and the operator watches the namespace its Role is in.
#[test]
fn by_default_the_install_is_namespaced_and_grants_no_cluster_wide_secret_access() {
    let cluster_scoped = BTreeSet::from(
        [
            "customresourcedefinitions",
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
            "clusterroles",
            // Read while a worker is unready, to tell a lost node (controller::failover).
            "nodes",
        ]
        .map(str::to_owned),
    );
    for (values, watch) in [(&[][..], NAMESPACE), (&["--set", "watchNamespace=my-hao"][..], "my-hao")] {
        let docs = documents(&template(values));
        let resources = cluster_wide_resources(&docs);
        assert!(!resources.contains("secrets"), "no cluster-wide Secrets with {values:?}: {resources:?}");
        assert_eq!(resources, cluster_scoped, "ClusterRoles grant only cluster-scoped kinds with {values:?}");
        assert!(of_kind(&docs, "ClusterRoleBinding").len() == 1, "only the cluster-scoped ClusterRole is bound");
        assert!(deployment_args(&docs).contains(&format!("--namespace={watch}")), "{:?}", deployment_args(&docs));
        rendered_grants(&docs, Some(watch));
    }
    // The committed render is the default.
    assert!(!cluster_wide_resources(&rendered()).contains("secrets"));
}

/// Cluster-wide access only when asked for, and never half-asked.
#[test]
fn cluster_wide_rbac_is_an_explicit_opt_in() {
    let docs = documents(&template(&["--set", "rbac.clusterWide=true"]));
    assert!(cluster_wide_resources(&docs).contains("secrets"));
    assert!(!deployment_args(&docs).iter().any(|a| a.starts_with("--namespace")), "every namespace is watched");
    let both = Command::new(helm())
        .args(["template", "tiepdan", "charts/tiepdan", "--namespace", NAMESPACE])
        .args(["--set", "rbac.clusterWide=true", "--set", "watchNamespace=my-hao"])
        .current_dir(repo())
        .output()
        .expect("run helm");
    let err = String::from_utf8_lossy(&both.stderr);
    assert!(!both.status.success() && err.contains("rbac.clusterWide") && err.contains("watchNamespace"), "{err}");
}

#[test]
fn the_roles_are_bound_to_the_service_account_the_operator_runs_as() {
    for docs in [rendered(), documents(&template(&["--set", "rbac.clusterWide=true"]))] {
        let sa = one(&docs, "ServiceAccount");
        let sa_name = str_at(sa, &["metadata", "name"]);
        assert_eq!(str_at(sa, &["metadata", "namespace"]), NAMESPACE);
        let deployment = named(&docs, "Deployment", FULLNAME);
        assert_eq!(str_at(deployment, &["spec", "template", "spec", "serviceAccountName"]), sa_name);
        // The webhook configurations' owner, which the operator may get by name, is this ClusterRole.
        let roles: Vec<&Value> = [of_kind(&docs, "ClusterRole"), of_kind(&docs, "Role")].concat();
        assert!(roles.iter().any(|r| str_at(r, &["metadata", "name"]) == rbac::OWNER_CLUSTER_ROLE));
        let bindings: Vec<&Value> = [of_kind(&docs, "ClusterRoleBinding"), of_kind(&docs, "RoleBinding")].concat();
        assert_eq!(bindings.len(), roles.len(), "one binding per role");
        for b in bindings {
            let kind = str_at(b, &["roleRef", "kind"]);
            let name = str_at(b, &["roleRef", "name"]);
            let role = roles
                .iter()
                .find(|r| str_at(r, &["kind"]) == kind && str_at(r, &["metadata", "name"]) == name)
                .unwrap_or_else(|| panic!("{kind} {name} bound but not rendered"));
            assert_eq!(b["metadata"]["namespace"], role["metadata"]["namespace"], "bound where the role is");
            let subjects = b["subjects"].as_sequence().expect("subjects");
            assert_eq!(subjects.len(), 1, "{name} binds only the operator");
            assert_eq!(
                (
                    str_at(&subjects[0], &["kind"]),
                    str_at(&subjects[0], &["name"]),
                    str_at(&subjects[0], &["namespace"])
                ),
                ("ServiceAccount", sa_name, NAMESPACE)
            );
        }
    }
}

#[test]
fn the_operator_pod_meets_the_restricted_pod_security_standard() {
    let docs = rendered();
    let pod = &named(&docs, "Deployment", FULLNAME)["spec"]["template"]["spec"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(!pod[host].as_bool().unwrap_or(false), "{host}");
    }
    for v in pod["volumes"].as_sequence().into_iter().flatten() {
        assert!(v.get("hostPath").is_none(), "no hostPath volume");
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(str_at(pod, &["securityContext", "seccompProfile", "type"]), "RuntimeDefault");
    let containers = pod["containers"].as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_ne!(sc["privileged"].as_bool(), Some(true));
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(sc["capabilities"].get("add").is_none(), "no added capability");
    assert_ne!(sc["runAsUser"].as_u64().or(pod["securityContext"]["runAsUser"].as_u64()), Some(0));

    // Probes: /healthz (the process runs) and /readyz (the API server lists every watched kind).
    assert_eq!(str_at(c, &["livenessProbe", "httpGet", "path"]), "/healthz");
    assert_eq!(str_at(c, &["readinessProbe", "httpGet", "path"]), "/readyz");
    let ports: Vec<(&str, u64)> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| (str_at(p, &["name"]), p["containerPort"].as_u64().expect("a port number")))
        .collect();
    assert_eq!(ports, [("metrics", 8080), ("webhook", 8443)]);
    assert_eq!(str_at(c, &["readinessProbe", "httpGet", "port"]), "metrics");
}

#[test]
fn the_deployment_passes_only_flags_that_tiepdan_operator_run_accepts() {
    let help =
        Command::new(env!("CARGO_BIN_EXE_tiepdan-operator")).args(["run", "--help"]).output().expect("run --help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    // Every optional value set, so every flag the chart can pass is checked.
    let docs = documents(&template(&[
        "--set",
        "watchNamespace=my-hao",
        "--set",
        "monitoring.labels.release=prometheus",
        "--set",
        "ca.permittedNames={tiepdan.example.vn,203.0.113.0/24}",
        "--set",
        "ca.rotationLeadDays=90",
        "--set",
        "entry.enabled=true,entry.host=tiepdan.example.vn",
    ]));
    let args = strings(&named(&docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    for a in &args[1..] {
        let flag = a.split('=').next().unwrap_or_default();
        assert!(
            flag.starts_with("--") && [' ', '\n'].iter().any(|end| help.contains(&format!("{flag}{end}"))),
            "`tiepdan-operator run` has no flag {flag}:\n{help}"
        );
    }
    for want in [
        "--namespace=my-hao",
        "--monitoring-label=release=prometheus",
        "--ca-permitted-name=tiepdan.example.vn",
        "--ca-permitted-name=203.0.113.0/24",
        "--ca-validity-days=365",
        "--ca-rotation-lead-days=90",
        "--metrics-addr=0.0.0.0:8080",
        // The webhook registers the Service in front of it, on the port it listens on.
        "--webhook-addr=0.0.0.0:8443",
        "--webhook-service=tiepdan-operator",
        // The configurations belong to the release's ClusterRole (deleted with it on uninstall).
        "--webhook-owner-cluster-role=tiepdan-operator",
        "--leader-elect",
        "--entry-url=https://tiepdan.example.vn",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
}

/// The coturn Deployment and Service the chart adds.
const TURN_NAME: &str = "tiepdan-operator-turn";

fn turn_args(docs: &[Value]) -> Vec<String> {
    strings(&named(docs, "Deployment", TURN_NAME)["spec"]["template"]["spec"]["containers"][0]["args"])
}

/// The ports of coturn's Services (UDP on one, TCP and TLS on the other), UDP first.
fn service_ports(docs: &[Value]) -> Vec<(String, u64, String, String)> {
    [format!("{TURN_NAME}-udp"), TURN_NAME.to_owned()]
        .iter()
        .flat_map(|name| named(docs, "Service", name)["spec"]["ports"].as_sequence().expect("ports").iter())
        .map(|p| {
            (
                str_at(p, &["name"]).to_owned(),
                p["port"].as_u64().expect("port"),
                str_at(p, &["protocol"]).to_owned(),
                str_at(p, &["targetPort"]).to_owned(),
            )
        })
        .collect()
}

#[test]
fn by_default_the_chart_deploys_coturn_with_the_secret_the_operator_makes() {
    let docs = rendered();
    // The operator makes the shared secret once; coturn reads it from that Secret, and nothing
    // in the chart's values or render holds it.
    assert!(deployment_args(&docs).contains(&"--turn-secret-name=tiepdan-turn".to_owned()));
    let pod = &named(&docs, "Deployment", TURN_NAME)["spec"]["template"]["spec"];
    let coturn = &pod["containers"][0];
    let env = &coturn["env"][0];
    assert_eq!(str_at(env, &["name"]), "TURN_SECRET");
    assert_eq!(str_at(env, &["valueFrom", "secretKeyRef", "name"]), "tiepdan-turn");
    assert_eq!(str_at(env, &["valueFrom", "secretKeyRef", "key"]), tiepdan_operator::api::TURN_SECRET_KEY);
    assert!(of_kind(&docs, "Secret").is_empty(), "the chart renders no Secret");
    let args = turn_args(&docs);
    for want in ["--use-auth-secret", "--static-auth-secret=$(TURN_SECRET)", "--no-cli", "--no-tls"] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
    // Without a certificate browsers trust there is no TURN/TLS: UDP and TCP on 3478 only.
    assert_eq!(
        service_ports(&docs),
        [
            ("turn-udp".into(), 3478, "UDP".into(), "turn-udp".into()),
            ("turn-tcp".into(), 3478, "TCP".into(), "turn-tcp".into())
        ]
    );
    for name in [format!("{TURN_NAME}-udp"), TURN_NAME.to_owned()] {
        let service = named(&docs, "Service", &name);
        assert_eq!(str_at(service, &["spec", "type"]), "LoadBalancer");
        // A TURN allocation lives on one replica: a client's packets must keep reaching it.
        assert_eq!(str_at(service, &["spec", "sessionAffinity"]), "ClientIP");
    }
    // Restricted, like the operator's pod.
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let sc = &coturn["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
}

/// Kubernetes before 1.26 refuses a LoadBalancer Service whose ports mix UDP and TCP ("may not
/// contain more than 1 protocol"), and `helm install` fails with it.
#[test]
fn no_load_balancer_mixes_protocols() {
    for set in [&[][..], &["--set", "turn.tlsSecretName=turn-tls"][..]] {
        let docs = documents(&template(set));
        for service in of_kind(&docs, "Service") {
            if service["spec"]["type"] != "LoadBalancer" {
                continue;
            }
            let protocols: std::collections::BTreeSet<&str> = service["spec"]["ports"]
                .as_sequence()
                .expect("ports")
                .iter()
                .map(|p| p["protocol"].as_str().unwrap_or("TCP"))
                .collect();
            assert_eq!(protocols.len(), 1, "{}: {protocols:?}", str_at(service, &["metadata", "name"]));
        }
    }
}

#[test]
fn with_a_certificate_coturn_serves_turn_over_tls_on_443() {
    let docs = documents(&template(&["--set", "turn.tlsSecretName=turn-tls"]));
    let ports = service_ports(&docs);
    assert!(ports.contains(&("turn-tls".into(), 443, "TCP".into(), "turn-tls".into())), "{ports:?}");
    let pod = &named(&docs, "Deployment", TURN_NAME)["spec"]["template"]["spec"];
    let container_ports: Vec<_> = pod["containers"][0]["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| p["containerPort"].as_u64())
        .collect();
    assert!(container_ports.contains(&Some(5349)), "{container_ports:?}");
    let tls = pod["volumes"].as_sequence().expect("volumes").iter().find(|v| v["name"] == "tls").expect("tls volume");
    assert_eq!(str_at(tls, &["secret", "secretName"]), "turn-tls");
    let args = turn_args(&docs);
    for want in ["--tls-listening-port=5349", "--cert=/etc/coturn/tls/tls.crt", "--pkey=/etc/coturn/tls/tls.key"] {
        assert!(args.iter().any(|a| a == want), "{want} in {args:?}");
    }
    assert!(!args.iter().any(|a| a == "--no-tls"), "{args:?}");
}

#[test]
fn turn_can_be_turned_off_for_an_external_turn_server() {
    let docs = documents(&template(&["--set", "turn.enabled=false"]));
    assert!(of_kind(&docs, "Deployment").iter().all(|d| d["metadata"]["name"] != TURN_NAME));
    assert!(of_kind(&docs, "Service").iter().all(|d| d["metadata"]["name"] != TURN_NAME));
    assert!(!deployment_args(&docs).iter().any(|a| a.starts_with("--turn-secret-name")));
}

/// Every flag the chart gives coturn is one Debian's coturn 4.6 (`turnserver -h`) knows.
#[test]
fn coturn_gets_only_flags_turnserver_knows() {
    let help = Command::new("/usr/bin/turnserver")
        .arg("-h")
        .output()
        .expect("/usr/bin/turnserver -h (Debian's coturn: scripts/install-deps.sh installs it)");
    let help = format!("{}{}", String::from_utf8_lossy(&help.stdout), String::from_utf8_lossy(&help.stderr));
    let docs = documents(&template(&["--set", "turn.tlsSecretName=turn-tls"]));
    for arg in turn_args(&docs) {
        let flag = arg.split('=').next().unwrap_or_default();
        assert!(
            flag.starts_with("--") && [' ', '\t', '\n', ','].iter().any(|end| help.contains(&format!("{flag}{end}"))),
            "turnserver has no flag {flag}"
        );
    }
}
