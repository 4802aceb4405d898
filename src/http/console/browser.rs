//! What the console keeps in the browser: the session and the pending
//! login attempt in cookies, and a CSRF nonce whose keyed tag, bound to the
//! session or login attempt, every form carries.
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use rand::RngCore;
use serde::de::DeserializeOwned;

use super::views::{self, Page};
use crate::app::CsrfScope;
use crate::http::ApiContext;

/// The cookies the console sets; `__Host-` prefixed when they are `Secure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieName {
    Session,
    Login,
    Csrf,
    /// A long-lived random value that makes this browser a known device
    /// of the accounts it signs in to.
    Device,
    /// An operator's sign-in to the operators' console.
    Staff,
}

impl CookieName {
    fn base(self) -> &'static str {
        match self {
            Self::Session => "authledger_session",
            Self::Login => "authledger_login",
            Self::Csrf => "authledger_csrf",
            Self::Device => "authledger_device",
            Self::Staff => "authledger_staff",
        }
    }

    pub fn name(self, secure: bool) -> String {
        if secure {
            format!("__Host-{}", self.base())
        } else {
            self.base().to_owned()
        }
    }
}

/// The console's cookies as a request brought them.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    pub session: Option<String>,
    pub login: Option<String>,
    pub device: Option<String>,
    pub staff: Option<String>,
    csrf_nonce: Option<String>,
}

impl FromRequestParts<ApiContext> for Browser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let find = |wanted: CookieName| -> Option<String> {
            let wanted = wanted.name(ctx.secure_cookies);
            parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, value)| *name == wanted && !value.is_empty())
                .map(|(_, value)| value.to_owned())
        };
        Ok(Self {
            session: find(CookieName::Session),
            login: find(CookieName::Login),
            csrf_nonce: find(CookieName::Csrf).filter(|n| is_nonce(n)),
            device: find(CookieName::Device).filter(|n| is_nonce(n)),
            staff: find(CookieName::Staff),
        })
    }
}

impl Browser {
    /// What this browser's CSRF tags are bound to: a planted nonce cookie
    /// with a tag from the planter's own browser names the planter's
    /// session or attempt, not this one's.
    fn csrf_scope(&self) -> CsrfScope<'_> {
        CsrfScope::held(
            self.session.as_deref(),
            self.staff.as_deref(),
            self.login.as_deref(),
        )
    }
}

fn is_nonce(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The CSRF tag for this browser's forms, and the nonce cookie to set when
/// the browser had none.
pub struct Csrf {
    tag: String,
    new_nonce: Option<String>,
}

impl Csrf {
    pub fn for_browser(ctx: &ApiContext, browser: &Browser) -> Self {
        match &browser.csrf_nonce {
            Some(nonce) => Self {
                tag: ctx.app.csrf_tag(nonce, browser.csrf_scope()),
                new_nonce: None,
            },
            None => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let nonce = URL_SAFE_NO_PAD.encode(bytes);
                Self {
                    tag: ctx.app.csrf_tag(&nonce, browser.csrf_scope()),
                    new_nonce: Some(nonce),
                }
            }
        }
    }

    /// The hidden field every form carries.
    pub fn field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.tag); }
    }

    pub fn set_cookie(&self, ctx: &ApiContext, response: &mut Response) {
        if let Some(nonce) = &self.new_nonce {
            set_cookie(ctx, response, CookieName::Csrf, nonce, None);
        }
    }
}

/// Adds a `Set-Cookie`: HttpOnly, SameSite=Lax, Path=/, and Secure unless
/// the service is reached over plain HTTP on loopback. `max_age` of `None`
/// lasts as long as the browser session.
pub fn set_cookie(
    ctx: &ApiContext,
    response: &mut Response,
    name: CookieName,
    value: &str,
    expires_at: Option<DateTime<Utc>>,
) {
    let max_age = expires_at
        .map(|at| {
            let seconds = (at - ctx.app.now()).num_seconds().max(0);
            format!("; Max-Age={seconds}")
        })
        .unwrap_or_default();
    let secure = if ctx.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Lax{secure}{max_age}",
        name.name(ctx.secure_cookies)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// A redirect to the sign-in page with `notice`, the browser's session,
/// login attempt and CSRF nonce forgotten: whatever just happened ended
/// every session of the account.
pub fn signed_out_to(ctx: &ApiContext, notice: &str) -> Response {
    let mut response = see_other(&format!("/sign-in?notice={notice}"));
    for name in [CookieName::Session, CookieName::Login, CookieName::Csrf] {
        clear_cookie(ctx, &mut response, name);
    }
    response
}

pub fn clear_cookie(ctx: &ApiContext, response: &mut Response, name: CookieName) {
    let secure = if ctx.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax{secure}; Max-Age=0",
        name.name(ctx.secure_cookies)
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

static SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

/// Whether the browser says the form came from a page of another origin:
/// `Sec-Fetch-Site` other than same-origin or a user's own navigation, or
/// an `Origin` naming another origin than the public URL's. A sibling host
/// of the same site can plant cookies on plain HTTP, so `same-site` is
/// foreign too. `Origin: null` names no origin: browsers send it for our
/// own forms, whose pages say `Referrer-Policy: no-referrer`. Either header
/// may be missing (older browsers, privacy settings); the tag still has to
/// match.
fn from_another_origin(parts: &Parts, ctx: &ApiContext) -> bool {
    let fetch_site = parts
        .headers
        .get(&SEC_FETCH_SITE)
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
    let origin = parts.headers.get(ORIGIN).is_some_and(|v| {
        v.as_bytes() != b"null"
            && !v
                .to_str()
                .is_ok_and(|origin| origin.eq_ignore_ascii_case(&ctx.public_origin))
    });
    fetch_site || origin
}

/// A form POST that passed the CSRF check, with its cookies. A missing or
/// wrong token, or a browser that says the form came from another origin,
/// is answered 403 before any command runs.
pub struct Form<T> {
    pub browser: Browser,
    pub value: T,
}

impl<T: DeserializeOwned> FromRequest<ApiContext> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, ctx: &ApiContext) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let Ok(browser) = Browser::from_request_parts(&mut parts, ctx).await;
        let foreign = from_another_origin(&parts, ctx);
        let req = Request::from_parts(parts, body);
        let bytes = match Bytes::from_request(req, ctx).await {
            Ok(bytes) => bytes,
            Err(rejection) => {
                return Err(refusal(
                    rejection.status(),
                    "That form could not be read",
                    "Go back and try again.",
                ))
            }
        };
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let tag = pairs
            .iter()
            .find(|(name, _)| name == "csrf")
            .map(|(_, value)| value.as_str());
        let genuine = match (&browser.csrf_nonce, tag) {
            (Some(nonce), Some(tag)) => ctx.app.csrf_tag_matches(nonce, browser.csrf_scope(), tag),
            _ => false,
        };
        if foreign || !genuine {
            tracing::debug!(foreign, genuine, "console form refused");
            return Err(refusal(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "For your safety, forms work only on the page they came from. Go back, reload the page, and try again.",
            ));
        }
        match serde_urlencoded::from_bytes(&bytes) {
            Ok(value) => Ok(Self { browser, value }),
            Err(_) => Err(refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "That form is incomplete",
                "Go back, fill in every field, and try again.",
            )),
        }
    }
}

/// A form refused before any use case ran. The page has no form, so it
/// needs no CSRF tag.
fn refusal(status: StatusCode, title: &str, text: &str) -> Response {
    let page = Page {
        status,
        ..Page::new(title)
    };
    page.render(&Markup::default(), views::explanation(text))
}

/// A redirect after a POST, or to where the browser belongs.
pub fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, location);
    }
    views::secure_headers(&mut response);
    response
}
