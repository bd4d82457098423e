//! When the operator's CA is rotated: a pure decision over the stored CAs, the leaves they signed
//! and the time, like cert-manager and trust-manager users expect.
//!
//! ```text
//!   signing ─────────────────────────────┐ not_after
//!            ▲ not_after − lead: Prepare (a new CA, `next`, stored beside it), then Publish
//!            │ (the trust bundle carries both; `next` does not sign yet)
//!            │         ▲ published + lead/2: Switch (`next` signs; the old one is `previous`,
//!            │         │ still in the bundle; every leaf is re-issued by the new CA)
//!            │         │         ▲ no leaf of `previous` left and RETIRE_GRACE since every
//!            │         │         │ re-issue, or `previous` expired: Retire (it leaves the bundle)
//! ```
//!
//! So a leaf is only ever issued by a CA the published bundle already carries, and a CA leaves
//! the bundle only once nothing it signed can still be served. A CA constrained to other names
//! than the configured ones is rotated the same way (Prepare at once); only an expired or
//! missing CA is created afresh, since there is nothing left to overlap with.

use jiff::{SignedDuration, Timestamp};

use super::{Ca, NamePolicy, CA_MAX_VALIDITY};

/// How long after the switch a CA's leaves may still be served though re-issued: the kubelet
/// syncs a pod's Secret volume within about a minute, and the worker reloads what it finds.
pub const RETIRE_GRACE: SignedDuration = SignedDuration::from_mins(10);

/// The CA's lifetime and when its successor is prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long each CA is valid (at most [`CA_MAX_VALIDITY`]).
    pub validity: SignedDuration,
    /// How long before the signing CA expires its successor is prepared and published.
    pub lead: SignedDuration,
}

/// A refused `--ca-validity-days` / `--ca-rotation-lead-days`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("--ca-validity-days must be from 1 to 365 (a CA is valid at most a year), got {0}")]
    Validity(i64),
    #[error(
        "--ca-rotation-lead-days must be at least 1 and less than --ca-validity-days ({validity}), got {lead}: the \
         new CA must be published while the old one is still valid"
    )]
    Lead { lead: i64, validity: i64 },
}

impl RotationPolicy {
    /// From days, as the flags give them; `lead` defaults to the last third of the validity.
    pub fn from_days(validity: i64, lead: Option<i64>) -> Result<Self, PolicyError> {
        let max = CA_MAX_VALIDITY.as_hours() / 24;
        if !(1..=max).contains(&validity) {
            return Err(PolicyError::Validity(validity));
        }
        let lead = lead.unwrap_or(validity / 3);
        if lead < 1 || lead >= validity {
            return Err(PolicyError::Lead { lead, validity });
        }
        let days = |d: i64| SignedDuration::from_hours(24 * d);
        Ok(RotationPolicy { validity: days(validity), lead: days(lead) })
    }

    /// How long the bundle carries both CAs before the new one signs: half the lead, so clients
    /// that copy the bundle by hand have time, and the old CA still outlives the switch by as much.
    pub fn switch_after(&self) -> SignedDuration {
        self.lead / 2
    }
}

impl Default for RotationPolicy {
    /// A year, prepared 121 days before expiry and switched 60 days later.
    fn default() -> Self {
        let days = |d: i64| SignedDuration::from_hours(24 * d);
        RotationPolicy { validity: days(365), lead: days(365 / 3) }
    }
}

/// A CA that no longer signs but stays in the bundle: its certificate only (its key is dropped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retiring {
    pub cert_pem: String,
    pub not_after: Timestamp,
    /// When it stopped signing.
    pub since: Timestamp,
}

/// The stored CAs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaSet {
    /// Signs every new leaf.
    pub signing: Ca,
    /// Its successor, once prepared, and when the bundle carrying it was first published.
    pub next: Option<(Ca, Option<Timestamp>)>,
    /// Its predecessor, until retired.
    pub previous: Option<Retiring>,
}

impl CaSet {
    pub fn new(signing: Ca) -> Self {
        CaSet { signing, next: None, previous: None }
    }

    /// The trust bundle: every CA whose leaves may be served now or soon, signing CA first.
    pub fn bundle_pem(&self) -> String {
        let mut out = self.signing.cert_pem.clone();
        if let Some((next, _)) = &self.next {
            out.push_str(&next.cert_pem);
        }
        if let Some(prev) = &self.previous {
            out.push_str(&prev.cert_pem);
        }
        out
    }
}

/// A leaf stored for a session: which CA signed it (SHA-256 of the CA certificate) and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub issuer_sha256: String,
    pub issued_at: Timestamp,
}

/// What to do next. Applying one step and deciding again converges on [`Step::Keep`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No usable CA (none stored, or the signing one expired): create one.
    Create,
    /// Generate the successor and store it beside the signing CA (not signing yet).
    Prepare,
    /// Publish the bundle carrying the successor, and record when.
    Publish,
    /// The successor signs from now on; the old CA stays in the bundle as `previous`.
    Switch,
    /// `previous` leaves the bundle.
    Retire,
    Keep,
}

/// The step for `set` at `now`, given the configured `names` and `policy` and the leaves stored
/// for sessions.
pub fn decide(
    set: Option<&CaSet>,
    names: &NamePolicy,
    policy: &RotationPolicy,
    leaves: &[Leaf],
    now: Timestamp,
) -> Step {
    let Some(set) = set else { return Step::Create };
    if now >= set.signing.not_after {
        return Step::Create;
    }
    if let Some(prev) = &set.previous {
        let prev_sha = crate::build::tls::pem_sha256(&prev.cert_pem);
        let unused = !leaves.iter().any(|l| Some(&l.issuer_sha256) == prev_sha.as_ref());
        // A worker may serve the leaf a re-issue replaced until its Secret volume syncs.
        let loaded = leaves.iter().all(|l| l.issued_at < prev.since || now >= l.issued_at + RETIRE_GRACE);
        if now >= prev.not_after || (unused && loaded && now >= prev.since + RETIRE_GRACE) {
            return Step::Retire;
        }
    }
    let fits = |ca: &Ca| ca.names.as_ref() == Some(names);
    match &set.next {
        None if now >= set.signing.not_after - policy.lead || !fits(&set.signing) => Step::Prepare,
        None => Step::Keep,
        // Configured names changed again before the switch: prepare a fitting successor.
        Some((next, _)) if !fits(next) || now >= next.not_after => Step::Prepare,
        Some((_, None)) => Step::Publish,
        Some((_, Some(published))) if set.previous.is_none() && now >= *published + policy.switch_after() => {
            Step::Switch
        }
        Some(_) => Step::Keep,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::new_ca;

    fn t0() -> Timestamp {
        "2027-01-01T00:00:00Z".parse().unwrap()
    }

    fn days(d: i64) -> SignedDuration {
        SignedDuration::from_hours(24 * d)
    }

    fn names() -> NamePolicy {
        NamePolicy::new([])
    }

    /// 30-day CAs prepared 10 days before expiry, switched 5 days after publication.
    fn policy() -> RotationPolicy {
        RotationPolicy::from_days(30, Some(10)).unwrap()
    }

    fn ca_at(t: Timestamp) -> Ca {
        new_ca(t, policy().validity, &names()).unwrap()
    }

    fn sha(ca: &Ca) -> String {
        crate::build::tls::pem_sha256(&ca.cert_pem).unwrap()
    }

    #[test]
    fn the_flags_are_checked_and_named() {
        assert_eq!(RotationPolicy::from_days(365, None).unwrap(), RotationPolicy::default());
        assert_eq!(RotationPolicy::from_days(30, None).unwrap().lead, days(10));
        for (v, l) in [(0, None), (366, None), (3650, None)] {
            let e = RotationPolicy::from_days(v, l).unwrap_err();
            assert!(e.to_string().contains("--ca-validity-days"), "{e}");
        }
        for (v, l) in [(30, Some(0)), (30, Some(30)), (30, Some(40)), (2, None)] {
            let e = RotationPolicy::from_days(v, l).unwrap_err();
            assert!(e.to_string().contains("--ca-rotation-lead-days"), "{e}");
        }
    }

    /// What, the stored CAs, the stored leaves, when, and the step wanted.
    type Case<'a> = (&'a str, Option<&'a CaSet>, Vec<Leaf>, Timestamp, Step);

    fn leaf(ca: &Ca, issued_at: Timestamp) -> Leaf {
        Leaf { issuer_sha256: sha(ca), issued_at }
    }

    #[test]
    fn each_phase_of_a_rotation_decides_its_step() {
        let old = ca_at(t0());
        let new = ca_at(t0() + days(20));
        let published = t0() + days(20);
        let keep_old = CaSet::new(old.clone());
        let prepared = CaSet { next: Some((new.clone(), None)), ..keep_old.clone() };
        let overlap = CaSet { next: Some((new.clone(), Some(published))), ..keep_old.clone() };
        let switched_at = published + days(5);
        let switched = CaSet {
            signing: new.clone(),
            next: None,
            previous: Some(Retiring { cert_pem: old.cert_pem.clone(), not_after: old.not_after, since: switched_at }),
        };
        let unconstrained = CaSet::new(Ca { names: None, ..old.clone() });
        let other_names = CaSet::new(Ca { names: Some(NamePolicy::new(["a.vn".parse().unwrap()])), ..old.clone() });
        let mins = SignedDuration::from_mins;
        let old_leaf = vec![leaf(&old, t0() + days(19))];
        let reissued = |at| vec![leaf(&new, at), leaf(&new, t0())];
        let only_new = CaSet::new(new.clone());
        #[rustfmt::skip]
        let cases: Vec<Case<'_>> = vec![
            ("nothing stored", None, vec![], t0(), Step::Create),
            ("fresh CA", Some(&keep_old), vec![], t0() + days(1), Step::Keep),
            ("just before the lead", Some(&keep_old), vec![], old.not_after - days(10) - mins(1), Step::Keep),
            ("the lead begins", Some(&keep_old), vec![], old.not_after - days(10), Step::Prepare),
            ("signing CA expired", Some(&keep_old), vec![], old.not_after, Step::Create),
            ("made without constraints", Some(&unconstrained), vec![], t0() + days(1), Step::Prepare),
            ("constrained to other names", Some(&other_names), vec![], t0() + days(1), Step::Prepare),
            ("prepared, not published", Some(&prepared), vec![], published, Step::Publish),
            ("published, waiting", Some(&overlap), old_leaf.clone(), published + days(5) - mins(1), Step::Keep),
            ("published long enough", Some(&overlap), old_leaf.clone(), published + days(5), Step::Switch),
            ("switched, old leaves left", Some(&switched), old_leaf.clone(), switched_at + days(1), Step::Keep),
            ("switched, just re-issued", Some(&switched), reissued(switched_at + days(1)), switched_at + days(1), Step::Keep),
            ("re-issued, not loaded yet", Some(&switched), reissued(switched_at + days(1)), switched_at + days(1) + mins(9), Step::Keep),
            ("re-issued and loaded", Some(&switched), reissued(switched_at + days(1)), switched_at + days(1) + RETIRE_GRACE, Step::Retire),
            ("no leaves at all", Some(&switched), vec![], switched_at + RETIRE_GRACE, Step::Retire),
            ("no leaves, just switched", Some(&switched), vec![], switched_at + mins(1), Step::Keep),
            ("switched, old expired", Some(&switched), old_leaf.clone(), old.not_after, Step::Retire),
            ("new CA's own lead", Some(&only_new), vec![], new.not_after - days(10), Step::Prepare),
        ];
        for (what, set, leaves, now, want) in cases {
            assert_eq!(decide(set, &names(), &policy(), &leaves, now), want, "{what}");
        }
    }

    /// A rustls (webpki) client trusting exactly `bundle`.
    fn verify(bundle: &str, leaf: &str, at: Timestamp) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(bundle.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let leaf = rustls::pki_types::CertificateDer::from_pem_slice(leaf.as_bytes()).unwrap();
        let name = rustls::pki_types::ServerName::try_from("s.ns.svc").unwrap();
        let at = rustls::pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.as_second() as u64));
        v.verify_server_cert(&leaf, &[], &name, &[], at).map(drop)
    }

    /// Applies `step` to `set` at `now` as the operator does.
    fn apply(step: Step, set: Option<CaSet>, now: Timestamp) -> CaSet {
        match (step, set) {
            (Step::Create, _) => CaSet::new(ca_at(now)),
            (Step::Prepare, Some(s)) => CaSet { next: Some((ca_at(now), None)), ..s },
            (Step::Publish, Some(s)) => CaSet { next: s.next.map(|(n, _)| (n, Some(now))), ..s },
            (Step::Switch, Some(s)) => {
                let (next, _) = s.next.unwrap();
                let prev = Retiring { cert_pem: s.signing.cert_pem, not_after: s.signing.not_after, since: now };
                CaSet { signing: next, next: None, previous: Some(prev) }
            }
            (Step::Retire, Some(s)) => CaSet { previous: None, ..s },
            (step, set) => panic!("{step:?} on {set:?}"),
        }
    }

    /// Walks 45 days in 20-minute steps, applying each step as the operator does. The session
    /// re-issues its 3-day leaf in its last third or 2 hours after the signing CA changed (a slow
    /// reconcile); the worker serves a new leaf only 5 minutes after it is issued; clients copy
    /// the bundle once a day. At every step, each leaf the worker may serve verifies against the
    /// bundle published now and against the one clients copied a day ago. (Leaving `next` out of
    /// the bundle, switching at once, or retiring without waiting for the reload makes this fail.)
    #[test]
    fn a_walked_rotation_never_leaves_a_served_leaf_outside_the_bundle() {
        let (leaf_validity, reload, client_lag) = (days(3), SignedDuration::from_mins(5), days(1));
        let mut now = t0();
        let mut set: Option<CaSet> = None;
        // Every bundle published, with when.
        let mut bundles: Vec<(Timestamp, String)> = Vec::new();
        // (pem, leaf, not_after), newest last.
        let mut leaves: Vec<(String, Leaf, Timestamp)> = Vec::new();
        let mut signing_since = now;
        let mut steps = Vec::new();
        while now < t0() + days(45) {
            if let Some(s) = &set {
                let due = match leaves.last() {
                    None => true,
                    Some((_, l, not_after)) => {
                        (l.issuer_sha256 != sha(&s.signing) && now >= signing_since + SignedDuration::from_hours(2))
                            || crate::pki::needs_renewal(*not_after, leaf_validity, now)
                    }
                };
                if due {
                    let cert = crate::pki::issue_serving(&s.signing, &["s.ns.svc".into()], now, leaf_validity).unwrap();
                    leaves.push((cert.cert_pem, leaf(&s.signing, now), cert.not_after));
                    leaves.drain(..leaves.len().saturating_sub(2));
                }
            }
            loop {
                let stored: Vec<Leaf> = leaves.last().map(|(_, l, _)| l.clone()).into_iter().collect();
                let step = decide(set.as_ref(), &names(), &policy(), &stored, now);
                if step == Step::Keep {
                    break;
                }
                steps.push(step);
                let s = apply(step, set.take(), now);
                if matches!(step, Step::Create | Step::Switch) {
                    signing_since = now;
                }
                if step != Step::Prepare {
                    bundles.push((now, s.bundle_pem()));
                }
                set = Some(s);
            }
            // Served: the newest once loaded, the one before too until then.
            let newest_loaded = leaves.last().is_some_and(|(_, l, _)| now >= l.issued_at + reload);
            let served = if newest_loaded { &leaves[leaves.len() - 1..] } else { &leaves[..] };
            let current = &bundles.last().unwrap().1;
            let copied = bundles.iter().rev().find(|(t, _)| *t <= now - client_lag).unwrap_or(&bundles[0]);
            for (pem, l, _) in served {
                for (which, bundle) in [("published", current), ("copied a day ago", &copied.1)] {
                    verify(bundle, pem, now).unwrap_or_else(|e| {
                        panic!("at {now}: the leaf issued at {} fails against the bundle {which}: {e}", l.issued_at)
                    });
                }
            }
            now += SignedDuration::from_mins(20);
        }
        assert_eq!(
            steps,
            [Step::Create, Step::Prepare, Step::Publish, Step::Switch, Step::Retire, Step::Prepare, Step::Publish],
            "one full rotation, then the next one's preparation"
        );
    }
}
