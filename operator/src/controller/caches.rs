//! One watch per kind the reconcilers read, kept in a reflector store and fanned out as the
//! controllers' triggers.
//!
//! Every reconcile used to LIST what it needed: the namespace's points, the session's pods,
//! Services, Secrets, NetworkPolicies and dashboards (for orphans), the pool's pods (for ports and
//! idle workers). A 1.20 API server answers a label-selected LIST from etcd by reading every
//! object of that kind in the namespace, so with N sessions each reconcile cost O(N) and a
//! provisioning wave O(N²): at 1,000 sessions the API server timed out and the operator held
//! 2.2 GB of LIST answers (docs/BENCHMARKS.md, "Operator at scale"). Controllers built with
//! kube-runtime (and client-go's informers) read from a watch-fed cache instead; so does this.
//!
//! The store is updated *before* the object is handed on as a trigger, so a reconcile that an
//! event started always sees at least that event. Writes the operator itself just made may not
//! be in a store yet: pods, where that matters, go through [`super::pod_view`]. Kinds read only
//! for their applied hash and orphans (Services, Secrets, NetworkPolicies, ConfigMaps) are
//! watched as metadata only, which is what keeps the operator's memory flat.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::NamespaceResourceScope;
use kube::api::ObjectMeta;
use kube::core::{PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::{MediaWorkerPool, ReceptionPoint};
use crate::build::labels;

/// The read side: what the reconcilers read instead of listing.
#[derive(Clone)]
pub struct Caches {
    /// Every pod the operator manages (pools' and sessions' workers), whole: allocation needs
    /// their status, ports and annotations.
    pub pods: Store<Pod>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    pub policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub configmaps: Store<PartialObjectMeta<ConfigMap>>,
    pub points: Store<ReceptionPoint>,
    pub pools: Store<MediaWorkerPool>,
    /// The kinds whose first full list is in their store. Not the stores' own
    /// `wait_until_ready`: kube-runtime keeps one waker for all of a store's waiters (a oneshot
    /// receiver shared by every caller), so of the reconciles waiting at once, only the last to
    /// wait was woken and the others waited for ever. A restarted or newly leading operator,
    /// whose first reconciles all wait together, then acted on nothing (CI runs 14 and 15).
    listed: watch::Receiver<BTreeSet<String>>,
}

/// The kinds [`Caches`] lists, by the names [`Caches::unsynced`] gives.
const KINDS: [&str; 7] =
    ["Pod", "Service", "Secret", "NetworkPolicy", "ConfigMap", "ReceptionPoint", "MediaWorkerPool"];

/// The write side, taken once when the controllers start.
pub struct Writers {
    pods: Feed<Pod>,
    services: Feed<PartialObjectMeta<Service>>,
    secrets: Feed<PartialObjectMeta<Secret>>,
    policies: Feed<PartialObjectMeta<NetworkPolicy>>,
    configmaps: Feed<PartialObjectMeta<ConfigMap>>,
    points: Feed<ReceptionPoint>,
    pools: Feed<MediaWorkerPool>,
}

/// One store's writer, and the flag its first full list raises in [`Caches`].
struct Feed<K: Resource<DynamicType = ()> + Clone + 'static> {
    writer: reflector::store::Writer<K>,
    listed: Arc<watch::Sender<BTreeSet<String>>>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Feed<K> {
    /// Applies one watch event to the store, then marks the kind (metadata-only ones by their
    /// object's kind) listed at the end of a list.
    fn apply(&mut self, event: &watcher::Event<K>) {
        self.writer.apply_watcher_event(event);
        if matches!(event, watcher::Event::InitDone) {
            self.listed.send_if_modified(|kinds| kinds.insert(K::kind(&()).into_owned()));
        }
    }
}

/// A controller's trigger: the objects of one kind, each after its store has it.
pub type Trigger<K> = futures::stream::BoxStream<'static, Result<K, watcher::Error>>;

/// The triggers handed to the controllers.
pub struct Triggers {
    /// Metadata only: the controllers map a pod to its session (owner) or pool (label), so a
    /// whole copy of every pod event per subscriber, queued while they are busy, bought nothing.
    pub session_pods: Trigger<PartialObjectMeta<Pod>>,
    pub pool_pods: Trigger<PartialObjectMeta<Pod>>,
    pub services: Trigger<PartialObjectMeta<Service>>,
    pub secrets: Trigger<PartialObjectMeta<Secret>>,
    pub points: Trigger<ReceptionPoint>,
    pub pools: Trigger<MediaWorkerPool>,
}

/// Makes the stores; they fill once [`start`] runs with the writers.
pub fn new() -> (Caches, Writers) {
    let (listed_tx, listed) = watch::channel(BTreeSet::new());
    let listed_tx = Arc::new(listed_tx);
    let (pods, pods_w) = reflector::store();
    let (services, services_w) = reflector::store();
    let (secrets, secrets_w) = reflector::store();
    let (policies, policies_w) = reflector::store();
    let (configmaps, configmaps_w) = reflector::store();
    let (points, points_w) = reflector::store();
    let (pools, pools_w) = reflector::store();
    let writers = Writers {
        pods: Feed { writer: pods_w, listed: listed_tx.clone() },
        services: Feed { writer: services_w, listed: listed_tx.clone() },
        secrets: Feed { writer: secrets_w, listed: listed_tx.clone() },
        policies: Feed { writer: policies_w, listed: listed_tx.clone() },
        configmaps: Feed { writer: configmaps_w, listed: listed_tx.clone() },
        points: Feed { writer: points_w, listed: listed_tx.clone() },
        pools: Feed { writer: pools_w, listed: listed_tx },
    };
    (Caches { pods, services, secrets, policies, configmaps, points, pools, listed }, writers)
}

impl Caches {
    /// Waits until every store has had its first full list. Reconciles start only after their
    /// controller's own list, so this is normally immediate. Any number may wait at once.
    pub async fn synced(&self) {
        // A dropped sender means the operator is stopping: nothing to wait for then.
        let _ = self.listed.clone().wait_for(|kinds| KINDS.iter().all(|k| kinds.contains(*k))).await;
    }

    /// The kinds whose first list has not completed yet, for the log while reconciles wait in
    /// [`Caches::synced`].
    pub fn unsynced(&self) -> Vec<&'static str> {
        let listed = self.listed.borrow();
        KINDS.into_iter().filter(|k| !listed.contains(*k)).collect()
    }

    /// Logs once the caches have synced, and every `every` until then with the kinds still
    /// missing: every reconcile waits for them, so a cache that never lists holds the operator
    /// with no other sign (crash safety saw a newly leading replica act on nothing for 25 s).
    pub async fn log_until_synced(&self, every: std::time::Duration) {
        let started = tokio::time::Instant::now();
        loop {
            if tokio::time::timeout(every, self.synced()).await.is_ok() {
                tracing::info!(after = ?started.elapsed(), "caches synced");
                return;
            }
            tracing::warn!(unsynced = ?self.unsynced(), after = ?started.elapsed(), "caches not synced yet; reconciles wait for them");
        }
    }
}

/// The objects of `store` in namespace `ns` whose label `key` is `value`.
pub fn labelled<K>(store: &Store<K>, ns: &str, key: &str, value: &str) -> Vec<std::sync::Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.state_filter(|o| {
        o.meta().namespace.as_deref() == Some(ns)
            && o.meta().labels.as_ref().and_then(|l| l.get(key)).is_some_and(|v| v == value)
    })
}

/// Starts one watch per kind (in `namespace`, or all), feeding the stores and the triggers.
pub fn start(client: &Client, namespace: Option<&str>, writers: Writers) -> (Triggers, Vec<JoinHandle<()>>) {
    let managed = watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let scoped = Scoped { client: client.clone(), namespace: namespace.map(str::to_owned) };
    let mut tasks = Vec::new();

    let (task, mut pods) =
        drive(scoped.api::<Pod>(), managed.clone(), writers.pods, 2, |p| p.metadata.clone().into_response_partial());
    tasks.push(task);
    let (task, mut services) =
        drive(scoped.api::<PartialObjectMeta<Service>>(), managed.clone(), writers.services, 1, Clone::clone);
    tasks.push(task);
    let (task, mut secrets) =
        drive(scoped.api::<PartialObjectMeta<Secret>>(), managed.clone(), writers.secrets, 1, Clone::clone);
    tasks.push(task);
    let (task, _) =
        drive(scoped.api::<PartialObjectMeta<NetworkPolicy>>(), managed.clone(), writers.policies, 0, Clone::clone);
    tasks.push(task);
    let (task, _) = drive(scoped.api::<PartialObjectMeta<ConfigMap>>(), managed, writers.configmaps, 0, Clone::clone);
    tasks.push(task);
    let (task, mut points) =
        drive(scoped.api::<ReceptionPoint>(), watcher::Config::default(), writers.points, 1, Clone::clone);
    tasks.push(task);
    let (task, mut pools) =
        drive(scoped.api::<MediaWorkerPool>(), watcher::Config::default(), writers.pools, 1, Clone::clone);
    tasks.push(task);

    let triggers = Triggers {
        pool_pods: pods.pop().expect("two pod triggers"),
        session_pods: pods.pop().expect("two pod triggers"),
        services: services.pop().expect("a service trigger"),
        secrets: secrets.pop().expect("a secret trigger"),
        points: points.pop().expect("a point trigger"),
        pools: pools.pop().expect("a pool trigger"),
    };
    (triggers, tasks)
}

struct Scoped {
    client: Client,
    namespace: Option<String>,
}

impl Scoped {
    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }
}

/// Watches `api` into `writer`, and hands every created, changed or deleted object, as `project`
/// makes it, to `subscribers` trigger streams once the store has it. A watch error is retried with the
/// controllers' short [`super::watch_backoff::WatchBackoff`], not kube-runtime's default (up to
/// 30 s): after an API server restart, every reconcile waits on the caches (`synced`); the
/// triggers' receivers are unbounded, since a controller only
/// schedules what it receives.
fn drive<K, T>(
    api: Api<K>,
    config: watcher::Config,
    mut feed: Feed<K>,
    subscribers: usize,
    project: fn(&K) -> T,
) -> (JoinHandle<()>, Vec<Trigger<T>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    T: Clone + Send + 'static,
{
    let (senders, receivers): (Vec<UnboundedSender<T>>, Vec<UnboundedReceiver<T>>) =
        (0..subscribers).map(|_| unbounded_channel()).unzip();
    let kind = <K as Resource>::kind(&()).into_owned();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, config)
            .backoff(super::watch_backoff::WatchBackoff::default())
            .modify(strip)
            .inspect_ok(move |event| feed.apply(event))
            .touched_objects());
        while let Some(event) = events.next().await {
            match event {
                Ok(obj) => {
                    if senders.is_empty() {
                        continue;
                    }
                    let obj = project(&obj);
                    for s in &senders {
                        // A controller that stopped has dropped its receiver: nothing to do.
                        let _ = s.send(obj.clone());
                    }
                }
                Err(e) => tracing::warn!(error = %e, kind = %kind, "watch failed; retrying"),
            }
        }
    });
    let triggers = receivers.into_iter().map(|r| receiver_stream(r).map(Ok).boxed()).collect();
    (task, triggers)
}

/// Passes on only the objects whose spec (generation) or labels changed, or that are gone from
/// `store`: what a session reads of its points and pool. Their status changes (a point's last
/// verification, a pool's ready count) would otherwise reconcile every session of the namespace:
/// at 1,000 sessions, a few hundred point status writes while provisioning made 20 reconciles per
/// session.
pub fn spec_changes<K>(trigger: Trigger<K>, store: Store<K>) -> Trigger<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let mut seen: std::collections::HashMap<ObjectRef<K>, Signature> = std::collections::HashMap::new();
    trigger
        .filter(move |event| {
            let pass = match event {
                Ok(obj) => {
                    let key = ObjectRef::from_obj(obj);
                    if store.get(&key).is_none() {
                        // Deleted (the store drops an object before it is passed on).
                        seen.remove(&key);
                        true
                    } else {
                        let signature = (obj.meta().generation, obj.meta().labels.clone());
                        seen.insert(key, signature.clone()) != Some(signature)
                    }
                }
                Err(_) => true,
            };
            futures::future::ready(pass)
        })
        .boxed()
}

/// What [`spec_changes`] compares: generation and labels.
type Signature = (Option<i64>, Option<std::collections::BTreeMap<String, String>>);

/// Drops what no reconciler reads before an object is cached: `managedFields` (server-side
/// apply's per-manager field sets) are often larger than the rest of the metadata, and every
/// cached object carries them.
pub fn strip<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

fn receiver_stream<K: Send + 'static>(mut r: UnboundedReceiver<K>) -> impl Stream<Item = K> + Send {
    futures::stream::poll_fn(move |cx| r.poll_recv(cx))
}

/// The metadata `store` holds for `ns`/`name`, if any.
pub fn known<K>(store: &Store<PartialObjectMeta<K>>, ns: &str, name: &str) -> Option<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(ns)).map(|o| o.metadata.clone())
}

/// The metadata of every object in `store` that the operator made for session `session` in `ns`.
pub fn of_session<K>(store: &Store<PartialObjectMeta<K>>, ns: &str, session: &str) -> Vec<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    labelled(store, ns, labels::SESSION, session).iter().map(|o| o.metadata.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use kube::runtime::watcher::Event;
    use kube::ResourceExt;

    fn point(generation: i64, label: &str, verified: &str) -> ReceptionPoint {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tiepdan.io/v1alpha1", "kind": "ReceptionPoint",
            "metadata": {"name": "xa-nhan-hoa", "namespace": "n", "generation": generation, "labels": {"tier": label}},
            "spec": {"displayName": "Xã Nhân Hòa", "level": "Commune"},
            "status": {"lastVerification": {"time": verified, "session": "s"}},
        }))
        .expect("a point")
    }

    #[tokio::test]
    async fn only_spec_label_and_deletion_changes_of_points_reach_the_sessions() {
        let (store, mut writer) = reflector::store::<ReceptionPoint>();
        let (tx, rx) = unbounded_channel();
        let mut passed = spec_changes(receiver_stream(rx).map(Ok).boxed(), store);
        let t = |h: u8| format!("2025-06-1{h}T01:00:00Z");
        let events = [
            Event::Apply(point(1, "a", &t(0))),  // new: passes
            Event::Apply(point(1, "a", &t(1))),  // only its status: held back
            Event::Apply(point(1, "b", &t(1))),  // a label: passes
            Event::Apply(point(2, "b", &t(1))),  // the spec: passes
            Event::Apply(point(2, "b", &t(2))),  // only its status: held back
            Event::Delete(point(2, "b", &t(3))), // gone: passes
        ];
        let mut got = Vec::new();
        for event in events {
            // Applied to the store before it is passed on, as `drive` does.
            writer.apply_watcher_event(&event);
            let (Event::Apply(p) | Event::Delete(p)) = event else { unreachable!() };
            tx.send(p).expect("send");
            // What the filter lets through is ready at once; what it holds back leaves it pending.
            if let Some(Some(p)) = passed.next().now_or_never() {
                let p = p.expect("ok");
                let verified = serde_json::to_value(&p.status).expect("json")["lastVerification"]["time"].to_string();
                got.push((p.metadata.generation, p.labels()["tier"].clone(), verified.trim_matches('"').to_owned()));
            }
        }
        let want = [(1, "a", t(0)), (1, "b", t(1)), (2, "b", t(1)), (2, "b", t(3))]
            .map(|(g, l, v)| (Some(g), l.to_owned(), v));
        assert_eq!(got, want);
    }

    #[test]
    fn the_kinds_not_listed_yet_are_named_until_each_has_listed() {
        let (caches, mut writers) = new();
        assert_eq!(caches.unsynced().len(), 7);
        writers.pods.apply(&Event::InitDone);
        writers.points.apply(&Event::InitDone);
        assert_eq!(caches.unsynced(), ["Service", "Secret", "NetworkPolicy", "ConfigMap", "MediaWorkerPool"]);
        assert!(caches.synced().now_or_never().is_none(), "not synced while any kind is missing");
    }

    /// Reconciles wait for the caches together (a restarted operator's first ones all do); each
    /// must be woken when the last kind has listed. kube-runtime's `Store::wait_until_ready`
    /// woke only the last of them.
    #[tokio::test]
    async fn every_reconcile_waiting_for_the_caches_is_woken_once_they_have_listed() {
        let (caches, mut w) = new();
        let caches = Arc::new(caches);
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let caches = caches.clone();
                tokio::spawn(async move { caches.synced().await })
            })
            .collect();
        // Let every waiter poll (and register) before the lists complete.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        w.pods.apply(&Event::InitDone);
        w.services.apply(&Event::InitDone);
        w.secrets.apply(&Event::InitDone);
        w.policies.apply(&Event::InitDone);
        w.configmaps.apply(&Event::InitDone);
        w.points.apply(&Event::InitDone);
        w.pools.apply(&Event::InitDone);
        for (i, waiter) in waiting.into_iter().enumerate() {
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .unwrap_or_else(|_| panic!("waiter {i} was never woken"))
                .unwrap();
        }
        assert!(caches.unsynced().is_empty());
    }
}
