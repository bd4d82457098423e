//! The ReceptionPoint controller: keeps each point's `Valid` condition true to the hierarchy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;

use super::{events, Context};
use crate::api::{condition, set_condition, ConditionStatus, ReceptionPoint, ReceptionPointSpec};
use crate::build::labels::MANAGER;
use crate::topology;

/// Errors reconciling a point.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to list reception points")]
    List(#[source] kube::Error),
    #[error("failed to update point status")]
    Status(#[source] kube::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::List(_) => "list",
            Error::Status(_) => "status",
        }
    }
}

impl super::instrument::ReconcileError for Error {
    fn category(&self) -> &'static str {
        Error::category(self)
    }
}

pub fn controller(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl Stream<Item = super::Outcome<ReceptionPoint, Error>> {
    let api = ctx.watched::<ReceptionPoint>();
    let ctl = Controller::new(api.clone(), watcher::Config::default());
    let store = ctl.store();
    // A point's validity depends on its parent chain, so a change to any point re-checks its
    // namespace's children of it.
    ctl.watches(api, watcher::Config::default(), move |changed: ReceptionPoint| {
        let ns = changed.namespace();
        let name = changed.name_any();
        store
            .state()
            .into_iter()
            .filter(|p| p.namespace() == ns && p.spec.parent.as_deref() == Some(name.as_str()))
            .map(|p| ObjectRef::from_obj(&*p))
            .collect::<Vec<_>>()
    })
    .trigger_backoff(super::watch_backoff::WatchBackoff::default())
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
}

async fn reconcile(point: Arc<ReceptionPoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::instrument::reconcile(crate::metrics::KIND_POINT, &*point, &ctx, reconcile_point(point.clone(), ctx.clone()))
        .await
}

async fn reconcile_point(point: Arc<ReceptionPoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = point.namespace().unwrap_or_default();
    let api = Api::<ReceptionPoint>::namespaced(ctx.client.clone(), &ns);
    let all = api.list(&ListParams::default()).await.map_err(Error::List)?;
    let specs: BTreeMap<String, ReceptionPointSpec> =
        all.items.iter().map(|p| (p.name_any(), p.spec.clone())).collect();
    let result = topology::validate_point(&point.name_any(), &specs);

    let mut status = point.status.clone().unwrap_or_default();
    let was_valid = condition::find(&status.conditions, "Valid").map(|c| c.status == "True");
    let (st, reason, message) = match &result {
        Ok(()) => (ConditionStatus::True, "Valid", "The point's place in the hierarchy is valid.".to_owned()),
        Err(e) => (ConditionStatus::False, e.reason(), e.to_string()),
    };
    let generation = point.metadata.generation;
    set_condition(&mut status.conditions, "Valid", st, reason, &message, generation, ctx.clock.now());
    status.observed_generation = generation;
    // Written only on change: recording a verification on the point (a status change) must not
    // come back as another write.
    if point.status.as_ref() != Some(&status) {
        let patch = json!({
            "apiVersion": "tiepdan.io/v1alpha1",
            "kind": "ReceptionPoint",
            "status": { "conditions": status.conditions, "observedGeneration": status.observed_generation },
        });
        api.patch_status(&point.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await
            .map_err(Error::Status)?;
    }

    match (&result, was_valid) {
        (Err(e), Some(true) | None) => events::warning(&ctx, &*point, e.reason(), "Validate", message).await,
        (Ok(()), Some(false)) => events::normal(&ctx, &*point, "Valid", "Validate", message).await,
        _ => {}
    }
    // Semantic problems are not retried in a loop: the watch on points re-checks on any change.
    Ok(Action::await_change())
}

fn error_policy(_point: Arc<ReceptionPoint>, _err: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.config.error_backoff.min(Duration::from_secs(60)))
}
