//! The one parser for mailboxes. Whatever it accepts is a bare RFC 5321
//! addr-spec that the mailer can send unchanged, so an address can neither
//! smuggle a second recipient nor name two accounts that share a mailbox.
use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use serde::{Deserialize, Serialize};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_security::MixedScript;

/// RFC 5321's limits, in octets (4.5.3.1.1 and the 254 of a forward path
/// less its angle brackets).
const MAX_ADDRESS_OCTETS: usize = 254;
const MAX_LOCAL_PART_OCTETS: usize = 64;

/// Past this, input is refused before any Unicode processing: no address
/// survives canonicalisation at four times the limit.
const MAX_RAW_OCTETS: usize = 4 * MAX_ADDRESS_OCTETS;

/// The ASCII a local part may hold besides letters, digits and dots: RFC
/// 5322's atext, which the mailer writes unquoted.
const ATEXT_SYMBOLS: &str = "!#$%&'*+-/=?^_`{|}~";

/// An email address as one canonical spelling: the local part lower-cased
/// and in NFC, the domain in its lower-case ASCII (IDNA) form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email {
    address: String,
}

/// Why an address was refused. The reasons never quote the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmail {
    #[error("an address is a name, an @ and a domain, as in name@example.com")]
    Malformed,
    #[error("an address has exactly one @")]
    ExtraAt,
    #[error("the address is longer than {MAX_ADDRESS_OCTETS} bytes")]
    TooLong,
    #[error("the part before the @ is longer than {MAX_LOCAL_PART_OCTETS} bytes")]
    LocalPartTooLong,
    #[error("the address contains a control character")]
    ControlCharacter,
    #[error(
        "the address contains a bidirectional text control, which can make it read differently"
    )]
    BidiControl,
    #[error("the address contains an invisible character, such as a zero-width space")]
    InvisibleCharacter,
    #[error("only the address itself is accepted, without a display name or angle brackets")]
    DisplayName,
    #[error("quoted local parts are not accepted")]
    Quoted,
    #[error("comments in parentheses are not accepted")]
    Comment,
    #[error("the part before the @ may not start or end with a dot or hold two dots in a row")]
    Dots,
    #[error("the part before the @ holds full-width or other compatibility characters")]
    CompatibilityCharacter,
    #[error("the part before the @ may hold only letters, digits, dots and {ATEXT_SYMBOLS}")]
    LocalPartCharacter,
    #[error("the part before the @ mixes letters of different scripts")]
    MixedScripts,
    #[error("address literals such as [192.0.2.1] are not accepted")]
    AddressLiteral,
    #[error("the domain is not a valid domain name")]
    InvalidDomain,
    #[error("the domain needs at least one dot, as in example.com")]
    UnqualifiedDomain,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let raw = raw.trim();
        if raw.len() > MAX_RAW_OCTETS {
            return Err(InvalidEmail::TooLong);
        }
        // Over the whole address: UTS 46 would silently drop some of these
        // from a domain, and none belongs in one.
        for c in raw.chars() {
            if c.is_control() {
                return Err(InvalidEmail::ControlCharacter);
            }
            if is_bidi_control(c) {
                return Err(InvalidEmail::BidiControl);
            }
            if is_invisible(c) {
                return Err(InvalidEmail::InvisibleCharacter);
            }
        }
        if raw.contains(['<', '>']) {
            return Err(InvalidEmail::DisplayName);
        }
        if raw.contains('"') {
            return Err(InvalidEmail::Quoted);
        }
        if raw.contains(['(', ')']) {
            return Err(InvalidEmail::Comment);
        }
        let (local, domain) = raw.split_once('@').ok_or(InvalidEmail::Malformed)?;
        if domain.contains('@') {
            return Err(InvalidEmail::ExtraAt);
        }
        if local.is_empty() || domain.is_empty() {
            return Err(InvalidEmail::Malformed);
        }
        let local = local_part(local)?;
        let domain = domain_part(domain)?;
        let address = format!("{local}@{domain}");
        if address.len() > MAX_ADDRESS_OCTETS {
            return Err(InvalidEmail::TooLong);
        }
        Ok(Self { address })
    }

    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The part before the @.
    pub fn local_part(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map_or(self.address.as_str(), |(local, _)| local)
    }
}

/// A dot-atom of letters, digits and atext, lower-cased and in NFC, in one
/// script.
fn local_part(raw: &str) -> Result<String, InvalidEmail> {
    if raw.starts_with('.') || raw.ends_with('.') || raw.contains("..") {
        return Err(InvalidEmail::Dots);
    }
    let local: String = raw.to_lowercase().nfc().collect();
    // Full-width letters pass as letters; NFKC is what tells them apart.
    if !local.nfkc().eq(local.chars()) {
        return Err(InvalidEmail::CompatibilityCharacter);
    }
    let allowed = |c: char| {
        if c.is_ascii() {
            c.is_ascii_alphanumeric() || c == '.' || ATEXT_SYMBOLS.contains(c)
        } else {
            c.is_alphanumeric() || is_combining_mark(c)
        }
    };
    if !local.chars().all(allowed) {
        return Err(InvalidEmail::LocalPartCharacter);
    }
    if !local.as_str().is_single_script() {
        return Err(InvalidEmail::MixedScripts);
    }
    if local.len() > MAX_LOCAL_PART_OCTETS {
        return Err(InvalidEmail::LocalPartTooLong);
    }
    Ok(local)
}

/// The domain's ASCII form by UTS 46 with the STD3 rules, so every spelling
/// of one domain gives the same address.
fn domain_part(raw: &str) -> Result<String, InvalidEmail> {
    if raw.starts_with('[') {
        return Err(InvalidEmail::AddressLiteral);
    }
    let uts46 = Uts46::new();
    let ascii = uts46
        .to_ascii(
            raw.as_bytes(),
            AsciiDenyList::STD3,
            Hyphens::CheckFirstLast,
            DnsLength::Verify,
        )
        .map_err(|_| InvalidEmail::InvalidDomain)?
        .into_owned();
    if !ascii.contains('.') {
        return Err(InvalidEmail::UnqualifiedDomain);
    }
    // An ASCII form that does not read back as Unicode is no domain a
    // mailer would deliver to; refusing it keeps the addresses accepted
    // the same as when ids were keyed by the Unicode form.
    let (_, converted) = uts46.to_unicode(ascii.as_bytes(), AsciiDenyList::STD3, Hyphens::Allow);
    converted.map_err(|_| InvalidEmail::InvalidDomain)?;
    Ok(ascii)
}

/// Characters that reorder the text around them (Trojan Source).
pub(super) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that render as nothing: zero-width spaces and joiners, word
/// joiners, the soft hyphen, variation selectors, fillers and tags.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}'
        | '\u{206A}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

impl TryFrom<String> for Email {
    type Error = InvalidEmail;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.address
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn email_is_trimmed_and_lower_cased() {
        let email = Email::parse("  Alice@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "alice@example.com");
    }

    #[test]
    fn the_same_address_in_any_case_is_the_same_address() {
        let a = Email::parse("Alice@Example.com").unwrap();
        let b = Email::parse("alice@example.com").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn an_internationalised_domain_is_one_account_in_either_spelling() {
        // Given the same domain in Unicode and in its IDNA ASCII form,
        let unicode = Email::parse("ada@bücher.de").unwrap();
        let ascii = Email::parse("ADA@XN--BCHER-KVA.DE").unwrap();
        // then both are the same account, written in ASCII.
        assert_eq!(unicode, ascii);
        assert_eq!(unicode.as_str(), "ada@xn--bcher-kva.de");
        assert_eq!(
            Email::parse("алиса@пример.рф").unwrap().as_str(),
            "алиса@xn--e1afmkfd.xn--p1ai"
        );
    }

    #[test]
    fn a_full_width_domain_is_the_ascii_domain() {
        // UTS 46 maps full-width forms in a domain to ASCII: the same mailbox.
        let wide = Email::parse("alice@ｅｘａｍｐｌｅ。ｃｏｍ").unwrap();
        assert_eq!(wide.as_str(), "alice@example.com");
    }

    #[test]
    fn a_decomposed_local_part_is_the_composed_one() {
        // Given "josé" typed as e + combining acute (NFD),
        let decomposed = Email::parse("jose\u{301}@example.com").unwrap();
        // then it is stored in NFC.
        assert_eq!(decomposed.as_str(), "jos\u{e9}@example.com");
        assert_eq!(decomposed, Email::parse("josé@example.com").unwrap());
    }

    #[test]
    fn a_local_part_in_one_non_latin_script_is_accepted() {
        for raw in [
            "алиса@example.com",
            "用户@example.com",
            "δοκιμή@example.com",
        ] {
            assert!(Email::parse(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn the_local_part_is_exposed_alone() {
        let email = Email::parse("Ada.L+x@Example.com").unwrap();
        assert_eq!(email.local_part(), "ada.l+x");
    }

    #[test]
    fn each_hostile_or_unsendable_address_is_refused_with_its_reason() {
        use InvalidEmail as E;
        for (raw, reason) in [
            // A display name would send the mail elsewhere.
            ("victim<attacker@evil.com>", E::DisplayName),
            ("Victim <victim@example.com>", E::DisplayName),
            ("<victim@example.com>", E::DisplayName),
            ("<>@example.com", E::DisplayName),
            // Quoted local parts and comments name the same mailbox twice.
            ("\"quoted\"@example.com", E::Quoted),
            ("\"a b\"@example.com", E::Quoted),
            ("alice(comment)@example.com", E::Comment),
            // Look-alikes and invisible characters.
            ("p\u{430}ypal@example.com", E::MixedScripts),
            ("\u{430}lice@example.com", E::MixedScripts),
            ("ali\u{200B}ce@example.com", E::InvisibleCharacter),
            ("alice\u{200D}@example.com", E::InvisibleCharacter),
            ("alice@exam\u{AD}ple.com", E::InvisibleCharacter),
            ("\u{FEFF}alice@example.com", E::InvisibleCharacter),
            ("ali\u{202E}ecila@example.com", E::BidiControl),
            ("alice\u{2066}@example.com", E::BidiControl),
            ("\u{FF41}lice@example.com", E::CompatibilityCharacter),
            ("ＡＬＩＣＥ@example.com", E::CompatibilityCharacter),
            // Controls, C0 and C1.
            ("ali\u{0}ce@example.com", E::ControlCharacter),
            ("alice@example.com\r\nBcc: x@evil.com", E::ControlCharacter),
            ("ali\u{85}ce@example.com", E::ControlCharacter),
            ("ali\u{7F}ce@example.com", E::ControlCharacter),
            // What the mailer cannot send as typed.
            ("a,b@example.com", E::LocalPartCharacter),
            ("al ice@example.com", E::LocalPartCharacter),
            ("ali;ce@example.com", E::LocalPartCharacter),
            ("ali\\ce@example.com", E::LocalPartCharacter),
            ("ali[ce@example.com", E::LocalPartCharacter),
            ("ali:ce@example.com", E::LocalPartCharacter),
            ("alice☃@example.com", E::LocalPartCharacter),
            (".alice@example.com", E::Dots),
            ("alice.@example.com", E::Dots),
            ("al..ice@example.com", E::Dots),
            ("alice@[192.0.2.1]", E::AddressLiteral),
            ("alice@localhost", E::UnqualifiedDomain),
            ("alice@exa_mple.com", E::InvalidDomain),
            ("alice@-example.com", E::InvalidDomain),
            ("alice@example-.com", E::InvalidDomain),
            ("alice@example..com", E::InvalidDomain),
            ("alice@example.com.", E::InvalidDomain),
            ("alice@exa mple.com", E::InvalidDomain),
            ("alice@xn--zz.com", E::InvalidDomain),
            // The shape of an address.
            ("", E::Malformed),
            ("   ", E::Malformed),
            ("alice", E::Malformed),
            ("@example.com", E::Malformed),
            ("alice@", E::Malformed),
            ("alice@@example.com", E::ExtraAt),
            ("a@b@example.com", E::ExtraAt),
        ] {
            assert_eq!(Email::parse(raw), Err(reason), "{raw:?}");
        }
    }

    #[test]
    fn the_lengths_of_rfc_5321_are_enforced_in_octets() {
        let local = |n: usize| "a".repeat(n);
        assert!(Email::parse(&format!("{}@example.com", local(64))).is_ok());
        assert_eq!(
            Email::parse(&format!("{}@example.com", local(65))),
            Err(InvalidEmail::LocalPartTooLong)
        );
        // 32 two-byte letters are 64 octets; 33 are too many.
        assert!(Email::parse(&format!("{}@example.com", "é".repeat(32))).is_ok());
        assert_eq!(
            Email::parse(&format!("{}@example.com", "é".repeat(33))),
            Err(InvalidEmail::LocalPartTooLong)
        );
        let domain = format!("{}.{}.{}.com", local(63), local(63), local(63));
        let longest = format!("{}@{}", local(254 - 1 - domain.len()), domain);
        assert_eq!(longest.len(), 254);
        assert!(Email::parse(&longest).is_ok());
        assert_eq!(
            Email::parse(&format!("a{longest}")),
            Err(InvalidEmail::TooLong)
        );
        assert_eq!(
            Email::parse(&format!("alice@{}.com", local(64))),
            Err(InvalidEmail::InvalidDomain)
        );
        assert_eq!(
            Email::parse(&"a".repeat(100_000)),
            Err(InvalidEmail::TooLong)
        );
    }

    #[test]
    fn the_reasons_never_quote_the_address() {
        let raw = "secret-name\u{0}@example.com";
        let reason = Email::parse(raw).unwrap_err().to_string();
        assert!(!reason.contains("secret-name"), "{reason}");
    }

    proptest! {
        #[test]
        fn an_accepted_address_parses_to_itself(
            raw in "[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~\"(),:;<>@ \\-\u{e9}\u{430}\u{200b}\u{ff41}]{1,20}@[a-zA-Z0-9.\\-\u{fc}\u{ff45}_]{1,20}"
        ) {
            if let Ok(email) = Email::parse(&raw) {
                let again = Email::parse(email.as_str()).unwrap();
                prop_assert_eq!(&again, &email);
                prop_assert!(email.as_str().rsplit_once('@').unwrap().1.is_ascii());
            }
        }
    }
}
