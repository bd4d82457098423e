//! A firewall like an office's that lets only TLS out, for the processes of one user: iptables
//! OUTPUT rules matching that uid (an owner match), so nothing else on the machine is touched.
//! Every rule carries a comment naming the uid; they are removed on drop, also when the test
//! fails, and any left by an earlier run that was killed before its drop are removed first.

use std::ops::RangeInclusive;
use std::process::Command;

const IPTABLES: &str = "/usr/sbin/iptables";

pub struct OwnerFirewall {
    rules: Vec<Vec<String>>,
}

fn iptables(args: &[String]) -> std::process::Output {
    Command::new(IPTABLES).args(args).output().expect("run iptables")
}

impl OwnerFirewall {
    /// For `uid`: every UDP packet dropped, and new TCP connections to `blocked_tcp` dropped.
    /// Established TCP (replies to this test's own connections, whatever their port) passes.
    pub fn block(uid: u32, blocked_tcp: &[RangeInclusive<u16>]) -> OwnerFirewall {
        let comment = format!("tiepdan-test-owner-{uid}");
        remove_left_over(&comment);
        let owner = |rest: &[&str]| {
            let mut rule: Vec<String> =
                ["OUTPUT", "-m", "owner", "--uid-owner", &uid.to_string()].map(str::to_owned).to_vec();
            rule.extend(rest.iter().map(|s| (*s).to_owned()));
            rule.extend(["-m", "comment", "--comment", &comment, "-j", "DROP"].map(str::to_owned));
            rule
        };
        let mut rules = vec![owner(&["-p", "udp"])];
        for range in blocked_tcp {
            let ports = format!("{}:{}", range.start(), range.end());
            rules.push(owner(&["-p", "tcp", "-m", "conntrack", "--ctstate", "NEW", "--dport", &ports]));
        }
        let mut firewall = OwnerFirewall { rules: Vec::new() };
        for rule in rules {
            let out = iptables(&[&["-A".to_owned()], rule.as_slice()].concat());
            assert!(out.status.success(), "iptables -A {rule:?}: {}", String::from_utf8_lossy(&out.stderr));
            // Recorded as soon as it exists, so a failure on the next one still removes it.
            firewall.rules.push(rule);
        }
        firewall
    }
}

/// Deletes rules carrying `comment` that a killed earlier run left.
fn remove_left_over(comment: &str) {
    let listed = iptables(&["-S".to_owned(), "OUTPUT".to_owned()]);
    for line in String::from_utf8_lossy(&listed.stdout).lines().filter(|l| l.contains(comment)) {
        if let Some(rule) = line.strip_prefix("-A ") {
            let mut args = vec!["-D".to_owned()];
            args.extend(rule.split_whitespace().map(|s| s.trim_matches('"').to_owned()));
            let _ = iptables(&args);
        }
    }
}

impl Drop for OwnerFirewall {
    fn drop(&mut self) {
        for rule in self.rules.drain(..).rev() {
            let out = iptables(&[&["-D".to_owned()], rule.as_slice()].concat());
            if !out.status.success() {
                eprintln!("failed to remove iptables rule {rule:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
    }
}
