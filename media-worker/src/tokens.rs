//! Join and admin tokens (HS256 JWTs), per `docs/worker-contract.md`.
//!
//! Time checks are done here against an explicit `now` rather than by `jsonwebtoken`, so the
//! rules (and their error codes) are visible in one place and testable without a clock.

use crate::ids::{PointName, SessionId};
use crate::signaling::protocol::{ErrorCode, Role};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// The issuer the operator puts in join tokens.
pub const JOIN_ISSUER: &str = "tiepdan-operator";
/// The audience of admin tokens the operator sends to workers.
pub const ADMIN_AUDIENCE: &str = "tiepdan-worker";
/// The subject of admin tokens.
pub const ADMIN_SUBJECT: &str = "operator";
/// Tolerated clock difference between the operator and the worker for `nbf`/`exp`.
pub const CLOCK_SKEW_LEEWAY_SECS: i64 = 30;
/// The longest an admin token may live (`exp - iat`): one stolen from the wire is useless soon,
/// and the worker remembers every admin token's `jti` only for that long (plus the leeway).
pub const MAX_ADMIN_TTL_SECS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("failed to read the token key file {path}")]
    ReadKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the token key file {path} is empty")]
    EmptyKey { path: String },
    #[error("the token is malformed or its signature does not match")]
    BadSignature,
    #[error("the token's claims are missing or malformed")]
    BadClaims,
    #[error("the token was not issued by {JOIN_ISSUER}")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was revoked (its epoch {token} is below the current epoch {current})")]
    Revoked { token: u64, current: u64 },
    #[error("an admin token may live at most {MAX_ADMIN_TTL_SECS} s; this one lives {secs} s")]
    AdminLifetime { secs: i64 },
    #[error("failed to sign a token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

impl TokenError {
    /// The signaling error code a client sees for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::WrongAudience => ErrorCode::WrongSession,
            Self::Expired => ErrorCode::TokenExpired,
            Self::NotYetValid => ErrorCode::TokenNotYetValid,
            Self::Revoked { .. } => ErrorCode::TokenRevoked,
            Self::BadSignature | Self::BadClaims | Self::WrongIssuer | Self::AdminLifetime { .. } => {
                ErrorCode::InvalidToken
            }
            Self::ReadKey { .. } | Self::EmptyKey { .. } | Self::Sign(_) => ErrorCode::Internal,
        }
    }
}

/// The shared HMAC key: the signing-key Secret's content, whitespace-trimmed, used as bytes.
#[derive(Clone)]
pub struct TokenKey {
    bytes: Vec<u8>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    pub fn from_bytes(raw: &[u8]) -> Self {
        Self { bytes: raw.trim_ascii().to_vec() }
    }

    pub fn from_file(path: &Path) -> Result<Self, TokenError> {
        let raw =
            std::fs::read(path).map_err(|source| TokenError::ReadKey { path: path.display().to_string(), source })?;
        let key = Self::from_bytes(&raw);
        if key.bytes.is_empty() {
            return Err(TokenError::EmptyKey { path: path.display().to_string() });
        }
        Ok(key)
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Signature only; claim rules are applied by the callers against an explicit clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        match jsonwebtoken::decode::<T>(token, &DecodingKey::from_secret(&self.bytes), &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_)
                | jsonwebtoken::errors::ErrorKind::InvalidClaimFormat(_) => Err(TokenError::BadClaims),
                _ => Err(TokenError::BadSignature),
            },
        }
    }

    fn encode<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(&self.bytes))
            .map_err(TokenError::Sign)
    }
}

/// The claims of a join token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ts_rs::TS)]
pub struct JoinClaims {
    pub iss: String,
    /// The session id.
    pub aud: String,
    /// The point name.
    pub sub: String,
    pub nbf: i64,
    pub exp: i64,
    pub iat: i64,
    /// Display name (Vietnamese UTF-8).
    pub name: String,
    pub role: Role,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub end: Option<String>,
    pub epoch: u64,
    /// The point's link generation: `tiepdan-operator links --rotate` issues the point a new link
    /// one generation up, and the worker then refuses the point's older links. Absent means 0, so
    /// links issued before rotation existed keep their bytes.
    #[serde(default, rename = "gen", skip_serializing_if = "is_zero")]
    pub link_generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A join token that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJoin {
    pub point: PointName,
    pub display_name: String,
    pub role: Role,
    pub epoch: u64,
    pub link_generation: u32,
    pub expires_at: i64,
}

/// What a member's token can be revoked by: the session's epoch (rescheduling) and the point's
/// link generation (rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenVersion {
    pub epoch: u64,
    pub link_generation: u32,
}

/// What a join token is checked against.
#[derive(Debug, Clone, Copy)]
pub struct JoinRules<'a> {
    pub session: &'a SessionId,
    pub min_epoch: u64,
    /// Unix seconds.
    pub now: i64,
}

impl TokenKey {
    pub fn verify_join(&self, token: &str, rules: JoinRules<'_>) -> Result<VerifiedJoin, TokenError> {
        let claims: JoinClaims = self.decode(token)?;
        if claims.iss != JOIN_ISSUER {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != rules.session.as_str() {
            return Err(TokenError::WrongAudience);
        }
        check_window(claims.nbf, claims.exp, rules.now)?;
        if claims.epoch < rules.min_epoch {
            return Err(TokenError::Revoked { token: claims.epoch, current: rules.min_epoch });
        }
        let point = claims.sub.parse().map_err(|_| TokenError::BadClaims)?;
        Ok(VerifiedJoin {
            point,
            display_name: claims.name,
            role: claims.role,
            epoch: claims.epoch,
            link_generation: claims.link_generation,
            expires_at: claims.exp,
        })
    }

    pub fn mint_join(&self, claims: &JoinClaims) -> Result<String, TokenError> {
        self.encode(claims)
    }

    /// Checks an operator's `Authorization: Bearer` token for the admin endpoints: signature,
    /// audience, time window, a lifetime of at most [`MAX_ADMIN_TTL_SECS`] and a `jti`. Binding
    /// to this pod and refusing replays are the caller's (see `admin_auth`).
    pub fn verify_admin(&self, token: &str, now: i64) -> Result<AdminGrant, TokenError> {
        let claims: AdminClaims = self.decode(token)?;
        if claims.aud != ADMIN_AUDIENCE || claims.sub != ADMIN_SUBJECT {
            return Err(TokenError::WrongAudience);
        }
        check_window(claims.nbf.unwrap_or(i64::MIN), claims.exp, now)?;
        let (Some(iat), Some(jti)) = (claims.iat, claims.jti.filter(|j| !j.is_empty())) else {
            return Err(TokenError::BadClaims);
        };
        let secs = claims.exp.saturating_sub(iat);
        if secs > MAX_ADMIN_TTL_SECS {
            return Err(TokenError::AdminLifetime { secs });
        }
        Ok(AdminGrant { jti, exp: claims.exp, pod: claims.pod })
    }

    /// An admin token for `pod` (any worker when `None`), valid `ttl_secs` from `now`, with a
    /// fresh random `jti`.
    pub fn mint_admin(&self, now: i64, ttl_secs: i64, pod: Option<&str>) -> Result<String, TokenError> {
        use rand::distr::{Alphanumeric, SampleString};
        self.encode(&AdminClaims {
            aud: ADMIN_AUDIENCE.to_owned(),
            sub: ADMIN_SUBJECT.to_owned(),
            exp: now + ttl_secs,
            nbf: None,
            iat: Some(now),
            jti: Some(Alphanumeric.sample_string(&mut rand::rng(), 22)),
            pod: pod.map(str::to_owned),
        })
    }
}

/// What a valid admin token grants, for the per-pod and replay checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminGrant {
    /// The token's unique id: each admin token is accepted once.
    pub jti: String,
    pub exp: i64,
    /// The worker pod the token is for.
    pub pod: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AdminClaims {
    aud: String,
    sub: String,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    /// The worker pod this call is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<String>,
}

/// The first second (Unix time) at which a token expiring at `exp` is refused, and connections
/// joined with it are closed.
pub fn refused_from(exp: i64) -> i64 {
    exp.saturating_add(CLOCK_SKEW_LEEWAY_SECS)
}

fn check_window(nbf: i64, exp: i64, now: i64) -> Result<(), TokenError> {
    if now >= refused_from(exp) {
        return Err(TokenError::Expired);
    }
    if now < nbf.saturating_sub(CLOCK_SKEW_LEEWAY_SECS) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

impl JoinClaims {
    /// Claims as the operator would issue them, valid from `now` for `ttl_secs`; used by the
    /// `token` subcommand and tests.
    pub fn for_point(
        session: &SessionId,
        point: &PointName,
        display_name: &str,
        role: Role,
        title: &str,
        now: i64,
        ttl_secs: i64,
    ) -> Self {
        Self {
            iss: JOIN_ISSUER.to_owned(),
            aud: session.to_string(),
            sub: point.to_string(),
            nbf: now,
            exp: now + ttl_secs,
            iat: now,
            name: display_name.to_owned(),
            role,
            title: title.to_owned(),
            start: None,
            end: None,
            epoch: 0,
            link_generation: 0,
        }
    }
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000;

    fn key() -> TokenKey {
        TokenKey::from_bytes(b"  0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n")
    }

    fn session() -> SessionId {
        "ubnd-hanoi/tiep-dan-thang-6".parse().expect("session")
    }

    fn claims() -> JoinClaims {
        JoinClaims::for_point(
            &session(),
            &"xa-phu-dien".parse().expect("point"),
            "UBND xã Phú Diễn",
            Role::Participant,
            "Tiếp công dân định kỳ",
            NOW - 60,
            3600,
        )
    }

    fn verify(token: &str, min_epoch: u64, now: i64) -> Result<VerifiedJoin, TokenError> {
        key().verify_join(token, JoinRules { session: &session(), min_epoch, now })
    }

    #[test]
    fn a_good_token_yields_the_point() {
        let token = key().mint_join(&claims()).expect("mint");
        let verified = verify(&token, 0, NOW).expect("valid");
        assert_eq!(verified.point.as_str(), "xa-phu-dien");
        assert_eq!(verified.display_name, "UBND xã Phú Diễn");
        assert_eq!(verified.role, Role::Participant);
    }

    #[test]
    fn whitespace_around_the_key_file_content_is_ignored() {
        let trimmed = TokenKey::from_bytes(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        let token = trimmed.mint_join(&claims()).expect("mint");
        assert!(verify(&token, 0, NOW).is_ok());
    }

    #[test]
    fn a_forged_signature_is_invalid() {
        let token = TokenKey::from_bytes(b"another key").mint_join(&claims()).expect("mint");
        let err = verify(&token, 0, NOW).expect_err("forged");
        assert_eq!(err.code(), ErrorCode::InvalidToken);
        let err = verify("not.a.jwt", 0, NOW).expect_err("garbage");
        assert_eq!(err.code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn time_window_is_enforced_with_leeway() {
        let token = key().mint_join(&claims()).expect("mint");
        let exp = NOW - 60 + 3600;
        assert_eq!(
            verify(&token, 0, exp + CLOCK_SKEW_LEEWAY_SECS).expect_err("expired").code(),
            ErrorCode::TokenExpired
        );
        assert!(verify(&token, 0, exp + CLOCK_SKEW_LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            verify(&token, 0, NOW - 60 - CLOCK_SKEW_LEEWAY_SECS - 1).expect_err("early").code(),
            ErrorCode::TokenNotYetValid
        );
    }

    #[test]
    fn other_sessions_and_issuers_are_refused() {
        let mut other = claims();
        other.aud = "ubnd-hanoi/another-session".to_owned();
        let token = key().mint_join(&other).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("aud").code(), ErrorCode::WrongSession);

        let mut other = claims();
        other.iss = "someone-else".to_owned();
        let token = key().mint_join(&other).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("iss").code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn epochs_below_the_current_one_are_revoked() {
        let mut old = claims();
        old.epoch = 2;
        let token = key().mint_join(&old).expect("mint");
        assert!(verify(&token, 2, NOW).is_ok());
        assert_eq!(verify(&token, 3, NOW).expect_err("revoked").code(), ErrorCode::TokenRevoked);
    }

    #[test]
    fn missing_claims_and_bad_point_names_are_invalid() {
        #[derive(Serialize)]
        struct Partial {
            aud: String,
            exp: i64,
        }
        let token = key().encode(&Partial { aud: session().to_string(), exp: NOW + 10 }).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("partial").code(), ErrorCode::InvalidToken);

        let mut bad = claims();
        bad.sub = "Not A Name".to_owned();
        let token = key().mint_join(&bad).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("sub").code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn the_operators_probe_claims_verify_as_a_probe() {
        // As operator/src/tokens.rs `probe_claims` writes them: no live window.
        let value = serde_json::json!({
            "iss": JOIN_ISSUER, "aud": session().to_string(), "sub": "probe-vnpt", "nbf": NOW - 1,
            "exp": NOW + 3600, "iat": NOW - 1, "name": "probe-vnpt", "role": "probe", "title": "t", "epoch": 0
        });
        let token = key().encode(&value).expect("mint");
        let verified = verify(&token, 0, NOW).expect("valid");
        assert_eq!(verified.role, Role::Probe);
        assert_eq!(verified.point.as_str(), "probe-vnpt");
    }

    #[test]
    fn admin_tokens_need_the_worker_audience_a_jti_and_a_short_life() {
        let token = key().mint_admin(NOW, 30, Some("w-1")).expect("mint");
        let grant = key().verify_admin(&token, NOW).expect("valid");
        assert_eq!((grant.pod.as_deref(), grant.exp), (Some("w-1"), NOW + 30));
        assert!(grant.jti.len() >= 16, "{grant:?}");
        let other = key().verify_admin(&key().mint_admin(NOW, 30, Some("w-1")).expect("mint"), NOW).expect("valid");
        assert_ne!(grant.jti, other.jti, "every admin token is unique");
        assert!(key().verify_admin(&token, NOW + 30 + CLOCK_SKEW_LEEWAY_SECS).is_err());
        let join = key().mint_join(&claims()).expect("mint");
        assert!(key().verify_admin(&join, NOW).is_err());
        // Longer than 30 s: a token stolen from the wire would stay useful, and replays could
        // not be remembered for its whole life.
        let long = key().mint_admin(NOW, 300, None).expect("mint");
        assert!(matches!(key().verify_admin(&long, NOW), Err(TokenError::AdminLifetime { secs: 300 })));
        // Without a jti (as the operator minted them before) it cannot be told from a replay.
        let no_jti = key()
            .encode(&AdminClaims {
                aud: ADMIN_AUDIENCE.into(),
                sub: ADMIN_SUBJECT.into(),
                exp: NOW + 10,
                nbf: None,
                iat: Some(NOW),
                jti: None,
                pod: None,
            })
            .expect("mint");
        assert!(matches!(key().verify_admin(&no_jti, NOW), Err(TokenError::BadClaims)));
    }
}
