//! The names the operator's CA may sign for: its X.509 name constraints.
//!
//! Offices install the CA in their browsers, so a CA that could sign for any name would let
//! whoever holds its key impersonate any web site to them. The CA is constrained to the cluster's
//! service domain (every signaling Service and the webhook's Service are named under it) and to
//! the names given with `--ca-permitted-name` (the public entry host). A CA with no permitted IP
//! range excludes every address, so a leaf for an IP it was not given is refused by clients too.
//!
//! ```text
//!  --ca-permitted-name ──┐
//!  webhook URL host ─────┼─► NamePolicy ──► CA nameConstraints (permitted DNS + IP subtrees,
//!  svc, svc.cluster.local┘        │                              or every IP excluded)
//!                                 └──────► issue_serving refuses a name outside it
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rcgen::{CidrSubnet, GeneralSubtree, NameConstraints};

/// The cluster's service domains: `<svc>.<ns>.svc` and `<svc>.<ns>.svc.cluster.local`, the names
/// [`crate::build::tls::subject_names`] and the webhook's Service certificate carry.
pub const SERVICE_DOMAINS: [&str; 2] = ["svc", "svc.cluster.local"];

/// One permitted name: a DNS domain (itself and every name under it) or an IP range.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PermittedName {
    Dns(String),
    Ip { addr: IpAddr, prefix: u8 },
}

/// Why a `--ca-permitted-name` value is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0:?} is neither a DNS name, an IP address nor an IP range (ADDRESS/PREFIX)")]
    Invalid(String),
    #[error("{value:?}: the prefix is longer than the address ({max} bits)")]
    Prefix { value: String, max: u8 },
}

impl FromStr for PermittedName {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let invalid = || ParseError::Invalid(s.to_owned());
        if let Some((addr, prefix)) = s.split_once('/') {
            let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
            let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(ParseError::Prefix { value: s.to_owned(), max });
            }
            return Ok(PermittedName::Ip { addr, prefix });
        }
        if let Ok(addr) = s.parse::<IpAddr>() {
            return Ok(PermittedName::Ip { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } });
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(invalid());
        }
        Ok(PermittedName::Dns(name))
    }
}

impl fmt::Display for PermittedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PermittedName::Dns(d) => f.write_str(d),
            PermittedName::Ip { addr, prefix } => write!(f, "{addr}/{prefix}"),
        }
    }
}

/// The first `prefix` bits of `addr`, as bytes.
fn masked(addr: &IpAddr, prefix: u8) -> Vec<u8> {
    let bytes = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let keep = (i32::from(prefix) - 8 * i as i32).clamp(0, 8);
            if keep == 0 {
                0
            } else {
                b & (0xffu8 << (8 - keep))
            }
        })
        .collect()
}

impl PermittedName {
    /// Whether the SAN `name` (a DNS name or an IP address) falls under this one.
    pub fn covers(&self, name: &str) -> bool {
        match (self, name.parse::<IpAddr>()) {
            (PermittedName::Ip { addr, prefix }, Ok(ip)) => {
                addr.is_ipv4() == ip.is_ipv4() && masked(addr, *prefix) == masked(&ip, *prefix)
            }
            (PermittedName::Dns(domain), Err(_)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                name == *domain || name.strip_suffix(domain.as_str()).is_some_and(|rest| rest.ends_with('.'))
            }
            _ => false,
        }
    }
}

/// The set of names a CA is constrained to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePolicy {
    names: BTreeSet<PermittedName>,
}

impl NamePolicy {
    /// The service domains plus `extra` (the entry host, the webhook URL's host).
    pub fn new(extra: impl IntoIterator<Item = PermittedName>) -> Self {
        let mut names: BTreeSet<PermittedName> =
            SERVICE_DOMAINS.iter().map(|d| PermittedName::Dns((*d).to_owned())).collect();
        names.extend(extra);
        NamePolicy { names }
    }

    /// Exactly `names` (what a stored CA's certificate says).
    pub fn exactly(names: impl IntoIterator<Item = PermittedName>) -> Self {
        NamePolicy { names: names.into_iter().collect() }
    }

    pub fn names(&self) -> impl Iterator<Item = &PermittedName> {
        self.names.iter()
    }

    /// Whether a certificate for the SAN `name` would chain under these constraints.
    pub fn permits(&self, name: &str) -> bool {
        self.names.iter().any(|p| p.covers(name))
    }

    /// The X.509 extension. Without any permitted IP range every address is excluded: a name
    /// constraint only limits the name forms it lists, so listing none would leave IPs open.
    pub fn constraints(&self) -> NameConstraints {
        let mut permitted = Vec::new();
        for n in &self.names {
            permitted.push(match n {
                PermittedName::Dns(d) => GeneralSubtree::DnsName(d.clone()),
                PermittedName::Ip { addr, prefix } => {
                    GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*addr, *prefix))
                }
            });
        }
        let excluded = if self.names.iter().any(|n| matches!(n, PermittedName::Ip { .. })) {
            Vec::new()
        } else {
            vec![
                GeneralSubtree::IpAddress(CidrSubnet::from_v4_prefix([0; 4], 0)),
                GeneralSubtree::IpAddress(CidrSubnet::from_v6_prefix([0; 16], 0)),
            ]
        };
        NameConstraints { permitted_subtrees: permitted, excluded_subtrees: excluded }
    }
}

impl fmt::Display for NamePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.names.iter().map(ToString::to_string).collect();
        f.write_str(&all.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PermittedName {
        s.parse().unwrap()
    }

    #[test]
    fn permitted_names_parse_dns_ips_and_ranges_and_refuse_the_rest() {
        assert_eq!(p("Tiepdan.Example.VN."), PermittedName::Dns("tiepdan.example.vn".into()));
        assert_eq!(p("203.0.113.7"), PermittedName::Ip { addr: "203.0.113.7".parse().unwrap(), prefix: 32 });
        assert_eq!(p("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("::1").to_string(), "::1/128");
        for bad in ["", "a..b", "-a.vn", "a b", "10.0.0.0/33", "10.0.0.0/x", "*.example.vn", "http://x"] {
            assert!(bad.parse::<PermittedName>().is_err(), "{bad:?} refused");
        }
        assert_eq!(
            "10.0.0.0/33".parse::<PermittedName>(),
            Err(ParseError::Prefix { value: "10.0.0.0/33".into(), max: 32 })
        );
    }

    #[test]
    fn a_policy_permits_names_under_its_domains_and_addresses_in_its_ranges() {
        let policy = NamePolicy::new([p("tiepdan.example.vn"), p("10.1.0.0/16")]);
        let cases = [
            ("phien-signaling.my-hao.svc", true),
            ("phien-signaling.my-hao.svc.cluster.local", true),
            ("svc", true),
            ("tiepdan.example.vn", true),
            ("a.tiepdan.example.vn", true),
            ("eviltiepdan.example.vn", false),
            ("example.vn", false),
            ("example.com", false),
            ("svc.evil.com", false),
            ("10.1.200.3", true),
            ("10.2.0.1", false),
            ("203.0.113.7", false),
            ("::1", false),
        ];
        for (name, want) in cases {
            assert_eq!(policy.permits(name), want, "{name}");
        }
    }

    #[test]
    fn without_a_permitted_range_every_address_is_excluded() {
        let nc = NamePolicy::new([]).constraints();
        assert_eq!(nc.permitted_subtrees.len(), 2);
        assert_eq!(nc.excluded_subtrees.len(), 2, "0.0.0.0/0 and ::/0");
        let with_ip = NamePolicy::new([p("127.0.0.1")]).constraints();
        assert!(with_ip.excluded_subtrees.is_empty());
    }
}
