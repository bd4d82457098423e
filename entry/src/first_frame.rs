//! The first signaling frame: it must be `join` with a token, from whose (unverified) claims the
//! entry reads only the session id. The worker verifies the token; a forged one reaches a worker
//! only to be refused there, and learns nothing but whether the session has a worker.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use tiepdan_contract::ids::SessionId;
use tiepdan_contract::ErrorCode;

/// The largest first frame: the worker's own limit on a message (64 KiB). A join is about 1 KB.
pub const FIRST_FRAME_LIMIT: usize = 64 * 1024;

/// A join the entry can route.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    pub session: SessionId,
    pub request_id: Option<Value>,
}

/// Why a first frame cannot be routed. Messages never quote the token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FirstFrameError {
    #[error("the first frame has {len} bytes; frames are limited to {FIRST_FRAME_LIMIT} bytes")]
    TooLarge { len: usize },
    #[error("the first frame is not a JSON object")]
    NotJson,
    #[error("the first message must be join, not {action}")]
    NotJoin { action: String },
    #[error("join needs a token (a string)")]
    NoToken,
    #[error("the token is not a JWT (three base64url parts)")]
    NotJwt,
    #[error("the token's claims are not JSON with an aud (the session id)")]
    NoAudience,
    #[error("the token's aud is not a session id (namespace/name)")]
    BadSession,
    #[error("binary frames are not supported; send JSON text frames")]
    Binary,
}

impl FirstFrameError {
    /// The signaling error code the console sees.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::NotJson | Self::NoToken | Self::Binary => ErrorCode::MalformedMessage,
            Self::NotJoin { .. } => ErrorCode::NotJoined,
            Self::NotJwt | Self::NoAudience | Self::BadSession => ErrorCode::InvalidToken,
        }
    }

    /// A bounded label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::NotJson => "not_json",
            Self::NotJoin { .. } => "not_join",
            Self::NoToken => "no_token",
            Self::NotJwt => "not_jwt",
            Self::NoAudience => "no_audience",
            Self::BadSession => "bad_session",
            Self::Binary => "binary",
        }
    }
}

/// A refused first frame: the error, and the request id to answer it under when one was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub request_id: Option<Value>,
    pub error: FirstFrameError,
}

#[derive(Deserialize)]
struct Claims {
    aud: String,
}

/// Reads the session id out of a first frame.
pub fn parse(text: &str) -> Result<Join, Refusal> {
    let refuse = |request_id: Option<Value>, error| Refusal { request_id, error };
    if text.len() > FIRST_FRAME_LIMIT {
        return Err(refuse(None, FirstFrameError::TooLarge { len: text.len() }));
    }
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        return Err(refuse(None, FirstFrameError::NotJson));
    };
    // Echoed only if it is what the protocol allows (a number or a string), so the console
    // matches the refusal to its join.
    let request_id = frame.get("requestId").filter(|v| v.is_number() || v.is_string()).cloned();
    match frame.get("action").and_then(Value::as_str) {
        Some("join") => {}
        Some(other) => {
            // Bounded: the action is echoed only when it is short and plain.
            let action = if other.len() <= 32 && other.bytes().all(|b| b.is_ascii_alphanumeric()) {
                other.to_owned()
            } else {
                "another action".to_owned()
            };
            return Err(refuse(request_id, FirstFrameError::NotJoin { action }));
        }
        None => return Err(refuse(request_id, FirstFrameError::NotJson)),
    }
    let Some(token) = frame.get("token").and_then(Value::as_str) else {
        return Err(refuse(request_id, FirstFrameError::NoToken));
    };
    match session_of(token) {
        Ok(session) => Ok(Join { session, request_id }),
        Err(error) => Err(refuse(request_id, error)),
    }
}

/// The session id (`aud`) of a join token, signature unchecked.
pub fn session_of(token: &str) -> Result<SessionId, FirstFrameError> {
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(FirstFrameError::NotJwt);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| FirstFrameError::NotJwt)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| FirstFrameError::NoAudience)?;
    claims.aud.parse().map_err(|_| FirstFrameError::BadSession)
}

/// An `error` frame as the worker sends it (`{"action":"error","code","message"}`, with the
/// request id when answering one).
pub fn error_frame(request_id: Option<&Value>, code: ErrorCode, message: &str) -> String {
    let mut frame = serde_json::json!({"action": "error", "code": code, "message": message});
    if let (Some(id), Some(object)) = (request_id, frame.as_object_mut()) {
        object.insert("requestId".to_owned(), id.clone());
    }
    frame.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claims: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.{}", b64(r#"{"alg":"EdDSA"}"#), b64(claims), b64("sig"))
    }

    #[test]
    fn a_join_names_its_session_and_keeps_its_request_id() {
        let t = token(r#"{"aud":"ubnd-hanoi/tiep-dan","sub":"xa-a"}"#);
        let join = parse(&format!(r#"{{"action":"join","token":"{t}","requestId":1}}"#)).expect("routable");
        assert_eq!(join.session.as_str(), "ubnd-hanoi/tiep-dan");
        assert_eq!(join.request_id, Some(serde_json::json!(1)));
    }

    #[test]
    fn bad_first_frames_get_the_code_the_console_expects() {
        let cases: [(String, ErrorCode); 8] = [
            ("{garbage".to_owned(), ErrorCode::MalformedMessage),
            ("[1,2]".to_owned(), ErrorCode::MalformedMessage),
            (r#"{"action":"produce","requestId":3}"#.to_owned(), ErrorCode::NotJoined),
            (r#"{"action":"join"}"#.to_owned(), ErrorCode::MalformedMessage),
            (r#"{"action":"join","token":"abc"}"#.to_owned(), ErrorCode::InvalidToken),
            (format!(r#"{{"action":"join","token":"{}"}}"#, token("not json")), ErrorCode::InvalidToken),
            (format!(r#"{{"action":"join","token":"{}"}}"#, token(r#"{"aud":"no-slash"}"#)), ErrorCode::InvalidToken),
            (format!(r#"{{"action":"join","token":"{}"}}"#, "x".repeat(FIRST_FRAME_LIMIT)), ErrorCode::FrameTooLarge),
        ];
        for (frame, code) in cases {
            let refusal = parse(&frame).expect_err("refused");
            assert_eq!(refusal.error.code(), code, "{}", &frame[..frame.len().min(80)]);
        }
        assert_eq!(parse(r#"{"action":"produce","requestId":3}"#).expect_err("refused").request_id, Some(3.into()));
    }

    #[test]
    fn refusals_never_quote_the_token() {
        let t = token(r#"{"aud":"NOT A SESSION"}"#);
        let refusal = parse(&format!(r#"{{"action":"join","token":"{t}"}}"#)).expect_err("refused");
        assert!(!refusal.error.to_string().contains(&t));
        assert!(!refusal.error.to_string().contains("NOT A SESSION"));
    }

    #[test]
    fn error_frames_look_like_the_workers() {
        let frame: Value =
            serde_json::from_str(&error_frame(Some(&7.into()), ErrorCode::NotJoined, "join first")).expect("json");
        assert_eq!(
            frame,
            serde_json::json!({"action":"error","code":"not_joined","message":"join first","requestId":7})
        );
    }
}
