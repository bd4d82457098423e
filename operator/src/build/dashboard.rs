//! Grafana dashboards, rendered with tera from the templates in `dashboards/templates/`: one per
//! session, in a ConfigMap labelled for the Grafana sidecar (`grafana_dashboard: "1"`), and the
//! overview of every session, pool and the operator (a file only; `dashboards/overview.json`).
//!
//! Rendered text is parsed and pretty-printed again, so a template that is not valid JSON fails
//! here (and in the unit tests), never in Grafana.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use serde::Serialize;

use super::prometheus_rule::{LOSS_PERCENT_LIMIT, OPERATOR_JOB, RTT_MS_LIMIT};
use super::session_child_meta;
use super::{labels, pod_monitor};
use crate::api::ReceptionSession;
use crate::tokens::session_id;

/// The session dashboard's template (compiled in; the file is the source a chart or a person reads).
pub const SESSION_TEMPLATE: &str = include_str!("../../../dashboards/templates/session.json.tera");
/// The overview dashboard's template.
pub const OVERVIEW_TEMPLATE: &str = include_str!("../../../dashboards/templates/overview.json.tera");

/// The label the Grafana dashboard sidecar watches for.
pub const SIDECAR_LABEL: &str = "grafana_dashboard";
/// The annotation the sidecar (with `folderAnnotation` set) reads for the Grafana folder.
pub const FOLDER_ANNOTATION: &str = "grafana_folder";
/// The Grafana folder of tiepdan's dashboards.
pub const FOLDER: &str = "tiepdan";

/// Errors rendering a dashboard.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to parse the dashboard templates: {0}")]
    Template(String),
    #[error("failed to render dashboard {0}")]
    Render(&'static str, #[source] tera::Error),
    #[error("dashboard {0} is not valid JSON")]
    Json(&'static str, #[source] serde_json::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Template(_) => "template",
            Error::Render(..) => "render",
            Error::Json(..) => "json",
        }
    }
}

/// What the session template needs.
#[derive(Clone, Debug, Serialize)]
pub struct SessionDashboard {
    pub uid: String,
    pub title: String,
    pub description: String,
    /// `<namespace>/<name>`, the `session` label of operator and worker series.
    pub session: String,
    /// The `job` of the session's PodMonitor targets.
    pub worker_job: String,
    pub loss_limit: u32,
    pub rtt_limit: u32,
}

impl SessionDashboard {
    /// The dashboard of session `namespace/name` titled `title` (the session's own title).
    pub fn new(namespace: &str, name: &str, title: &str) -> Self {
        let id = session_id(namespace, name);
        Self {
            uid: uid(&id),
            // Grafana wants titles unique within a folder; two sessions may share a title.
            title: format!("{title} ({id})"),
            description: format!("Reception session {id}: points, media quality and timeline."),
            worker_job: pod_monitor::job(namespace, &pod_monitor::name(name)),
            session: id,
            loss_limit: LOSS_PERCENT_LIMIT,
            rtt_limit: RTT_MS_LIMIT,
        }
    }
}

/// A stable Grafana uid (at most 40 characters) for a session id: `tiepdan-` and a 64-bit FNV-1a
/// hash, since `<namespace>/<name>` can be far longer than Grafana allows.
pub fn uid(session_id: &str) -> String {
    let hash =
        session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("tiepdan-{hash:016x}")
}

fn templates() -> Result<&'static tera::Tera, Error> {
    static TEMPLATES: OnceLock<Result<tera::Tera, String>> = OnceLock::new();
    TEMPLATES
        .get_or_init(|| {
            let mut t = tera::Tera::default();
            // `.json` names: tera autoescapes only HTML-like templates, and JSON must not be.
            t.add_raw_templates([("session.json", SESSION_TEMPLATE), ("overview.json", OVERVIEW_TEMPLATE)])
                .map_err(|e| format!("{e:?}"))?;
            Ok(t)
        })
        .as_ref()
        .map_err(|e| Error::Template(e.clone()))
}

fn render(name: &'static str, context: &tera::Context) -> Result<String, Error> {
    let text = templates()?.render(name, context).map_err(|e| Error::Render(name, e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Json(name, e))?;
    let mut pretty = serde_json::to_string_pretty(&value).map_err(|e| Error::Json(name, e))?;
    pretty.push('\n');
    Ok(pretty)
}

/// The session dashboard as pretty JSON.
pub fn render_session(d: &SessionDashboard) -> Result<String, Error> {
    let context = tera::Context::from_serialize(d).map_err(|e| Error::Render("session.json", e))?;
    render("session.json", &context)
}

/// The overview dashboard as pretty JSON.
pub fn render_overview() -> Result<String, Error> {
    let mut context = tera::Context::new();
    context.insert("operator_job", OPERATOR_JOB);
    render("overview.json", &context)
}

/// Every PromQL expression of a dashboard: panel targets (rows included) and annotation queries.
pub fn expressions(dashboard: &serde_json::Value) -> Vec<String> {
    fn panels(v: &serde_json::Value, out: &mut Vec<String>) {
        for p in v.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.extend(t["expr"].as_str().map(str::to_owned));
            }
            panels(&p["panels"], out);
        }
    }
    let mut out = vec![];
    panels(&dashboard["panels"], &mut out);
    for a in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
        out.extend(a["expr"].as_str().map(str::to_owned));
    }
    out
}

/// The ConfigMap's name for a session.
pub fn name(session: &str) -> String {
    format!("{session}-dashboard")
}

/// The ConfigMap key (a file name for the sidecar, which puts every dashboard in one directory,
/// so it names the namespace too).
pub fn file_name(namespace: &str, session: &str) -> String {
    format!("tiepdan-{namespace}-{session}.json")
}

/// The dashboard ConfigMap of `session`, for the Grafana sidecar.
pub fn build(session: &ReceptionSession) -> Result<ConfigMap, Error> {
    let sname = session.name_any();
    let ns = session.namespace().unwrap_or_default();
    let json = render_session(&SessionDashboard::new(&ns, &sname, &session.spec.title))?;
    let sidecar = BTreeMap::from([(SIDECAR_LABEL.to_owned(), "1".to_owned())]);
    let mut metadata = session_child_meta(session, name(&sname), labels::COMPONENT_DASHBOARD, &sidecar);
    metadata.annotations = Some(BTreeMap::from([(FOLDER_ANNOTATION.to_owned(), FOLDER.to_owned())]));
    Ok(ConfigMap { metadata, data: Some(BTreeMap::from([(file_name(&ns, &sname), json)])), ..Default::default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::session;

    #[test]
    fn the_session_dashboard_is_titled_and_filtered_to_the_session() {
        let cm = build(&session()).unwrap();
        let l = cm.metadata.labels.clone().unwrap();
        assert_eq!(l[SIDECAR_LABEL], "1");
        assert_eq!(l[labels::SESSION], "phien-thang-6");
        let json = &cm.data.unwrap()["tiepdan-my-hao-phien-thang-6.json"];
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["title"], "Tiếp công dân tháng 6 (my-hao/phien-thang-6)");
        assert!(v["uid"].as_str().unwrap().len() <= 40);
        let exprs = expressions(&v);
        assert!(exprs.len() >= 15, "{exprs:#?}");
        for e in &exprs {
            assert!(
                e.contains(r#"session="my-hao/phien-thang-6""#) || e.contains(r#"job="my-hao/phien-thang-6-worker""#),
                "not filtered to the session: {e}"
            );
        }
        // Grafana's legend syntax survives tera.
        assert!(json.contains("{{point}}"), "{json}");
    }

    #[test]
    fn a_title_with_quotes_stays_valid_json() {
        let d = SessionDashboard::new("ns", "s", r#"Tiếp "dân" \ {{ x }}"#);
        let v: serde_json::Value = serde_json::from_str(&render_session(&d).unwrap()).unwrap();
        assert_eq!(v["title"], r#"Tiếp "dân" \ {{ x }} (ns/s)"#);
    }

    #[test]
    fn the_overview_renders_and_has_operator_health() {
        let v: serde_json::Value = serde_json::from_str(&render_overview().unwrap()).unwrap();
        let exprs = expressions(&v);
        assert!(exprs.iter().any(|e| e.contains(r#"up{job="tiepdan-operator"}"#)), "{exprs:#?}");
        assert!(exprs.iter().any(|e| e.contains("tiepdan_operator_sessions")));
    }

    #[test]
    fn uids_are_stable_short_and_distinct() {
        assert_eq!(uid("a/b"), uid("a/b"));
        assert_ne!(uid("a/b"), uid("a/c"));
        assert_eq!(uid(&"x".repeat(300)).len(), 24);
    }
}
