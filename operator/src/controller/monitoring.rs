//! A session's monitoring children: its Grafana dashboard ConfigMap always, and its PodMonitor and
//! PrometheusRule when the prometheus-operator CRDs are installed (checked with a short-lived
//! cache, so installing prometheus-operator later is noticed without a restart). Monitoring never
//! holds a session up: failures end up in the session's `MonitoringReady` condition.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::ResourceExt;

use super::caches;
use super::session::Reads;
use super::Context;
use crate::api::ReceptionSession;
use crate::apply;
use crate::build::pod_monitor::{self, PodMonitor};
use crate::build::prometheus_rule::{self, PrometheusRule};
use crate::build::{dashboard, labels};

/// The CRDs whose presence means prometheus-operator can take PodMonitors and PrometheusRules.
pub const PROMETHEUS_OPERATOR_CRDS: [&str; 2] =
    ["podmonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"];

/// Errors applying or removing monitoring children.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to check for the prometheus-operator CRDs")]
    Detect(#[source] kube::Error),
    #[error(transparent)]
    Dashboard(#[from] dashboard::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Detect(_) => "detect",
            Error::Dashboard(e) => e.category(),
            Error::Apply(_) => "apply",
        }
    }
}

/// What [`apply`] put in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The dashboard, the PodMonitor and the PrometheusRule.
    All,
    /// Only the dashboard: the prometheus-operator CRDs are missing.
    DashboardOnly,
}

/// Applies the session's monitoring children and deletes stale ones with its label.
#[tracing::instrument(name = "apply monitoring", skip_all)]
pub async fn apply(ctx: &Context, session: &ReceptionSession) -> Result<Applied, Error> {
    let ns = session.namespace().unwrap_or_default();
    let sel = labels::session_selector(&session.name_any());
    let sname = session.name_any();
    let configmaps = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns);
    let cm = dashboard::build(session)?;
    let cm = apply::apply_known(
        &configmaps,
        &cm,
        caches::known(&ctx.caches.configmaps, &ns, &cm.name_any()).as_ref(),
        &ctx.applied,
    )
    .await?;
    let dashboards = caches::of_session(&ctx.caches.configmaps, &ns, &sname);
    apply::delete_unkept(&configmaps, &dashboards, &BTreeSet::from([cm])).await?;
    if !ctx.monitoring.present(&ctx.client).await.map_err(Error::Detect)? {
        return Ok(Applied::DashboardOnly);
    }
    let extra = &ctx.config.monitoring_labels;
    let monitors = Api::<PodMonitor>::namespaced(ctx.client.clone(), &ns);
    let pm = apply::apply(&monitors, &pod_monitor::build(session, extra)).await?;
    apply::delete_orphans(&monitors, &sel, &BTreeSet::from([pm.name_any()])).await?;
    let rules = Api::<PrometheusRule>::namespaced(ctx.client.clone(), &ns);
    let pr = apply::apply(&rules, &prometheus_rule::build(session, extra)).await?;
    apply::delete_orphans(&rules, &sel, &BTreeSet::from([pr.name_any()])).await?;
    Ok(Applied::All)
}

/// Deletes every monitoring child labelled for the session (`selector`) in `ns`. Only the
/// ConfigMap's errors fail it: a PodMonitor or PrometheusRule the operator cannot check for or list
/// (CRDs gone, RBAC without them) is one it could not have created, and clean-up must never hold
/// a session's finalizer.
pub async fn release(ctx: &Context, ns: &str, session: &str, reads: Reads) -> Result<(), Error> {
    let none = BTreeSet::new();
    let selector = &labels::session_selector(session);
    let configmaps = Api::<ConfigMap>::namespaced(ctx.client.clone(), ns);
    if reads == Reads::Cached {
        // Nothing of the prometheus-operator's to list either: a session released once already
        // deleted those, and the operator never made more for it since.
        let dashboards = caches::of_session(&ctx.caches.configmaps, ns, session);
        apply::delete_unkept(&configmaps, &dashboards, &none).await?;
        return Ok(());
    }
    apply::delete_orphans(&configmaps, selector, &none).await?;
    let present = ctx.monitoring.present(&ctx.client).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot check for the prometheus-operator CRDs; skipping their clean-up");
        false
    });
    if present {
        let unlistable = |e: &apply::Error| matches!(e, apply::Error::List { source: kube::Error::Api(s), .. } if s.code == 403 || s.code == 404);
        let pm = apply::delete_orphans(&Api::<PodMonitor>::namespaced(ctx.client.clone(), ns), selector, &none).await;
        pm.map(drop).or_else(|e| if unlistable(&e) { Ok(()) } else { Err(e) })?;
        let pr =
            apply::delete_orphans(&Api::<PrometheusRule>::namespaced(ctx.client.clone(), ns), selector, &none).await;
        pr.map(drop).or_else(|e| if unlistable(&e) { Ok(()) } else { Err(e) })?;
    }
    Ok(())
}
