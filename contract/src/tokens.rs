//! Join and admin tokens (EdDSA JWTs over Ed25519), per `docs/worker-contract.md`.
//!
//! The operator holds two private keys per pool, one for join tokens (points and probes) and one
//! for admin calls; a worker gets only their public keys, so a compromised worker can forge
//! neither kind. Each kind has its own `kid` and `typ` header and its own audience, so even a
//! token signed with the right key material is refused as the other kind.
//!
//! Time checks are done here against an explicit `now` rather than by `jsonwebtoken`, so the
//! rules (and their error codes) are visible in one place and testable without a clock.

use crate::errors::ErrorCode;
use crate::ids::{PointName, SessionId};
use crate::media::VideoCaps;
use crate::roles::Role;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
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

/// Which of the operator's two key pairs a token is signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Join tokens: points' links and probe tokens.
    Join,
    /// Admin tokens: the operator's calls to `/v1/allocation` and `/v1/status`.
    Admin,
}

impl KeyUse {
    /// The `kid` header of the tokens this key signs.
    pub const fn kid(self) -> &'static str {
        match self {
            Self::Join => "tiepdan-join",
            Self::Admin => "tiepdan-admin",
        }
    }

    /// The `typ` header (RFC 8725 explicit typing) of the tokens this key signs.
    pub const fn typ(self) -> &'static str {
        match self {
            Self::Join => "tiepdan-join+jwt",
            Self::Admin => "tiepdan-admin+jwt",
        }
    }
}

impl fmt::Display for KeyUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Join => "join",
            Self::Admin => "admin",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("failed to read the key file {path}")]
    ReadKey {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an Ed25519 public key in PEM (-----BEGIN PUBLIC KEY-----)")]
    NotPublicKey { path: String },
    #[error("{path} is not an Ed25519 private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)")]
    NotPrivateKey { path: String },
    #[error("the token is malformed or its signature does not match")]
    BadSignature,
    #[error("the token is not for {expected} use (kid {kid:?}, typ {typ:?})")]
    WrongKind { expected: KeyUse, kid: Option<String>, typ: Option<String> },
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
    #[error("failed to encode a key as PEM")]
    EncodeKey,
}

impl TokenError {
    /// The signaling error code a client sees for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::WrongAudience => ErrorCode::WrongSession,
            Self::Expired => ErrorCode::TokenExpired,
            Self::NotYetValid => ErrorCode::TokenNotYetValid,
            Self::Revoked { .. } => ErrorCode::TokenRevoked,
            Self::BadSignature
            | Self::WrongKind { .. }
            | Self::BadClaims
            | Self::WrongIssuer
            | Self::AdminLifetime { .. } => ErrorCode::InvalidToken,
            Self::ReadKey { .. }
            | Self::NotPublicKey { .. }
            | Self::NotPrivateKey { .. }
            | Self::Sign(_)
            | Self::EncodeKey => ErrorCode::Internal,
        }
    }
}

fn read_key(path: &Path) -> Result<String, TokenError> {
    let raw = std::fs::read(path).map_err(|source| TokenError::ReadKey { path: path.display().to_string(), source })?;
    // Not UTF-8 is not PEM either; the parse below says so with the path.
    Ok(String::from_utf8(raw).unwrap_or_default())
}

/// A public key the worker verifies one kind of token with.
#[derive(Clone)]
pub struct PublicKey {
    key_use: KeyUse,
    key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_use)
    }
}

impl PublicKey {
    fn new(key_use: KeyUse, key: &VerifyingKey) -> Self {
        Self { key_use, key: DecodingKey::from_ed_der(key.as_bytes()) }
    }

    /// Reads an SPKI PEM file (`openssl pkey -pubout`) holding an Ed25519 public key.
    pub fn from_file(path: &Path, key_use: KeyUse) -> Result<Self, TokenError> {
        let pem = read_key(path)?;
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|_| TokenError::NotPublicKey { path: path.display().to_string() })?;
        Ok(Self::new(key_use, &key))
    }

    /// Checks the header (EdDSA, this key's `kid` and `typ`) and the signature; claim rules are
    /// the callers', against an explicit clock.
    fn decode<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::BadSignature)?;
        let expected = self.key_use;
        if header.kid.as_deref() != Some(expected.kid()) || header.typ.as_deref() != Some(expected.typ()) {
            return Err(TokenError::WrongKind { expected, kid: header.kid, typ: header.typ });
        }
        // Only EdDSA: a token claiming HS256 must never be checked as an HMAC keyed with the
        // public key, which every worker (and so any attacker holding one) knows.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        match jsonwebtoken::decode::<T>(token, &self.key, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_)
                | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_)
                | jsonwebtoken::errors::ErrorKind::InvalidClaimFormat(_) => Err(TokenError::BadClaims),
                _ => Err(TokenError::BadSignature),
            },
        }
    }
}

/// The two public keys a worker holds (`--join-public-key-file`, `--admin-public-key-file`).
#[derive(Debug, Clone)]
pub struct PublicKeys {
    pub join: PublicKey,
    pub admin: PublicKey,
}

/// A private key that signs one kind of token: the operator holds the real ones; tests and the
/// `token`/`admin-token` subcommands use their own.
#[derive(Clone)]
pub struct PrivateKey {
    key_use: KeyUse,
    key: SigningKey,
    encoding: EncodingKey,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <redacted>)", self.key_use)
    }
}

impl PrivateKey {
    fn new(key_use: KeyUse, key: SigningKey) -> Result<Self, TokenError> {
        let der = key.to_pkcs8_der().map_err(|_| TokenError::EncodeKey)?;
        Ok(Self { key_use, encoding: EncodingKey::from_ed_der(der.as_bytes()), key })
    }

    /// A fresh random key.
    pub fn generate(key_use: KeyUse) -> Self {
        use rand::RngCore as _;
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let key = SigningKey::from_bytes(&seed);
        // PKCS#8 DER of a 32-byte seed cannot fail to encode.
        Self::new(key_use, key).expect("encode a fresh Ed25519 key")
    }

    /// Reads a PKCS#8 PEM file (`openssl genpkey -algorithm ed25519`) holding an Ed25519 key.
    pub fn from_file(path: &Path, key_use: KeyUse) -> Result<Self, TokenError> {
        Self::from_pem(&read_key(path)?, key_use, &path.display().to_string())
    }

    /// Reads an Ed25519 key in PKCS#8 PEM; `origin` names where it came from in the error.
    pub fn from_pem(pem: &str, key_use: KeyUse, origin: &str) -> Result<Self, TokenError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|_| TokenError::NotPrivateKey { path: origin.to_owned() })?;
        Self::new(key_use, key)
    }

    /// The same key material labelled (`kid`, `typ`) for the other use: what a confused or
    /// hostile signer would send. Tests use it to show that the labels are enforced.
    pub fn relabelled(&self, key_use: KeyUse) -> Self {
        Self { key_use, ..self.clone() }
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, TokenError> {
        Ok(self.key.to_pkcs8_pem(LineEnding::LF).map_err(|_| TokenError::EncodeKey)?.to_string())
    }

    /// The public key, as SPKI PEM.
    pub fn public_pem(&self) -> Result<String, TokenError> {
        self.key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|_| TokenError::EncodeKey)
    }

    /// The public key a worker verifies this key's tokens with.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.key_use, &self.key.verifying_key())
    }

    /// Signs `claims` with this key's `kid` and `typ`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.key_use.kid().to_owned());
        header.typ = Some(self.key_use.typ().to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(TokenError::Sign)
    }
}

/// A pool's two key pairs, freshly generated: what tests (and local runs) sign and verify with.
pub fn generate_keys() -> (SigningKeys, PublicKeys) {
    let keys = SigningKeys { join: PrivateKey::generate(KeyUse::Join), admin: PrivateKey::generate(KeyUse::Admin) };
    let public = PublicKeys { join: keys.join.public_key(), admin: keys.admin.public_key() };
    (keys, public)
}

/// The two private keys, as the operator holds them.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    pub join: PrivateKey,
    pub admin: PrivateKey,
}

impl SigningKeys {
    /// Two fresh random keys.
    pub fn generate() -> Self {
        generate_keys().0
    }

    /// The key for `key_use`.
    pub fn key(&self, key_use: KeyUse) -> &PrivateKey {
        match key_use {
            KeyUse::Join => &self.join,
            KeyUse::Admin => &self.admin,
        }
    }

    /// Reads both keys from PKCS#8 PEM (the operator's Secret).
    pub fn from_pem(join: &str, admin: &str) -> Result<Self, TokenError> {
        Ok(Self {
            join: PrivateKey::from_pem(join, KeyUse::Join, "the join key")?,
            admin: PrivateKey::from_pem(admin, KeyUse::Admin, "the admin key")?,
        })
    }

    /// The private key for `key_use` as PKCS#8 PEM, for the operator's Secret.
    pub fn private_pem(&self, key_use: KeyUse) -> Result<String, TokenError> {
        self.key(key_use).to_pem()
    }

    /// The public key for `key_use` as SPKI PEM, for the workers.
    pub fn public_pem(&self, key_use: KeyUse) -> Result<String, TokenError> {
        self.key(key_use).public_pem()
    }

    /// The public keys workers verify with.
    pub fn public(&self) -> PublicKeys {
        PublicKeys { join: self.join.public_key(), admin: self.admin.public_key() }
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
    /// The point's firewall lets media through a TURN relay only (`turnRequired`): the worker
    /// tells its browser to use relay candidates only. Absent means false, so tokens of points
    /// without it keep their bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub relay: bool,
    /// The most the point may send, in kbit/s (`uplinkKbps`); absent or 0 means no cap.
    #[serde(default, rename = "uplinkKbps", skip_serializing_if = "is_zero")]
    pub uplink_kbps: u32,
    /// The point's spec says it has no camera (`ReceptionPoint.spec.media.audioOnly`): its
    /// checklist leaves out the video items. Absent means false, so older links keep their bytes.
    #[serde(default, rename = "audioOnly", skip_serializing_if = "std::ops::Not::not")]
    #[ts(as = "Option<bool>", optional)]
    pub audio_only: bool,
    /// The session's video caps (`ReceptionSession.spec.media.video`): the worker refuses video
    /// above them and the console shapes its layers to fit. Absent means no cap, so older links
    /// keep their bytes.
    #[serde(default, skip_serializing_if = "VideoCaps::is_unset")]
    #[ts(as = "Option<VideoCaps>", optional)]
    pub video: VideoCaps,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
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
    /// Relay candidates only (the `relay` claim).
    pub relay: bool,
    /// The send cap in kbit/s (the `uplinkKbps` claim), `None` for no cap.
    pub uplink_kbps: Option<std::num::NonZeroU32>,
    pub audio_only: bool,
    /// The session's video caps (the `video` claim).
    pub video: VideoCaps,
    /// When the session starts (the `start` claim): before it, the worker may interrupt the point
    /// once to prove it reconnects (the checklist's `reconnect` item); after it, never.
    pub starts_at: Option<jiff::Timestamp>,
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

impl PublicKeys {
    /// Checks a join token against the join key.
    pub fn verify_join(&self, token: &str, rules: JoinRules<'_>) -> Result<VerifiedJoin, TokenError> {
        let claims: JoinClaims = self.join.decode(token)?;
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
        let starts_at = claims.start.as_deref().map(str::parse).transpose().map_err(|_| TokenError::BadClaims)?;
        Ok(VerifiedJoin {
            point,
            display_name: claims.name,
            role: claims.role,
            epoch: claims.epoch,
            link_generation: claims.link_generation,
            expires_at: claims.exp,
            relay: claims.relay,
            uplink_kbps: std::num::NonZeroU32::new(claims.uplink_kbps),
            audio_only: claims.audio_only,
            video: claims.video,
            starts_at,
        })
    }

    /// Checks an operator's `Authorization: Bearer` token for the admin endpoints against the
    /// admin key: signature, audience, time window, a lifetime of at most [`MAX_ADMIN_TTL_SECS`]
    /// and a `jti`. Binding to this pod and refusing replays are the caller's (see `admin_auth`).
    pub fn verify_admin(&self, token: &str, now: i64) -> Result<AdminGrant, TokenError> {
        let claims: AdminClaims = self.admin.decode(token)?;
        if claims.aud != ADMIN_AUDIENCE || claims.sub != ADMIN_SUBJECT {
            return Err(TokenError::WrongAudience);
        }
        let (Some(iat), Some(jti)) = (claims.iat, claims.jti.filter(|j| !j.is_empty())) else {
            return Err(TokenError::BadClaims);
        };
        // The window starts at `iat` as well as `nbf`: a token dated in the future would
        // otherwise be good from now until its far-off `exp`, whatever its stated 30 s of life.
        check_window(claims.nbf.unwrap_or(iat).max(iat), claims.exp, now)?;
        let secs = claims.exp.saturating_sub(iat);
        if secs > MAX_ADMIN_TTL_SECS {
            return Err(TokenError::AdminLifetime { secs });
        }
        Ok(AdminGrant { jti, exp: claims.exp, pod: claims.pod })
    }
}

impl PrivateKey {
    /// Signs a join token (with the join key, for the worker to accept it).
    pub fn mint_join(&self, claims: &JoinClaims) -> Result<String, TokenError> {
        self.sign(claims)
    }

    /// An admin token for `pod` (any worker when `None`), valid `ttl_secs` from `now`, with a
    /// fresh random `jti` (signed with the admin key, for the worker to accept it).
    pub fn mint_admin(&self, now: i64, ttl_secs: i64, pod: Option<&str>) -> Result<String, TokenError> {
        use rand::distr::{Alphanumeric, SampleString};
        self.sign(&AdminClaims {
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
            relay: false,
            uplink_kbps: 0,
            audio_only: false,
            video: VideoCaps::default(),
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
    use std::sync::OnceLock;

    const NOW: i64 = 1_750_000_000;

    fn keys() -> &'static (SigningKeys, PublicKeys) {
        static KEYS: OnceLock<(SigningKeys, PublicKeys)> = OnceLock::new();
        KEYS.get_or_init(generate_keys)
    }

    fn join_key() -> &'static PrivateKey {
        &keys().0.join
    }

    fn admin_key() -> &'static PrivateKey {
        &keys().0.admin
    }

    fn public() -> &'static PublicKeys {
        &keys().1
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
        public().verify_join(token, JoinRules { session: &session(), min_epoch, now })
    }

    /// A token with `header` over `claims`, HMAC-signed with `secret`.
    fn hs256(header: Header, claims: &impl Serialize, secret: &[u8]) -> String {
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("mint")
    }

    fn labelled(alg: Algorithm, key_use: KeyUse) -> Header {
        let mut h = Header::new(alg);
        h.kid = Some(key_use.kid().to_owned());
        h.typ = Some(key_use.typ().to_owned());
        h
    }

    #[test]
    fn relay_and_uplink_claims_use_the_operators_names() {
        // The names the console and older tokens see: absent when unset, `relay` and `uplinkKbps`.
        let mut value = serde_json::to_value(claims()).expect("json");
        assert!(value.get("relay").is_none() && value.get("uplinkKbps").is_none(), "{value}");
        value["relay"] = serde_json::json!(true);
        value["uplinkKbps"] = serde_json::json!(512);
        let token = join_key().sign(&value).expect("sign");
        let verified =
            public().verify_join(&token, JoinRules { session: &session(), min_epoch: 0, now: NOW }).expect("valid");
        assert!(verified.relay);
        assert_eq!(verified.uplink_kbps.map(std::num::NonZeroU32::get), Some(512));
    }

    #[test]
    fn the_video_claim_carries_the_sessions_caps_and_is_absent_when_unset() {
        let mut value = serde_json::to_value(claims()).expect("json");
        assert!(value.get("video").is_none(), "{value}");
        value["video"] = serde_json::json!({"maxBitrateKbps": 500, "maxHeight": 360});
        let token = join_key().sign(&value).expect("sign");
        let verified = verify(&token, 0, NOW).expect("valid");
        assert_eq!(verified.video, VideoCaps { max_bitrate_kbps: 500, max_height: 360 });
    }

    #[test]
    fn the_start_claim_tells_the_worker_when_the_session_starts() {
        assert_eq!(verify(&join_key().mint_join(&claims()).expect("mint"), 0, NOW).expect("valid").starts_at, None);
        let mut timed = claims();
        timed.start = Some("2025-06-12T01:00:00Z".to_owned());
        let verified = verify(&join_key().mint_join(&timed).expect("mint"), 0, NOW).expect("valid");
        assert_eq!(verified.starts_at, Some("2025-06-12T01:00:00Z".parse().expect("time")));
        timed.start = Some("thứ hai".to_owned());
        let err = verify(&join_key().mint_join(&timed).expect("mint"), 0, NOW).expect_err("bad start");
        assert!(matches!(err, TokenError::BadClaims), "{err:?}");
    }

    #[test]
    fn a_good_token_yields_the_point() {
        let token = join_key().mint_join(&claims()).expect("mint");
        let verified = verify(&token, 0, NOW).expect("valid");
        assert_eq!(verified.point.as_str(), "xa-phu-dien");
        assert_eq!(verified.display_name, "UBND xã Phú Diễn");
        assert_eq!(verified.role, Role::Participant);
    }

    #[test]
    fn key_files_are_pem_and_name_the_file_when_they_are_not() {
        let dir = std::env::temp_dir().join(format!("tiepdan-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (private, public_file) = (dir.join("join.pem"), dir.join("join.pub.pem"));
        std::fs::write(&private, join_key().to_pem().expect("pem")).expect("write");
        // With CRLF and a trailing newline, as editors and `kubectl create secret` leave them.
        let pem = join_key().public_pem().expect("pem").replace('\n', "\r\n") + "\n";
        std::fs::write(&public_file, pem).expect("write");
        let join = PublicKey::from_file(&public_file, KeyUse::Join).expect("public");
        let loaded = PublicKeys { join, ..public().clone() };
        let token = PrivateKey::from_file(&private, KeyUse::Join).expect("private").mint_join(&claims()).expect("mint");
        assert!(loaded.verify_join(&token, JoinRules { session: &session(), min_epoch: 0, now: NOW }).is_ok());

        // A private key where a public one belongs (and the reverse), an HS256 key, nothing.
        let hex = dir.join("signing.key");
        std::fs::write(&hex, "ab".repeat(32)).expect("write");
        for bad in [&private, &hex] {
            let err = PublicKey::from_file(bad, KeyUse::Join).expect_err("not a public key");
            assert!(matches!(&err, TokenError::NotPublicKey { path } if path == &bad.display().to_string()), "{err}");
        }
        for bad in [&public_file, &hex] {
            assert!(matches!(PrivateKey::from_file(bad, KeyUse::Join), Err(TokenError::NotPrivateKey { .. })));
        }
        let missing = dir.join("missing.pem");
        assert!(matches!(PublicKey::from_file(&missing, KeyUse::Join), Err(TokenError::ReadKey { .. })));
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_forged_signature_is_invalid() {
        let token = PrivateKey::generate(KeyUse::Join).mint_join(&claims()).expect("mint");
        let err = verify(&token, 0, NOW).expect_err("forged");
        assert_eq!(err.code(), ErrorCode::InvalidToken);
        let err = verify("not.a.jwt", 0, NOW).expect_err("garbage");
        assert_eq!(err.code(), ErrorCode::InvalidToken);
    }

    /// The classic JWT algorithm confusion: the attacker knows the public key (every worker
    /// holds it) and signs with HS256 keyed by it, hoping the verifier takes the header's `alg`.
    #[test]
    fn hs256_keyed_with_the_public_key_is_refused() {
        let pem = join_key().public_pem().expect("pem");
        let raw = join_key().key.verifying_key().to_bytes();
        for secret in [pem.as_bytes(), pem.trim().as_bytes(), &raw[..]] {
            let token = hs256(labelled(Algorithm::HS256, KeyUse::Join), &claims(), secret);
            assert!(
                matches!(verify(&token, 0, NOW), Err(TokenError::BadSignature)),
                "secret of {} bytes",
                secret.len()
            );
        }
        let admin_pem = admin_key().public_pem().expect("pem");
        let claims = AdminClaims {
            aud: ADMIN_AUDIENCE.into(),
            sub: ADMIN_SUBJECT.into(),
            exp: NOW + 10,
            nbf: None,
            iat: Some(NOW),
            jti: Some("forged-jti-0000000000".into()),
            pod: None,
        };
        let token = hs256(labelled(Algorithm::HS256, KeyUse::Admin), &claims, admin_pem.as_bytes());
        assert!(matches!(public().verify_admin(&token, NOW), Err(TokenError::BadSignature)));
    }

    /// Pools made by an older operator signed everything with a shared HS256 key (64 hex
    /// characters) that every worker held; a token made with it is worthless now.
    #[test]
    fn hs256_with_the_old_pool_key_is_refused() {
        let old_key = "0123456789abcdef".repeat(4);
        for header in [Header::new(Algorithm::HS256), labelled(Algorithm::HS256, KeyUse::Join)] {
            let token = hs256(header, &claims(), old_key.as_bytes());
            assert_eq!(verify(&token, 0, NOW).expect_err("old key").code(), ErrorCode::InvalidToken);
        }
    }

    #[test]
    fn join_and_admin_tokens_are_never_taken_for_each_other() {
        let join = join_key().mint_join(&claims()).expect("mint");
        let admin = admin_key().mint_admin(NOW, 30, Some("w-1")).expect("mint");
        assert!(matches!(
            public().verify_admin(&join, NOW),
            Err(TokenError::WrongKind { expected: KeyUse::Admin, .. })
        ));
        assert!(matches!(verify(&admin, 0, NOW), Err(TokenError::WrongKind { expected: KeyUse::Join, .. })));
        // The right key material under the other kind's label (as if one key served both):
        // the kid and typ alone refuse it.
        let as_admin = join_key().relabelled(KeyUse::Admin).mint_join(&claims()).expect("mint");
        let same_key = PublicKeys { join: public().join.clone(), admin: public().join.clone() };
        assert!(matches!(
            same_key.verify_join(&as_admin, JoinRules { session: &session(), min_epoch: 0, now: NOW }),
            Err(TokenError::WrongKind { .. })
        ));
        let as_join = admin_key().relabelled(KeyUse::Join).mint_admin(NOW, 30, Some("w-1")).expect("mint");
        let same_key = PublicKeys { join: public().admin.clone(), admin: public().admin.clone() };
        assert!(matches!(same_key.verify_admin(&as_join, NOW), Err(TokenError::WrongKind { .. })));
        // Signed with the other kind's key but labelled right: the signature does not match.
        let wrong_key = admin_key().relabelled(KeyUse::Join).mint_join(&claims()).expect("mint");
        assert!(matches!(verify(&wrong_key, 0, NOW), Err(TokenError::BadSignature)));
        let wrong_key = join_key().relabelled(KeyUse::Admin).mint_admin(NOW, 30, Some("w-1")).expect("mint");
        assert!(matches!(public().verify_admin(&wrong_key, NOW), Err(TokenError::BadSignature)));
    }

    #[test]
    fn time_window_is_enforced_with_leeway() {
        let token = join_key().mint_join(&claims()).expect("mint");
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
        let token = join_key().mint_join(&other).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("aud").code(), ErrorCode::WrongSession);

        let mut other = claims();
        other.iss = "someone-else".to_owned();
        let token = join_key().mint_join(&other).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("iss").code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn epochs_below_the_current_one_are_revoked() {
        let mut old = claims();
        old.epoch = 2;
        let token = join_key().mint_join(&old).expect("mint");
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
        let token = join_key().sign(&Partial { aud: session().to_string(), exp: NOW + 10 }).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("partial").code(), ErrorCode::InvalidToken);

        let mut bad = claims();
        bad.sub = "Not A Name".to_owned();
        let token = join_key().mint_join(&bad).expect("mint");
        assert_eq!(verify(&token, 0, NOW).expect_err("sub").code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn the_operators_probe_claims_verify_as_a_probe() {
        // As operator/src/tokens.rs `probe_claims` writes them: no live window.
        let value = serde_json::json!({
            "iss": JOIN_ISSUER, "aud": session().to_string(), "sub": "probe-vnpt", "nbf": NOW - 1,
            "exp": NOW + 3600, "iat": NOW - 1, "name": "probe-vnpt", "role": "probe", "title": "t", "epoch": 0
        });
        let token = join_key().sign(&value).expect("mint");
        let verified = verify(&token, 0, NOW).expect("valid");
        assert_eq!(verified.role, Role::Probe);
        assert_eq!(verified.point.as_str(), "probe-vnpt");
    }

    #[test]
    fn admin_tokens_need_the_worker_audience_a_jti_and_a_short_life() {
        let admin = admin_key();
        let token = admin.mint_admin(NOW, 30, Some("w-1")).expect("mint");
        let grant = public().verify_admin(&token, NOW).expect("valid");
        assert_eq!((grant.pod.as_deref(), grant.exp), (Some("w-1"), NOW + 30));
        assert!(grant.jti.len() >= 16, "{grant:?}");
        let other = public().verify_admin(&admin.mint_admin(NOW, 30, Some("w-1")).expect("mint"), NOW).expect("valid");
        assert_ne!(grant.jti, other.jti, "every admin token is unique");
        assert!(public().verify_admin(&token, NOW + 30 + CLOCK_SKEW_LEEWAY_SECS).is_err());
        // Longer than 30 s: a token stolen from the wire would stay useful, and replays could
        // not be remembered for its whole life.
        let long = admin.mint_admin(NOW, 300, None).expect("mint");
        assert!(matches!(public().verify_admin(&long, NOW), Err(TokenError::AdminLifetime { secs: 300 })));
        // Without a jti (as the operator minted them before) it cannot be told from a replay.
        let no_jti = admin
            .sign(&AdminClaims {
                aud: ADMIN_AUDIENCE.into(),
                sub: ADMIN_SUBJECT.into(),
                exp: NOW + 10,
                nbf: None,
                iat: Some(NOW),
                jti: None,
                pod: None,
            })
            .expect("mint");
        assert!(matches!(public().verify_admin(&no_jti, NOW), Err(TokenError::BadClaims)));
        // Dated in the future (no nbf): it would be good from now until its far-off exp, a long
        // life in all but name. Refused until its iat, like an nbf.
        let future = admin.mint_admin(NOW + 3600, 30, None).expect("mint");
        assert!(matches!(public().verify_admin(&future, NOW), Err(TokenError::NotYetValid)));
        assert!(public().verify_admin(&future, NOW + 3600).is_ok());
    }
}
