//! Auditors and admins: who they are, by the bearer credential they hold.
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use chrono::{DateTime, Utc};

use super::{App, AppError, AppResult};
use crate::config::Secret;
use crate::tokens::TokenKind;

/// Auditor and admin tokens, kept as SHA-256 digests and compared in
/// constant time.
#[derive(Clone, Default)]
pub struct Credentials {
    auditors: Vec<[u8; 32]>,
    admins: Vec<[u8; 32]>,
    /// Relying apps, which may only introspect sessions.
    clients: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Auditor,
    Admin,
    Client,
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
    /// Tokens are trimmed and empty ones dropped; a token in two lists is
    /// refused, since its role would be ambiguous.
    pub fn new(auditors: &[Secret], admins: &[Secret], clients: &[Secret]) -> anyhow::Result<Self> {
        let clean = |list: &[Secret]| -> Vec<String> {
            list.iter()
                .map(|t| t.expose().trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        };
        let (auditors, admins, clients) = (clean(auditors), clean(admins), clean(clients));
        anyhow::ensure!(
            !auditors
                .iter()
                .any(|t| admins.contains(t) || clients.contains(t))
                && !admins.iter().any(|t| clients.contains(t)),
            "a token is in two of the auditor, admin and client lists: give each role its own"
        );
        let digest = |t: &String| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        Ok(Self {
            auditors: auditors.iter().map(digest).collect(),
            admins: admins.iter().map(digest).collect(),
            clients: clients.iter().map(digest).collect(),
        })
    }

    /// Whose token this is, and a name for it that is safe to record (the
    /// first bytes of its digest).
    fn role_of(&self, token: &str) -> Option<(Role, String)> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        // Every configured token is compared, so timing tells nothing.
        for (role, list) in [
            (Role::Auditor, &self.auditors),
            (Role::Admin, &self.admins),
            (Role::Client, &self.clients),
        ] {
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

/// An operator signed in to the operators' console.
#[derive(Debug, Clone)]
pub struct StaffSession {
    pub staff: Staff,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
}

impl Credentials {
    /// Whether a credential of `role` named `name` is still configured.
    fn has(&self, role: Role, name: &str) -> bool {
        let list = match role {
            Role::Auditor => &self.auditors,
            Role::Admin => &self.admins,
            Role::Client => &self.clients,
        };
        list.iter()
            .any(|digest| data_encoding::HEXLOWER.encode(&digest[..4]) == name)
    }
}

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Auditor => 1,
        Role::Admin => 2,
        Role::Client => 3,
    }
}

impl App {
    /// Signs an operator in to the console with their admin or auditor
    /// credential: a token of the console's own kind, naming the role and
    /// the credential, valid for the configured time. The credential itself
    /// never goes into a cookie.
    pub fn staff_sign_in(&self, credential: &str) -> AppResult<(String, StaffSession)> {
        let (role, name) = match self.credentials.role_of(credential.trim()) {
            Some((role @ (Role::Auditor | Role::Admin), name)) => (role, name),
            _ => return Err(AppError::Unauthenticated),
        };
        let expires_at = self.now() + self.staff_session_ttl;
        let mut first = [0u8; 16];
        first[0] = role_byte(role);
        let name_bytes = data_encoding::HEXLOWER
            .decode(name.as_bytes())
            .map_err(AppError::internal)?;
        first[1..5].copy_from_slice(&name_bytes);
        first[5..13].copy_from_slice(&expires_at.timestamp().to_be_bytes());
        let mut second = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut second);
        let token = self
            .tokens
            .encode_parts(TokenKind::StaffSession, first, second);
        Ok((
            token,
            StaffSession {
                staff: Staff { name },
                role,
                expires_at,
            },
        ))
    }

    /// The operator a console token names, while it lasts and while its
    /// credential is still configured: removing a credential from the
    /// configuration ends the console sign-ins made with it.
    pub fn staff_session(&self, token: &str) -> AppResult<StaffSession> {
        let (first, _) = self
            .tokens
            .decode_parts(TokenKind::StaffSession, token)
            .map_err(|_| AppError::Unauthenticated)?;
        let role = match first[0] {
            1 => Role::Auditor,
            2 => Role::Admin,
            _ => return Err(AppError::Unauthenticated),
        };
        let name = data_encoding::HEXLOWER.encode(&first[1..5]);
        let mut expiry = [0u8; 8];
        expiry.copy_from_slice(&first[5..13]);
        let expires_at = DateTime::from_timestamp(i64::from_be_bytes(expiry), 0)
            .ok_or(AppError::Unauthenticated)?;
        if expires_at <= self.now() || !self.credentials.has(role, &name) {
            return Err(AppError::Unauthenticated);
        }
        Ok(StaffSession {
            staff: Staff { name },
            role,
            expires_at,
        })
    }

    /// The holder of a bearer `token` in `wanted`'s role: an unknown token
    /// is `Unauthenticated`, the other role's `Forbidden`.
    pub fn staff(&self, token: &str, wanted: Role) -> AppResult<Staff> {
        match self.credentials.role_of(token) {
            Some((Role::Client, _)) => Err(AppError::Unauthenticated),
            Some((role, name)) if role == wanted => Ok(Staff { name }),
            Some(_) => Err(AppError::Forbidden),
            None => Err(AppError::Unauthenticated),
        }
    }

    /// Staff of either role: admins may read whatever auditors may.
    pub fn staff_reader(&self, token: &str) -> AppResult<(Staff, Role)> {
        match self.credentials.role_of(token) {
            Some((role @ (Role::Auditor | Role::Admin), name)) => Ok((Staff { name }, role)),
            _ => Err(AppError::Unauthenticated),
        }
    }

    /// The relying app holding client credential `token`, named safely.
    pub(super) fn client(&self, token: &str) -> AppResult<String> {
        match self.credentials.role_of(token) {
            Some((Role::Client, name)) => Ok(name),
            _ => Err(AppError::InvalidClient),
        }
    }
}
