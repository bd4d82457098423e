//! A session's signaling certificate, end to end: issue it (the operator's own CA, or a
//! cert-manager `Certificate` when the session names an issuer and cert-manager is installed),
//! renew it, hand a copy to the session's worker pod, and decide `CertificateReady` from what the
//! worker says it serves. See [`crate::build::tls`] for the objects.

use std::collections::BTreeSet;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::ResourceExt;

use super::{events, Context};
use crate::api::{ConditionStatus as CS, MediaWorkerPool, ReceptionSession};
use crate::apply;
use crate::build::tls::{self, Certificate};
use crate::pki::{self, Ca};
use crate::webhook::registration;
use crate::worker_client::WorkerReport;

/// The CRD whose presence means cert-manager can take `Certificate`s.
pub const CERT_MANAGER_CRDS: [&str; 1] = ["certificates.cert-manager.io"];
/// The session condition this module decides.
pub const CERTIFICATE_READY: &str = crate::api::SessionCondition::CertificateReady.as_str();

/// Errors issuing or distributing a certificate. `category()` is a bounded metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to check for the cert-manager CRDs")]
    Detect(#[source] kube::Error),
    #[error("failed to load the operator's CA")]
    Ca(#[source] registration::Error),
    #[error("failed to issue the session's certificate")]
    Issue(#[from] pki::Error),
    #[error("failed to read {0}")]
    Read(String, #[source] kube::Error),
    #[error(transparent)]
    Apply(#[from] apply::Error),
}

impl Error {
    pub fn category(&self) -> &'static str {
        match self {
            Error::Detect(_) => "detect",
            Error::Ca(_) => "ca",
            Error::Issue(_) => "issue",
            Error::Read(..) => "read",
            Error::Apply(_) => "apply",
        }
    }
}

/// Where a session's certificate stands after [`ensure`].
#[derive(Clone, Debug, PartialEq)]
pub enum Issued {
    /// The session's Secret holds a certificate, copied for the worker pod.
    Ready {
        /// Who signed it, for messages: the operator's CA or a cert-manager issuer.
        issuer: String,
        /// The leaf's SHA-256, compared with what the worker serves.
        sha256: String,
        not_after: Option<String>,
    },
    /// cert-manager has not issued it yet.
    Pending { message: String },
}

/// Issues (or renews) the session's certificate and copies it for `pod`. Returns the Secret
/// names to keep when orphaned Secrets of the session are deleted.
#[tracing::instrument(name = "ensure certificate", skip_all)]
pub async fn ensure(
    ctx: &Context,
    session: &ReceptionSession,
    pool: &MediaWorkerPool,
    pod: &Pod,
    now: Timestamp,
) -> Result<(Issued, BTreeSet<String>), Error> {
    let ns = session.namespace().unwrap_or_default();
    let sname = session.name_any();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &ns);
    let names = tls::subject_names(session, pool);
    let validity = ctx.config.session_cert_validity;
    let secret_name = tls::secret_name(&sname);
    let mut keep = BTreeSet::from([secret_name.clone()]);

    let issuer_ref = session.spec.tls.as_ref().and_then(|t| t.issuer_ref.as_ref());
    let cert_manager = match issuer_ref {
        Some(_) => ctx.cert_manager.present(&ctx.client).await.map_err(Error::Detect)?,
        None => false,
    };
    let (source, issuer, not_after) = match issuer_ref.filter(|_| cert_manager) {
        Some(issuer) => {
            let certs = Api::<Certificate>::namespaced(ctx.client.clone(), &ns);
            let cert = apply::apply(&certs, &tls::certificate(session, issuer, &names, validity)).await?;
            let ready = cert.ready();
            let secret = secrets.get_opt(&secret_name).await.map_err(|e| Error::Read(secret_name.clone(), e))?;
            let issuer = format!("cert-manager {} {}", issuer.kind, issuer.name);
            match (ready, secret) {
                (Some((true, _)), Some(secret)) => {
                    (secret, issuer, cert.status.as_ref().and_then(|s| s.not_after.clone()))
                }
                (ready, _) => {
                    let why = match ready {
                        Some((_, m)) if !m.is_empty() => format!(": {m}"),
                        _ => String::new(),
                    };
                    let message = format!("Waiting for {issuer} to issue Certificate {secret_name}{why}");
                    return Ok((Issued::Pending { message }, keep));
                }
            }
        }
        None => {
            let ca = ca(ctx, now).await?;
            let existing = ctx
                .secrets
                .get(&ctx.caches, &secrets, &ns, &secret_name)
                .await
                .map_err(|e| Error::Read(secret_name.clone(), e))?
                .map(|s| (*s).clone());
            let secret = match tls::reissue_reason(existing.as_ref(), &names, &ca, validity, now) {
                None => existing.unwrap_or_default(),
                Some(why) => {
                    let cert = pki::issue_serving(&ca, &names, now, validity)?;
                    let secret = apply::apply(&secrets, &tls::own_ca_secret(session, &cert, &ca, &names)).await?;
                    ctx.secrets.remember(&secret);
                    let (reason, note) = if existing.is_none() {
                        (
                            "CertificateIssued",
                            format!("Issued the signaling certificate, valid until {}.", cert.not_after),
                        )
                    } else {
                        (
                            "CertificateRenewed",
                            format!("Renewed the signaling certificate ({why}); valid until {}.", cert.not_after),
                        )
                    };
                    events::normal(ctx, session, reason, "Issue", note).await;
                    secret
                }
            };
            let not_after =
                secret.metadata.annotations.as_ref().and_then(|a| a.get(tls::ANNOTATION_NOT_AFTER)).cloned();
            let issuer = match issuer_ref {
                // Named but not installed: say so, rather than silently signing with our CA.
                Some(i) => format!(
                    "the operator's CA ({}), because cert-manager is not installed and spec.tls.issuerRef {} {} \
                     could not be used",
                    pki::CA_NAME,
                    i.kind,
                    i.name
                ),
                None => format!("the operator's CA ({})", pki::CA_NAME),
            };
            (secret, issuer, not_after)
        }
    };

    let Some(sha256) = tls::secret_sha256(&source) else {
        let message = format!("Secret {secret_name} holds no readable certificate");
        return Ok((Issued::Pending { message }, keep));
    };
    if let Some(copy) = tls::pod_copy(session, &pod.name_any(), &source) {
        keep.insert(copy.name_any());
        let known = super::caches::known(&ctx.caches.secrets, &ns, &copy.name_any());
        apply::apply_known(&secrets, &copy, known.as_ref(), &ctx.applied).await?;
    }
    Ok((Issued::Ready { issuer, sha256, not_after }, keep))
}

/// The operator's signing CA (see [`super::ca_rotation`]): a rotation's new CA signs only once
/// the trust bundle carries it, and a leaf it did not sign is re-issued ("CA changed").
async fn ca(ctx: &Context, now: Timestamp) -> Result<Ca, Error> {
    super::ca_rotation::current(ctx, now).await.map(|set| set.signing).map_err(Error::Ca)
}

/// Deletes the session's cert-manager `Certificate`s (before their Secrets, or cert-manager would
/// write them again). Like monitoring's clean-up, a missing CRD or permission means there is
/// nothing the operator could have created.
pub async fn release(ctx: &Context, ns: &str, selector: &str) -> Result<(), apply::Error> {
    let present = ctx.cert_manager.present(&ctx.client).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot check for the cert-manager CRDs; skipping Certificate clean-up");
        false
    });
    if !present {
        return Ok(());
    }
    let api = Api::<Certificate>::namespaced(ctx.client.clone(), ns);
    match apply::delete_orphans(&api, selector, &BTreeSet::new()).await {
        Err(apply::Error::List { source: kube::Error::Api(s), .. }) if s.code == 403 || s.code == 404 => Ok(()),
        other => other.map(drop),
    }
}

/// `CertificateReady` from the certificate's state and what the worker reports serving.
pub fn condition(
    outcome: &Result<Issued, Error>,
    report: Option<&WorkerReport>,
    pod: &str,
) -> (CS, &'static str, String) {
    match outcome {
        Err(e) => (CS::False, "CertificateFailed", format!("{e} ({})", e.category())),
        Ok(Issued::Pending { message }) => (CS::False, "Issuing", format!("{message}.")),
        Ok(Issued::Ready { issuer, sha256, not_after }) => {
            let until = not_after.as_deref().map(|t| format!(", valid until {t}")).unwrap_or_default();
            let served = report.and_then(|r| r.tls.as_ref()).map(|t| t.sha256.as_str());
            if served == Some(sha256.as_str()) {
                (
                    CS::True,
                    "Serving",
                    format!(
                        "Worker pod {pod} serves signaling over HTTPS/WSS with the certificate from {issuer}{until}."
                    ),
                )
            } else {
                (
                    CS::False,
                    "Loading",
                    format!(
                        "The certificate from {issuer} is issued{until}; worker pod {pod} does not serve it yet (the \
                         kubelet updates the pod's Secret volume, then the worker reloads it)."
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker_client::ServedCertificate;

    fn ready() -> Result<Issued, Error> {
        Ok(Issued::Ready { issuer: "the operator's CA".into(), sha256: "ab".into(), not_after: None })
    }

    fn serving(sha: &str) -> WorkerReport {
        WorkerReport {
            tls: Some(ServedCertificate { sha256: sha.into(), loaded_at: jiff::Timestamp::UNIX_EPOCH }),
            ..Default::default()
        }
    }

    #[test]
    fn ready_only_when_the_worker_serves_the_issued_certificate() {
        assert_eq!(condition(&ready(), Some(&serving("ab")), "w").0, CS::True);
        let (s, reason, _) = condition(&ready(), Some(&serving("old")), "w");
        assert_eq!((s, reason), (CS::False, "Loading"));
        assert_eq!(condition(&ready(), None, "w").1, "Loading");
        let pending = Ok(Issued::Pending { message: "Waiting".into() });
        assert_eq!(condition(&pending, Some(&serving("ab")), "w").1, "Issuing");
    }
}
