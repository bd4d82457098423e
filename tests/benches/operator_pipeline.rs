//! Speed of the operator's pure pipeline for the Mỹ Hào example (examples/my-hao: the province,
//! the town, 13 communes and wards, one session): validate, build every child object, issue the
//! session's certificate. These run on every reconcile of every session, so they bound how many
//! sessions one operator replica can keep up with. `cargo bench -p tiepdan-tests --bench
//! operator_pipeline`; figures go in docs/BENCHMARKS.md.

mod support;

use std::collections::BTreeMap;
use std::hint::black_box;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use tiepdan_operator::api::{MediaWorkerPool, ReceptionPoint, ReceptionSession};
use tiepdan_operator::build::{
    dashboard, join_tokens, network_policy, pod_monitor, prometheus_rule, signaling_service, tls, worker_pod,
};
use tiepdan_operator::pki;
use tiepdan_operator::timeline::TimelineConfig;
use tiepdan_operator::validate::validate_session;

const NAMESPACE: &str = "my-hao";

/// The example's objects, as the API server would hand them to the operator.
fn example() -> (MediaWorkerPool, Vec<ReceptionPoint>, ReceptionSession) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/my-hao");
    let mut files: Vec<_> = std::fs::read_dir(&dir).expect("examples/my-hao").flatten().map(|e| e.path()).collect();
    files.sort();
    let (mut pool, mut points, mut session) = (None, vec![], None);
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read example");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let mut value = serde_json::to_value(serde_yaml::Value::deserialize(doc).expect("yaml")).expect("json");
            value["metadata"]["namespace"] = NAMESPACE.into();
            value["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001".into();
            match value["kind"].as_str() {
                Some("MediaWorkerPool") => pool = Some(serde_json::from_value(value).expect("pool")),
                Some("ReceptionPoint") => points.push(serde_json::from_value(value).expect("point")),
                Some("ReceptionSession") => session = Some(serde_json::from_value(value).expect("session")),
                _ => {}
            }
        }
    }
    (pool.expect("a pool"), points, session.expect("a session"))
}

use serde::Deserialize;

fn main() {
    let (pool, points, session) = example();
    let cfg = TimelineConfig::default();
    let valid = validate_session(&session.name_any(), &session.spec, &points, &cfg).expect("the example is valid");
    let keys = tiepdan_operator::tokens::SigningKeys::generate();
    let now: Timestamp = "2027-03-14T01:00:00Z".parse().expect("time");
    let names = tls::subject_names(&session, &pool);
    // The example pool announces a public address: the entry host the CA is permitted.
    let permitted = pool.spec.announced_address.iter().map(|a| a.parse().expect("an address"));
    let ca = pki::new_ca(now, pki::CA_MAX_VALIDITY, &pki::NamePolicy::new(permitted)).expect("CA");
    let extra = BTreeMap::new();
    let n = valid.participants.len();

    let stats = vec![
        support::measure(&format!("validate the session ({n} points)"), 5000, || {
            black_box(validate_session(&session.name_any(), &session.spec, &points, &cfg).expect("valid"));
        }),
        support::measure("build the worker pod and signaling Service", 5000, || {
            black_box(worker_pod::build(&pool, "default-abcde", Some(&session), worker_pod::WorkerPorts::default()));
            black_box(signaling_service::build(&session));
        }),
        support::measure("build the NetworkPolicy (1.20: 200 RTC ports listed)", 2000, || {
            black_box(network_policy::build(
                &session,
                &pool,
                worker_pod::WorkerPorts::default(),
                network_policy::PortRanges::Enumerate,
            ));
        }),
        support::measure(&format!("build the join tokens ({n} EdDSA JWTs)"), 2000, || {
            black_box(join_tokens::build(&session, &valid, &keys, 0, &Default::default()).expect("tokens"));
        }),
        support::measure("build the monitoring (dashboard via tera, PodMonitor, PrometheusRule)", 500, || {
            black_box(dashboard::build(&session).expect("dashboard"));
            black_box(pod_monitor::build(&session, &extra));
            black_box(prometheus_rule::build(&session, &extra));
        }),
        support::measure("issue the session certificate (own CA, ECDSA P-256)", 500, || {
            black_box(pki::issue_serving(&ca, &names, now, SignedDuration::from_hours(168)).expect("cert"));
        }),
        support::measure("decide whether to renew it and fingerprint it", 5000, || {
            black_box(tls::reissue_reason(None, &names, &ca, SignedDuration::from_hours(168), now));
            black_box(tls::pem_sha256(&ca.cert_pem));
        }),
    ];
    support::print_table(&format!("Operator pipeline, Mỹ Hào example ({})", support::machine()), &stats);
}
