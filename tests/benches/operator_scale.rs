//! The operator at scale on the project's real control plane (etcd, kube-apiserver,
//! kube-controller-manager; no node): 150 points and 1,000 sessions in their rehearsal, one
//! `tiepdan-operator` process. It reports the time until every session is Provisioned, the API
//! writes per session (counted by the operator and by the API server), the writes per idle
//! session per minute, the operator's peak RSS and its reconcile latency.
//!
//! Worker pods are *simulated* in the sense: the operator creates each session's worker
//! pod, Service, Secrets, NetworkPolicy and dashboard for real, but no kubelet runs them (1,000
//! mediasoup workers do not fit on 2 cores), so pods stay Pending and the workers are never
//! polled. That is the operator's whole provisioning work; what it skips is the per-poll worker
//! status call.
//!
//! `cargo bench -p tiepdan-tests --bench operator_scale` runs the full size with the release
//! operator (`TIEPDAN_SCALE_SESSIONS`, `TIEPDAN_SCALE_POINTS`, `TIEPDAN_SCALE_IDLE_SECS` change
//! it). `cargo test` runs it as a smoke (20 sessions, the debug operator) that only checks it
//! works: figures are printed, never asserted on.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)] // the crash tests' helpers; this uses a subset
#[path = "../tests/crash_safety/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, PostParams};
use kube::Client;
use serde_json::json;
use support::{cluster, schedule_now, OperatorProcess};
use tiepdan_harness::{create_namespace, unique_name, ControlPlane};
use tiepdan_operator::api::{MediaWorkerPool, ReceptionPoint, ReceptionSession};
use tokio::time::Instant;

struct Size {
    sessions: usize,
    points: usize,
    idle: Duration,
    full: bool,
}

impl Size {
    fn from_env() -> Self {
        // `cargo bench` passes --bench; `cargo test` does not.
        let full = std::env::args().any(|a| a == "--bench");
        let var = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}: not a number")))
        };
        let (sessions, points, idle) = if full { (1000, 150, 60) } else { (20, 10, 5) };
        Size {
            sessions: var("TIEPDAN_SCALE_SESSIONS", sessions),
            points: var("TIEPDAN_SCALE_POINTS", points).max(3),
            idle: Duration::from_secs(var("TIEPDAN_SCALE_IDLE_SECS", idle) as u64),
            full,
        }
    }
}

fn main() {
    let size = Size::from_env();
    if size.full && std::env::var_os("TIEPDAN_OPERATOR_BIN").is_none() {
        // Measure the binary that ships: `cargo bench` built the workspace in release mode.
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| support::repo().join("target"));
        std::env::set_var("TIEPDAN_OPERATOR_BIN", target.join("release/tiepdan-operator"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(size));
}

async fn run(size: Size) {
    let (cp, client) = cluster().await;
    let ns = unique_name("scale");
    create_namespace(&client, &ns).await.unwrap();
    let created = Instant::now();
    fixtures(&client, &ns, &size).await;
    let creating = created.elapsed();
    let before = apiserver_writes(cp).await;

    let mut operator = OperatorProcess::start(cp, &ns);
    let started = Instant::now();
    // Who used the 2 cores while provisioning: what bounds the time to Provisioned.
    const COMPONENTS: [&str; 3] = ["kube-apiserver", "etcd", "kube-controller-manager"];
    let cpu_before = COMPONENTS.map(|c| cpu_seconds(cp.pid(c)));
    let mut rss_peak_kib = 0;
    let mut provisioned_after = None;
    let deadline = started + Duration::from_secs(600);
    while Instant::now() < deadline {
        operator.assert_running();
        rss_peak_kib = rss_peak_kib.max(vm_hwm_kib(operator.pid()));
        // One LIST of the sessions a second: the bench must not be what loads the API server.
        if provisioned(&client, &ns).await == size.sessions {
            provisioned_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let provisioned_after = provisioned_after.unwrap_or_else(|| panic!("not every session was Provisioned in 10 min"));
    let operator_cpu = cpu_seconds(operator.pid());
    let cpu: Vec<f64> = COMPONENTS.iter().zip(cpu_before).map(|(c, before)| cpu_seconds(cp.pid(c)) - before).collect();
    // The last status writes and events trail the condition by a little: count once it is quiet.
    let provisioning =
        operator.until_progress(u64::MAX, Duration::from_secs(3), Duration::from_secs(60)).await.writes();
    let after_provisioning = apiserver_writes(cp).await;
    let text = operator.scrape().await.unwrap();
    let (p50, p99, reconciles) = reconcile_quantiles(&text);
    let by_resource = writes_by_resource(&text);

    // Idle: nothing changes for `idle`.
    tokio::time::sleep(size.idle).await;
    let idle_writes = operator.progress().await.unwrap().writes() - provisioning;
    let after_idle = apiserver_writes(cp).await;
    rss_peak_kib = rss_peak_kib.max(vm_hwm_kib(operator.pid()));

    let n = size.sessions as f64;
    let per_minute = idle_writes as f64 / n / size.idle.as_secs_f64() * 60.0;
    println!("\n## Operator at scale ({} mode)\n", if size.full { "full" } else { "smoke" });
    println!(
        "{} sessions, {} points, simulated workers (pods created, no kubelet); operator {}",
        size.sessions,
        size.points,
        support::operator_bin().display()
    );
    println!("created the points and sessions in {creating:.1?}\n");
    println!("| figure | value |\n|---|---|");
    println!("| every session Provisioned after | {provisioned_after:.1?} |");
    println!("| API writes per session to provision (operator's count) | {:.1} |", provisioning as f64 / n);
    println!(
        "| API writes per session to provision (apiserver_request_total, all clients, incl. the controller-manager) | {:.1} |",
        sum(&grown(&before, &after_provisioning)) as f64 / n
    );
    println!("| API writes per idle session per minute (operator, over {:?}) | {per_minute:.2} |", size.idle);
    println!(
        "| API writes per idle session per minute (apiserver, all clients) | {:.2} |",
        sum(&grown(&after_provisioning, &after_idle)) as f64 / n / size.idle.as_secs_f64() * 60.0
    );
    println!("| operator peak RSS | {:.1} MiB |", rss_peak_kib as f64 / 1024.0);
    println!(
        "| CPU seconds until every session was Provisioned: operator / kube-apiserver / etcd / controller-manager (of {:.0} on {} cores) | {operator_cpu:.1} / {:.1} / {:.1} / {:.1} |",
        provisioned_after.as_secs_f64() * cores(),
        cores(),
        cpu[0],
        cpu[1],
        cpu[2]
    );
    println!("| session reconciles | {reconciles} |");
    println!("| reconcile latency p50 / p99 (histogram bucket bounds) | ≤ {p50} s / ≤ {p99} s |");
    println!("\nwrites by resource while provisioning (operator's count):\n");
    println!("| resource | writes | per session |\n|---|---|---|");
    for (resource, w) in &by_resource {
        println!("| {resource} | {w} | {:.2} |", *w as f64 / n);
    }
    // The API server's view, every client: what the operator's count does not explain comes
    // from the controller-manager.
    println!("\nwrites by resource at the API server (all clients), provisioning and idle:\n");
    println!("| resource | provisioning, per session | idle, per session per minute |\n|---|---|---|");
    let (provisioning_all, idle_all) = (grown(&before, &after_provisioning), grown(&after_provisioning, &after_idle));
    for key in provisioning_all.keys().chain(idle_all.keys()).collect::<std::collections::BTreeSet<_>>() {
        let at = |m: &BTreeMap<String, u64>| m.get(key).copied().unwrap_or(0) as f64;
        println!(
            "| {key} | {:.2} | {:.2} |",
            at(&provisioning_all) / n,
            at(&idle_all) / n / size.idle.as_secs_f64() * 60.0
        );
    }
    drop(operator);
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .delete(&ns, &kube::api::DeleteParams::default())
        .await;
}

/// A pool with no warm workers, `size.points` points (the province, the town, communes), and
/// `size.sessions` sessions in their rehearsal, each hosted by the town with two communes.
async fn fixtures(client: &Client, ns: &str, size: &Size) {
    let pool: MediaWorkerPool = serde_json::from_value(json!({
        "apiVersion": "tiepdan.io/v1alpha1", "kind": "MediaWorkerPool",
        "metadata": {"name": "default"}, "spec": {"replicas": 0}
    }))
    .unwrap();
    Api::<MediaWorkerPool>::namespaced(client.clone(), ns).create(&PostParams::default(), &pool).await.unwrap();
    let points = Api::<ReceptionPoint>::namespaced(client.clone(), ns);
    let communes = size.points - 2;
    let mut all = vec![
        ("tinh".to_owned(), json!({"displayName": "Tỉnh Hưng Yên", "level": "Province"})),
        ("thi-xa".to_owned(), json!({"displayName": "Thị xã Mỹ Hào", "level": "Town", "parent": "tinh"})),
    ];
    for i in 0..communes {
        all.push((
            format!("xa-{i:03}"),
            json!({"displayName": format!("UBND xã {i}"), "level": "Commune", "parent": "thi-xa"}),
        ));
    }
    for (name, spec) in all {
        let p: ReceptionPoint = serde_json::from_value(json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionPoint", "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        points.create(&PostParams::default(), &p).await.unwrap();
    }
    let (start, deadline) = schedule_now();
    let sessions = Api::<ReceptionSession>::namespaced(client.clone(), ns);
    for i in 0..size.sessions {
        let s: ReceptionSession = serde_json::from_value(json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionSession",
            "metadata": {"name": format!("s-{i:04}")},
            "spec": {
                "title": format!("Tiếp công dân {i}"),
                "host": "thi-xa",
                "points": [format!("xa-{:03}", i % communes), format!("xa-{:03}", (i + 1) % communes)],
                "schedule": {"start": start.to_string(), "durationMinutes": 60},
                "readiness": {"deadline": deadline.to_string(), "rehearsalMinutes": 60},
            }
        }))
        .unwrap();
        sessions.create(&PostParams::default(), &s).await.unwrap();
    }
}

/// How many sessions have their Provisioned condition True.
async fn provisioned(client: &Client, ns: &str) -> usize {
    let Ok(list) = Api::<ReceptionSession>::namespaced(client.clone(), ns).list(&Default::default()).await else {
        return 0;
    };
    list.items
        .iter()
        .filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.conditions.iter().any(|c| c.type_ == "Provisioned" && c.status == "True"))
        })
        .count()
}

/// The API server's count of writes (`POST`, `PUT`, `PATCH`, `DELETE`, `APPLY`) from every
/// client since it started, by "resource verb" (its metric names no client, so the resources
/// are what tells the operator's writes from the controller-manager's).
async fn apiserver_writes(cp: &ControlPlane) -> BTreeMap<String, u64> {
    let client = cp.client().await.unwrap();
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let (Some(verb), Some(resource)) = (label(line, "verb"), label(line, "resource")) else { continue };
        if !["POST", "PUT", "PATCH", "DELETE", "APPLY"].contains(&verb.as_str()) {
            continue;
        }
        let resource = match label(line, "subresource").filter(|s| !s.is_empty()) {
            Some(sub) => format!("{resource}/{sub}"),
            None => resource,
        };
        let v = line.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        *out.entry(format!("{resource} {verb}")).or_default() += v;
    }
    out
}

/// The value of label `name` in one line of Prometheus text.
fn label(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    Some(line[start..].split('"').next()?.to_owned())
}

/// Every count of `m`, added up.
fn sum(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// What `after` counts beyond `before`, per key, leaving out keys that did not grow.
fn grown(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// The operator's writes while provisioning, by resource.
fn writes_by_resource(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("tiepdan_operator_api_requests_total{")) {
        let (Some(verb), Some(resource)) = (label(line, "verb"), label(line, "resource")) else { continue };
        if ["create", "update", "patch", "delete"].contains(&verb.as_str()) {
            let v = line.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
            *out.entry(format!("{resource} {verb}")).or_default() += v;
        }
    }
    out
}

/// p50 and p99 of session reconciles, as the upper bounds of the histogram buckets that hold
/// them, and the number of reconciles.
fn reconcile_quantiles(text: &str) -> (String, String, u64) {
    let prefix = "tiepdan_operator_reconcile_duration_seconds_bucket{";
    let mut buckets: Vec<(f64, String, u64)> = text
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains("kind=\"ReceptionSession\""))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?.to_owned();
            let count = l.rsplit_once(' ')?.1.parse::<f64>().ok()? as u64;
            Some((le.parse::<f64>().unwrap_or(f64::INFINITY), le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0, |b| b.2);
    let at = |q: f64| {
        let want = (total as f64 * q).ceil() as u64;
        buckets.iter().find(|b| b.2 >= want).map_or("?".to_owned(), |b| b.1.clone())
    };
    (at(0.5), at(0.99), total)
}

/// The process's peak resident set (`VmHWM`), in KiB; 0 once it is gone.
/// CPU seconds (user and system) `pid` has used since it started; 0 once it is gone.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return 0.0 };
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The command (field 2) may hold spaces; after its ')' the fields are fixed: utime
            // and stime, fields 14 and 15 of the line, are the 12th and 13th after it.
            let after: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some((after.get(11)?.parse::<f64>().ok()? + after.get(12)?.parse::<f64>().ok()?) / ticks)
        })
        .unwrap_or(0.0)
}

/// The cores this machine has.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

fn vm_hwm_kib(pid: Option<u32>) -> u64 {
    let Some(pid) = pid else { return 0 };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
