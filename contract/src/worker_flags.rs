//! The worker's command line and ports as the operator uses them to build a worker pod. The
//! worker's `clap` definition is the source of the flags themselves; a test in the worker
//! (`config::tests::every_flag_the_operator_passes_exists`) fails when one of these names is not
//! one of its flags, so a renamed flag breaks the build's tests, not a pod in production.

/// `--listen`: the admin surface (probes, metrics, `/v1/allocation`, `/v1/status`).
pub const LISTEN: &str = "listen";
/// `--signaling-listen`: the console and `/v1/ws`, over TLS.
pub const SIGNALING_LISTEN: &str = "signaling-listen";
/// `--tls-dir`: where the session's certificate is mounted.
pub const TLS_DIR: &str = "tls-dir";
/// `--rtc-listen-ip`: the address mediasoup binds its RTC ports on.
pub const RTC_LISTEN_IP: &str = "rtc-listen-ip";
/// `--rtc-min-port` and `--rtc-max-port`: the RTC port range.
pub const RTC_MIN_PORT: &str = "rtc-min-port";
pub const RTC_MAX_PORT: &str = "rtc-max-port";
/// `--announced-address`: what ICE candidates name (an IP or a host name resolved at start).
pub const ANNOUNCED_ADDRESS: &str = "announced-address";
/// `--announced-address-from-allocation` (no value): the address to announce comes with the
/// operator's allocation call (its node's, which is unknown before the pod is scheduled); until
/// then joins are refused rather than answered with a wrong address.
pub const ANNOUNCED_ADDRESS_FROM_ALLOCATION: &str = "announced-address-from-allocation";
/// `--join-public-key-file` and `--admin-public-key-file`: the pool's public keys.
pub const JOIN_PUBLIC_KEY_FILE: &str = "join-public-key-file";
pub const ADMIN_PUBLIC_KEY_FILE: &str = "admin-public-key-file";
/// `--session-id` and `--session-title`: a worker started bound to its session.
pub const SESSION_ID: &str = "session-id";
pub const SESSION_TITLE: &str = "session-title";
/// `--log-format`.
pub const LOG_FORMAT: &str = "log-format";
/// `--turn-url` (once per URL) and `--turn-secret-file`: the pool's TURN relay.
pub const TURN_URL: &str = "turn-url";
pub const TURN_SECRET_FILE: &str = "turn-secret-file";

/// Every flag above, for the worker's test.
pub const ALL: [&str; 16] = [
    LISTEN,
    SIGNALING_LISTEN,
    TLS_DIR,
    RTC_LISTEN_IP,
    RTC_MIN_PORT,
    RTC_MAX_PORT,
    ANNOUNCED_ADDRESS,
    ANNOUNCED_ADDRESS_FROM_ALLOCATION,
    JOIN_PUBLIC_KEY_FILE,
    ADMIN_PUBLIC_KEY_FILE,
    SESSION_ID,
    SESSION_TITLE,
    LOG_FORMAT,
    TURN_URL,
    TURN_SECRET_FILE,
    POD_NAME_ENV_FLAG,
];

/// `--pod-name` (usually from `TIEPDAN_POD_NAME` through the downward API): admin tokens must
/// name this pod.
pub const POD_NAME_ENV_FLAG: &str = "pod-name";
/// The environment variable the pod's name reaches the worker in.
pub const POD_NAME_ENV: &str = "TIEPDAN_POD_NAME";

/// The admin port in a worker pod (plain HTTP, cluster-internal).
pub const ADMIN_PORT: u16 = 8080;
/// The signaling port in a worker pod (HTTPS/WSS).
pub const SIGNALING_PORT: u16 = 8443;

/// `--<flag>=<value>`, as a container argument.
pub fn arg(flag: &str, value: impl std::fmt::Display) -> String {
    format!("--{flag}={value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argument_is_the_flag_and_its_value() {
        assert_eq!(arg(RTC_MIN_PORT, 41000), "--rtc-min-port=41000");
    }
}
