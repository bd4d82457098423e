//! Join tokens and admin tokens, built on `tiepdan_contract::tokens` (the claims, the Ed25519
//! keys and how tokens are signed are defined there, once, for the operator and the worker).
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

use jiff::Timestamp;
pub use tiepdan_contract::tokens::{JoinClaims, KeyUse, SigningKeys, TokenError, ADMIN_AUDIENCE, JOIN_ISSUER};
use tiepdan_contract::Role;

use crate::validate::{self, Participant, ValidSession};

/// How long a probe token is valid: a probe run takes seconds, so a leaked one expires soon.
pub const PROBE_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// How long an admin token lives: the worker refuses longer ones (and remembers each token's
/// `jti` for that long).
pub const ADMIN_TOKEN_SECONDS: i64 = tiepdan_contract::tokens::MAX_ADMIN_TTL_SECS;

/// Errors minting tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("probe name {0:?} must be a DNS label: lowercase letters, digits and '-', at most 63 characters")]
    ProbeName(String),
}

/// The id of a session in tokens and on workers: `<namespace>/<name>`.
pub fn session_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn claim_role(role: validate::Role) -> Role {
    match role {
        validate::Role::Host => Role::Host,
        validate::Role::Participant => Role::Participant,
    }
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
        iss: JOIN_ISSUER.to_owned(),
        aud: session_id.to_owned(),
        sub: p.name.clone(),
        nbf: t.rehearsal_start.as_second(),
        exp: t.complete_at.as_second(),
        iat: t.rehearsal_start.as_second(),
        name: p.display_name.clone(),
        role: claim_role(p.role),
        title: title.to_owned(),
        start: Some(t.start.to_string()),
        end: Some(t.end.to_string()),
        epoch,
        link_generation,
        relay: p.media.relay,
        uplink_kbps: p.media.uplink_kbps,
        audio_only: p.media.audio_only,
        video: p.media.video,
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
        iss: JOIN_ISSUER.to_owned(),
        aud: session_id.to_owned(),
        sub: name.to_owned(),
        nbf: now.as_second(),
        exp: (now + PROBE_TTL).as_second(),
        iat: now.as_second(),
        name: name.to_owned(),
        role: Role::Probe,
        title: title.to_owned(),
        start: None,
        end: None,
        epoch,
        link_generation: 0,
        relay: false,
        uplink_kbps: 0,
        audio_only: false,
        // Probes send synthetic media for measurement, not a camera: no session cap applies.
        video: tiepdan_contract::VideoCaps::default(),
    })
}

/// Signs a join token with the pool's join key.
pub fn mint_join_token(keys: &SigningKeys, claims: &JoinClaims) -> Result<String, Error> {
    Ok(keys.join.mint_join(claims)?)
}

/// Signs an admin token for one call to worker pod `pod` with the pool's admin key: valid
/// [`ADMIN_TOKEN_SECONDS`], with a fresh `jti`, so one read off the plain-HTTP admin port works
/// neither twice nor elsewhere.
pub fn mint_admin_token(keys: &SigningKeys, now: Timestamp, pod: &str) -> Result<String, Error> {
    Ok(keys.admin.mint_admin(now.as_second(), ADMIN_TOKEN_SECONDS, Some(pod))?)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::timeline::Timeline;
    use tiepdan_contract::tokens::{JoinRules, TokenError};

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
                role: validate::Role::Participant,
                media: Default::default(),
            }],
            missing: vec![],
        }
    }

    /// What the worker checks a join token against, at `now`.
    fn rules(session: &tiepdan_contract::ids::SessionId, now: Timestamp) -> JoinRules<'_> {
        JoinRules { session, min_epoch: 0, now: now.as_second() }
    }

    #[test]
    fn a_point_behind_a_strict_firewall_gets_relay_and_its_uplink_cap_signed_in() {
        let mut s = session();
        s.participants[0].media =
            crate::validate::MediaLimits { relay: true, uplink_kbps: 512, ..crate::validate::MediaLimits::default() };
        let claims = join_claims("my-hao/phien-1", "t", &s, &s.participants[0], 0, 0);
        let value = serde_json::to_value(&claims).unwrap();
        assert_eq!((&value["relay"], &value["uplinkKbps"]), (&serde_json::json!(true), &serde_json::json!(512)));
        // What the worker reads from the token.
        let keys = SigningKeys::generate();
        let id = "my-hao/phien-1".parse().unwrap();
        let got = keys
            .public()
            .verify_join(&mint_join_token(&keys, &claims).unwrap(), rules(&id, ts("2025-06-11T07:30:00Z")))
            .unwrap();
        assert!(got.relay);
        assert_eq!(got.uplink_kbps.map(std::num::NonZeroU32::get), Some(512));
        // Without them the claims are absent: a point's token keeps the bytes it had.
        let value =
            serde_json::to_value(join_claims("a/b", "t", &session(), &session().participants[0], 0, 0)).unwrap();
        assert!(value.get("relay").is_none() && value.get("uplinkKbps").is_none(), "{value}");
    }

    #[test]
    fn the_sessions_video_caps_are_signed_into_every_points_token() {
        let mut s = session();
        let video = tiepdan_contract::VideoCaps { max_bitrate_kbps: 500, max_height: 360 };
        s.participants[0].media.video = video;
        let claims = join_claims("my-hao/phien-1", "t", &s, &s.participants[0], 0, 0);
        let value = serde_json::to_value(&claims).unwrap();
        assert_eq!(value["video"], serde_json::json!({"maxBitrateKbps": 500, "maxHeight": 360}));
        let keys = SigningKeys::generate();
        let id = "my-hao/phien-1".parse().unwrap();
        let got = keys
            .public()
            .verify_join(&mint_join_token(&keys, &claims).unwrap(), rules(&id, ts("2025-06-11T07:30:00Z")))
            .unwrap();
        assert_eq!(got.video, video);
    }

    #[test]
    fn the_worker_accepts_the_operators_join_tokens_for_their_session_and_window_only() {
        let s = session();
        let keys = SigningKeys::generate();
        let tok =
            mint_join_token(&keys, &join_claims("my-hao/phien-1", "Tiếp dân", &s, &s.participants[0], 0, 0)).unwrap();
        let id = "my-hao/phien-1".parse().unwrap();
        let got = keys.public().verify_join(&tok, rules(&id, ts("2025-06-11T07:30:00Z"))).unwrap();
        assert_eq!((got.point.as_str(), got.display_name.as_str()), ("di-su", "UBND phường Dị Sử"));
        assert_eq!(got.expires_at, ts("2025-06-12T03:15:00Z").as_second());
        let other = "my-hao/phien-2".parse().unwrap();
        assert!(matches!(
            keys.public().verify_join(&tok, rules(&other, ts("2025-06-11T07:30:00Z"))),
            Err(TokenError::WrongAudience)
        ));
        assert!(matches!(
            keys.public().verify_join(&tok, rules(&id, ts("2025-06-11T06:00:00Z"))),
            Err(TokenError::NotYetValid)
        ));
        assert!(matches!(
            keys.public().verify_join(&tok, rules(&id, ts("2025-06-12T04:00:00Z"))),
            Err(TokenError::Expired)
        ));
        // Another pool's keys do not verify it.
        assert!(SigningKeys::generate().public().verify_join(&tok, rules(&id, ts("2025-06-11T07:30:00Z"))).is_err());
    }

    #[test]
    fn an_audio_only_point_s_link_says_so_to_the_worker_and_other_links_keep_their_bytes() {
        let s = session();
        let keys = SigningKeys::generate();
        let id = "my-hao/phien-1".parse().unwrap();
        let plain = join_claims("my-hao/phien-1", "Tiếp dân", &s, &s.participants[0], 0, 0);
        assert!(serde_json::to_value(&plain).unwrap().get("audioOnly").is_none());
        let mut radio = s.participants[0].clone();
        radio.media.audio_only = true;
        let claims = join_claims("my-hao/phien-1", "Tiếp dân", &s, &radio, 0, 0);
        assert_eq!(serde_json::to_value(&claims).unwrap()["audioOnly"], true);
        let tok = mint_join_token(&keys, &claims).unwrap();
        let got = keys.public().verify_join(&tok, rules(&id, ts("2025-06-11T07:30:00Z"))).unwrap();
        assert!(got.audio_only, "the worker skips this point's video checks");
    }

    #[test]
    fn join_tokens_are_deterministic_so_the_secret_does_not_churn() {
        let s = session();
        let c = join_claims("a/b", "t", &s, &s.participants[0], 0, 0);
        let keys = SigningKeys::generate();
        assert_eq!(mint_join_token(&keys, &c).unwrap(), mint_join_token(&keys, &c).unwrap());
    }

    #[test]
    fn probe_tokens_carry_the_probe_role_and_expire_within_the_hour() {
        let now = ts("2025-06-11T07:10:00Z");
        let c = probe_claims("my-hao/phien-1", "Tiếp dân", "probe-vnpt", 2, now).unwrap();
        assert_eq!((c.role, c.sub.as_str(), c.epoch), (Role::Probe, "probe-vnpt", 2));
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
    fn the_worker_accepts_the_operators_admin_tokens_with_the_admin_key_only() {
        let keys = SigningKeys::generate();
        let now = ts("2025-06-11T07:10:00Z");
        let tok = mint_admin_token(&keys, now, "w-1").unwrap();
        let grant = keys.public().verify_admin(&tok, now.as_second()).unwrap();
        assert_eq!((grant.pod.as_deref(), grant.exp - now.as_second()), (Some("w-1"), ADMIN_TOKEN_SECONDS));
        let id = "a/b".parse().unwrap();
        assert!(keys.public().verify_join(&tok, rules(&id, now)).is_err(), "an admin token is no join token");
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
        assert!(matches!(SigningKeys::from_pem(&"ab".repeat(32), &admin), Err(TokenError::NotPrivateKey { .. })));
        let public = keys.public_pem(KeyUse::Admin).unwrap();
        assert!(matches!(SigningKeys::from_pem(&join, &public), Err(TokenError::NotPrivateKey { .. })));
    }
}
