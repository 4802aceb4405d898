//! The authledger domain: the `UserAuth` aggregate, its commands, events,
//! rules and the services it needs. No I/O lives here; the clock, randomness,
//! password hashing and secret sealing are traits implemented by the binary.
#![forbid(unsafe_code)]

pub mod user_auth;

pub use user_auth::*;
