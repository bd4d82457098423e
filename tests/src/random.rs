//! Random names and secrets, read straight from the kernel's CSPRNG.

use std::io::Read;

/// `n` random bytes as lowercase hex (`2n` characters).
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `prefix-xxxxxx`: a DNS-1123 label unique enough for a per-test namespace or object name.
///
/// # Panics
/// If `/dev/urandom` cannot be read, which only happens on a broken machine.
pub fn unique_name(prefix: &str) -> String {
    #[allow(clippy::expect_used)]
    let suffix = random_hex(3).expect("/dev/urandom is readable");
    format!("{prefix}-{suffix}")
}
