//! Devices the owner has signed in from. A browser that completed a sign-in
//! carries a long-lived random cookie; the aggregate keeps only a keyed
//! digest of it. Failures from elsewhere throttle the account for every
//! other source, but not for such a device: a stranger's guesses must not
//! keep the owner out. The device's own failures throttle it alone.
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// A keyed digest (HMAC-SHA256 under the server key, hex) of a device's
/// cookie: the cookie itself is never recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceDigest(pub String);

impl DeviceDigest {
    pub fn matches(&self, other: &DeviceDigest) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}
