//! Keys of the Postgres advisory locks authledger takes.
//!
//! A database has a single space of `bigint` advisory locks, shared by every
//! purpose, so every key is made here, one way: the 64-bit FNV-1a hash of
//! `"authledger <purpose> <name>"`, its bits read as a `bigint`. The purpose
//! in the hashed text keeps a projection's lock apart from a mail's even if
//! a name were the same; FNV-1a, unlike std's hasher or Postgres's
//! `hashtext`, is fixed by its definition, so every process of every
//! release computes the same key for the same thing.

/// What an advisory lock guards; the name says which one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockPurpose {
    /// One instance at a time runs a batch of the projection named.
    Projection,
    /// One worker at a time sends the mail with this message id.
    Mail,
}

impl LockPurpose {
    fn label(self) -> &'static str {
        match self {
            Self::Projection => "projection",
            Self::Mail => "mail",
        }
    }
}

/// The advisory lock key for `name` under `purpose`, to bind as the
/// `bigint` argument of `pg_advisory_lock` and its kin.
pub fn advisory_key(purpose: LockPurpose, name: &str) -> i64 {
    let text = ["authledger ", purpose.label(), " ", name];
    let hash = fnv1a_64(text.iter().flat_map(|part| part.bytes()));
    i64::from_ne_bytes(hash.to_ne_bytes())
}

fn fnv1a_64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv_1a_as_published() {
        assert_eq!(fnv1a_64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_projection_keeps_the_key_earlier_releases_locked() {
        // FNV-1a of "authledger projection users", worked out outside Rust:
        // an instance of an earlier release and this one exclude each other.
        assert_eq!(
            advisory_key(LockPurpose::Projection, "users"),
            -5_956_567_472_885_082_029
        );
    }

    #[test]
    fn a_mail_key_is_fixed_by_its_message_id() {
        assert_eq!(
            advisory_key(LockPurpose::Mail, "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11/7"),
            -1_669_088_796_078_417_702
        );
    }

    #[test]
    fn one_name_under_two_purposes_gets_two_keys() {
        assert_ne!(
            advisory_key(LockPurpose::Projection, "users"),
            advisory_key(LockPurpose::Mail, "users")
        );
    }
}
