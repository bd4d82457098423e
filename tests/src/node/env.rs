//! A container's environment and `$(VAR)` expansion, as the kubelet does them.
//!
//! `envFrom` comes first, then `env` in order; each `env` value may refer to variables defined
//! before it. `$(VAR)` expands to VAR's value when VAR is defined and stays as written when it is
//! not; `$$` is a literal `$`. `command` and `args` are expanded with the final environment.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Pod, Secret};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EnvError {
    #[error("{kind} {name:?} not found")]
    MissingObject { kind: &'static str, name: String },
    #[error("key {key:?} not found in {kind} {name:?}")]
    MissingKey { kind: &'static str, name: String, key: String },
    #[error("env var {var}: unsupported source ({what})")]
    Unsupported { var: String, what: String },
}

/// Secrets and ConfigMaps of the pod's namespace that the container refers to, fetched
/// beforehand; a name that is absent here does not exist.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    pub secrets: BTreeMap<String, Secret>,
    pub config_maps: BTreeMap<String, ConfigMap>,
}

impl Sources {
    /// One key of a Secret (`data`, else `stringData`) or ConfigMap (`data`, else `binaryData`).
    fn value(&self, kind: &'static str, name: &str, key: &str) -> Result<String, EnvError> {
        let missing_key = || EnvError::MissingKey { kind, name: name.into(), key: key.into() };
        let missing = || EnvError::MissingObject { kind, name: name.into() };
        if kind == "Secret" {
            let secret = self.secrets.get(name).ok_or_else(missing)?;
            secret_entries(secret).remove(key).map(lossy).ok_or_else(missing_key)
        } else {
            let cm = self.config_maps.get(name).ok_or_else(missing)?;
            config_map_entries(cm).remove(key).map(lossy).ok_or_else(missing_key)
        }
    }
}

/// Every key of a Secret with its bytes.
pub fn secret_entries(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in secret.data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

/// Every key of a ConfigMap with its bytes.
pub fn config_map_entries(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    for (k, v) in cm.data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The container's environment, in definition order (later definitions win on lookup).
pub fn resolve(
    container: &Container,
    pod: &Pod,
    pod_ip: Ipv4Addr,
    sources: &Sources,
) -> Result<Vec<(String, String)>, EnvError> {
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = match (&from.secret_ref, &from.config_map_ref) {
            (Some(s), _) => ("Secret", s.name.clone(), s.optional.unwrap_or(false)),
            (None, Some(c)) => ("ConfigMap", c.name.clone(), c.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        let entries = match kind {
            "Secret" => sources.secrets.get(&name).map(secret_entries),
            _ => sources.config_maps.get(&name).map(config_map_entries),
        };
        match entries {
            Some(entries) => {
                env.extend(entries.into_iter().map(|(k, v)| (format!("{prefix}{k}"), lossy(v))));
            }
            None if optional => {}
            None => return Err(EnvError::MissingObject { kind, name }),
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => expand(value, |name| lookup(&env, name)),
            (None, Some(source)) => match from_source(&var.name, source, pod, pod_ip, sources)? {
                Some(value) => value,
                None => continue,
            },
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// The last definition of `name` in `env`.
pub fn lookup(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// `None` for an optional reference to a missing object or key (the variable is left unset).
fn from_source(
    var: &str,
    source: &EnvVarSource,
    pod: &Pod,
    pod_ip: Ipv4Addr,
    sources: &Sources,
) -> Result<Option<String>, EnvError> {
    if let Some(field) = &source.field_ref {
        return field_value(&field.field_path, pod, pod_ip)
            .map(Some)
            .ok_or_else(|| EnvError::Unsupported { var: var.into(), what: field.field_path.clone() });
    }
    let (kind, name, key, optional) = match (&source.secret_key_ref, &source.config_map_key_ref) {
        (Some(s), _) => ("Secret", &s.name, &s.key, s.optional.unwrap_or(false)),
        (None, Some(c)) => ("ConfigMap", &c.name, &c.key, c.optional.unwrap_or(false)),
        (None, None) => return Err(EnvError::Unsupported { var: var.into(), what: "resourceFieldRef".into() }),
    };
    match sources.value(kind, name, key) {
        Ok(value) => Ok(Some(value)),
        Err(_) if optional => Ok(None),
        Err(e) => Err(e),
    }
}

/// The downward API's `fieldRef` paths that make sense without a real node.
fn field_value(path: &str, pod: &Pod, pod_ip: Ipv4Addr) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_entry = |map: Option<&BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => Some(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "status.hostIP" | "status.hostIPs" => Some(super::status::HOST_IP.to_owned()),
        "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
        _ => {
            if let Some(rest) = path.strip_prefix("metadata.labels") {
                map_entry(meta.labels.as_ref(), rest)
            } else if let Some(rest) = path.strip_prefix("metadata.annotations") {
                map_entry(meta.annotations.as_ref(), rest)
            } else {
                None
            }
        }
    }
}

/// Kubelet's `$(VAR)` expansion.
pub fn expand(input: &str, vars: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn vars(name: &str) -> Option<String> {
        match name {
            "POD_IP" => Some("127.0.1.9".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubelet_rules() {
        assert_eq!(expand("--listen=$(POD_IP):8080", vars), "--listen=127.0.1.9:8080");
        assert_eq!(expand("$(UNKNOWN)/x", vars), "$(UNKNOWN)/x");
        assert_eq!(expand("$$(POD_IP)", vars), "$(POD_IP)");
        assert_eq!(expand("a$(EMPTY)b", vars), "ab");
        assert_eq!(expand("cost $5 $(POD_IP", vars), "cost $5 $(POD_IP");
        assert_eq!(expand("$", vars), "$");
    }

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "w-1", "namespace": "ns", "labels": {"app": "tiepdan"}},
            "spec": {"containers": [{
                "name": "media-worker",
                "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                "env": [
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "LISTEN", "value": "$(POD_IP):8080"},
                    {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                    {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}}
                ]
            }]}
        }))
        .expect("valid pod")
    }

    fn sources() -> Sources {
        let mut s = Sources::default();
        let data = [("k".to_owned(), ByteString(b"s3cret".to_vec()))].into();
        s.secrets.insert("s".into(), Secret { data: Some(data), ..Secret::default() });
        let data = [("mode".to_owned(), "warm".to_owned())].into();
        s.config_maps.insert("cm".into(), ConfigMap { data: Some(data), ..ConfigMap::default() });
        s
    }

    #[test]
    fn env_resolves_downward_api_secrets_config_maps_and_earlier_vars() {
        let pod = pod();
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let env = resolve(container, &pod, Ipv4Addr::new(127, 0, 1, 9), &sources());
        let env = env.expect("env resolves");
        let get = |k: &str| lookup(&env, k);
        assert_eq!(get("CM_mode").as_deref(), Some("warm"));
        assert_eq!(get("POD_IP").as_deref(), Some("127.0.1.9"));
        assert_eq!(get("POD_NAME").as_deref(), Some("w-1"));
        assert_eq!(get("NS").as_deref(), Some("ns"));
        assert_eq!(get("APP").as_deref(), Some("tiepdan"));
        assert_eq!(get("LISTEN").as_deref(), Some("127.0.1.9:8080"));
        assert_eq!(get("KEY").as_deref(), Some("s3cret"));
        assert_eq!(get("OPT"), None);
    }

    #[test]
    fn a_missing_secret_is_an_error_naming_it() {
        let pod = pod();
        let container = &pod.spec.as_ref().expect("spec").containers[0];
        let mut sources = sources();
        sources.secrets.clear();
        let err = resolve(container, &pod, Ipv4Addr::LOCALHOST, &sources);
        assert_eq!(err, Err(EnvError::MissingObject { kind: "Secret", name: "s".into() }));
    }
}
