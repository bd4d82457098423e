//! Alerting rules: the per-session `PrometheusRule` (prometheus-operator) and the global rules the
//! chart ships. Both come from the same [`RuleGroup`] model, which is also what a plain Prometheus
//! rule file holds, so `promtool` tests (on the generated `deploy/prometheus/*.yaml`) exercise
//! exactly the expressions the operator creates.
//!
//! Every alert carries `summary`, `description`, and a runbook in Vietnamese (`runbook_vi`) and
//! English (`runbook_en`).

use std::collections::BTreeMap;

use kube::{CustomResource, ResourceExt};
use serde::{Deserialize, Serialize};

use super::session_child_meta;
use super::{labels, pod_monitor};
use crate::api::ReceptionSession;
use crate::tokens::session_id;

/// The `job` label of the operator's own scrape target: the chart's Service (and so its
/// ServiceMonitor job) must be named this.
pub const OPERATOR_JOB: &str = "tiepdan-operator";

/// A prometheus-operator `PrometheusRule` (only the fields the operator sets).
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(group = "monitoring.coreos.com", version = "v1", kind = "PrometheusRule", namespaced, schema = "disabled")]
pub struct PrometheusRuleSpec {
    pub groups: Vec<RuleGroup>,
}

/// A rule group, as in a Prometheus rule file.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    pub rules: Vec<Rule>,
}

/// An alerting rule.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Rule {
    pub alert: String,
    pub expr: String,
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A plain Prometheus rule file (`groups:`), the format `promtool` and a chart's
/// `PrometheusRule` template read.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

/// Alert names, one constant each so tests and docs can refer to them.
pub const POINTS_UNVERIFIED_AFTER_DEADLINE: &str = "TiepdanPointsUnverifiedAfterDeadline";
pub const POINT_DISCONNECTED_WHILE_LIVE: &str = "TiepdanPointDisconnectedWhileLive";
pub const PACKET_LOSS_HIGH: &str = "TiepdanPacketLossHigh";
pub const RTT_HIGH: &str = "TiepdanRoundTripTimeHigh";
pub const WORKER_DOWN: &str = "TiepdanSessionWorkerDown";
pub const OPERATOR_DOWN: &str = "TiepdanOperatorDown";
pub const RECONCILE_ERRORS: &str = "TiepdanOperatorReconcileErrors";

/// Packet loss above this, in percent, for [`QUALITY_FOR`] raises [`PACKET_LOSS_HIGH`].
pub const LOSS_PERCENT_LIMIT: u32 = 5;
/// Round-trip time above this, in milliseconds, for [`QUALITY_FOR`] raises [`RTT_HIGH`].
pub const RTT_MS_LIMIT: u32 = 300;
/// How long media quality must stay bad before it alerts: a burst is not worth a page.
pub const QUALITY_FOR: &str = "2m";

/// The PrometheusRule's name for a session.
pub fn name(session: &str) -> String {
    format!("{session}-alerts")
}

struct Text<'a> {
    summary: &'a str,
    description: &'a str,
    runbook_vi: &'a str,
    runbook_en: &'a str,
}

fn rule(alert: &str, expr: String, for_: &str, severity: &str, extra: &[(&str, &str)], text: Text<'_>) -> Rule {
    let mut labels: BTreeMap<String, String> = [("severity".to_owned(), severity.to_owned())].into_iter().collect();
    labels.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Rule {
        alert: alert.to_owned(),
        expr,
        for_: Some(for_.to_owned()),
        labels,
        annotations: [
            ("summary", text.summary),
            ("description", text.description),
            ("runbook_vi", text.runbook_vi),
            ("runbook_en", text.runbook_en),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    }
}

/// The alerts of session `<namespace>/<name>`. Every expression is filtered to the session's
/// own series (`session` label; `job` of its PodMonitor for the worker's `up`).
pub fn session_group(namespace: &str, name: &str) -> RuleGroup {
    let id = session_id(namespace, name);
    let sel = format!("session=\"{id}\"");
    let job = pod_monitor::job(namespace, &pod_monitor::name(name));
    let extra = [("session", id.as_str()), ("namespace", namespace)];
    let rules = vec![
        rule(
            POINTS_UNVERIFIED_AFTER_DEADLINE,
            format!(
                "tiepdan_operator_session_points{{{sel}, state=\"unverified\"}} > 0\n\
                 and on (session)\n\
                 tiepdan_operator_session_timestamp_seconds{{{sel}, event=\"deadline\"}} < time()"
            ),
            "1m",
            "critical",
            &extra,
            Text {
                summary: "{{ $value }} point(s) of session {{ $labels.session }} were not verified by the readiness deadline.",
                description: "The readiness deadline (15:00 on the day before, by default) has passed and some points \
                              have not passed verification. The session is NotReady.",
                runbook_vi: "1. Xem điểm cầu nào chưa được xác minh: kubectl get rsess -n <namespace> <phiên> -o \
                             jsonpath='{.status.points}'.\n2. Gọi cán bộ kỹ thuật tại từng điểm cầu chưa xác minh, \
                             yêu cầu mở lại liên kết tham gia và thử âm thanh, hình ảnh ít nhất 10 giây.\n3. Nếu điểm \
                             cầu không thể kết nối, báo lãnh đạo chủ trì để quyết định tổ chức phiên không có điểm \
                             cầu đó hoặc dời lịch.",
                runbook_en: "1. See which points are unverified: kubectl get rsess -n <namespace> <session> -o \
                             jsonpath='{.status.points}'.\n2. Call the technician at each unverified point and ask \
                             them to reopen their join link and test sound and video for at least 10 seconds.\n3. If a \
                             point cannot connect, tell the chair so they can hold the session without it or \
                             reschedule.",
            },
        ),
        rule(
            POINT_DISCONNECTED_WHILE_LIVE,
            format!(
                "tiepdan_operator_session_point_connected{{{sel}}} == 0\n\
                 and on (session)\n\
                 tiepdan_operator_session_phase{{{sel}, phase=\"Live\"}} == 1"
            ),
            "1m",
            "critical",
            &extra,
            Text {
                summary: "Point {{ $labels.point }} is not connected to live session {{ $labels.session }}.",
                description: "The session is Live and a point has been disconnected from its media worker for a \
                              minute.",
                runbook_vi: "1. Gọi điện cho điểm cầu {{ $labels.point }}, đề nghị tải lại trang và tham gia lại bằng \
                             liên kết đã cấp.\n2. Kiểm tra đường truyền tại điểm cầu (mạng truyền số liệu chuyên \
                             dùng hoặc Internet dự phòng).\n3. Nếu không khắc phục được trong 5 phút, báo chủ trì \
                             phiên để ghi nhận vào biên bản.",
                runbook_en: "1. Call point {{ $labels.point }} and ask them to reload the page and rejoin with their \
                             link.\n2. Check the point's link (the government data network, or its Internet backup).\n\
                             3. If it is not fixed within 5 minutes, tell the chair so it is noted in the minutes.",
            },
        ),
        rule(
            PACKET_LOSS_HIGH,
            format!("tiepdan_worker_loss_percent{{{sel}}} > {LOSS_PERCENT_LIMIT}"),
            QUALITY_FOR,
            "warning",
            &extra,
            Text {
                summary: "Point {{ $labels.point }} of session {{ $labels.session }} loses {{ $value | humanize }}% of \
                          its packets.",
                description: "Packet loss on a point's media has been above 5% for 2 minutes: sound and video break up.",
                runbook_vi: "1. Đề nghị điểm cầu {{ $labels.point }} tắt các ứng dụng dùng mạng khác và dùng mạng có \
                             dây thay cho Wi-Fi.\n2. Kiểm tra băng thông đường truyền của điểm cầu.\n3. Nếu vẫn mất \
                             gói, chuyển điểm cầu sang đường truyền dự phòng.",
                runbook_en: "1. Ask point {{ $labels.point }} to close other applications using the network and to use \
                             a wired connection instead of Wi-Fi.\n2. Check the point's link bandwidth.\n3. If loss \
                             persists, move the point to its backup link.",
            },
        ),
        rule(
            RTT_HIGH,
            format!("tiepdan_worker_rtt_milliseconds{{{sel}}} > {RTT_MS_LIMIT}"),
            QUALITY_FOR,
            "warning",
            &extra,
            Text {
                summary: "Round-trip time of point {{ $labels.point }} in session {{ $labels.session }} is \
                          {{ $value | humanize }} ms.",
                description: "The round-trip time to a point has been above 300 ms for 2 minutes: conversation lags.",
                runbook_vi: "1. Kiểm tra đường truyền của điểm cầu {{ $labels.point }} (độ trễ, định tuyến).\n2. Đề \
                             nghị điểm cầu dùng mạng truyền số liệu chuyên dùng thay vì Internet công cộng.\n3. Nếu \
                             nhiều điểm cầu cùng bị, kiểm tra tải của máy chủ media (bảng điều khiển Grafana của \
                             phiên).",
                runbook_en: "1. Check the link of point {{ $labels.point }} (latency, routing).\n2. Ask the point to \
                             use the government data network instead of the public Internet.\n3. If many points \
                             are affected, check the media worker's load (the session's Grafana dashboard).",
            },
        ),
        rule(
            WORKER_DOWN,
            format!("absent(up{{job=\"{job}\"}} == 1)"),
            "2m",
            "critical",
            &extra,
            Text {
                summary: "The media worker of session {{ $labels.session }} is down or not scraped.",
                description: "Prometheus has not scraped the session's media worker successfully for 2 minutes.",
                runbook_vi: "1. Xem pod media của phiên: kubectl get pod -n <namespace> -l \
                             tiepdan.io/session=<phiên>.\n2. Xem nhật ký: kubectl logs -n <namespace> <pod>.\n3. Nếu \
                             pod lỗi, xóa pod để operator cấp phát worker mới, rồi đề nghị các điểm cầu tham gia lại.",
                runbook_en: "1. Find the session's media pod: kubectl get pod -n <namespace> -l \
                             tiepdan.io/session=<session>.\n2. Read its logs: kubectl logs -n <namespace> <pod>.\n3. If \
                             the pod is broken, delete it so the operator allocates a new worker, then ask the points \
                             to rejoin.",
            },
        ),
    ];
    // The texts name this session: its id in summaries (`$labels` holds only the series' labels,
    // and `absent()` has none), its namespace and name in the runbooks' commands.
    let rules = rules
        .into_iter()
        .map(|mut r| {
            for text in r.annotations.values_mut() {
                *text = text
                    .replace("{{ $labels.session }}", &id)
                    .replace("<namespace>", namespace)
                    .replace("<phiên>", name)
                    .replace("<session>", name);
            }
            r
        })
        .collect();
    RuleGroup { name: format!("tiepdan-session-{namespace}-{name}"), rules }
}

/// The operator-wide alerts the chart ships (not per session).
pub fn global_group() -> RuleGroup {
    let rules = vec![
        rule(
            OPERATOR_DOWN,
            format!("absent(up{{job=\"{OPERATOR_JOB}\"}} == 1)"),
            "5m",
            "critical",
            &[],
            Text {
                summary: "The tiepdan operator is down or not scraped.",
                description: "No tiepdan-operator target has been up for 5 minutes: sessions are not provisioned, \
                              verified or cleaned up.",
                runbook_vi: "1. Xem pod operator: kubectl get pod -n <namespace cài đặt> -l \
                             app.kubernetes.io/name=tiepdan-operator.\n2. Xem nhật ký và sự kiện: kubectl logs / \
                             kubectl describe pod.\n3. Khắc phục nguyên nhân (quyền RBAC, kết nối API server, thiếu \
                             tài nguyên), các phiên sẽ được đối soát lại khi operator chạy.",
                runbook_en: "1. Find the operator pod: kubectl get pod -n <install namespace> -l \
                             app.kubernetes.io/name=tiepdan-operator.\n2. Read its logs and events: kubectl logs / \
                             kubectl describe pod.\n3. Fix the cause (RBAC, API server connectivity, resources); \
                             sessions are reconciled again once it runs.",
            },
        ),
        rule(
            RECONCILE_ERRORS,
            "sum by (kind) (rate(tiepdan_operator_reconciles_total{result=\"error\"}[5m]))\n\
             / sum by (kind) (rate(tiepdan_operator_reconciles_total[5m])) > 0.1"
                .to_owned(),
            "10m",
            "warning",
            &[],
            Text {
                summary: "More than 10% of {{ $labels.kind }} reconciles fail.",
                description: "The operator has been failing over 10% of its {{ $labels.kind }} reconciles for 10 \
                              minutes; see tiepdan_operator_reconcile_errors_total for the category.",
                runbook_vi: "1. Xem loại lỗi: sum by (category) (rate(tiepdan_operator_reconcile_errors_total[5m])).\n\
                             2. Đọc nhật ký operator (trường category, error).\n3. Lỗi apply/status thường do quyền \
                             RBAC hoặc API server; lỗi pool do thiếu MediaWorkerPool hoặc khóa ký.",
                runbook_en: "1. See the error categories: sum by (category) \
                             (rate(tiepdan_operator_reconcile_errors_total[5m])).\n2. Read the operator's logs (the \
                             category and error fields).\n3. apply/status errors usually mean RBAC or the API server; \
                             pool errors a missing MediaWorkerPool or signing key.",
            },
        ),
    ];
    RuleGroup { name: "tiepdan-operator".to_owned(), rules }
}

/// The PrometheusRule for `session`, labelled for it and `extra_labels` (e.g. the `release`
/// label a Prometheus' ruleSelector wants).
pub fn build(session: &ReceptionSession, extra_labels: &BTreeMap<String, String>) -> PrometheusRule {
    let sname = session.name_any();
    let ns = session.namespace().unwrap_or_default();
    PrometheusRule {
        metadata: session_child_meta(session, name(&sname), labels::COMPONENT_MONITORING, extra_labels),
        spec: PrometheusRuleSpec { groups: vec![session_group(&ns, &sname)] },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::session;

    #[test]
    fn every_session_alert_is_filtered_to_the_session_and_has_bilingual_runbooks() {
        let g = session_group("my-hao", "phien-thang-6");
        assert_eq!(g.rules.len(), 5);
        for r in &g.rules {
            let own = r.expr.contains(r#"session="my-hao/phien-thang-6""#)
                || r.expr.contains(r#"job="my-hao/phien-thang-6-worker""#);
            assert!(own, "{} is not filtered to the session: {}", r.alert, r.expr);
            for key in ["summary", "description", "runbook_vi", "runbook_en"] {
                assert!(r.annotations.get(key).is_some_and(|v| !v.is_empty()), "{} lacks {key}", r.alert);
            }
            assert_eq!(r.labels["session"], "my-hao/phien-thang-6");
        }
        let runbook = &g.rules[0].annotations["runbook_vi"];
        assert!(runbook.contains("kubectl get rsess -n my-hao phien-thang-6"), "{runbook}");
    }

    #[test]
    fn the_rule_object_belongs_to_the_session_and_carries_extra_labels() {
        let extra = BTreeMap::from([("release".to_owned(), "prometheus".to_owned())]);
        let rule = build(&session(), &extra);
        let l = rule.metadata.labels.unwrap();
        assert_eq!(l[labels::SESSION], "phien-thang-6");
        assert_eq!(l["release"], "prometheus");
        assert_eq!(rule.metadata.owner_references.unwrap()[0].kind, "ReceptionSession");
        assert_eq!(rule.metadata.name.as_deref(), Some("phien-thang-6-alerts"));
    }

    #[test]
    fn rules_serialize_as_a_prometheus_rule_file() {
        let yaml = serde_yaml::to_string(&RuleFile { groups: vec![global_group()] }).unwrap();
        assert!(yaml.contains("for: 5m"), "{yaml}");
        assert!(yaml.starts_with("groups:"), "{yaml}");
    }
}
