//! The rules of the design, one file each, every file with its tests below
//! it. Each file adds to `impl UserAuth` the part of `decide` it owns.
//!
//! - `register`: an account per email.
//! - `verification`: the link that shows the registrant owns the address.
//! - `password`: the password step, which opens a login attempt.
//! - `password_reset`: a forgotten password, set again through a mailed link.
//! - `login_attempt`: when a second factor may be tried at all.
//! - `totp`, `webauthn`, `enrollment`, `recovery_code`, `email_link`: the
//!   second factors.
//! - `authenticators`: adding and removing authenticator apps, security
//!   keys and passkeys from a session.
//! - `throttling`: what a failed factor brings on, a wait or a lock.
//! - `sessions`: how a session starts, stays alive and ends, by the user's
//!   or an administrator's hand.
//! - `reauthentication`: the password again before a sensitive change.
//! - `change_password`: a new password from a session.
//! - `change_email`: a new address from a session, confirmed by a link to
//!   it and undone by a link to the old one.
//! - `reset`: the user's own MFA reset.
//! - `admin`: an administrator's reset and unlock.
//! - `erasure`: the account forgotten, at its user's or an administrator's
//!   word.
//! - `reseal`: secrets moved to the current server key.
//! - `suspension`: an account taken out of use by an administrator, and
//!   back.
//! - `report`: "this wasn't me" about a sign-in or a change of
//!   credentials.
mod admin;
mod authenticators;

pub use authenticators::MAX_AUTHENTICATORS;
mod change_email;
mod change_password;
mod email_link;
mod enrollment;
mod erasure;
mod login_attempt;
mod password;
mod password_reset;
mod reauthentication;
mod recovery_code;
mod register;
mod report;
mod reseal;
mod reset;
mod sessions;
mod suspension;
mod throttling;
mod totp;
mod verification;
mod webauthn;

use super::{Decided, UserAuthError};

type Decision = Result<Decided, UserAuthError>;
