//! The MACs that make the log the application's alone: each event's covers
//! its stream, sequence, type, version, payload and metadata, and the MAC
//! of the event before it; each snapshot's covers its state and the MAC of
//! the last event it folds. They are made with a key of the keyring, so a
//! database writer without the key can neither forge an append, nor edit a
//! snapshot, nor recompute a chain after an edit.
use authledger_projections::merkle::length_prefixed;
use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::keys::Keyring;

pub type Tag = [u8; 32];

/// What stands before a stream's first event.
pub const GENESIS: Tag = [0; 32];

/// An event's fields as stored, which its MAC covers.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
}

impl EventFields<'_> {
    fn message(&self, previous: &Tag) -> Vec<u8> {
        length_prefixed(&[
            b"authledger-event-mac-v1",
            self.aggregate_type.as_bytes(),
            self.aggregate_id.as_bytes(),
            self.sequence.to_string().as_bytes(),
            self.event_type.as_bytes(),
            self.event_version.as_bytes(),
            self.payload.as_bytes(),
            self.metadata.as_bytes(),
            previous,
        ])
    }
}

/// A snapshot's fields as stored, which its MAC covers.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotFields<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub last_sequence: i64,
    pub payload: &'a str,
    /// The MAC of the event at `last_sequence`.
    pub head_mac: &'a Tag,
}

impl SnapshotFields<'_> {
    fn message(&self) -> Vec<u8> {
        length_prefixed(&[
            b"authledger-snapshot-mac-v1",
            self.aggregate_type.as_bytes(),
            self.aggregate_id.as_bytes(),
            self.last_sequence.to_string().as_bytes(),
            self.payload.as_bytes(),
            self.head_mac,
        ])
    }
}

/// A MAC and the id of the key that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub key_id: String,
    pub tag: Tag,
}

/// The MAC of an event that follows `previous`, under the newest key.
pub fn seal_event(keyring: &Keyring, event: &EventFields<'_>, previous: &Tag) -> Stamp {
    let (key_id, mut mac) = keyring.event_mac();
    mac.update(&event.message(previous));
    Stamp {
        key_id: key_id.to_owned(),
        tag: mac.finalize().into_bytes().into(),
    }
}

/// The MAC of a snapshot, under the newest key.
pub fn seal_snapshot(keyring: &Keyring, snapshot: &SnapshotFields<'_>) -> Stamp {
    let (key_id, mut mac) = keyring.event_mac();
    mac.update(&snapshot.message());
    Stamp {
        key_id: key_id.to_owned(),
        tag: mac.finalize().into_bytes().into(),
    }
}

/// Why a stored MAC does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error("it carries no MAC")]
    Missing,
    #[error("its MAC was made with a key this server does not hold")]
    UnknownKey,
    #[error("its MAC does not match its content and its predecessor's MAC")]
    Mismatch,
}

fn check(
    keyring: &Keyring,
    key_id: Option<&str>,
    tag: Option<&[u8]>,
    message: &[u8],
) -> Result<Tag, Broken> {
    let (Some(key_id), Some(tag)) = (key_id, tag) else {
        return Err(Broken::Missing);
    };
    let mut mac = keyring.event_mac_of(key_id).ok_or(Broken::UnknownKey)?;
    mac.update(message);
    let expected: Tag = mac.finalize().into_bytes().into();
    if bool::from(expected.as_slice().ct_eq(tag)) {
        Ok(expected)
    } else {
        Err(Broken::Mismatch)
    }
}

/// Checks an event's stored MAC against its fields and `previous`; the
/// MAC, for the next event to chain from.
pub fn verify_event(
    keyring: &Keyring,
    event: &EventFields<'_>,
    previous: &Tag,
    key_id: Option<&str>,
    tag: Option<&[u8]>,
) -> Result<Tag, Broken> {
    check(keyring, key_id, tag, &event.message(previous))
}

/// Checks a snapshot's stored MAC against its fields.
pub fn verify_snapshot(
    keyring: &Keyring,
    snapshot: &SnapshotFields<'_>,
    key_id: &str,
    tag: &[u8],
) -> Result<(), Broken> {
    check(keyring, Some(key_id), Some(tag), &snapshot.message()).map(|_| ())
}

/// The tree's check of each event it takes in, with the server's keys.
pub struct KeyringCheck(pub std::sync::Arc<Keyring>);

impl authledger_projections::tree::ChainCheck for KeyringCheck {
    fn check(
        &self,
        event: &authledger_projections::merkle::LoggedEvent,
        mac_key: Option<&str>,
        mac: Option<&[u8]>,
        previous: Option<&[u8]>,
    ) -> Result<(), String> {
        let previous = match (event.sequence, previous) {
            (1, _) => GENESIS,
            (_, Some(previous)) => Tag::try_from(previous).unwrap_or_default(),
            (_, None) => return Err("the event before it is missing".into()),
        };
        let fields = EventFields {
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            sequence: event.sequence,
            event_type: &event.event_type,
            event_version: &event.event_version,
            payload: &event.payload,
            metadata: &event.metadata,
        };
        verify_event(&self.0, &fields, &previous, mac_key, mac)
            .map(|_| ())
            .map_err(|broken| broken.to_string())
    }
}

/// The Merkle tree's projection, checking each event with `keyring`.
pub fn merkle_tree(keyring: std::sync::Arc<Keyring>) -> authledger_projections::tree::MerkleTree {
    authledger_projections::tree::MerkleTree::new(std::sync::Arc::new(KeyringCheck(keyring)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    fn ring(byte: u8) -> Keyring {
        Keyring::single(&MasterKey::from_bytes([byte; 32]))
    }

    fn event(payload: &str) -> EventFields<'_> {
        EventFields {
            aggregate_type: "UserAuth",
            aggregate_id: "0193",
            sequence: 2,
            event_type: "MfaReset",
            event_version: "2",
            payload,
            metadata: "{}",
        }
    }

    #[test]
    fn an_event_verifies_only_with_its_content_its_predecessor_and_the_key() {
        let keyring = ring(1);
        let previous = [7; 32];
        let sealed = seal_event(&keyring, &event("{\"a\":1}"), &previous);
        let verify = |ring: &Keyring, payload, previous: &Tag| {
            verify_event(
                ring,
                &event(payload),
                previous,
                Some(&sealed.key_id),
                Some(&sealed.tag),
            )
        };
        assert_eq!(verify(&keyring, "{\"a\":1}", &previous), Ok(sealed.tag));
        assert_eq!(
            verify(&keyring, "{\"a\":2}", &previous),
            Err(Broken::Mismatch)
        );
        assert_eq!(
            verify(&keyring, "{\"a\":1}", &GENESIS),
            Err(Broken::Mismatch)
        );
        assert_eq!(
            verify(&ring(2), "{\"a\":1}", &previous),
            Err(Broken::UnknownKey)
        );
        assert_eq!(
            verify_event(&keyring, &event("{}"), &previous, None, None),
            Err(Broken::Missing)
        );
    }

    #[test]
    fn a_snapshot_verifies_only_with_its_state_and_head() {
        let keyring = ring(1);
        let head = [3; 32];
        let snapshot = |payload| SnapshotFields {
            aggregate_type: "UserAuth",
            aggregate_id: "0193",
            last_sequence: 5,
            payload,
            head_mac: &head,
        };
        let sealed = seal_snapshot(&keyring, &snapshot("{\"totp\":1}"));
        assert_eq!(
            verify_snapshot(
                &keyring,
                &snapshot("{\"totp\":1}"),
                &sealed.key_id,
                &sealed.tag
            ),
            Ok(())
        );
        assert_eq!(
            verify_snapshot(
                &keyring,
                &snapshot("{\"totp\":null}"),
                &sealed.key_id,
                &sealed.tag
            ),
            Err(Broken::Mismatch)
        );
    }
}
