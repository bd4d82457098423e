//! The operator's CA rotated on the real API server, on a simulated clock: a 30-day CA, its
//! successor published 10 days before expiry, signing 5 days later, the old one retired once the
//! session's leaf was re-issued and loaded. An observer reads the published trust bundle and the
//! session's leaf throughout and checks that every leaf a worker may serve chains to the bundle.
//!
//! The test stands in for the session's certificate controller (which would need a worker): it
//! stores the leaf as an own-CA Secret with the labels and annotations
//! `controller::certificate` writes, and re-issues it from the signing CA when that changes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use tiepdan_harness::{create_namespace, unique_name, wait_for};
use tiepdan_operator::build::{labels, tls};
use tiepdan_operator::clock::{Clock, SimClock};
use tiepdan_operator::pki::rotation::{RotationPolicy, RETIRE_GRACE};
use tiepdan_operator::pki::{self, Ca};
use tiepdan_operator::webhook::registration::{CA_SECRET, TRUST_BUNDLE};

use crate::common::{cluster, start_operator_config, test_config};

const WAIT: Duration = Duration::from_secs(20);
const LEAF: &str = "phien-tls";

fn days(d: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * d)
}

/// Whether `leaf_pem` verifies for `name` at `at` with exactly `bundle` trusted (rustls/webpki,
/// as the offices' browsers and the worker's clients check it).
fn chains(bundle: &str, leaf_pem: &str, name: &str, at: Timestamp) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes()) {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let leaf = rustls::pki_types::CertificateDer::from_pem_slice(leaf_pem.as_bytes()).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let at = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(at.as_second() as u64));
    verifier.verify_server_cert(&leaf, &[], &name, &[], at).map(drop).map_err(|e| e.to_string())
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

async fn signing(secrets: &Api<Secret>) -> Result<Ca, String> {
    let s = secrets.get(CA_SECRET).await.map_err(|e| e.to_string())?;
    Ca::from_pem(text(&s, "tls.crt").ok_or("no tls.crt")?, text(&s, "tls.key").ok_or("no tls.key")?)
        .map_err(|e| e.to_string())
}

async fn bundle(maps: &Api<ConfigMap>) -> Result<String, String> {
    let m = maps.get(TRUST_BUNDLE).await.map_err(|e| e.to_string())?;
    m.data.and_then(|d| d.get("ca.crt").cloned()).ok_or_else(|| "no ca.crt".to_owned())
}

fn count(bundle: &str) -> usize {
    bundle.matches("BEGIN CERTIFICATE").count()
}

/// The session's own-CA Secret as `controller::certificate` stores it (labels and annotations the
/// rotation reads), holding a leaf from `ca` issued at `now`. Valid as long as its CA, since
/// nothing renews it in its last third here.
fn leaf_secret(ca: &Ca, name: &str, now: Timestamp) -> (Secret, String) {
    let cert = pki::issue_serving(ca, &[name.to_owned()], now, days(30)).unwrap();
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(LEAF.to_owned()),
            labels: Some(BTreeMap::from([(labels::COMPONENT.to_owned(), labels::COMPONENT_TLS.to_owned())])),
            annotations: Some(BTreeMap::from([
                (tls::ANNOTATION_CA.to_owned(), tls::pem_sha256(&ca.cert_pem).unwrap()),
                (tls::ANNOTATION_ISSUED_AT.to_owned(), now.to_string()),
            ])),
            ..Default::default()
        },
        type_: Some(tls::SECRET_TYPE.to_owned()),
        data: Some(BTreeMap::from([
            (tls::CERT.to_owned(), ByteString(cert.cert_pem.clone().into_bytes())),
            (tls::KEY.to_owned(), ByteString(cert.key_pem.into_bytes())),
        ])),
        ..Default::default()
    };
    (secret, cert.cert_pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_rotates_through_an_overlapping_bundle_and_no_served_leaf_ever_fails_to_chain() {
    let cp = cluster().await;
    let client = cp.client().await.unwrap();
    let ns = unique_name("ca-rotation");
    create_namespace(&client, &ns).await.unwrap();
    let name = format!("phien-signaling.{ns}.svc");
    let clock = SimClock::new("2027-01-01T00:00:00Z".parse().unwrap());
    let mut config = test_config(&ns);
    config.ca_rotation = RotationPolicy::from_days(30, Some(10)).unwrap();
    let _operator = start_operator_config(client.clone(), Arc::new(clock.clone()), config);
    let (secrets, maps) =
        (Api::<Secret>::namespaced(client.clone(), &ns), Api::<ConfigMap>::namespaced(client.clone(), &ns));

    // The first CA, and the session's leaf from it.
    let first = wait_for(WAIT, "the first CA", || signing(&secrets)).await.unwrap();
    assert_eq!(first.not_after, clock.now() + days(30), "valid 30 days");
    wait_for(WAIT, "the bundle with it", || async {
        let b = bundle(&maps).await?;
        if b.contains(&first.cert_pem) {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await
    .unwrap();
    let (secret, leaf1) = leaf_secret(&first, &name, clock.now());
    secrets.create(&PostParams::default(), &secret).await.unwrap();

    // The observer: every leaf a worker may serve (the stored one, and the one before it until
    // RETIRE_GRACE after the re-issue) must chain to the bundle published at that moment.
    let served: Arc<Mutex<Vec<(String, Timestamp)>>> = Arc::new(Mutex::new(vec![(leaf1.clone(), clock.now())]));
    let (observations, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::<String>::new())));
    let observer = tokio::spawn({
        let (maps, clock, served, name) = (maps.clone(), clock.clone(), served.clone(), name.clone());
        let (observations, failures) = (observations.clone(), failures.clone());
        async move {
            loop {
                if let Ok(b) = bundle(&maps).await {
                    let now = clock.now();
                    let leaves = served.lock().unwrap().clone();
                    let newest = leaves.last().map(|(_, t)| *t);
                    for (pem, issued) in &leaves {
                        let still_served = Some(*issued) == newest || newest.is_some_and(|n| now < n + RETIRE_GRACE);
                        if still_served {
                            if let Err(e) = chains(&b, pem, &name, now) {
                                failures.lock().unwrap().push(format!("at {now}: leaf of {issued}: {e}"));
                            }
                        }
                    }
                    observations.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    // 10 days before expiry: the successor is stored and published beside the first, which still signs.
    clock.set(first.not_after - days(10));
    let next = wait_for(WAIT, "the successor published", || async {
        let s = secrets.get(CA_SECRET).await.map_err(|e| e.to_string())?;
        let published = s.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("tiepdan.io/next-published-at"));
        let b = bundle(&maps).await?;
        match text(&s, "next.crt") {
            Some(next) if published && count(&b) == 2 && b.contains(&next) => Ok(next),
            _ => Err(format!("{} CAs in the bundle", count(&b))),
        }
    })
    .await
    .unwrap();
    assert_eq!(signing(&secrets).await.unwrap(), first, "the successor does not sign before the switch");
    chains(&bundle(&maps).await.unwrap(), &leaf1, &name, clock.now()).unwrap();

    // 5 days later the successor signs; the first stays in the bundle; the leaf is re-issued.
    clock.advance(days(5));
    let second = wait_for(WAIT, "the switch", || async {
        let ca = signing(&secrets).await?;
        if ca.cert_pem == next {
            Ok(ca)
        } else {
            Err("the first CA still signs".to_owned())
        }
    })
    .await
    .unwrap();
    let b = bundle(&maps).await.unwrap();
    assert!(count(&b) == 2 && b.contains(&first.cert_pem) && b.contains(&second.cert_pem), "both in the bundle");
    chains(&b, &leaf1, &name, clock.now()).unwrap();
    let reissued_at = clock.now();
    let (secret, leaf2) = leaf_secret(&second, &name, reissued_at);
    secrets.replace(LEAF, &PostParams::default(), &secret).await.unwrap();
    served.lock().unwrap().push((leaf2.clone(), reissued_at));

    // Once the re-issued leaf has been loaded, the first CA leaves the bundle.
    clock.advance(RETIRE_GRACE);
    wait_for(WAIT, "the first CA retired", || async {
        let b = bundle(&maps).await?;
        if count(&b) == 1 && b.contains(&second.cert_pem) {
            Ok(())
        } else {
            Err(format!("{} CAs", count(&b)))
        }
    })
    .await
    .unwrap();
    let b = bundle(&maps).await.unwrap();
    chains(&b, &leaf2, &name, clock.now()).unwrap();
    assert!(b.contains(&second.cert_pem) && !b.contains(&first.cert_pem));
    assert!(chains(&b, &leaf1, &name, clock.now()).is_err(), "the retired CA's leaf is no longer trusted");
    let s = secrets.get(CA_SECRET).await.unwrap();
    let keys: Vec<&String> = s.data.as_ref().map(|d| d.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["tls.crt", "tls.key"], "only the signing CA stays stored: {:?}", s.metadata.managed_fields);

    observer.abort();
    let failures = failures.lock().unwrap().clone();
    let seen = observations.load(Ordering::Relaxed);
    assert!(seen >= 3, "the observer looked {seen} times");
    assert!(failures.is_empty(), "{} of {seen} observations failed: {failures:#?}", failures.len());
}
