//! One-line error text for log fields.

/// `error: cause: cause…` — the error and every `source()` under it, since `Display` of a wrapping
/// error usually hides the cause that says what went wrong.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to load the certificate")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause() {
        let e = Outer(std::io::Error::other("tls.key: no such file"));
        assert_eq!(error_chain(&e), "failed to load the certificate: tls.key: no such file");
    }
}
