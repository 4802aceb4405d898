//! Auditors and admins: who they are, by the bearer credential they hold.
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{App, AppError, AppResult};
use crate::config::Secret;

/// Auditor and admin tokens, kept as SHA-256 digests and compared in
/// constant time.
#[derive(Clone, Default)]
pub struct Credentials {
    auditors: Vec<[u8; 32]>,
    admins: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Auditor,
    Admin,
}

/// An auditor or admin, named in a way that is safe to record.
#[derive(Debug, Clone)]
pub struct Staff {
    name: String,
}

impl Staff {
    /// An operator at the command line, named by their login.
    pub fn command_line(login: &str) -> Self {
        Self {
            name: format!("cli:{login}"),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn actor(&self) -> String {
        format!("admin:{}", self.name)
    }
}

impl Credentials {
    /// Tokens are trimmed and empty ones dropped; a token in both lists is
    /// refused, since its role would be ambiguous.
    pub fn new(auditors: &[Secret], admins: &[Secret]) -> anyhow::Result<Self> {
        let clean = |list: &[Secret]| -> Vec<String> {
            list.iter()
                .map(|t| t.expose().trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        };
        let (auditors, admins) = (clean(auditors), clean(admins));
        anyhow::ensure!(
            !auditors.iter().any(|t| admins.contains(t)),
            "a token is both an auditor's and an admin's: give each role its own"
        );
        let digest = |t: &String| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        Ok(Self {
            auditors: auditors.iter().map(digest).collect(),
            admins: admins.iter().map(digest).collect(),
        })
    }

    /// Whose token this is, and a name for it that is safe to record (the
    /// first bytes of its digest).
    fn role_of(&self, token: &str) -> Option<(Role, String)> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Every configured token is compared, so timing tells nothing.
        for (role, list) in [(Role::Auditor, &self.auditors), (Role::Admin, &self.admins)] {
            for known in list {
                if bool::from(known.ct_eq(&presented)) {
                    found = Some(role);
                }
            }
        }
        let name = data_encoding::HEXLOWER.encode(&presented[..4]);
        found.map(|role| (role, name))
    }
}

impl App {
    /// The holder of a bearer `token` in `wanted`'s role: an unknown token
    /// is `Unauthenticated`, the other role's `Forbidden`.
    pub fn staff(&self, token: &str, wanted: Role) -> AppResult<Staff> {
        match self.credentials.role_of(token) {
            Some((role, name)) if role == wanted => Ok(Staff { name }),
            Some(_) => Err(AppError::Forbidden),
            None => Err(AppError::Unauthenticated),
        }
    }
}
