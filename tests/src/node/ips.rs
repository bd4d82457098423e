//! Pod IPs: unique loopback addresses, never 127.0.0.1 and never reused within a process.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Hosts per /24 that are handed out (`.1` to `.254`).
const PER_BLOCK: u32 = 254;
/// Third octets `1..=254`.
const BLOCKS: u32 = 254;

/// The next pod IP in `127.<block>.1.1 ..= 127.<block>.254.254`, process-wide; `None` once
/// all ~64k are used. Different `block`s keep separate harness processes apart.
pub fn allocate(block: u8) -> Option<Ipv4Addr> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    nth(block, n)
}

fn nth(block: u8, n: u32) -> Option<Ipv4Addr> {
    if n >= PER_BLOCK * BLOCKS {
        return None;
    }
    let third = u8::try_from(1 + n / PER_BLOCK).ok()?;
    let fourth = u8::try_from(1 + n % PER_BLOCK).ok()?;
    Some(Ipv4Addr::new(127, block, third, fourth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_octets_and_the_host_ip() {
        assert_eq!(nth(0, 0), Some(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(nth(0, 253), Some(Ipv4Addr::new(127, 0, 1, 254)));
        assert_eq!(nth(0, 254), Some(Ipv4Addr::new(127, 0, 2, 1)));
        assert_eq!(nth(3, 254 * 254 - 1), Some(Ipv4Addr::new(127, 3, 254, 254)));
        assert_eq!(nth(0, 254 * 254), None);
    }

    #[test]
    fn allocations_are_unique() {
        let a = allocate(0);
        let b = allocate(0);
        assert_ne!(a, b);
    }
}
