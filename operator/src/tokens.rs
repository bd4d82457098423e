//! Join tokens and admin tokens (HS256 JWTs), as described in docs/worker-contract.md.
//!
//! Join tokens are deterministic for a given key, session and participant (they carry no random
//! nonce and `iat` is the rehearsal start), so re-applying the token Secret every reconcile does
//! not churn it, and a point's link stays the same for the whole session.

use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::validate::{Participant, ValidSession};

/// The `iss` of every token.
pub const ISSUER: &str = "tiepdan-operator";
/// The `aud` of admin tokens for worker allocation.
pub const WORKER_ADMIN_AUDIENCE: &str = "tiepdan-worker";
/// The `role` of probe tokens: the synthetic prober (`tiepdan-media-worker probe`), not a point.
/// Only probes get plain-RTP transports from the worker, and a probe never counts toward any
/// point's verification.
pub const PROBE_ROLE: &str = "probe";
/// How long a probe token is valid: a probe run takes seconds, so a leaked one expires soon.
pub const PROBE_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// Errors minting tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to sign a token")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("probe name {0:?} must be a DNS label: lowercase letters, digits and '-', at most 63 characters")]
    ProbeName(String),
}

/// The claims of a join token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JoinClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub nbf: i64,
    pub exp: i64,
    pub iat: i64,
    pub name: String,
    pub role: String,
    pub title: String,
    /// The live window (RFC 3339); probe tokens have none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub start: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub end: String,
    pub epoch: u64,
    /// The point's link generation (see `link_generations`); absent means 0, so links issued
    /// before any rotation keep their bytes.
    #[serde(default, rename = "gen", skip_serializing_if = "is_zero")]
    pub link_generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The claims of an operator-to-worker admin token.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdminClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    /// Unique per token: the worker accepts each once.
    pub jti: String,
    /// The worker pod the call is for: the worker refuses a token for another pod.
    pub pod: String,
}

/// How long an admin token lives: the worker refuses longer ones (and remembers each token's
/// `jti` for that long).
pub const ADMIN_TOKEN_SECONDS: i64 = 30;

/// The id of a session in tokens and on workers: `<namespace>/<name>`.
pub fn session_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The join claims of one participant.
pub fn join_claims(
    session_id: &str,
    title: &str,
    session: &ValidSession,
    p: &Participant,
    epoch: u64,
    link_generation: u32,
) -> JoinClaims {
    let t = &session.timeline;
    JoinClaims {
        iss: ISSUER.to_owned(),
        aud: session_id.to_owned(),
        sub: p.name.clone(),
        nbf: t.rehearsal_start.as_second(),
        exp: t.complete_at.as_second(),
        iat: t.rehearsal_start.as_second(),
        name: p.display_name.clone(),
        role: p.role.as_str().to_owned(),
        title: title.to_owned(),
        start: t.start.to_string(),
        end: t.end.to_string(),
        epoch,
        link_generation,
    }
}

/// The claims of a probe token named `name` for a session, valid from `now` for [`PROBE_TTL`].
/// `epoch` must be the session's current token epoch, or the worker refuses it as revoked.
pub fn probe_claims(
    session_id: &str,
    title: &str,
    name: &str,
    epoch: u64,
    now: Timestamp,
) -> Result<JoinClaims, Error> {
    let label = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !label {
        return Err(Error::ProbeName(name.to_owned()));
    }
    Ok(JoinClaims {
        iss: ISSUER.to_owned(),
        aud: session_id.to_owned(),
        sub: name.to_owned(),
        nbf: now.as_second(),
        exp: (now + PROBE_TTL).as_second(),
        iat: now.as_second(),
        name: name.to_owned(),
        role: PROBE_ROLE.to_owned(),
        title: title.to_owned(),
        start: String::new(),
        end: String::new(),
        epoch,
        link_generation: 0,
    })
}

fn sign<T: Serialize>(key: &[u8], claims: &T) -> Result<String, Error> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(key)).map_err(Error::Sign)
}

/// Signs a join token.
pub fn mint_join_token(key: &[u8], claims: &JoinClaims) -> Result<String, Error> {
    sign(key, claims)
}

/// Signs an admin token for one call to worker pod `pod`: valid [`ADMIN_TOKEN_SECONDS`], with a
/// fresh `jti`, so one read off the plain-HTTP admin port works neither twice nor elsewhere.
pub fn mint_admin_token(key: &[u8], now: Timestamp, pod: &str) -> Result<String, Error> {
    use rand::distr::{Alphanumeric, SampleString};
    sign(
        key,
        &AdminClaims {
            iss: ISSUER.to_owned(),
            aud: WORKER_ADMIN_AUDIENCE.to_owned(),
            sub: "operator".to_owned(),
            iat: now.as_second(),
            exp: now.as_second() + ADMIN_TOKEN_SECONDS,
            jti: Alphanumeric.sample_string(&mut rand::rng(), 22),
            pod: pod.to_owned(),
        },
    )
}

/// A fresh signing key: 32 random bytes as 64 hex characters.
pub fn generate_signing_key() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::timeline::Timeline;
    use crate::validate::Role;
    use jsonwebtoken::{DecodingKey, Validation};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    pub(crate) fn session() -> ValidSession {
        ValidSession {
            timeline: Timeline {
                provisioning_start: ts("2025-06-11T06:30:00Z"),
                rehearsal_start: ts("2025-06-11T07:00:00Z"),
                deadline: ts("2025-06-11T08:00:00Z"),
                start: ts("2025-06-12T01:00:00Z"),
                end: ts("2025-06-12T03:00:00Z"),
                complete_at: ts("2025-06-12T03:15:00Z"),
            },
            participants: vec![Participant {
                name: "di-su".into(),
                display_name: "UBND phường Dị Sử".into(),
                role: Role::Participant,
            }],
            missing: vec![],
        }
    }

    #[test]
    fn join_tokens_are_scoped_to_session_and_point_and_expire_after_grace() {
        let s = session();
        let claims = join_claims("my-hao/phien-1", "Tiếp dân", &s, &s.participants[0], 0, 0);
        let key = generate_signing_key();
        let tok = mint_join_token(key.as_bytes(), &claims).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["my-hao/phien-1"]);
        v.validate_exp = false;
        let got =
            jsonwebtoken::decode::<JoinClaims>(&tok, &DecodingKey::from_secret(key.as_bytes()), &v).unwrap().claims;
        assert_eq!(got.sub, "di-su");
        assert_eq!(got.exp, ts("2025-06-12T03:15:00Z").as_second());
        assert_eq!(got.nbf, ts("2025-06-11T07:00:00Z").as_second());
        assert_eq!(got.name, "UBND phường Dị Sử");
    }

    #[test]
    fn join_tokens_are_deterministic_so_the_secret_does_not_churn() {
        let s = session();
        let c = join_claims("a/b", "t", &s, &s.participants[0], 0, 0);
        assert_eq!(mint_join_token(b"k", &c).unwrap(), mint_join_token(b"k", &c).unwrap());
    }

    #[test]
    fn a_token_signed_with_another_key_does_not_verify() {
        let s = session();
        let c = join_claims("a/b", "t", &s, &s.participants[0], 0, 0);
        let tok = mint_join_token(b"key-one", &c).unwrap();
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&["a/b"]);
        v.validate_exp = false;
        assert!(jsonwebtoken::decode::<JoinClaims>(&tok, &DecodingKey::from_secret(b"key-two"), &v).is_err());
    }

    #[test]
    fn probe_tokens_carry_the_probe_role_and_expire_within_the_hour() {
        let now = ts("2025-06-11T07:10:00Z");
        let c = probe_claims("my-hao/phien-1", "Tiếp dân", "probe-vnpt", 2, now).unwrap();
        assert_eq!((c.role.as_str(), c.sub.as_str(), c.epoch), ("probe", "probe-vnpt", 2));
        assert_eq!((c.nbf, c.exp), (now.as_second(), now.as_second() + 3600));
        let value = serde_json::to_value(&c).unwrap();
        assert!(value.get("start").is_none() && value.get("end").is_none(), "{value}");
        for bad in ["", "Probe", "probe_1", "-probe", "probe-", &"p".repeat(64)] {
            assert!(matches!(probe_claims("a/b", "t", bad, 0, now), Err(Error::ProbeName(_))), "{bad:?}");
        }
    }

    #[test]
    fn point_tokens_keep_their_live_window() {
        let s = session();
        let c = join_claims("a/b", "t", &s, &s.participants[0], 0, 0);
        let value = serde_json::to_value(&c).unwrap();
        assert_eq!(value["start"], "2025-06-12T01:00:00Z");
        assert_eq!(value["role"], "participant");
    }

    #[test]
    fn signing_keys_are_64_hex_characters_and_differ() {
        let (a, b) = (generate_signing_key(), generate_signing_key());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
