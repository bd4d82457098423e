//! Namespaces that pods can be created in right away.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::wait::{wait_for, WaitError};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("failed to create namespace {name}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    NotReady(#[from] WaitError),
}

/// How long the controller-manager gets to give a new namespace its `default` service account.
const SERVICE_ACCOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Creates namespace `name` (an existing one is fine) and waits until pods can be created in it:
/// its `default` ServiceAccount exists and, before Kubernetes 1.24, has its token Secret (the
/// ServiceAccount admission plugin rejects pods until then).
pub async fn create_namespace(client: &Client, name: &str) -> Result<Namespace, NamespaceError> {
    create_namespace_within(client, name, SERVICE_ACCOUNT_TIMEOUT).await
}

/// [`create_namespace`], waiting up to `timeout` for the ServiceAccount.
pub async fn create_namespace_within(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> Result<Namespace, NamespaceError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    let created = match api.create(&PostParams::default(), &ns).await {
        Ok(created) => created,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            api.get(name).await.map_err(|source| NamespaceError::Create { name: name.into(), source })?
        }
        Err(source) => return Err(NamespaceError::Create { name: name.into(), source }),
    };
    wait_for(timeout, format!("the default ServiceAccount of namespace {name}"), || {
        default_service_account_ready(client, name)
    })
    .await?;
    Ok(created)
}

/// `Ok` once pods can use namespace `ns`'s `default` ServiceAccount; `Err` says what is missing.
pub(crate) async fn default_service_account_ready(client: &Client, ns: &str) -> Result<(), String> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let sa =
        api.get_opt("default").await.map_err(|e| e.to_string())?.ok_or("ServiceAccount default not created yet")?;
    if sa.secrets.as_ref().is_some_and(|s| !s.is_empty()) || !needs_token_secret(client).await {
        Ok(())
    } else {
        Err("ServiceAccount default has no token Secret yet".into())
    }
}

/// Whether the server predates 1.24 (token Secrets for service accounts).
async fn needs_token_secret(client: &Client) -> bool {
    match client.apiserver_version().await {
        Ok(info) => {
            let minor: u32 = info.minor.trim_end_matches('+').parse().unwrap_or(0);
            info.major == "1" && minor < 24
        }
        Err(_) => true,
    }
}
