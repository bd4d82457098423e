//! Starting the webhook inside the operator: the CA from its Secret, a serving certificate for the
//! webhook's Service (or URL), the HTTPS server, the configurations with the CA bundle (owned by
//! the chart's ClusterRole when one is named), and renewal of the serving certificate in the last
//! third of its life.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::Api;

use super::registration::{self, Endpoint, Registration, SERVING_VALIDITY};
use super::server::{self, WebhookServer};
use crate::clock::SystemClock;
use crate::pki;

/// Errors starting the webhook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registration(#[from] registration::Error),
    #[error(transparent)]
    Pki(#[from] pki::Error),
    #[error(transparent)]
    Server(#[from] server::Error),
    #[error("the ClusterRole {0:?} named by --webhook-owner-cluster-role (the webhook configurations' owner) does not exist")]
    OwnerMissing(String),
    #[error("failed to get the ClusterRole {name:?} named by --webhook-owner-cluster-role")]
    Owner { name: String, source: kube::Error },
}

/// How the webhook is exposed.
#[derive(Clone, Debug)]
pub struct WebhookOptions {
    /// Where the HTTPS server listens.
    pub listen: SocketAddr,
    /// The namespace of the operator (the CA Secret and trust bundle live there).
    pub namespace: String,
    /// The configurations' name.
    pub name: String,
    pub endpoint: Endpoint,
    /// Only namespaces matching this selector are checked (all when `None`, as in a cluster).
    pub namespace_selector: Option<LabelSelector>,
    /// The names the operator's CA is constrained to; must permit [`names`] of the endpoint.
    pub ca_names: pki::NamePolicy,
    /// The CA's validity, should this replica create the first one.
    pub ca_rotation: pki::rotation::RotationPolicy,
    /// The ClusterRole owning both configurations (`--webhook-owner-cluster-role`; the chart
    /// passes its own), so they are deleted with it. `None`: nothing owns them.
    pub owner_cluster_role: Option<String>,
    /// A name an older version registered the configurations under; those the same ClusterRole
    /// owns are deleted once these are registered (see [`registration::remove_replaced`]).
    pub replaces: Option<String>,
}

/// An owner reference to the ClusterRole `name`, read from the API server (for its uid).
pub async fn cluster_role_owner(client: &kube::Client, name: &str) -> Result<OwnerReference, Error> {
    let role = Api::<ClusterRole>::all(client.clone())
        .get_opt(name)
        .await
        .map_err(|source| Error::Owner { name: name.to_owned(), source })?;
    role.as_ref().and_then(registration::cluster_role_owner).ok_or_else(|| Error::OwnerMissing(name.to_owned()))
}

/// The names the webhook's serving certificate carries (the CA must permit them: see
/// [`Endpoint::url_host`]).
fn names(opts: &WebhookOptions) -> Vec<String> {
    match &opts.endpoint {
        Endpoint::Service { namespace, name, .. } => {
            vec![format!("{name}.{namespace}.svc"), format!("{name}.{namespace}.svc.cluster.local")]
        }
        Endpoint::Url(_) => opts.endpoint.url_host().map(str::to_owned).into_iter().collect(),
    }
}

/// Starts the webhook and keeps its certificate fresh. The task ends when the process does.
pub async fn start(client: kube::Client, opts: WebhookOptions) -> Result<WebhookServer, Error> {
    // First, so that a wrong name stops the start before anything is created.
    let owner = match &opts.owner_cluster_role {
        Some(name) => Some(cluster_role_owner(&client, name).await?),
        None => None,
    };
    // Certificates are about real time, whatever clock drives the timelines.
    let now = Timestamp::now();
    let mut cas = registration::ensure_ca(&client, &opts.namespace, now, &opts.ca_names, &opts.ca_rotation).await?;
    let cert = pki::issue_serving(&cas.signing, &names(&opts), now, SERVING_VALIDITY)?;
    let server = server::serve(opts.listen, &cert, Arc::new(SystemClock)).await?;
    let reg = Registration {
        name: opts.name.clone(),
        endpoint: opts.endpoint.clone(),
        namespace_selector: opts.namespace_selector.clone(),
        owner,
    };
    registration::register(&client, &reg, &cas.bundle_pem()).await?;
    if let (Some(old), Some(owner)) = (opts.replaces.as_deref().filter(|old| *old != opts.name), &reg.owner) {
        let removed = registration::remove_replaced(&client, old, owner).await?;
        if removed > 0 {
            tracing::info!(name = old, removed, "removed the webhook configurations an older version registered");
        }
    }
    tracing::info!(addr = %server.local_addr, "admission webhook serving");

    let tls = server.tls_config();
    let mut not_after = cert.not_after;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let now = Timestamp::now();
            // The leader rotates the CAs; this replica follows what is stored.
            let stored = match registration::load_ca_set(&client, &opts.namespace).await {
                Ok(Some(set)) => set,
                Ok(None) => cas.clone(),
                Err(e) => {
                    tracing::warn!(error = %e, "failed to read the operator's CAs");
                    cas.clone()
                }
            };
            let signer_changed = stored.signing != cas.signing;
            if stored.bundle_pem() != cas.bundle_pem() {
                // The stored bundle, plus the CA of the certificate served until the reload below,
                // should that CA have left it already.
                let mut bundle = stored.bundle_pem();
                if !bundle.contains(&cas.signing.cert_pem) {
                    bundle.push_str(&cas.signing.cert_pem);
                }
                if let Err(e) = registration::register(&client, &reg, &bundle).await {
                    tracing::warn!(error = %e, "failed to register the webhook with the new CA bundle");
                    continue;
                }
            }
            if signer_changed || pki::needs_renewal(not_after, SERVING_VALIDITY, now) {
                match pki::issue_serving(&stored.signing, &names(&opts), now, SERVING_VALIDITY) {
                    Ok(c) => match tls.reload_from_pem(c.cert_pem.into_bytes(), c.key_pem.into_bytes()).await {
                        Ok(()) => {
                            not_after = c.not_after;
                            tracing::info!("renewed the webhook's serving certificate");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "failed to load the renewed webhook certificate");
                            continue;
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to renew the webhook certificate");
                        continue;
                    }
                }
            }
            if stored.bundle_pem() != cas.bundle_pem() {
                if let Err(e) = registration::register(&client, &reg, &stored.bundle_pem()).await {
                    tracing::warn!(error = %e, "failed to register the webhook with the new CA bundle");
                    continue;
                }
            }
            cas = stored;
        }
    });
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serving_certificate_names_the_service_or_the_url_host() {
        let svc = WebhookOptions {
            listen: "0.0.0.0:8443".parse().unwrap(),
            namespace: "tiepdan-system".into(),
            name: "tiepdan".into(),
            endpoint: Endpoint::Service {
                namespace: "tiepdan-system".into(),
                name: "tiepdan-operator".into(),
                port: 8443,
            },
            namespace_selector: None,
            ca_names: pki::NamePolicy::new([]),
            ca_rotation: pki::rotation::RotationPolicy::default(),
            owner_cluster_role: None,
            replaces: None,
        };
        assert_eq!(names(&svc)[0], "tiepdan-operator.tiepdan-system.svc");
        let url = WebhookOptions { endpoint: Endpoint::Url("https://127.0.0.1:9443".into()), ..svc };
        assert_eq!(names(&url), vec!["127.0.0.1".to_owned()]);
    }
}
