//! TURN relays for offices whose firewalls let only TCP/TLS 443 out: the worker hands each point
//! short-lived TURN credentials in its `joined` reply, in the "TURN REST API" form that coturn
//! checks with `use-auth-secret` (draft-uberti-behave-turn-rest-00, as LiveKit and Jitsi use it).
//!
//! ```text
//! username   = "<unix expiry>:<session>/<point>"
//! credential = base64(HMAC-SHA1(shared secret, username))
//! ```
//!
//! coturn recomputes the HMAC with the same secret and refuses the allocation once the expiry has
//! passed, so the worker never talks to coturn and coturn needs no user database. The expiry is the
//! point's join token `exp`: the relay stops working when the link does.

use crate::signaling::protocol::IceServer;
use base64::Engine as _;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// Reported by clap after the flag's name.
    #[error("{url:?} is not a TURN URL: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("failed to read --turn-secret-file {path}")]
    ReadSecret {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--turn-secret-file {path} is empty: coturn's static-auth-secret must not be")]
    EmptySecret { path: String },
    #[error("--turn-url needs --turn-secret-file (the secret coturn checks credentials with)")]
    SecretMissing,
    #[error("--turn-secret-file needs at least one --turn-url")]
    UrlMissing,
}

/// The transport a TURN URL asks the browser to reach the relay over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    Udp,
    Tcp,
}

/// One `--turn-url`: `turn:` or `turns:` (TLS), a host, an optional port and an optional
/// `?transport=udp|tcp` (RFC 7065). Kept as written; the browser resolves the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUrl(String);

impl TurnUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TurnUrl {
    type Err = TurnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| TurnError::Url { url: s.to_owned(), reason };
        let (secure, rest) = if let Some(rest) = s.strip_prefix("turns:") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("turn:") {
            (false, rest)
        } else {
            return Err(bad("it must start with turn: or turns:"));
        };
        let (authority, transport) = match rest.split_once('?') {
            None => (rest, None),
            Some((authority, "transport=udp")) => (authority, Some(TurnTransport::Udp)),
            Some((authority, "transport=tcp")) => (authority, Some(TurnTransport::Tcp)),
            Some(_) => return Err(bad("the only query allowed is ?transport=udp or ?transport=tcp")),
        };
        if secure && transport == Some(TurnTransport::Udp) {
            // Browsers refuse the combination (DTLS to a TURN server is not supported).
            return Err(bad("turns: (TLS) runs over TCP; use ?transport=tcp or no query"));
        }
        if authority.contains('@') || authority.contains('/') {
            return Err(bad("it takes no user or path: credentials come from --turn-secret-file"));
        }
        let host = if let Some(v6) = authority.strip_prefix('[') {
            let (ip, port) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address needs its closing ]"))?;
            if ip.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("the bracketed host is not an IPv6 address"));
            }
            check_port(port).map_err(bad)?;
            ip
        } else {
            let (host, port) = match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            };
            if let Some(port) = port {
                check_port(&format!(":{port}")).map_err(bad)?;
            }
            host
        };
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b)) {
            return Err(bad("the host must be an IP address or a DNS name"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// `""` or `:<1-65535>`.
fn check_port(port: &str) -> Result<(), &'static str> {
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(()),
        Some(n) if n.parse::<u16>().is_ok_and(|n| n != 0) => Ok(()),
        _ => Err("the port must be a number from 1 to 65535"),
    }
}

/// coturn's `static-auth-secret`, as read from `--turn-secret-file`.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnSecret(Vec<u8>);

impl fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TurnSecret(<redacted>)")
    }
}

impl TurnSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self(secret.into())
    }

    /// The file's content without surrounding white space: a Secret written by hand or by
    /// `echo` ends in a newline that coturn's config line would not have.
    pub fn from_file(path: &Path) -> Result<Self, TurnError> {
        let raw =
            std::fs::read(path).map_err(|source| TurnError::ReadSecret { path: path.display().to_string(), source })?;
        let trimmed = raw.trim_ascii();
        if trimmed.is_empty() {
            return Err(TurnError::EmptySecret { path: path.display().to_string() });
        }
        Ok(Self(trimmed.to_vec()))
    }
}

/// The relays a worker offers: `--turn-url` and `--turn-secret-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    pub urls: Vec<TurnUrl>,
    pub secret: TurnSecret,
}

impl TurnConfig {
    /// Both flags or neither; at least one URL.
    pub fn from_flags(urls: Vec<TurnUrl>, secret_file: Option<&Path>) -> Result<Option<Self>, TurnError> {
        match (urls.is_empty(), secret_file) {
            (true, None) => Ok(None),
            (false, None) => Err(TurnError::SecretMissing),
            (true, Some(_)) => Err(TurnError::UrlMissing),
            (false, Some(path)) => Ok(Some(Self { urls, secret: TurnSecret::from_file(path)? })),
        }
    }

    /// The ICE server a point gets: every URL, with credentials valid until `expires` (Unix
    /// seconds) for the user `<session>/<point>`.
    pub fn ice_server(&self, user: &str, expires: i64) -> IceServer {
        let username = format!("{expires}:{user}");
        let credential = credential(&self.secret, &username);
        IceServer { urls: self.urls.iter().map(|u| u.0.clone()).collect(), username, credential }
    }
}

/// base64(HMAC-SHA1(secret, username)): what coturn computes with `use-auth-secret`.
pub fn credential(secret: &TurnSecret, username: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret.0);
    let tag = ring::hmac::sign(&key, username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_is_the_turn_rest_api_hmac() {
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?")
        // = effcdf6ae5eb2fa2d27416d5f184df9c259a7c79.
        let secret = TurnSecret::new("Jefe");
        assert_eq!(credential(&secret, "what do ya want for nothing?"), "7/zfauXrL6LSdBbV8YTfnCWafHk=");
    }

    #[test]
    fn a_point_gets_every_url_and_a_username_with_its_expiry() {
        let config = TurnConfig {
            urls: vec![
                "turn:turn.example:3478?transport=udp".parse().expect("url"),
                "turns:turn.example:443?transport=tcp".parse().expect("url"),
            ],
            secret: TurnSecret::new("s3cret"),
        };
        let server = config.ice_server("ubnd/phien-1/xa-a", 1_750_000_000);
        assert_eq!(server.urls, ["turn:turn.example:3478?transport=udp", "turns:turn.example:443?transport=tcp"]);
        assert_eq!(server.username, "1750000000:ubnd/phien-1/xa-a");
        assert_eq!(server.credential, credential(&TurnSecret::new("s3cret"), "1750000000:ubnd/phien-1/xa-a"));
    }

    #[test]
    fn turn_urls_are_checked() {
        for good in [
            "turn:127.0.0.1:3478?transport=udp",
            "turns:turn.tiepdan.example:443?transport=tcp",
            "turn:turn.example",
            "turns:[::1]:5349",
        ] {
            assert_eq!(good.parse::<TurnUrl>().expect(good).as_str(), good);
        }
        for bad in [
            "stun:127.0.0.1:3478",
            "turn:",
            "turn:host:0",
            "turn:host:99999",
            "turn:host:3478?transport=sctp",
            "turns:host:443?transport=udp",
            "turn:user@host",
            "turn:[::1:3478",
            "turn:ho st",
        ] {
            assert!(matches!(bad.parse::<TurnUrl>(), Err(TurnError::Url { .. })), "{bad} accepted");
        }
    }

    #[test]
    fn the_flags_come_together_and_the_secret_is_trimmed() {
        let dir = std::env::temp_dir().join(format!("tiepdan-turn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let url = || vec!["turn:127.0.0.1:3478".parse::<TurnUrl>().expect("url")];
        assert_eq!(TurnConfig::from_flags(vec![], None).expect("none"), None);
        assert!(matches!(TurnConfig::from_flags(url(), None), Err(TurnError::SecretMissing)));
        let secret = dir.join("secret");
        std::fs::write(&secret, "abc\n").expect("write");
        assert!(matches!(TurnConfig::from_flags(vec![], Some(&secret)), Err(TurnError::UrlMissing)));
        let config = TurnConfig::from_flags(url(), Some(&secret)).expect("ok").expect("some");
        assert_eq!(config.secret, TurnSecret::new("abc"));
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").expect("write");
        assert!(matches!(TurnConfig::from_flags(url(), Some(&empty)), Err(TurnError::EmptySecret { .. })));
        assert!(matches!(TurnConfig::from_flags(url(), Some(&dir.join("missing"))), Err(TurnError::ReadSecret { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
