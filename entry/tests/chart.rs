//! The chart's stable entry (`entry.enabled`): the flags it passes are `tiepdan-entry`'s, its
//! RBAC is read-only without Secrets, its pod is restricted, it is reached on 443 with the
//! certificate of `entry.host` (a named Secret, a cert-manager Certificate, or an Ingress), and
//! the operator's `links` names it. Needs Helm 3.18 like `operator/tests/chart.rs`.

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const NAMESPACE: &str = "tiepdan-system";
const HOST: &str = "tiepdan.hungyen.gov.vn";
const NAME: &str = "tiepdan-entry";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm() -> PathBuf {
    let path = match std::env::var_os("TIEPDAN_HELM") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("TIEPDAN_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tiepdan"))
            .join("helm-3.18/helm"),
    };
    assert!(path.is_file(), "helm 3.18 is missing at {}: run scripts/install-deps.sh", path.display());
    path
}

/// `helm template` with the entry enabled for [`HOST`], plus `extra` values; the documents.
fn render(extra: &[&str]) -> Vec<Value> {
    let out = Command::new(helm())
        .args(["template", "tiepdan", "charts/tiepdan", "--namespace", NAMESPACE])
        .args(["--set", &format!("entry.enabled=true,entry.host={HOST}")])
        .args(extra.iter().flat_map(|v| ["--set", v]))
        .current_dir(repo())
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_yaml::Deserializer::from_str(&String::from_utf8(out.stdout).expect("UTF-8"))
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize as _;

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
}

fn get<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(docs, kind, name).unwrap_or_else(|| panic!("no {kind} {name} in the render"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn container(docs: &[Value]) -> &Value {
    &get(docs, "Deployment", NAME)["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn the_chart_passes_only_flags_tiepdan_entry_accepts() {
    let help = Command::new(env!("CARGO_BIN_EXE_tiepdan-entry")).arg("--help").output().expect("run --help");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for extra in [&[][..], &["entry.ingress.enabled=true"][..]] {
        let args = strings(&container(&render(extra))["args"]);
        assert!(!args.is_empty());
        for a in &args {
            let flag = a.split('=').next().unwrap_or_default();
            assert!(
                [' ', '\n'].iter().any(|end| help.contains(&format!("{flag}{end}"))),
                "tiepdan-entry has no flag {flag}:\n{help}"
            );
        }
    }
}

#[test]
fn the_entry_reads_sessions_and_pods_and_nothing_else() {
    for (extra, kind, namespace) in [
        (&[][..], "Role", Some(NAMESPACE)),
        (&["watchNamespace=my-hao"][..], "Role", Some("my-hao")),
        (&["rbac.clusterWide=true"][..], "ClusterRole", None),
    ] {
        let docs = render(extra);
        let role = get(&docs, kind, NAME);
        assert_eq!(role["metadata"]["namespace"].as_str(), namespace, "{extra:?}");
        let rules: Vec<(Vec<String>, Vec<String>, Vec<String>)> = role["rules"]
            .as_sequence()
            .expect("rules")
            .iter()
            .map(|r| (strings(&r["apiGroups"]), strings(&r["resources"]), strings(&r["verbs"])))
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            rules,
            [(s(&["tiepdan.io"]), s(&["receptionsessions"]), s(&["get"])), (s(&[""]), s(&["pods"]), s(&["list"]))],
            "{extra:?}"
        );
        let binding = get(&docs, &format!("{kind}Binding"), NAME);
        assert_eq!(binding["roleRef"]["name"].as_str(), Some(NAME));
        assert_eq!(binding["subjects"][0]["name"].as_str(), Some(NAME), "the entry's own ServiceAccount");
        let pod = &get(&docs, "Deployment", NAME)["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"].as_str(), Some(NAME));
    }
}

#[test]
fn the_entry_pod_is_restricted_and_mounts_its_certificate_and_the_trust_bundle() {
    let docs = render(&[]);
    let pod = &get(&docs, "Deployment", NAME)["spec"]["template"]["spec"];
    assert!(!pod["hostNetwork"].as_bool().unwrap_or(false));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    // Secret volumes are root's with mode 0440: without the group the entry cannot read its key
    // (on the real node it crash-looped so).
    assert_eq!(pod["securityContext"]["fsGroup"].as_u64(), Some(65532));
    let sc = &container(&docs)["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    let secret = volumes.iter().find_map(|v| v["secret"]["secretName"].as_str());
    assert_eq!(secret, Some("tiepdan-entry-tls"));
    let bundle = volumes.iter().find_map(|v| v["configMap"]["name"].as_str());
    assert_eq!(bundle, Some("tiepdan-trust-bundle"), "the operator's trust bundle, for workers' certificates");
    let args = strings(&container(&docs)["args"]);
    assert!(args.contains(&"--tls-dir=/var/run/tiepdan/entry-tls".to_owned()), "{args:?}");
    assert!(args.contains(&"--upstream-ca-file=/var/run/tiepdan/trust-bundle/ca.crt".to_owned()), "{args:?}");
}

#[test]
fn offices_reach_the_entry_on_443_and_links_name_it() {
    let docs = render(&[]);
    let service = get(&docs, "Service", NAME);
    assert_eq!(service["spec"]["type"].as_str(), Some("LoadBalancer"));
    assert_eq!(service["spec"]["ports"][0]["port"].as_u64(), Some(443));
    assert_eq!(service["spec"]["ports"][0]["targetPort"].as_str(), Some("https"));
    assert!(find(&docs, "Certificate", NAME).is_none(), "no issuer, no Certificate");
    assert!(find(&docs, "Ingress", NAME).is_none());
    let operator = &get(&docs, "Deployment", "tiepdan-operator")["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&operator["args"]);
    assert!(
        args.contains(&format!("--entry-url=https://{HOST}")),
        "the operator publishes the entry in sessions' status for `links`: {args:?}"
    );
    let other_port = render(&["entry.service.port=8443"]);
    let args = strings(
        &get(&other_port, "Deployment", "tiepdan-operator")["spec"]["template"]["spec"]["containers"][0]["args"],
    );
    assert!(args.contains(&format!("--entry-url=https://{HOST}:8443")), "{args:?}");

    // Without the entry, links name workers: no --entry-url in the committed (default) render.
    let default = std::fs::read_to_string(repo().join("charts/rendered/tiepdan.yaml")).expect("render");
    assert!(!default.contains("--entry-url") && !default.contains(NAME));
}

#[test]
fn a_cert_manager_issuer_gets_a_certificate_for_the_host() {
    let docs = render(&["entry.tls.issuerRef.name=letsencrypt"]);
    let cert = get(&docs, "Certificate", NAME);
    assert_eq!(strings(&cert["spec"]["dnsNames"]), [HOST]);
    assert_eq!(cert["spec"]["secretName"].as_str(), Some("tiepdan-entry-tls"));
    assert_eq!(cert["spec"]["issuerRef"]["name"].as_str(), Some("letsencrypt"));
    assert_eq!(cert["spec"]["issuerRef"]["kind"].as_str(), Some("ClusterIssuer"));
}

#[test]
fn behind_an_ingress_the_entry_serves_plain_http_and_the_ingress_holds_the_certificate() {
    let docs = render(&["entry.ingress.enabled=true", "entry.service.type=ClusterIP"]);
    let ingress = get(&docs, "Ingress", NAME);
    assert_eq!(ingress["spec"]["tls"][0]["secretName"].as_str(), Some("tiepdan-entry-tls"));
    assert_eq!(strings(&ingress["spec"]["tls"][0]["hosts"]), [HOST]);
    assert_eq!(ingress["spec"]["rules"][0]["host"].as_str(), Some(HOST));
    assert_eq!(ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"].as_str(), Some(NAME));
    let args = strings(&container(&docs)["args"]);
    assert!(!args.iter().any(|a| a.starts_with("--tls-dir")), "{args:?}");
    assert_eq!(container(&docs)["readinessProbe"]["httpGet"]["scheme"].as_str(), Some("HTTP"));
}

#[test]
fn an_entry_without_a_host_is_refused() {
    let out = Command::new(helm())
        .args(["template", "tiepdan", "charts/tiepdan", "--namespace", NAMESPACE, "--set", "entry.enabled=true"])
        .current_dir(repo())
        .output()
        .expect("run helm");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("entry.host"), "{err}");
}
