//! The worker pods as the operator must see them: its pod cache, plus the pods it created or
//! relabelled itself that the cache does not show yet.
//!
//! A cache lags the API server by a watch event. For most reads that only costs a repeated,
//! idempotent write, but not for pods: a session whose new pod is not in the cache yet would
//! create a second one, and ports chosen for a pod not yet seen would be chosen again (two pods on
//! one node, one stuck Pending). So every pod the operator writes is also recorded here, and
//! shadows the cached copy until the cache has caught up with that write.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;

/// How long a written pod shadows the cache at most. The watch delivers in well under a second;
/// after this, a write the cache never showed (the pod was deleted at once) stops counting.
pub const SHADOW_FOR: Duration = Duration::from_secs(30);

/// A pod as this process wrote it, and when.
type Write = (Arc<Pod>, Instant);

/// Pods written by this process, keyed by (namespace, name).
#[derive(Default)]
pub struct Written {
    pods: Mutex<BTreeMap<(String, String), Write>>,
}

impl Written {
    /// Records `pod` as just written (created, or relabelled by allocation), or as about to be
    /// created: a pod built but not sent yet (no resourceVersion) holds its ports from the moment
    /// they are chosen, so the lock around choosing need not wait for the API server.
    pub fn record(&self, pod: &Pod) {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        self.pods
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Arc::new(pod.clone()), Instant::now()));
    }

    /// Forgets `pod` (a reservation whose creation failed).
    pub fn forget(&self, pod: &Pod) {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        self.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key);
    }

    /// The pods of `cache` matching `keep`, with this process's newer writes in place of (or
    /// added to) the cached copies. Entries the cache has caught up with, or older than
    /// [`SHADOW_FOR`], are dropped.
    ///
    /// Shared, not copied, and without indexing every cached pod: allocation asks for a pool's
    /// pods, a thousand at scale, on every provisioning pass. Deep copies of them, and a map of
    /// all pods built per call, were most of the operator's allocations (24.9 GB in one
    /// 1,000-session run, measured with the `dhat-heap` feature) and 16 MiB of its peak heap.
    pub fn view(&self, cache: &Store<Pod>, keep: impl Fn(&Pod) -> bool) -> Vec<Arc<Pod>> {
        let mut written = self.pods.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        written.retain(|(ns, name), (pod, at)| {
            now.duration_since(*at) < SHADOW_FOR
                && !cache.get(&ObjectRef::new(name).within(ns)).is_some_and(|c| caught_up(&c, pod))
        });
        let shadowed: HashSet<(&str, &str)> = written.keys().map(|(ns, name)| (ns.as_str(), name.as_str())).collect();
        let mut out = cache.state_filter(|p| {
            keep(p)
                && !shadowed.contains(&(
                    p.metadata.namespace.as_deref().unwrap_or_default(),
                    p.metadata.name.as_deref().unwrap_or_default(),
                ))
        });
        out.extend(written.values().filter(|(p, _)| keep(p)).map(|(p, _)| p.clone()));
        out
    }
}

/// Whether `cached` is `written` or a later version of it. Resource versions are opaque to
/// clients in general; this API server's are etcd revisions, which only grow, so a cached version
/// at or above the written one has seen the write. One that does not parse counts as caught up:
/// the cache is then trusted, as before this view existed.
fn caught_up(cached: &Pod, written: &Pod) -> bool {
    match (rv(cached), rv(written)) {
        (Some(c), Some(w)) => c >= w,
        _ => true,
    }
}

fn rv(p: &Pod) -> Option<u64> {
    p.metadata.resource_version.as_deref()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    fn pod(name: &str, rv: &str, label: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "n", "resourceVersion": rv, "labels": {"state": label}}
        }))
        .unwrap()
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(|p| format!("{}:{}", p.name_any(), p.labels()["state"])).collect();
        n.sort();
        n
    }

    #[test]
    fn a_written_pod_shadows_the_cache_until_the_cache_has_caught_up() {
        let (store, mut writer) = reflector::store::<Pod>();
        writer.apply_watcher_event(&Event::Apply(pod("idle-a", "10", "idle")));
        let written = Written::default();
        let all = |_: &Pod| true;
        assert_eq!(names(&written.view(&store, all)), ["idle-a:idle"]);

        // Created, not in the cache yet: it counts (its ports are held, the session has it).
        written.record(&pod("new-b", "12", "allocated"));
        // Relabelled by allocation: the cache still says idle.
        written.record(&pod("idle-a", "13", "allocated"));
        assert_eq!(names(&written.view(&store, all)), ["idle-a:allocated", "new-b:allocated"]);

        // The cache catches up with one write and moves past the other (the kubelet's status).
        writer.apply_watcher_event(&Event::Apply(pod("idle-a", "13", "allocated")));
        writer.apply_watcher_event(&Event::Apply(pod("new-b", "15", "running")));
        assert_eq!(names(&written.view(&store, all)), ["idle-a:allocated", "new-b:running"]);
        assert!(written.pods.lock().unwrap().is_empty(), "caught-up writes are forgotten");

        // An older cached version does not win over a newer write.
        written.record(&pod("new-b", "20", "mine"));
        assert_eq!(names(&written.view(&store, all)), ["idle-a:allocated", "new-b:mine"]);
        assert_eq!(names(&written.view(&store, |p| p.labels()["state"] == "mine")), ["new-b:mine"]);
    }
}
