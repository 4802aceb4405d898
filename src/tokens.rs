//! Login-attempt, session and email-link tokens: a readable prefix per kind,
//! then base64url of user id ‖ reference ‖ HMAC-SHA256(key, kind ‖ user id ‖
//! reference). Tokens are never stored; the aggregate says whether the
//! reference inside one is live.
use std::sync::Arc;

use authledger_aggregates::Reference;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Mac;
use uuid::Uuid;

use crate::keys::Keyring;

const BODY_BYTES: usize = 16 + 16 + 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    LoginAttempt,
    Session,
    EmailLink,
    EmailVerification,
    PasswordReset,
    ResetDenial,
    /// Confirms a new address, mailed to it.
    EmailChange,
    /// "This wasn't me", mailed to the address given up.
    EmailChangeRevert,
    /// An operator's sign-in to the operators' console: names the role and
    /// credential it was won with, and when it ends.
    StaffSession,
    /// "This wasn't me", mailed with a new-device notice.
    Report,
}

impl TokenKind {
    /// A leaked token is recognisable by its prefix, e.g. to secret scanners.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::LoginAttempt => "al_login_",
            Self::Session => "al_sess_",
            Self::EmailLink => "al_link_",
            Self::EmailVerification => "al_verify_",
            Self::PasswordReset => "al_reset_",
            Self::ResetDenial => "al_deny_",
            Self::EmailChange => "al_newaddr_",
            Self::EmailChangeRevert => "al_undo_",
            Self::StaffSession => "al_staff_",
            Self::Report => "al_report_",
        }
    }

    fn label(self) -> &'static [u8] {
        match self {
            Self::LoginAttempt => b"login-attempt",
            Self::Session => b"session",
            Self::EmailLink => b"email-link",
            Self::EmailVerification => b"email-verification",
            Self::PasswordReset => b"password-reset",
            Self::ResetDenial => b"mfa-reset-denial",
            Self::EmailChange => b"email-change",
            Self::EmailChangeRevert => b"email-change-revert",
            Self::StaffSession => b"staff-session",
            Self::Report => b"new-device-report",
        }
    }
}

/// What a console form's CSRF tag is bound to besides the browser's nonce:
/// the session the browser holds, else its login attempt, else nothing.
/// No `Debug`: it holds a token.
#[derive(Clone, Copy)]
pub enum CsrfScope<'a> {
    Session(&'a str),
    /// An operator's console sign-in.
    Staff(&'a str),
    LoginAttempt(&'a str),
    Anonymous,
}

impl<'a> CsrfScope<'a> {
    /// The scope of a browser holding these cookies.
    pub fn held(session: Option<&'a str>, staff: Option<&'a str>, login: Option<&'a str>) -> Self {
        match (session, staff, login) {
            (Some(session), _, _) => Self::Session(session),
            (None, Some(staff), _) => Self::Staff(staff),
            (None, None, Some(login)) => Self::LoginAttempt(login),
            (None, None, None) => Self::Anonymous,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token is not valid")]
pub struct InvalidToken;

#[derive(Clone, Debug)]
pub struct TokenCodec {
    keyring: Arc<Keyring>,
}

impl TokenCodec {
    pub fn new(keyring: Arc<Keyring>) -> Self {
        Self { keyring }
    }

    pub fn encode(&self, kind: TokenKind, user: Uuid, reference: &Reference) -> String {
        self.encode_parts(kind, *user.as_bytes(), *reference.as_bytes())
    }

    /// Parses a token of `kind`, checking its MAC in constant time.
    pub fn decode(&self, kind: TokenKind, token: &str) -> Result<(Uuid, Reference), InvalidToken> {
        let (user, reference) = self.decode_parts(kind, token)?;
        Ok((Uuid::from_bytes(user), Reference::from_bytes(reference)))
    }

    /// A token of `kind` carrying two 16-byte parts, signed.
    pub fn encode_parts(&self, kind: TokenKind, first: [u8; 16], second: [u8; 16]) -> String {
        let mut body = Vec::with_capacity(BODY_BYTES);
        body.extend_from_slice(&first);
        body.extend_from_slice(&second);
        body.extend_from_slice(
            &with_token(self.keyring.token_mac(), kind, &first, &second)
                .finalize()
                .into_bytes(),
        );
        format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(body))
    }

    /// The two parts of a token of `kind`, its MAC checked in constant time.
    pub fn decode_parts(
        &self,
        kind: TokenKind,
        token: &str,
    ) -> Result<([u8; 16], [u8; 16]), InvalidToken> {
        let encoded = token.strip_prefix(kind.prefix()).ok_or(InvalidToken)?;
        if encoded.len() > 100 {
            return Err(InvalidToken);
        }
        let body = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| InvalidToken)?;
        if body.len() != BODY_BYTES {
            return Err(InvalidToken);
        }
        let (first, rest) = body.split_at(16);
        let (second, tag) = rest.split_at(16);
        let first: [u8; 16] = first.try_into().map_err(|_| InvalidToken)?;
        let second: [u8; 16] = second.try_into().map_err(|_| InvalidToken)?;
        // Signed by any listed key: tokens outlive a rotation.
        let signed = self.keyring.token_macs().any(|mac| {
            with_token(mac, kind, &first, &second)
                .verify_slice(tag)
                .is_ok()
        });
        if !signed {
            return Err(InvalidToken);
        }
        Ok((first, second))
    }

    /// The form token for a browser's CSRF nonce and what it holds (the
    /// signed double-submit pattern). Someone who can plant a nonce cookie
    /// still cannot compute its tag, and the tag of their own browser names
    /// their own session or login attempt, not the victim's.
    pub fn csrf_tag(&self, nonce: &str, scope: CsrfScope<'_>) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_mac(nonce, scope).finalize().into_bytes())
    }

    /// Whether `tag` belongs to `nonce` in `scope`, compared in constant time.
    pub fn csrf_tag_matches(&self, nonce: &str, scope: CsrfScope<'_>, tag: &str) -> bool {
        URL_SAFE_NO_PAD.decode(tag).is_ok_and(|tag| {
            self.keyring
                .token_macs()
                .any(|mac| with_csrf(mac, nonce, scope).verify_slice(&tag).is_ok())
        })
    }

    /// The keyed digest of a browser's device cookie, hex: what the events
    /// record of a device, so the log holds nothing that could be replayed.
    pub fn device_digest(&self, cookie: &str) -> String {
        let mut mac = self.keyring.token_mac();
        mac.update(b"device");
        mac.update(&[0]);
        mac.update(cookie.as_bytes());
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    }

    fn csrf_mac(&self, nonce: &str, scope: CsrfScope<'_>) -> hmac::Hmac<sha2::Sha256> {
        with_csrf(self.keyring.token_mac(), nonce, scope)
    }
}

fn with_csrf(
    mut mac: hmac::Hmac<sha2::Sha256>,
    nonce: &str,
    scope: CsrfScope<'_>,
) -> hmac::Hmac<sha2::Sha256> {
    let (label, held): (&[u8], &str) = match scope {
        CsrfScope::Session(token) => (b"session", token),
        CsrfScope::Staff(token) => (b"staff", token),
        CsrfScope::LoginAttempt(token) => (b"login-attempt", token),
        CsrfScope::Anonymous => (b"anonymous", ""),
    };
    mac.update(b"csrf");
    mac.update(&[0]);
    mac.update(nonce.as_bytes());
    mac.update(&[0]);
    mac.update(label);
    mac.update(&[0]);
    mac.update(held.as_bytes());
    mac
}

fn with_token(
    mut mac: hmac::Hmac<sha2::Sha256>,
    kind: TokenKind,
    first: &[u8; 16],
    second: &[u8; 16],
) -> hmac::Hmac<sha2::Sha256> {
    mac.update(kind.label());
    mac.update(&[0]);
    mac.update(first);
    mac.update(second);
    mac
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::keys::MasterKey;

    fn codec(key: u8) -> TokenCodec {
        TokenCodec::new(Arc::new(Keyring::single(&MasterKey::from_bytes([key; 32]))))
    }

    #[test]
    fn a_token_signed_before_a_rotation_holds_until_its_key_is_removed() {
        let one = MasterKey::from_bytes([1; 32]);
        let two = MasterKey::from_bytes([2; 32]);
        let old = TokenCodec::new(Arc::new(Keyring::single(&one)));
        let reference = Reference::from_bytes([7; 16]);
        let user = Uuid::now_v7();
        let token = old.encode(TokenKind::Session, user, &reference);
        let rotated = TokenCodec::new(Arc::new(Keyring::new(&[two.clone(), one]).unwrap()));
        assert_eq!(
            rotated.decode(TokenKind::Session, &token),
            Ok((user, reference))
        );
        assert_ne!(rotated.encode(TokenKind::Session, user, &reference), token);
        let without_old = TokenCodec::new(Arc::new(Keyring::single(&two)));
        assert_eq!(
            without_old.decode(TokenKind::Session, &token),
            Err(InvalidToken)
        );
    }

    const KINDS: [TokenKind; 3] = [
        TokenKind::LoginAttempt,
        TokenKind::Session,
        TokenKind::EmailLink,
    ];

    #[test]
    fn a_csrf_tag_matches_only_its_own_nonce_and_key() {
        let anonymous = CsrfScope::Anonymous;
        let tag = codec(1).csrf_tag("nonce-a", anonymous);
        assert!(codec(1).csrf_tag_matches("nonce-a", anonymous, &tag));
        assert!(!codec(1).csrf_tag_matches("nonce-b", anonymous, &tag));
        assert!(!codec(2).csrf_tag_matches("nonce-a", anonymous, &tag));
        assert!(!codec(1).csrf_tag_matches("nonce-a", anonymous, "not base64!"));
    }

    #[test]
    fn a_csrf_tag_is_bound_to_the_session_or_login_attempt_it_was_made_for() {
        let codec = codec(1);
        let mine = CsrfScope::Session("al_sess_mine");
        let tag = codec.csrf_tag("nonce-a", mine);
        assert!(codec.csrf_tag_matches("nonce-a", mine, &tag));
        for other in [
            CsrfScope::Session("al_sess_theirs"),
            CsrfScope::LoginAttempt("al_sess_mine"),
            CsrfScope::Anonymous,
        ] {
            assert!(!codec.csrf_tag_matches("nonce-a", other, &tag));
        }
        let attempt = codec.csrf_tag("nonce-a", CsrfScope::LoginAttempt("al_login_x"));
        assert!(!codec.csrf_tag_matches(
            "nonce-a",
            CsrfScope::LoginAttempt("al_login_y"),
            &attempt
        ));
    }

    #[test]
    fn a_browser_is_scoped_by_its_session_then_its_staff_sign_in_then_its_login_attempt() {
        assert!(matches!(
            CsrfScope::held(Some("s"), Some("a"), Some("l")),
            CsrfScope::Session("s")
        ));
        assert!(matches!(
            CsrfScope::held(None, Some("a"), Some("l")),
            CsrfScope::Staff("a")
        ));
        assert!(matches!(
            CsrfScope::held(None, None, Some("l")),
            CsrfScope::LoginAttempt("l")
        ));
        assert!(matches!(
            CsrfScope::held(None, None, None),
            CsrfScope::Anonymous
        ));
    }

    #[test]
    fn a_staff_tag_is_not_a_session_tag() {
        let codec = codec(1);
        let staff = codec.csrf_tag("nonce-a", CsrfScope::Staff("t"));
        assert!(codec.csrf_tag_matches("nonce-a", CsrfScope::Staff("t"), &staff));
        assert!(!codec.csrf_tag_matches("nonce-a", CsrfScope::Session("t"), &staff));
    }

    proptest! {
        #[test]
        fn every_token_decodes_to_what_it_encodes(user: u128, reference: [u8; 16], kind in 0usize..3) {
            let codec = codec(1);
            let kind = KINDS[kind];
            let token = codec.encode(kind, Uuid::from_u128(user), &Reference::from_bytes(reference));
            prop_assert!(token.starts_with(kind.prefix()));
            prop_assert_eq!(codec.decode(kind, &token), Ok((Uuid::from_u128(user), Reference::from_bytes(reference))));
        }

        #[test]
        fn a_token_never_passes_for_another_kind(user: u128, reference: [u8; 16], kind in 0usize..3, other in 0usize..3) {
            prop_assume!(kind != other);
            let codec = codec(1);
            let token = codec.encode(KINDS[kind], Uuid::from_u128(user), &Reference::from_bytes(reference));
            prop_assert_eq!(codec.decode(KINDS[other], &token), Err(InvalidToken));
            // Not even with the other kind's prefix put in front.
            let body = token.strip_prefix(KINDS[kind].prefix()).unwrap();
            let relabelled = format!("{}{}", KINDS[other].prefix(), body);
            prop_assert_eq!(codec.decode(KINDS[other], &relabelled), Err(InvalidToken));
        }

        #[test]
        fn any_changed_character_is_refused(user: u128, reference: [u8; 16], at: prop::sample::Index, with in "[A-Za-z0-9_-]") {
            let codec = codec(1);
            let token = codec.encode(TokenKind::Session, Uuid::from_u128(user), &Reference::from_bytes(reference));
            let prefix = TokenKind::Session.prefix().len();
            let i = prefix + at.index(token.len() - prefix);
            let mut tampered = token.clone();
            tampered.replace_range(i..i + 1, &with);
            prop_assume!(tampered != token);
            prop_assert_eq!(codec.decode(TokenKind::Session, &tampered), Err(InvalidToken));
        }

        #[test]
        fn arbitrary_input_never_panics_and_never_passes(input in ".{0,120}") {
            for kind in KINDS {
                prop_assert_eq!(codec(1).decode(kind, &input), Err(InvalidToken));
            }
        }
    }

    #[test]
    fn a_token_made_under_another_key_is_refused() {
        let token = codec(1).encode(
            TokenKind::Session,
            Uuid::nil(),
            &Reference::from_bytes([3; 16]),
        );
        assert_eq!(
            codec(2).decode(TokenKind::Session, &token),
            Err(InvalidToken)
        );
    }

    /// The proptests above draw from the first three kinds; the mailed
    /// links' kinds are checked here, every pair of them.
    const EVERY_KIND: [TokenKind; 6] = [
        TokenKind::LoginAttempt,
        TokenKind::Session,
        TokenKind::EmailLink,
        TokenKind::EmailVerification,
        TokenKind::PasswordReset,
        TokenKind::ResetDenial,
    ];

    #[test]
    fn a_token_of_one_kind_never_decodes_as_any_other() {
        let codec = codec(1);
        let user = Uuid::from_u128(7);
        for kind in EVERY_KIND {
            let token = codec.encode(kind, user, &Reference::from_bytes([9; 16]));
            assert_eq!(
                codec.decode(kind, &token),
                Ok((user, Reference::from_bytes([9; 16])))
            );
            let body = token.strip_prefix(kind.prefix()).unwrap();
            for other in EVERY_KIND.into_iter().filter(|other| *other != kind) {
                assert!(
                    !kind.prefix().starts_with(other.prefix()),
                    "{kind:?} reads as {other:?}"
                );
                assert_eq!(
                    codec.decode(other, &token),
                    Err(InvalidToken),
                    "{kind:?} as {other:?}"
                );
                let relabelled = format!("{}{body}", other.prefix());
                assert_eq!(
                    codec.decode(other, &relabelled),
                    Err(InvalidToken),
                    "{kind:?} relabelled as {other:?}"
                );
            }
        }
    }
}
