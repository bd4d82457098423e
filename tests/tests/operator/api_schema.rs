//! The CRDs as the API server and kubectl see them.

use crate::common::{cluster, kubectl, kubectl_apply_yaml, kubectl_ok};
use tiepdan_harness::{create_namespace, unique_name};

#[tokio::test]
async fn examples_are_accepted_and_printer_columns_and_explain_read_well() {
    let cp = cluster().await;
    let ns = unique_name("api");
    create_namespace(&cp.client().await.unwrap(), &ns).await.unwrap();
    kubectl_ok(cp, &["apply", "-n", &ns, "-f", "crds/", "-f", "examples/my-hao/"]);

    let table = kubectl_ok(cp, &["get", "-n", &ns, "rsess,rp,mwp"]);
    let header = table.lines().next().unwrap_or_default().to_owned();
    for col in ["NAME", "PHASE", "START", "DEADLINE", "VERIFIED", "AGE"] {
        assert!(header.contains(col), "session header {header:?} lacks {col}");
    }
    for col in ["DISPLAY NAME", "LEVEL", "PARENT", "VALID"] {
        assert!(table.contains(col), "point columns lack {col}:\n{table}");
    }
    for col in ["IDLE WANTED", "READY", "ALLOCATED", "AVAILABLE"] {
        assert!(table.contains(col), "pool columns lack {col}:\n{table}");
    }
    assert!(table.contains("Ban Tiếp công dân thị xã Mỹ Hào"), "Vietnamese display names round-trip:\n{table}");
    assert_eq!(table.matches("Commune").count(), 13, "13 communes and wards:\n{table}");

    // The API server publishes a new CRD's OpenAPI asynchronously: wait for explain to see it.
    let explain = tiepdan_harness::wait_for(
        std::time::Duration::from_secs(30),
        "kubectl explain to know ReceptionSession",
        || async {
            let out = kubectl(cp, &["explain", "receptionsession.spec.schedule"]);
            if out.status.success() {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        },
    )
    .await
    .unwrap();
    for want in ["durationMinutes", "How long the session lasts", "timeZone", "IANA time zone", "start"] {
        assert!(explain.contains(want), "explain lacks {want:?}:\n{explain}");
    }
}

/// Applies one YAML document and returns kubectl's stderr, asserting it was rejected.
fn rejected(cp: &tiepdan_harness::ControlPlane, ns: &str, yaml: &str) -> String {
    let out = kubectl_apply_yaml(cp, ns, yaml);
    assert!(!out.status.success(), "expected the API server to reject:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const POINT: &str =
    "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionPoint\nmetadata: {name: x}\nspec:\n  displayName: X\n";
const SESSION: &str = "apiVersion: tiepdan.io/v1alpha1\nkind: ReceptionSession\nmetadata: {name: s}\nspec:\n  title: T\n  host: h\n  points: [a]\n";

#[tokio::test]
async fn the_api_server_rejects_bad_fields_and_names_them() {
    let cp = cluster().await;
    let ns = unique_name("reject");
    create_namespace(&cp.client().await.unwrap(), &ns).await.unwrap();

    let village = rejected(cp, &ns, &format!("{POINT}  level: Village\n"));
    assert!(village.contains("spec.level") && village.contains("Village"), "{village}");

    let uplink = rejected(cp, &ns, &format!("{POINT}  level: Province\n  network: {{uplinkKbps: 100}}\n"));
    assert!(uplink.contains("spec.network.uplinkKbps") && uplink.contains("256"), "{uplink}");

    let duration = rejected(
        cp,
        &ns,
        &format!("{SESSION}  schedule: {{start: \"2027-03-15T08:00:00+07:00\", durationMinutes: 5}}\n"),
    );
    assert!(duration.contains("spec.schedule.durationMinutes") && duration.contains("15"), "{duration}");

    let start = rejected(cp, &ns, &format!("{SESSION}  schedule: {{start: \"next Monday\", durationMinutes: 60}}\n"));
    assert!(start.contains("spec.schedule.start") && start.contains("date-time"), "{start}");

    let replicas = rejected(
        cp,
        &ns,
        "apiVersion: tiepdan.io/v1alpha1\nkind: MediaWorkerPool\nmetadata: {name: p}\nspec: {replicas: -1}\n",
    );
    assert!(replicas.contains("spec.replicas") && replicas.contains('0'), "{replicas}");
}
