use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 128-bit random reference naming a login attempt, session or email link.
/// Events hold references; tokens are derived from them with the server key
/// and are never stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reference([u8; 16]);

impl Reference {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A reference from its lowercase hex form, as shown and stored.
    pub fn parse(hex: &str) -> Option<Self> {
        let bytes = data_encoding::HEXLOWER.decode(hex.as_bytes()).ok()?;
        bytes.try_into().ok().map(Self)
    }

    fn to_hex(self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.to_hex())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(deserializer)?;
        let bytes = data_encoding::HEXLOWER
            .decode(hex.as_bytes())
            .map_err(serde::de::Error::custom)?;
        let bytes: [u8; 16] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a reference is 16 bytes"))?;
        Ok(Self(bytes))
    }
}
