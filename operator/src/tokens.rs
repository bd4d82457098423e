//! Join tokens and admin tokens (EdDSA JWTs over Ed25519), as described in
//! docs/worker-contract.md.
//!
//! Each pool has two key pairs: one signs join tokens (points' links and probe tokens), the other
//! the operator's admin calls. Workers hold only the public keys, so a compromised worker can
//! forge neither; each kind carries its own `kid`, `typ` and audience, so neither passes for the
//! other.
//!
//! Join tokens are deterministic for a given key, session and participant (they carry no random
//! nonce, `iat` is the rehearsal start, and Ed25519 signatures are deterministic), so
//! re-applying the token Secret every reconcile does not churn it, and a point's link stays the
//! same for the whole session.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
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
/// The `kid` and `typ` headers of join tokens; the worker refuses a join token without them.
pub const JOIN_KID: &str = "tiepdan-join";
pub const JOIN_TYP: &str = "tiepdan-join+jwt";
/// The `kid` and `typ` headers of admin tokens; the worker refuses an admin token without them.
pub const ADMIN_KID: &str = "tiepdan-admin";
pub const ADMIN_TYP: &str = "tiepdan-admin+jwt";

/// Errors minting tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to sign a token")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("the {0} signing key is not an Ed25519 private key in PKCS#8 PEM")]
    BadKey(&'static str),
    #[error("failed to encode the {0} key as PEM")]
    EncodeKey(&'static str),
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
    /// The point needs a TURN relay (`spec.network.turnRequired`); absent means false, so the
    /// tokens of other points keep their bytes.
    #[serde(default, skip_serializing_if = "is_false")]
    pub relay: bool,
    /// The point's send cap in kbit/s (`spec.network.uplinkKbps`); absent means none.
    #[serde(default, rename = "uplinkKbps", skip_serializing_if = "is_zero")]
    pub uplink_kbps: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
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
        relay: p.media.relay,
        uplink_kbps: p.media.uplink_kbps,
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
        relay: false,
        uplink_kbps: 0,
    })
}

/// A pool's two private keys: only the operator holds them (the pool's signing-keys Secret).
#[derive(Clone)]
pub struct SigningKeys {
    join: SigningKey,
    admin: SigningKey,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeys(<redacted>)")
    }
}

/// One key in PEM, by what it signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUse {
    Join,
    Admin,
}

impl KeyUse {
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyUse::Join => "join",
            KeyUse::Admin => "admin",
        }
    }
}

impl SigningKeys {
    /// Two fresh random keys.
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let fresh = || {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            SigningKey::from_bytes(&seed)
        };
        Self { join: fresh(), admin: fresh() }
    }

    /// Reads both keys from PKCS#8 PEM.
    pub fn from_pem(join: &str, admin: &str) -> Result<Self, Error> {
        let parse =
            |pem: &str, use_: KeyUse| SigningKey::from_pkcs8_pem(pem.trim()).map_err(|_| Error::BadKey(use_.as_str()));
        Ok(Self { join: parse(join, KeyUse::Join)?, admin: parse(admin, KeyUse::Admin)? })
    }

    fn key(&self, use_: KeyUse) -> &SigningKey {
        match use_ {
            KeyUse::Join => &self.join,
            KeyUse::Admin => &self.admin,
        }
    }

    /// The private key as PKCS#8 PEM, for the operator's Secret.
    pub fn private_pem(&self, use_: KeyUse) -> Result<String, Error> {
        Ok(self.key(use_).to_pkcs8_pem(LineEnding::LF).map_err(|_| Error::EncodeKey(use_.as_str()))?.to_string())
    }

    /// The public key as SPKI PEM, for the workers.
    pub fn public_pem(&self, use_: KeyUse) -> Result<String, Error> {
        self.key(use_).verifying_key().to_public_key_pem(LineEnding::LF).map_err(|_| Error::EncodeKey(use_.as_str()))
    }

    fn sign<T: Serialize>(&self, use_: KeyUse, claims: &T) -> Result<String, Error> {
        let (kid, typ) = match use_ {
            KeyUse::Join => (JOIN_KID, JOIN_TYP),
            KeyUse::Admin => (ADMIN_KID, ADMIN_TYP),
        };
        let der = self.key(use_).to_pkcs8_der().map_err(|_| Error::EncodeKey(use_.as_str()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.to_owned());
        header.typ = Some(typ.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(der.as_bytes())).map_err(Error::Sign)
    }
}

/// Signs a join token with the pool's join key.
pub fn mint_join_token(keys: &SigningKeys, claims: &JoinClaims) -> Result<String, Error> {
    keys.sign(KeyUse::Join, claims)
}

/// Signs an admin token for one call to worker pod `pod` with the pool's admin key: valid
/// [`ADMIN_TOKEN_SECONDS`], with a fresh `jti`, so one read off the plain-HTTP admin port works
/// neither twice nor elsewhere.
pub fn mint_admin_token(keys: &SigningKeys, now: Timestamp, pod: &str) -> Result<String, Error> {
    use rand::distr::{Alphanumeric, SampleString};
    keys.sign(
        KeyUse::Admin,
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
                media: Default::default(),
            }],
            missing: vec![],
        }
    }

    #[test]
    fn a_point_behind_a_strict_firewall_gets_relay_and_its_uplink_cap_signed_in() {
        let mut s = session();
        s.participants[0].media = crate::validate::MediaLimits { relay: true, uplink_kbps: 512 };
        let value = serde_json::to_value(join_claims("a/b", "t", &s, &s.participants[0], 0, 0)).unwrap();
        assert_eq!((&value["relay"], &value["uplinkKbps"]), (&serde_json::json!(true), &serde_json::json!(512)));
        // Without them the claims are absent: a point's token keeps the bytes it had.
        let value =
            serde_json::to_value(join_claims("a/b", "t", &session(), &session().participants[0], 0, 0)).unwrap();
        assert!(value.get("relay").is_none() && value.get("uplinkKbps").is_none(), "{value}");
    }

    #[test]
    fn join_tokens_are_scoped_to_session_and_point_and_expire_after_grace() {
        let s = session();
        let claims = join_claims("my-hao/phien-1", "Tiếp dân", &s, &s.participants[0], 0, 0);
        let keys = SigningKeys::generate();
        let tok = mint_join_token(&keys, &claims).unwrap();
        let header = jsonwebtoken::decode_header(&tok).unwrap();
        assert_eq!(
            (header.alg, header.kid.as_deref(), header.typ.as_deref()),
            (Algorithm::EdDSA, Some(JOIN_KID), Some(JOIN_TYP))
        );
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["my-hao/phien-1"]);
        v.validate_exp = false;
        let got = jsonwebtoken::decode::<JoinClaims>(&tok, &public(&keys, KeyUse::Join), &v).unwrap().claims;
        assert_eq!(got.sub, "di-su");
        assert_eq!(got.exp, ts("2025-06-12T03:15:00Z").as_second());
        assert_eq!(got.nbf, ts("2025-06-11T07:00:00Z").as_second());
        assert_eq!(got.name, "UBND phường Dị Sử");
    }

    #[test]
    fn join_tokens_are_deterministic_so_the_secret_does_not_churn() {
        let s = session();
        let c = join_claims("a/b", "t", &s, &s.participants[0], 0, 0);
        let keys = SigningKeys::generate();
        assert_eq!(mint_join_token(&keys, &c).unwrap(), mint_join_token(&keys, &c).unwrap());
    }

    #[test]
    fn a_token_signed_with_another_key_does_not_verify() {
        let s = session();
        let c = join_claims("a/b", "t", &s, &s.participants[0], 0, 0);
        let tok = mint_join_token(&SigningKeys::generate(), &c).unwrap();
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&["a/b"]);
        v.validate_exp = false;
        let other = SigningKeys::generate();
        assert!(jsonwebtoken::decode::<JoinClaims>(&tok, &public(&other, KeyUse::Join), &v).is_err());
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
    fn admin_tokens_are_signed_with_the_admin_key_only() {
        let keys = SigningKeys::generate();
        let tok = mint_admin_token(&keys, ts("2025-06-11T07:10:00Z"), "w-1").unwrap();
        let header = jsonwebtoken::decode_header(&tok).unwrap();
        assert_eq!((header.kid.as_deref(), header.typ.as_deref()), (Some(ADMIN_KID), Some(ADMIN_TYP)));
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_audience(&[WORKER_ADMIN_AUDIENCE]);
        v.validate_exp = false;
        let got = jsonwebtoken::decode::<AdminClaims>(&tok, &public(&keys, KeyUse::Admin), &v).unwrap().claims;
        assert_eq!((got.pod.as_str(), got.exp - got.iat), ("w-1", ADMIN_TOKEN_SECONDS));
        assert!(jsonwebtoken::decode::<AdminClaims>(&tok, &public(&keys, KeyUse::Join), &v).is_err());
    }

    #[test]
    fn signing_keys_survive_pem_and_differ() {
        let keys = SigningKeys::generate();
        let (join, admin) = (keys.private_pem(KeyUse::Join).unwrap(), keys.private_pem(KeyUse::Admin).unwrap());
        assert!(join.starts_with("-----BEGIN PRIVATE KEY-----"), "{join}");
        assert_ne!(join, admin, "join and admin tokens have separate keys");
        let read = SigningKeys::from_pem(&format!("{join}\n"), &admin).unwrap();
        assert_eq!(read.public_pem(KeyUse::Join).unwrap(), keys.public_pem(KeyUse::Join).unwrap());
        assert_ne!(SigningKeys::generate().private_pem(KeyUse::Join).unwrap(), join);
        assert!(matches!(SigningKeys::from_pem(&"ab".repeat(32), &admin), Err(Error::BadKey("join"))));
        let public = keys.public_pem(KeyUse::Admin).unwrap();
        assert!(matches!(SigningKeys::from_pem(&join, &public), Err(Error::BadKey("admin"))));
    }

    fn public(keys: &SigningKeys, use_: KeyUse) -> DecodingKey {
        use ed25519_dalek::pkcs8::DecodePublicKey;
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&keys.public_pem(use_).unwrap()).unwrap();
        DecodingKey::from_ed_der(key.as_bytes())
    }
}
