//! The example session walks its timeline on a simulated clock; deleting a session leaves
//! nothing with its label.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};
use kube::Client;
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::api::{ReceptionSession, SessionPhase};
use tiepdan_operator::build::labels;
use tiepdan_operator::clock::SimClock;

use crate::common::{cluster, kubectl_ok, start_operator};

const SESSION: &str = "tiep-dan-dinh-ky-thang-3";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

async fn wait_phase(api: &Api<ReceptionSession>, want: SessionPhase) -> ReceptionSession {
    wait_for(Duration::from_secs(30), format!("session phase {want}"), || {
        let api = api.clone();
        async move {
            let s = api.get(SESSION).await.map_err(|e| e.to_string())?;
            let phase = s.status.as_ref().and_then(|st| st.phase);
            if phase == Some(want) {
                Ok(s)
            } else {
                Err(format!("phase {phase:?}"))
            }
        }
    })
    .await
    .unwrap()
}

/// Every object labelled for the session, as `Kind/name`, with `(terminating)` on those being
/// deleted.
async fn labelled(client: &Client, ns: &str) -> Vec<String> {
    async fn of<K>(api: Api<K>, lp: &ListParams) -> Vec<String>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let kind = K::kind(&());
        api.list_metadata(lp)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| {
                let going = if o.metadata.deletion_timestamp.is_some() { " (terminating)" } else { "" };
                format!("{kind}/{}{going}", o.metadata.name.unwrap_or_default())
            })
            .collect()
    }
    let lp = ListParams::default().labels(&format!("{}={SESSION}", labels::SESSION));
    let mut all = of(Api::<Pod>::namespaced(client.clone(), ns), &lp).await;
    all.extend(of(Api::<Service>::namespaced(client.clone(), ns), &lp).await);
    all.extend(of(Api::<Secret>::namespaced(client.clone(), ns), &lp).await);
    all.extend(of(Api::<NetworkPolicy>::namespaced(client.clone(), ns), &lp).await);
    all.extend(of(Api::<ConfigMap>::namespaced(client.clone(), ns), &lp).await);
    all
}

async fn labelled_count(client: &Client, ns: &str) -> usize {
    labelled(client, ns).await.len()
}

/// The operator must have deleted everything within 30 s. A worker pod may then stay
/// terminating a while longer on the node: the kubelet takes 7–12 s to remove a deleted pod's
/// object, and now and then over a minute (its container garbage collection;
/// `../shared/notes/real-node.md`). That is the node's pace, not a leak, so it gets 90 s more.
async fn wait_nothing_labelled(client: &Client, ns: &str) {
    let deleting = |left: &Vec<String>| left.iter().all(|o| o.starts_with("Pod/") && o.ends_with("(terminating)"));
    wait_for(Duration::from_secs(30), "every object labelled for the session deleted", || async {
        let left = labelled(client, ns).await;
        if deleting(&left) {
            Ok(())
        } else {
            Err(format!("left: {left:?}"))
        }
    })
    .await
    .unwrap();
    wait_for(Duration::from_secs(90), "the session's terminating worker pods gone", || async {
        let left = labelled(client, ns).await;
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("left: {left:?}"))
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_example_session_walks_its_timeline_on_a_simulated_clock() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("timeline");
    create_namespace(&client, &ns).await.unwrap();
    // The session starts 2027-03-15 08:00 in Hà Nội (01:00Z); begin well before anything is due.
    let clock = SimClock::new(ts("2027-03-10T00:00:00Z"));
    let _op = start_operator(client.clone(), &ns, Arc::new(clock.clone()));
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "examples/my-hao/"]);
    let api = Api::<ReceptionSession>::namespaced(client.clone(), &ns);

    let s = wait_phase(&api, SessionPhase::Scheduled).await;
    let st = s.status.unwrap();
    // 15:00 on 14 March in Asia/Ho_Chi_Minh (UTC+7) is 08:00Z.
    assert_eq!(st.readiness_deadline.unwrap().0, ts("2027-03-14T08:00:00Z"));
    assert_eq!(st.verified.as_deref(), Some("0/15"), "the host, the province and 13 communes/wards");
    assert_eq!(labelled_count(&client, &ns).await, 0, "nothing is provisioned while Scheduled");

    clock.set(ts("2027-03-14T06:30:00Z"));
    wait_phase(&api, SessionPhase::Provisioning).await;
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let tokens = wait_for(Duration::from_secs(30), "join tokens", || {
        let secrets = secrets.clone();
        async move { secrets.get(&format!("{SESSION}-join-tokens")).await.map_err(|e| e.to_string()) }
    })
    .await
    .unwrap();
    assert_eq!(tokens.data.unwrap().len(), 15, "one join token per point");
    wait_for(Duration::from_secs(30), "the allocated worker pod and the signaling Service", || async {
        let lp = ListParams::default().labels(&format!("{}={SESSION}", labels::SESSION));
        let pods = Api::<Pod>::namespaced(client.clone(), &ns).list(&lp).await.map_err(|e| e.to_string())?.items;
        let svc = Api::<Service>::namespaced(client.clone(), &ns)
            .get_opt(&format!("{SESSION}-signaling"))
            .await
            .map_err(|e| e.to_string())?;
        if pods.len() == 1 && svc.is_some() {
            Ok(())
        } else {
            Err(format!("{} pods, service {}", pods.len(), svc.is_some()))
        }
    })
    .await
    .unwrap();

    clock.set(ts("2027-03-14T07:00:00Z"));
    wait_phase(&api, SessionPhase::Rehearsal).await;

    clock.set(ts("2027-03-14T08:00:00Z"));
    let s = wait_phase(&api, SessionPhase::NotReady).await;
    let rbd = s.status.unwrap().conditions.into_iter().find(|c| c.type_ == "ReadyByDeadline").unwrap();
    assert_eq!((rbd.status.as_str(), rbd.reason.as_str()), ("False", "DeadlineMissed"));

    clock.set(ts("2027-03-15T01:00:00Z"));
    wait_phase(&api, SessionPhase::Live).await;

    clock.set(ts("2027-03-15T04:15:00Z"));
    let s = wait_phase(&api, SessionPhase::Completed).await;
    assert!(s.status.unwrap().summary.unwrap().actual_start.is_some());
    wait_nothing_labelled(&client, &ns).await;

    // Every phase change was announced; missing the deadline as a Warning.
    let events = Api::<Event>::namespaced(client.clone(), &ns);
    let reasons: Vec<(String, String)> = wait_for(Duration::from_secs(20), "phase events", || {
        let events = events.clone();
        async move {
            let evs: Vec<(String, String)> = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(SESSION))
                .map(|e| (e.type_.unwrap_or_default(), e.reason.unwrap_or_default()))
                .collect();
            let has = |r: &str| evs.iter().any(|(_, x)| x == r);
            if ["Scheduled", "Provisioning", "Rehearsal", "DeadlineMissed", "Live", "Completed"].iter().all(|r| has(r))
            {
                Ok(evs)
            } else {
                Err(format!("{evs:?}"))
            }
        }
    })
    .await
    .unwrap();
    assert!(reasons.contains(&("Warning".to_owned(), "DeadlineMissed".to_owned())));
}

#[tokio::test]
async fn deleting_a_session_leaves_no_object_with_its_label() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("delete");
    create_namespace(&client, &ns).await.unwrap();
    // Inside the rehearsal: everything is provisioned.
    let clock = SimClock::new(ts("2027-03-14T07:10:00Z"));
    let _op = start_operator(client.clone(), &ns, Arc::new(clock));
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "examples/my-hao/"]);
    let api = Api::<ReceptionSession>::namespaced(client.clone(), &ns);
    wait_phase(&api, SessionPhase::Rehearsal).await;
    wait_for(Duration::from_secs(30), "worker, Service and tokens", || async {
        match labelled_count(&client, &ns).await {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} objects")),
        }
    })
    .await
    .unwrap();

    api.delete(SESSION, &DeleteParams::default()).await.unwrap();
    wait_for(Duration::from_secs(30), "the session to be gone (finalizer done)", || async {
        match api.get_opt(SESSION).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err("still there".to_owned()),
        }
    })
    .await
    .unwrap();
    wait_nothing_labelled(&client, &ns).await;
}
