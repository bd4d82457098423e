//! The media-worker Pod. Idle pods belong to their pool; a pod allocated to a session belongs to
//! the session (owner and `tiepdan.io/session` label), so deleting the session deletes it.

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::{labels, owner_ref, tls, token_keys};
use crate::api::{MediaWorkerPool, ReceptionSession, TurnRelay};
use crate::tokens::session_id;

pub use super::worker_ports::{PortRange, WorkerPorts, ADMIN_PORT, SIGNALING_PORT};
use super::worker_ports::{ADMIN_PORT_NAME, SIGNALING_PORT_NAME};

/// How often the kubelet asks a worker's `/readyz`.
pub const READINESS_PERIOD_SECONDS: i32 = 1;
/// How long one readiness probe waits for an answer (a stopped worker accepts but never answers).
pub const READINESS_TIMEOUT_SECONDS: i32 = 1;
/// Failed probes in a row before the worker is unready: one slow answer is not a fault.
pub const READINESS_FAILURES: i32 = 2;
/// Where the pool's public token keys are mounted (never a private key: see `token_keys`).
pub const PUBLIC_KEYS_DIR: &str = "/var/run/tiepdan/token-public-keys";
/// Where the pod's TLS Secret (`<pod>-tls`, a copy of its session's certificate) is mounted. The
/// worker reloads it when the kubelet updates the volume.
pub const TLS_DIR: &str = "/var/run/tiepdan/tls";
/// Where the pool's TURN shared secret is mounted (`spec.turn.secretName`), as the one file
/// [`TURN_SECRET_FILE`].
pub const TURN_DIR: &str = "/var/run/tiepdan/turn";
pub const TURN_SECRET_FILE: &str = "secret";
/// The worker container's name (the harness's node emulation starts the real binary for it).
pub const CONTAINER: &str = "media-worker";

/// Labels of a worker pod of `pool`, idle or allocated to `session`.
pub fn pod_labels(pool: &str, session: Option<&str>) -> std::collections::BTreeMap<String, String> {
    let mut l = labels::common(session.unwrap_or(pool), labels::COMPONENT_WORKER);
    l.insert(labels::POOL.to_owned(), pool.to_owned());
    match session {
        Some(s) => {
            l.insert(labels::SESSION.to_owned(), s.to_owned());
            l.insert(labels::WORKER_STATE.to_owned(), labels::STATE_ALLOCATED.to_owned());
        }
        None => {
            l.insert(labels::WORKER_STATE.to_owned(), labels::STATE_IDLE.to_owned());
        }
    }
    l
}

/// The annotation carrying [`template_hash`] of the pool spec a worker pod was built from.
pub const TEMPLATE_HASH: &str = "tiepdan.io/template-hash";

/// A hash of everything `pool` puts into each of its worker pods, leaving out what differs per
/// pod (its name, its host ports and RTC sub-range, its session). An idle pod whose
/// [`TEMPLATE_HASH`] differs was built from an older spec (or an older operator) and listens
/// e.g. on the old RTC ports.
pub fn template_hash(pool: &MediaWorkerPool) -> String {
    use sha2::Digest;
    let canonical = build_unhashed(pool, "", None, WorkerPorts::POD_NETWORK);
    // PodSpec serializes deterministically: struct fields in order, maps are BTreeMaps.
    let mut bytes = serde_json::to_vec(&canonical.spec).unwrap_or_default();
    // The canonical pod binds the whole range; a hostNetwork pod's sub-range also depends on
    // the slot size, so pods cut by another size roll too. (Only with hostNetwork: a pod-network
    // pool's hash, and so its warm workers, stay as they were.)
    if pool.spec.host_network {
        bytes.extend(format!("rtcPorts.perWorker={}", pool.spec.rtc_ports.per_worker).bytes());
    }
    sha2::Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The [`TEMPLATE_HASH`] a pod carries, if any.
pub fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref()?.get(TEMPLATE_HASH).map(String::as_str)
}

/// A worker pod named `name` from `pool`: idle when `session` is `None`, otherwise bound to it
/// from the start (used when no idle pod could be allocated), listening on `ports`
/// ([`super::worker_ports::allocate`]), annotated with the pool's [`template_hash`].
///
/// What the worker announces in ICE candidates: the pool's `announcedAddress` when set. Else,
/// with `hostNetwork`, its node's address, which nobody knows before the scheduler picks the
/// node: the worker is told to wait for it (it refuses joins meanwhile, rather than announce a
/// wrong address), and the operator sends it with the allocation call
/// ([`crate::node_address`]). Else (the pod network) the pod's own IP.
pub fn build(pool: &MediaWorkerPool, name: &str, session: Option<&ReceptionSession>, ports: WorkerPorts) -> Pod {
    let mut pod = build_unhashed(pool, name, session, ports);
    pod.metadata.annotations = Some([(TEMPLATE_HASH.to_owned(), template_hash(pool))].into());
    pod
}

fn build_unhashed(pool: &MediaWorkerPool, name: &str, session: Option<&ReceptionSession>, ports: WorkerPorts) -> Pod {
    use tiepdan_contract::worker_flags::{self as flag, arg};
    let spec = &pool.spec;
    let rtc = super::worker_ports::rtc_range(spec, ports);
    let mut args = vec![
        "serve".to_owned(),
        arg(flag::LISTEN, format_args!("$(POD_IP):{}", ports.admin)),
        arg(flag::SIGNALING_LISTEN, format_args!("$(POD_IP):{}", ports.signaling)),
        arg(flag::TLS_DIR, TLS_DIR),
        arg(flag::RTC_LISTEN_IP, "$(POD_IP)"),
        arg(flag::RTC_MIN_PORT, rtc.min),
        arg(flag::RTC_MAX_PORT, rtc.max),
        arg(flag::JOIN_PUBLIC_KEY_FILE, format_args!("{PUBLIC_KEYS_DIR}/{}", token_keys::JOIN_PUBLIC)),
        arg(flag::ADMIN_PUBLIC_KEY_FILE, format_args!("{PUBLIC_KEYS_DIR}/{}", token_keys::ADMIN_PUBLIC)),
        arg(flag::LOG_FORMAT, "json"),
    ];
    match &spec.announced_address {
        Some(addr) => args.push(arg(flag::ANNOUNCED_ADDRESS, addr)),
        None if spec.host_network => args.push(format!("--{}", flag::ANNOUNCED_ADDRESS_FROM_ALLOCATION)),
        None => {}
    }
    if let Some(turn) = &spec.turn {
        args.extend(turn.urls.iter().map(|url| arg(flag::TURN_URL, url)));
        args.push(arg(flag::TURN_SECRET_FILE, format_args!("{TURN_DIR}/{TURN_SECRET_FILE}")));
    }
    if let Some(s) = session {
        args.push(arg(flag::SESSION_ID, session_id(&s.namespace().unwrap_or_default(), &s.name_any())));
        args.push(arg(flag::SESSION_TITLE, &s.spec.title));
    }
    let session_name = session.map(|s| s.name_any());
    let owner = match session {
        Some(s) => owner_ref(s),
        None => owner_ref(pool),
    };
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(ADMIN_PORT_NAME.to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        ..Default::default()
    };
    // Readiness is what failover watches: a worker that stops answering is seen unready within
    // READINESS_FAILURES probes of READINESS_PERIOD_SECONDS (each waiting at most its timeout),
    // about 3 s, so the 5 s grace and a new worker still fit in 10 s. Liveness stays slower: a
    // restart in place costs the connections that a short stall would not.
    let readiness = Probe {
        period_seconds: Some(READINESS_PERIOD_SECONDS),
        timeout_seconds: Some(READINESS_TIMEOUT_SECONDS),
        failure_threshold: Some(READINESS_FAILURES),
        ..probe("/readyz")
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: pool.namespace(),
            labels: Some(pod_labels(&pool.name_any(), session_name.as_deref())),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            host_network: spec.host_network.then_some(true),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(60),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65532),
                run_as_group: Some(65532),
                // The kubelet writes Secret volumes as root with mode 0440: without the group the
                // worker could not read its signing key or certificate.
                fs_group: Some(65532),
                seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..Default::default() }),
                ..Default::default()
            }),
            containers: vec![Container {
                name: CONTAINER.to_owned(),
                image: Some(spec.image.clone()),
                args: Some(args),
                env: Some(vec![
                    field_env("POD_IP", "status.podIP"),
                    // The worker takes admin calls only with tokens minted for its own pod.
                    field_env(tiepdan_contract::worker_flags::POD_NAME_ENV, "metadata.name"),
                ]),
                ports: Some(
                    [
                        // In the host network a host port equal to the container port is what makes
                        // the scheduler keep two pods with this port off the same node.
                        ContainerPort {
                            name: Some(ADMIN_PORT_NAME.to_owned()),
                            container_port: ports.admin,
                            host_port: spec.host_network.then_some(ports.admin),
                            protocol: Some("TCP".to_owned()),
                            ..Default::default()
                        },
                        ContainerPort {
                            name: Some(SIGNALING_PORT_NAME.to_owned()),
                            container_port: ports.signaling,
                            host_port: spec.host_network.then_some(ports.signaling),
                            protocol: Some("TCP".to_owned()),
                            ..Default::default()
                        },
                    ]
                    .into_iter()
                    .chain(spec.host_network.then(|| rtc_host_ports(rtc)).into_iter().flatten())
                    .collect(),
                ),
                readiness_probe: Some(readiness),
                liveness_probe: Some(probe("/healthz")),
                resources: spec.resources.clone(),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    read_only_root_filesystem: Some(true),
                    run_as_non_root: Some(true),
                    capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Default::default() }),
                    seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..Default::default() }),
                    ..Default::default()
                }),
                volume_mounts: Some(
                    [
                        VolumeMount {
                            name: "token-public-keys".to_owned(),
                            mount_path: PUBLIC_KEYS_DIR.to_owned(),
                            read_only: Some(true),
                            ..Default::default()
                        },
                        VolumeMount {
                            name: "tls".to_owned(),
                            mount_path: TLS_DIR.to_owned(),
                            read_only: Some(true),
                            ..Default::default()
                        },
                    ]
                    .into_iter()
                    .chain(spec.turn.as_ref().map(|_| VolumeMount {
                        name: "turn".to_owned(),
                        mount_path: TURN_DIR.to_owned(),
                        read_only: Some(true),
                        ..Default::default()
                    }))
                    .collect(),
                ),
                ..Default::default()
            }],
            volumes: Some(
                [
                    Volume {
                        name: "token-public-keys".to_owned(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: token_keys::public_name(&pool.name_any()),
                            default_mode: Some(0o444),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    // Optional: a warm pod starts before any session (and so any certificate) is
                    // known; the kubelet fills the volume once allocation creates the Secret.
                    Volume {
                        name: "tls".to_owned(),
                        secret: Some(SecretVolumeSource {
                            secret_name: Some(tls::pod_secret_name(name)),
                            default_mode: Some(0o440),
                            optional: Some(true),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ]
                .into_iter()
                .chain(spec.turn.as_ref().map(turn_volume))
                .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every port of a hostNetwork worker's RTC sub-range, UDP (media) and TCP (ICE-TCP), as host
/// ports: the scheduler then never puts two workers whose sub-ranges overlap on one node, nor
/// one onto a node where another program declared one of these ports.
fn rtc_host_ports(rtc: PortRange) -> impl Iterator<Item = ContainerPort> {
    (rtc.min..=rtc.max).flat_map(|port| {
        ["UDP", "TCP"].map(|protocol| ContainerPort {
            container_port: port,
            host_port: Some(port),
            protocol: Some(protocol.to_owned()),
            ..Default::default()
        })
    })
}

/// The pool's TURN shared secret, as one file. Not optional: a worker that offered relays it
/// cannot sign credentials for would fail exactly the offices that need them, so the pod waits
/// for the Secret instead.
fn turn_volume(turn: &TurnRelay) -> Volume {
    Volume {
        name: "turn".to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(turn.secret_name.clone()),
            items: Some(vec![KeyToPath {
                key: turn.secret_key.clone(),
                path: TURN_SECRET_FILE.to_owned(),
                ..Default::default()
            }]),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An environment variable from the downward API.
fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: field_path.to_owned(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::{MediaWorkerPoolSpec, ReceptionSessionSpec};

    pub(crate) fn pool() -> MediaWorkerPool {
        let mut p: MediaWorkerPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
            "metadata": {"name": "default", "namespace": "my-hao", "uid": "pool-uid"},
            "spec": {"replicas": 2, "rtcPorts": {"min": 41000, "max": 41099}, "announcedAddress": "203.0.113.7"}
        }))
        .unwrap();
        p.spec = MediaWorkerPoolSpec { ..p.spec };
        p
    }

    pub(crate) fn session() -> ReceptionSession {
        serde_json::from_value::<ReceptionSession>(serde_json::json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionSession",
            "metadata": {"name": "phien-thang-6", "namespace": "my-hao", "uid": "sess-uid"},
            "spec": {"title": "Tiếp công dân tháng 6", "host": "my-hao", "points": ["di-su"],
                     "schedule": {"start": "2025-06-12T01:00:00Z", "durationMinutes": 120}}
        }))
        .map(|s| ReceptionSession { spec: ReceptionSessionSpec { ..s.spec }, ..s })
        .unwrap()
    }

    #[test]
    fn an_idle_pod_belongs_to_its_pool_and_has_no_session() {
        let pod = build(&pool(), "default-abcde", None, WorkerPorts::default());
        let l = pod.metadata.labels.clone().unwrap();
        assert_eq!(l[labels::WORKER_STATE], labels::STATE_IDLE);
        assert!(!l.contains_key(labels::SESSION));
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "pool-uid");
        let args = pod.spec.unwrap().containers[0].args.clone().unwrap();
        assert!(!args.iter().any(|a| a.starts_with("--session-id")));
        assert!(args.contains(&"--rtc-min-port=41000".to_owned()));
        assert!(args.contains(&"--announced-address=203.0.113.7".to_owned()));
    }

    #[test]
    fn a_session_pod_is_owned_by_and_labelled_for_the_session() {
        let pod = build(&pool(), "phien-thang-6-worker", Some(&session()), WorkerPorts::default());
        let l = pod.metadata.labels.clone().unwrap();
        assert_eq!(l[labels::SESSION], "phien-thang-6");
        assert_eq!(l[labels::WORKER_STATE], labels::STATE_ALLOCATED);
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "sess-uid");
        let container = pod.spec.unwrap().containers[0].clone();
        assert!(container.args.unwrap().contains(&"--session-id=my-hao/phien-thang-6".to_owned()));
        // The worker learns its own name, to take admin tokens minted for it only.
        let env = container.env.unwrap();
        let name = env.iter().find(|e| e.name == "TIEPDAN_POD_NAME").expect("TIEPDAN_POD_NAME");
        let field = name.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
        assert_eq!(field, Some("metadata.name"));
    }

    #[test]
    fn a_host_network_worker_listens_on_its_own_ports_declared_as_host_ports() {
        let mut p = pool();
        p.spec.host_network = true;
        p.spec.announced_address = None;
        let ports = WorkerPorts { admin: 7002, signaling: 7003, rtc: Some(PortRange { min: 41010, max: 41012 }) };
        let pod = build(&p, "default-abcde", None, ports);
        assert_eq!(super::super::worker_ports::of_pod(&pod), ports);
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let args = c.args.clone().unwrap();
        assert!(args.contains(&"--listen=$(POD_IP):7002".to_owned()));
        assert!(args.contains(&"--signaling-listen=$(POD_IP):7003".to_owned()));
        assert!(args.contains(&"--rtc-min-port=41010".to_owned()) && args.contains(&"--rtc-max-port=41012".to_owned()));
        // No address of its own: the node's comes with the allocation call.
        assert!(args.contains(&"--announced-address-from-allocation".to_owned()), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--announced-address=")), "{args:?}");
        let host: Vec<_> = c
            .ports
            .clone()
            .unwrap()
            .iter()
            .map(|p| (p.host_port.unwrap(), p.container_port, p.protocol.clone().unwrap()))
            .collect();
        let want: Vec<_> = [(7002, "TCP"), (7003, "TCP")]
            .into_iter()
            .chain([41010, 41011, 41012].into_iter().flat_map(|p| [(p, "UDP"), (p, "TCP")]))
            .map(|(p, proto)| (p, p, proto.to_owned()))
            .collect();
        assert_eq!(host, want, "every port of the sub-range is declared, UDP and TCP");
    }

    /// Two hostNetwork workers of one pool, as the pool controller allocates them, bind disjoint
    /// RTC ranges: else two on one node share (and fight over) the same ports. (Fails on the
    /// code before sub-ranges: both bound 41000-41099.)
    #[test]
    fn two_host_network_workers_of_a_pool_bind_disjoint_rtc_ranges() {
        let p: MediaWorkerPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
            "metadata": {"name": "default", "namespace": "my-hao", "uid": "pool-uid"},
            "spec": {"hostNetwork": true, "rtcPorts": {"min": 41000, "max": 41099, "perWorker": 50}}
        }))
        .unwrap();
        let mut held = Default::default();
        let rtc = |pod: &Pod| {
            let args = pod.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
            let get = |f: &str| args.iter().find_map(|a| a.strip_prefix(f)?.parse::<i32>().ok()).unwrap();
            (get("--rtc-min-port="), get("--rtc-max-port="))
        };
        let mut next = || super::super::worker_ports::allocate(&p.spec, &mut held).unwrap();
        let (a, b) = (build(&p, "a", None, next()), build(&p, "b", None, next()));
        let ((a0, a1), (b0, b1)) = (rtc(&a), rtc(&b));
        assert!(a1 < b0 || b1 < a0, "overlapping RTC ranges {a0}-{a1} and {b0}-{b1}");
    }

    #[test]
    fn a_pod_network_worker_binds_the_whole_rtc_range_and_declares_no_host_port() {
        let mut p = pool();
        p.spec.announced_address = None;
        let c = build(&p, "default-abcde", None, WorkerPorts::POD_NETWORK).spec.unwrap().containers[0].clone();
        let args = c.args.unwrap();
        assert!(args.contains(&"--rtc-min-port=41000".to_owned()) && args.contains(&"--rtc-max-port=41099".to_owned()));
        assert!(!args.iter().any(|a| a.starts_with("--announced-address")), "the pod's IP: {args:?}");
        assert!(c.ports.unwrap().iter().all(|p| p.host_port.is_none()));
    }

    #[test]
    fn the_template_hash_changes_with_the_template_and_not_with_per_pod_fields() {
        let p = pool();
        let h = template_hash(&p);
        let slot = |min| Some(PortRange { min, max: min + 9 });
        let a = build(&p, "default-aaaaa", None, WorkerPorts { admin: 7000, signaling: 7001, rtc: slot(41000) });
        let b = build(
            &p,
            "default-bbbbb",
            Some(&session()),
            WorkerPorts { admin: 7002, signaling: 7003, rtc: slot(41010) },
        );
        assert_eq!(hash_of(&a), Some(h.as_str()));
        assert_eq!(hash_of(&b), Some(h.as_str()), "name, ports and session are per pod");
        type Edit = fn(&mut MediaWorkerPool);
        let edits: [(&str, Edit); 5] = [
            ("rtcPorts", |p| p.spec.rtc_ports.max += 1),
            ("image", |p| p.spec.image.push_str("-next")),
            ("announcedAddress", |p| p.spec.announced_address = None),
            ("hostNetwork", |p| p.spec.host_network = true),
            ("resources", |p| {
                p.spec.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
                    limits: Some(
                        [("memory".to_owned(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()))]
                            .into(),
                    ),
                    ..Default::default()
                })
            }),
        ];
        for (what, edit) in edits {
            let mut q = pool();
            edit(&mut q);
            assert_ne!(template_hash(&q), h, "{what}");
        }
        let mut q = pool();
        q.spec.replicas = 7;
        q.spec.host_ports.min += 10;
        assert_eq!(template_hash(&q), h, "replicas and the host port range build no different pod");
        // Sub-ranges are cut only with hostNetwork: there a new size rolls the idle workers.
        q.spec.rtc_ports.per_worker = 10;
        assert_eq!(template_hash(&q), h, "rtcPorts.perWorker is ignored in the pod network");
        q.spec.host_network = true;
        let host = template_hash(&q);
        q.spec.rtc_ports.per_worker = 20;
        assert_ne!(template_hash(&q), host, "rtcPorts.perWorker with hostNetwork");
    }

    /// A worker faces the internet: it must hold no key that signs tokens, neither the pool's
    /// private keys nor the HS256 key an older operator shared with every worker.
    #[test]
    fn a_worker_pod_mounts_only_public_keys() {
        let p = pool();
        for pod in [
            build(&p, "default-abcde", None, WorkerPorts::default()),
            build(&p, "phien-thang-6-worker", Some(&session()), WorkerPorts::default()),
        ] {
            let spec = pod.spec.unwrap();
            let json = serde_json::to_string(&spec).unwrap();
            for private in [token_keys::private_name("default"), token_keys::legacy_name("default")] {
                assert!(!json.contains(&private), "the pod references {private}: {json}");
            }
            let secrets: Vec<_> =
                spec.volumes.iter().flatten().filter_map(|v| v.secret.as_ref()?.secret_name.clone()).collect();
            assert_eq!(secrets, [tls::pod_secret_name(&pod.metadata.name.unwrap())], "only its TLS Secret");
            let public = spec.volumes.iter().flatten().find_map(|v| v.config_map.as_ref()).expect("public keys");
            assert_eq!(public.name, token_keys::public_name("default"));
            let args = spec.containers[0].args.clone().unwrap();
            for (flag, file) in [
                ("--join-public-key-file", token_keys::JOIN_PUBLIC),
                ("--admin-public-key-file", token_keys::ADMIN_PUBLIC),
            ] {
                assert!(args.contains(&format!("{flag}={PUBLIC_KEYS_DIR}/{file}")), "{args:?}");
            }
        }
    }

    #[test]
    fn a_pool_with_turn_gives_its_workers_the_urls_and_the_shared_secret() {
        let mut p = pool();
        let bare = build(&p, "default-abcde", None, WorkerPorts::default());
        let args = bare.spec.as_ref().unwrap().containers[0].args.clone().unwrap();
        assert!(!args.iter().any(|a| a.starts_with("--turn")), "{args:?}");
        p.spec.turn = Some(TurnRelay {
            urls: vec!["turn:turn.example:3478?transport=udp".into(), "turns:turn.example:443?transport=tcp".into()],
            secret_name: "tiepdan-turn".into(),
            secret_key: "secret".into(),
        });
        let pod = build(&p, "default-abcde", None, WorkerPorts::default());
        assert_ne!(hash_of(&pod), hash_of(&bare), "pools roll their workers onto the relay");
        let spec = pod.spec.unwrap();
        let args = spec.containers[0].args.clone().unwrap();
        let turn: Vec<_> = args.iter().filter(|a| a.starts_with("--turn")).cloned().collect();
        assert_eq!(
            turn,
            [
                "--turn-url=turn:turn.example:3478?transport=udp",
                "--turn-url=turns:turn.example:443?transport=tcp",
                "--turn-secret-file=/var/run/tiepdan/turn/secret",
            ]
        );
        let volume = spec.volumes.unwrap().into_iter().find(|v| v.name == "turn").unwrap().secret.unwrap();
        assert_eq!(volume.secret_name.as_deref(), Some("tiepdan-turn"));
        let items = volume.items.unwrap();
        assert_eq!((items[0].key.as_str(), items[0].path.as_str()), ("secret", TURN_SECRET_FILE));
        assert_eq!(volume.optional, None, "the pod waits for the secret rather than offering a relay it cannot use");
        let mount = spec.containers[0].volume_mounts.clone().unwrap().into_iter().find(|m| m.name == "turn").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), (TURN_DIR, Some(true)));
    }

    #[test]
    fn worker_pods_meet_the_restricted_pod_security_profile() {
        let spec = build(&pool(), "p", None, WorkerPorts::default()).spec.unwrap();
        let pod_sc = spec.security_context.clone().unwrap();
        assert_eq!(pod_sc.run_as_non_root, Some(true));
        assert_eq!(pod_sc.fs_group, Some(65532), "the 0440 Secret volumes are readable by the worker");
        let sc = spec.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), vec!["ALL"]);
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    }

    #[test]
    fn signaling_is_served_over_tls_from_the_pods_own_optional_secret() {
        let spec = build(&pool(), "default-abcde", None, WorkerPorts::default()).spec.unwrap();
        let c = &spec.containers[0];
        let args = c.args.clone().unwrap();
        assert!(args.contains(&"--signaling-listen=$(POD_IP):8443".to_owned()));
        assert!(args.contains(&format!("--tls-dir={TLS_DIR}")));
        assert!(args.contains(&"--listen=$(POD_IP):8080".to_owned()));
        let tls = spec.volumes.unwrap().into_iter().find(|v| v.name == "tls").unwrap().secret.unwrap();
        assert_eq!(tls.secret_name.as_deref(), Some("default-abcde-tls"));
        assert_eq!(tls.optional, Some(true), "a warm pod must start before its certificate exists");
        // Probes use the plain admin port: the kubelet cannot present the session's trust.
        let readiness = c.readiness_probe.clone().unwrap();
        let probe = readiness.http_get.clone().unwrap();
        assert_eq!(probe.port, IntOrString::String("admin".into()));
        assert_eq!(probe.path.as_deref(), Some("/readyz"));
        // Failover sees a stalled worker within about 3 s (controller::failover).
        let timing = (readiness.period_seconds, readiness.timeout_seconds, readiness.failure_threshold);
        assert_eq!(timing, (Some(1), Some(1), Some(2)));
        let liveness = c.liveness_probe.clone().unwrap();
        assert_eq!(liveness.http_get.unwrap().path.as_deref(), Some("/healthz"));
        assert_eq!(liveness.period_seconds, Some(5));
    }
}
