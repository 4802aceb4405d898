//! What each mail says, as plain text and as HTML. The HTML goes through
//! maud, which escapes every value it interpolates.
use authledger_projections::mail::{MailKind, MailMessage};
use maud::{html, DOCTYPE};

/// A mail ready for SMTP.
/// A mail ready to send. No `Debug`: a sign-in mail holds its link.
pub(super) struct Rendered {
    pub subject: &'static str,
    pub text: String,
    pub html: String,
}

/// A paragraph of a mail: sentences, or a link shown as itself.
enum Block {
    Text(String),
    Link(String),
}

const NOT_YOU: &str =
    "If this was not you, sign in and reset your multi-factor authentication from your profile, \
                       change your password, and tell your administrator.";

/// Renders `message`. `link` is the sign-in URL a `SignInLink` mail
/// carries; other mails carry none.
pub(super) fn render(message: &MailMessage, link: Option<&str>) -> anyhow::Result<Rendered> {
    let when = message.at.format("%Y-%m-%d %H:%M UTC");
    let origin = format!(
        "from IP address {} ({})",
        message.client_ip,
        describe_browser(&message.user_agent)
    );
    let (subject, blocks) = match message.kind {
        MailKind::SignInLink => {
            let (Some(reference), Some(url)) = (&message.link, link) else {
                anyhow::bail!("a sign-in link mail without its link");
            };
            let expires = reference.expires_at.format("%H:%M UTC");
            (
                "Your sign-in link",
                vec![
                    Block::Text(format!("Someone asked to sign in to your account at {when}, {origin}.")),
                    Block::Text(format!("Open this link to finish signing in; it works once, until {expires}:")),
                    Block::Link(url.to_owned()),
                    Block::Text("If you did not try to sign in, ignore this mail and change your password: someone knows it.".into()),
                ],
            )
        }
        MailKind::AuthenticatorEnrolled => (
            "A new authenticator was added to your account",
            vec![
                Block::Text(format!("An authenticator app was enrolled for your account at {when}, {origin}.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::MfaReset => (
            "Your multi-factor authentication was reset",
            vec![
                Block::Text(format!("Multi-factor authentication was reset for your account at {when}, {origin}. Every session was signed out; the next sign-in sets up a new authenticator.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::RecoveryCodeUsed => (
            "Your recovery code was used",
            vec![
                Block::Text(format!("Your recovery code was used to sign in at {when}, {origin}. A new code was shown at that sign-in; the old one no longer works.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::SignedInWithEmailLink => (
            "You signed in with an email link",
            vec![
                Block::Text(format!("Your account was signed in with an email link at {when}, {origin}.")),
                Block::Text(NOT_YOU.into()),
            ],
        ),
        MailKind::SecondFactorFailed => (
            "A sign-in to your account failed its second step",
            vec![
                Block::Text(format!("Your password was entered correctly at {when}, {origin}, but the second step of sign-in failed.")),
                Block::Text("If this was not you, someone knows your password: change it now.".into()),
            ],
        ),
        MailKind::AccountLocked => (
            "Your account was locked",
            vec![
                Block::Text(format!("Your account was locked at {when} after too many failed sign-ins, the last {origin}.")),
                Block::Text("An administrator must unlock it. If these attempts were not yours, change your password once it is unlocked.".into()),
            ],
        ),
    };
    Ok(Rendered {
        subject,
        text: plain_text(&blocks),
        html: html_of(&blocks),
    })
}

fn plain_text(blocks: &[Block]) -> String {
    let paragraphs: Vec<&str> = blocks
        .iter()
        .map(|block| match block {
            Block::Text(text) | Block::Link(text) => text.as_str(),
        })
        .collect();
    paragraphs.join("\n\n") + "\n"
}

fn html_of(blocks: &[Block]) -> String {
    html! {
        (DOCTYPE)
        html {
            body {
                @for block in blocks {
                    @match block {
                        Block::Text(text) => p { (text) },
                        Block::Link(url) => p { a href=(url) { (url) } },
                    }
                }
            }
        }
    }
    .into_string()
}

/// The user agent as a mail may show it. It is the client's own text, so an
/// attacker's words would read as ours: only plain characters, no URLs,
/// short, and quoted. A dot stays only inside a version number: mail
/// clients turn a bare `evil.example/reset` into a link.
fn describe_browser(user_agent: &str) -> String {
    let kept: Vec<char> = user_agent
        .replace("://", " ")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || " ./;()_-,".contains(*c))
        .take(80)
        .collect();
    let digit_at = |i: Option<usize>| {
        i.and_then(|i| kept.get(i))
            .is_some_and(char::is_ascii_digit)
    };
    let plain: String = kept
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let in_version = digit_at(i.checked_sub(1)) && digit_at(Some(i + 1));
            if c == '.' && !in_version {
                ' '
            } else {
                c
            }
        })
        .collect();
    let plain = plain.trim();
    if plain.is_empty() {
        "an unknown browser".to_owned()
    } else {
        format!("browser \"{plain}\"")
    }
}

#[cfg(test)]
mod tests {
    use authledger_projections::mail::LinkReference;
    use chrono::{DateTime, TimeZone, Utc};
    use uuid::Uuid;

    use super::*;

    const LINK: &str = "https://auth.example.com/v1/login/email-link?token=al_link_0123abcd";

    /// 2026-03-01 12:00 UTC.
    fn noon() -> DateTime<Utc> {
        Utc.timestamp_opt(1_772_366_400, 0).unwrap()
    }

    fn message(kind: MailKind, user_agent: &str) -> MailMessage {
        MailMessage {
            message_id: "6f1c0f5e-1b57-4e35-9d39-3b2f0a0e6a11/7".into(),
            kind,
            user_id: Uuid::from_u128(7),
            to: "ada@example.com".into(),
            at: noon(),
            client_ip: "203.0.113.9".into(),
            user_agent: user_agent.into(),
            link: (kind == MailKind::SignInLink).then(|| LinkReference {
                reference: "ab".repeat(16),
                expires_at: noon() + chrono::Duration::minutes(15),
            }),
        }
    }

    #[test]
    fn a_user_agent_cannot_put_a_link_or_markup_into_a_mail() {
        let shown =
            describe_browser("Mozilla/5.0 <b>to cancel open https://evil.example/x?y=1</b>");
        assert!(
            !shown.contains("://") && !shown.contains('<') && !shown.contains('?'),
            "{shown}"
        );
        assert!(shown.starts_with("browser \"Mozilla/5.0"));
        assert_eq!(describe_browser(""), "an unknown browser");
        assert!(describe_browser(&"a".repeat(500)).len() < 100);
    }

    #[test]
    fn a_user_agent_cannot_name_a_domain_but_keeps_its_version_numbers() {
        let shown = describe_browser(
            "Chrome/120.0.6099.71 (x86_64) see evil.example/reset or www.evil.com.",
        );
        assert_eq!(
            shown,
            "browser \"Chrome/120.0.6099.71 (x86_64) see evil example/reset or www evil com\""
        );
        assert_eq!(describe_browser("curl/8.5.0"), "browser \"curl/8.5.0\"");
        assert_eq!(describe_browser("...."), "an unknown browser");
    }

    #[test]
    fn a_hostile_user_agent_adds_no_markup_and_no_link_to_either_part() {
        let hostile = "Mozilla/5.0\"><a href=\"https://evil.example/reset\">Reset your password</a><script>alert(1)</script>";
        for kind in [MailKind::SignInLink, MailKind::MfaReset] {
            let mail = render(&message(kind, hostile), Some(LINK)).unwrap();
            let anchors = mail.html.matches("<a ").count();
            assert_eq!(
                anchors,
                usize::from(kind == MailKind::SignInLink),
                "{}",
                mail.html
            );
            assert!(!mail.html.contains("<script"), "{}", mail.html);
            assert!(!mail.html.contains("evil.example/reset\""), "{}", mail.html);
            assert!(!mail.text.contains("https://evil"), "{}", mail.text);
            assert!(!mail.html.contains("https://evil"), "{}", mail.html);
        }
    }

    #[test]
    fn the_html_part_escapes_what_it_shows() {
        let mut notice = message(MailKind::AccountLocked, "curl/8.5");
        notice.client_ip = "<b>203.0.113.9</b>".into();
        let mail = render(&notice, None).unwrap();
        assert!(
            mail.html.contains("&lt;b&gt;203.0.113.9&lt;/b&gt;"),
            "{}",
            mail.html
        );
        assert!(!mail.html.contains("<b>"), "{}", mail.html);
    }

    #[test]
    fn the_link_mail_carries_its_link_in_both_parts() {
        let mail = render(
            &message(MailKind::SignInLink, "Mozilla/5.0 (X11; Linux x86_64)"),
            Some(LINK),
        )
        .unwrap();
        assert_eq!(mail.subject, "Your sign-in link");
        assert_eq!(
            mail.text,
            "Someone asked to sign in to your account at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 (browser \"Mozilla/5.0 (X11; Linux x86_64)\").\n\n\
             Open this link to finish signing in; it works once, until 12:15 UTC:\n\n\
             https://auth.example.com/v1/login/email-link?token=al_link_0123abcd\n\n\
             If you did not try to sign in, ignore this mail and change your password: someone knows it.\n"
        );
        assert!(
            mail.html.contains(
                "<p><a href=\"https://auth.example.com/v1/login/email-link?token=al_link_0123abcd\">\
                 https://auth.example.com/v1/login/email-link?token=al_link_0123abcd</a></p>"
            ),
            "{}",
            mail.html
        );
    }

    #[test]
    fn a_link_mail_without_its_link_is_refused() {
        assert!(render(&message(MailKind::SignInLink, ""), None).is_err());
    }

    #[test]
    fn a_notice_says_when_and_from_where_and_what_to_do() {
        let mail = render(
            &message(
                MailKind::SecondFactorFailed,
                "Mozilla/5.0 (X11; Linux x86_64)",
            ),
            None,
        )
        .unwrap();
        assert_eq!(
            mail.text,
            "Your password was entered correctly at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 \
             (browser \"Mozilla/5.0 (X11; Linux x86_64)\"), but the second step of sign-in failed.\n\n\
             If this was not you, someone knows your password: change it now.\n"
        );
        assert_eq!(
            mail.html,
            "<!DOCTYPE html><html><body>\
             <p>Your password was entered correctly at 2026-03-01 12:00 UTC, from IP address 203.0.113.9 \
             (browser &quot;Mozilla/5.0 (X11; Linux x86_64)&quot;), but the second step of sign-in failed.</p>\
             <p>If this was not you, someone knows your password: change it now.</p>\
             </body></html>"
        );
    }

    #[test]
    fn every_kind_keeps_its_subject_and_only_the_link_mail_has_a_link() {
        let expected = [
            (MailKind::SignInLink, "Your sign-in link"),
            (
                MailKind::AuthenticatorEnrolled,
                "A new authenticator was added to your account",
            ),
            (
                MailKind::MfaReset,
                "Your multi-factor authentication was reset",
            ),
            (MailKind::RecoveryCodeUsed, "Your recovery code was used"),
            (
                MailKind::SignedInWithEmailLink,
                "You signed in with an email link",
            ),
            (
                MailKind::SecondFactorFailed,
                "A sign-in to your account failed its second step",
            ),
            (MailKind::AccountLocked, "Your account was locked"),
        ];
        for (kind, subject) in expected {
            let mail = render(&message(kind, "curl/8.5"), Some(LINK)).unwrap();
            assert_eq!(mail.subject, subject);
            assert_eq!(
                mail.text.contains("al_link_"),
                kind == MailKind::SignInLink,
                "{subject}"
            );
            assert_eq!(
                mail.html.contains("al_link_"),
                kind == MailKind::SignInLink,
                "{subject}"
            );
        }
    }
}
