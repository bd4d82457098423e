//! The Secret with one join token per point of a session. It is deleted when the session
//! completes, so links stop working after the session even where a token has not expired.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::ResourceExt;

use super::labels;
use super::session_child_meta;
use crate::api::ReceptionSession;
use crate::tokens::{self, join_claims, mint_join_token, session_id, SigningKeys};
use crate::validate::ValidSession;

/// The Secret's name for a session.
pub fn name(session: &str) -> String {
    format!("{session}-join-tokens")
}

/// One token per participant, keyed by point name, at the session's epoch and each point's link
/// generation (0 for a point `link_generations` does not name).
pub fn build(
    session: &ReceptionSession,
    valid: &ValidSession,
    keys: &SigningKeys,
    epoch: u64,
    link_generations: &BTreeMap<String, u32>,
) -> Result<Secret, tokens::Error> {
    let sname = session.name_any();
    let id = session_id(&session.namespace().unwrap_or_default(), &sname);
    let data = valid
        .participants
        .iter()
        .map(|p| {
            let generation = link_generations.get(&p.name).copied().unwrap_or(0);
            let tok = mint_join_token(keys, &join_claims(&id, &session.spec.title, valid, p, epoch, generation))?;
            Ok((p.name.clone(), ByteString(tok.into_bytes())))
        })
        .collect::<Result<_, tokens::Error>>()?;
    Ok(Secret {
        metadata: session_child_meta(session, name(&sname), labels::COMPONENT_TOKENS, &BTreeMap::new()),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::worker_pod::tests::session;
    use crate::timeline::TimelineConfig;
    use crate::validate::{Participant, Role, ValidSession};

    #[test]
    fn one_token_per_participant_labelled_for_the_session() {
        let s = session();
        let valid = ValidSession {
            timeline: crate::timeline::compute(&s.spec.schedule, &s.spec.readiness, &TimelineConfig::default())
                .unwrap(),
            participants: vec![
                Participant {
                    name: "my-hao".into(),
                    display_name: "Mỹ Hào".into(),
                    role: Role::Host,
                    audio_only: false,
                },
                Participant {
                    name: "di-su".into(),
                    display_name: "Dị Sử".into(),
                    role: Role::Participant,
                    audio_only: false,
                },
            ],
            missing: vec![],
        };
        let secret = build(&s, &valid, &SigningKeys::generate(), 0, &BTreeMap::new()).unwrap();
        let data = secret.data.unwrap();
        assert_eq!(data.keys().collect::<Vec<_>>(), vec!["di-su", "my-hao"]);
        assert_eq!(secret.metadata.labels.unwrap()[labels::SESSION], "phien-thang-6");
    }
}
