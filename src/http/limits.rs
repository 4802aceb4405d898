//! Who the client is, and how many requests of each route class it may
//! send. Counted in memory by this process alone.
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use authledger_aggregates::Clock;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{FORWARDED, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::Modify;

use super::{console, ApiContext, ApiError};
use crate::config::{ForwardedHeader, LimitsArgs, RouteClass};

/// The client a request comes from, as the trusted proxies name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

type Limiter = RateLimiter<IpAddr, DashMapStateStore<IpAddr>, ServerClock, NoOpMiddleware<Nanos>>;

/// One token bucket per client and route class.
pub struct RateLimits {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
    clock: ServerClock,
    /// Indexed by `RouteClass`; `None` where the class is unlimited.
    limiters: [Option<Limiter>; RouteClass::ALL.len()],
}

impl RateLimits {
    pub fn new(config: &LimitsArgs, clock: Arc<dyn Clock>) -> Self {
        let clock = ServerClock(clock);
        let limiters = RouteClass::ALL.map(|class| {
            config.rate(class).map(|rate| {
                let quota = Quota::per_minute(rate.per_minute).allow_burst(rate.burst);
                RateLimiter::dashmap_with_clock(quota, clock.clone())
            })
        });
        Self {
            trusted: config.trusted_proxies.iter().map(|proxy| proxy.0).collect(),
            header: config.forwarded_header,
            clock,
            limiters,
        }
    }

    /// The client behind `peer`: the peer itself, unless it is a trusted
    /// proxy; then the right-most address in the forwarding header that is
    /// not a trusted proxy's. Every address left of it was written by
    /// whoever the proxies were talking to, so any of them can be forged.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => {
                forwarded_hops(headers, &X_FORWARDED_FOR, parse_address)
            }
            ForwardedHeader::Forwarded => forwarded_hops(headers, &FORWARDED, forwarded_for),
        };
        for hop in hops.into_iter().rev() {
            // A hop that is no address (garbage, `unknown`, an obfuscated
            // name) ends the walk at the last proxy that vouched for it.
            let Some(hop) = hop else {
                return client;
            };
            client = hop.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        client
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// Takes a token of `class` for `client`, or says how long until one
    /// is there.
    pub fn check(&self, class: RouteClass, client: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiters[class as usize] else {
            return Ok(());
        };
        limiter
            .check_key(&bucket_key(client))
            .map_err(|not_until| not_until.wait_time_from(governor::clock::Clock::now(&self.clock)))
    }

    /// Drops the buckets of clients that have been quiet long enough to be
    /// full again, so the table holds recent clients only.
    pub fn forget_idle_clients(&self) {
        for limiter in self.limiters.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// IPv6 hosts get a /64 each, and can pick any address in it: they are
/// counted by that network, as IPv4 hosts are by their address.
fn bucket_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !(u128::MAX >> 64);
            IpAddr::V6(Ipv6Addr::from(network))
        }
    }
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The addresses in every `name` header, in order, parsed by `hop`. A
/// header that is not text counts as one hop that is no address.
fn forwarded_hops(
    headers: &HeaderMap,
    name: &HeaderName,
    hop: impl Fn(&str) -> Option<IpAddr>,
) -> Vec<Option<IpAddr>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| match value.to_str() {
            Ok(text) => text.split(',').map(&hop).collect(),
            Err(_) => vec![None],
        })
        .collect()
}

/// An address as proxies write it: bare, in brackets, or with a port.
fn parse_address(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

/// The `for=` of one RFC 7239 element: `for=192.0.2.1`,
/// `for="[2001:db8::1]:4711"`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_address(value.trim().trim_matches('"'))
    })
}

/// The rate limits' time, read from the clock the domain decides with, so
/// tests move it instead of sleeping.
#[derive(Clone)]
struct ServerClock(Arc<dyn Clock>);

impl governor::clock::Clock for ServerClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let nanos = self.0.now().timestamp_nanos_opt().unwrap_or(0);
        Nanos::from(u64::try_from(nanos).unwrap_or(0))
    }
}

/// The routes that share a limit; `None` for those that have none (pages
/// that only show a form, health, metrics, the stylesheet).
pub fn route_class(method: &Method, path: &str) -> Option<RouteClass> {
    use RouteClass as C;
    // An operator credential typed into the console is guessed like a
    // password; everything else an operator does reads or writes like
    // the staff API.
    if method == Method::POST && path == "/admin/sign-in" {
        return Some(C::Password);
    }
    if path.starts_with("/v1/audit/")
        || path.starts_with("/v1/admin/")
        || path == "/admin"
        || path.starts_with("/admin/")
    {
        return Some(C::Staff);
    }
    if path == "/v1/me" || path.starts_with("/v1/me/") || path == "/v1/logout" {
        return Some(C::Session);
    }
    if method != Method::POST {
        return None;
    }
    match path {
        "/v1/login/password"
        | "/v1/users"
        | "/v1/users/verify"
        | "/v1/password/forgot"
        | "/v1/password/reset"
        | "/sign-in"
        | "/register"
        | "/verify-email"
        | "/forgot-password"
        | "/reset-password" => Some(C::Password),
        "/v1/mfa-reset/deny" | "/mfa-reset/deny" | "/v1/report" | "/report" => {
            Some(C::SecondFactor)
        }
        "/sign-out" => Some(C::Session),
        _ if path.starts_with("/v1/login/") || path.starts_with("/sign-in/") => {
            Some(C::SecondFactor)
        }
        _ if path.starts_with("/profile/") => Some(C::Session),
        _ => None,
    }
}

/// Whether a path is the JSON API's, answered with problem documents, or
/// the console's, answered with pages.
pub fn is_api(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// Names the client of every request and holds each to its class's rate.
pub async fn limit(State(ctx): State<ApiContext>, mut req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| ctx.limits.client(peer.ip(), req.headers()));
    let Some(client) = client else {
        return next.run(req).await;
    };
    req.extensions_mut().insert(ClientIp(client));
    let Some(class) = route_class(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    if let Err(wait) = ctx.limits.check(class, client) {
        ctx.app.load_metrics().count_rate_limited(class);
        // Whole seconds, rounded up: a client that waits as told is let in.
        let seconds = i64::try_from(wait.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1);
        return if is_api(req.uri().path()) {
            ApiError::rate_limited(seconds).into_response()
        } else {
            console::rate_limited_page(seconds)
        };
    }
    let response = next.run(req).await;
    if shed(&response) {
        ctx.app.load_metrics().count_shed(class);
    }
    response
}

/// A 503 that says when to come back is load shed: a dependency that is
/// down (the other 503) cannot say.
fn shed(response: &Response) -> bool {
    response.status() == StatusCode::SERVICE_UNAVAILABLE
        && response.headers().contains_key(RETRY_AFTER)
}

/// Documents `429 rate-limited` on every route that has a class, from the
/// same `route_class` the middleware uses.
pub struct RateLimitedResponses;

impl Modify for RateLimitedResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        const LIMITED: &str =
            "`rate-limited`: too many requests from this client; `Retry-After` says when to try again";
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                (Method::GET, item.get.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
            ] {
                let Some(operation) = operation else {
                    continue;
                };
                if route_class(&method, path).is_none() {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                match responses.get_mut("429") {
                    Some(RefOr::T(throttled)) => {
                        throttled.description = format!("{}; {LIMITED}", throttled.description);
                    }
                    _ => {
                        let problem = Content::new(Some(Ref::from_schema_name("Problem")));
                        let limited = ResponseBuilder::new()
                            .description(LIMITED)
                            .content("application/problem+json", problem)
                            .build();
                        responses.insert("429".to_owned(), RefOr::T(limited));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::HeaderValue;
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;
    use crate::config::{Config, TrustedProxy};

    /// A clock that stands still until moved.
    struct StoppedClock(Mutex<DateTime<Utc>>);

    impl StoppedClock {
        fn advance(&self, by: chrono::Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for StoppedClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn limits(adjust: impl FnOnce(&mut LimitsArgs)) -> (RateLimits, Arc<StoppedClock>) {
        let mut config = Config::defaults().unwrap().limits;
        adjust(&mut config);
        let clock = Arc::new(StoppedClock(Mutex::new(
            Utc.timestamp_opt(1_772_366_400, 0).unwrap(),
        )));
        (RateLimits::new(&config, clock.clone()), clock)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn behind_proxies(header: ForwardedHeader) -> RateLimits {
        limits(|c| {
            c.trusted_proxies = vec![
                "10.0.0.0/8".parse::<TrustedProxy>().unwrap(),
                "2001:db8:ffff::1".parse().unwrap(),
            ];
            c.forwarded_header = header;
        })
        .0
    }

    #[test]
    fn a_burst_is_let_through_then_the_client_waits_for_the_next_token() {
        let (limits, clock) = limits(|c| {
            c.rate_password_per_minute = 6;
            c.rate_password_burst = 2;
        });
        let client = ip("192.0.2.1");
        assert_eq!(limits.check(RouteClass::Password, client), Ok(()));
        assert_eq!(limits.check(RouteClass::Password, client), Ok(()));
        assert_eq!(
            limits.check(RouteClass::Password, client),
            Err(Duration::from_secs(10))
        );
        clock.advance(chrono::Duration::seconds(4));
        assert_eq!(
            limits.check(RouteClass::Password, client),
            Err(Duration::from_secs(6))
        );
        clock.advance(chrono::Duration::seconds(6));
        assert_eq!(limits.check(RouteClass::Password, client), Ok(()));
        assert!(limits.check(RouteClass::Password, client).is_err());
    }

    #[test]
    fn clients_and_classes_have_buckets_of_their_own() {
        let (limits, _) = limits(|c| {
            c.rate_password_per_minute = 1;
            c.rate_password_burst = 1;
        });
        assert_eq!(limits.check(RouteClass::Password, ip("192.0.2.1")), Ok(()));
        assert!(limits.check(RouteClass::Password, ip("192.0.2.1")).is_err());
        assert_eq!(limits.check(RouteClass::Password, ip("192.0.2.2")), Ok(()));
        assert_eq!(
            limits.check(RouteClass::SecondFactor, ip("192.0.2.1")),
            Ok(())
        );
    }

    #[test]
    fn addresses_in_one_ipv6_64_share_a_bucket() {
        let (limits, _) = limits(|c| {
            c.rate_password_per_minute = 1;
            c.rate_password_burst = 1;
        });
        assert_eq!(
            limits.check(RouteClass::Password, ip("2001:db8:1:2::1")),
            Ok(())
        );
        assert!(limits
            .check(RouteClass::Password, ip("2001:db8:1:2:ffff::9"))
            .is_err());
        assert_eq!(
            limits.check(RouteClass::Password, ip("2001:db8:1:3::1")),
            Ok(())
        );
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let (limits, _) = limits(|c| {
            c.rate_staff_per_minute = 0;
        });
        for _ in 0..1000 {
            assert_eq!(limits.check(RouteClass::Staff, ip("192.0.2.1")), Ok(()));
        }
    }

    #[test]
    fn without_trusted_proxies_the_client_is_the_peer_whatever_it_forwards() {
        let (limits, _) = limits(|_| {});
        let forged = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("forwarded", "for=198.51.100.8"),
        ]);
        assert_eq!(limits.client(ip("10.1.2.3"), &forged), ip("10.1.2.3"));
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_right_most_untrusted_hop() {
        let limits = behind_proxies(ForwardedHeader::XForwardedFor);
        let forwarded = headers(&[
            ("x-forwarded-for", "198.51.100.66, 203.0.113.9"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(
            limits.client(ip("10.0.0.1"), &forwarded),
            ip("203.0.113.9"),
            "the left-most address is whatever the client wrote"
        );
        // A peer that is no trusted proxy is the client, whatever it says.
        assert_eq!(
            limits.client(ip("203.0.113.50"), &forwarded),
            ip("203.0.113.50")
        );
        // Only proxies in the chain: the farthest of them.
        let inside = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(limits.client(ip("10.0.0.1"), &inside), ip("10.0.0.3"));
        // No header at all: the proxy itself.
        assert_eq!(limits.client(ip("10.0.0.1"), &headers(&[])), ip("10.0.0.1"));
    }

    #[test]
    fn a_hop_that_is_no_address_ends_the_walk_at_the_proxy_that_wrote_it() {
        let limits = behind_proxies(ForwardedHeader::XForwardedFor);
        let garbled = headers(&[("x-forwarded-for", "203.0.113.9, not-an-ip, 10.0.0.2")]);
        assert_eq!(limits.client(ip("10.0.0.1"), &garbled), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_for_is_read_in_its_rfc_7239_forms() {
        let limits = behind_proxies(ForwardedHeader::Forwarded);
        let forwarded = headers(&[(
            "forwarded",
            "for=198.51.100.66;proto=https, For=\"[2001:db8:cafe::17]:4711\";by=10.0.0.2",
        )]);
        assert_eq!(
            limits.client(ip("2001:db8:ffff::1"), &forwarded),
            ip("2001:db8:cafe::17")
        );
        // The header not configured is ignored, even from a trusted proxy.
        let other = headers(&[("x-forwarded-for", "198.51.100.66")]);
        assert_eq!(limits.client(ip("10.0.0.1"), &other), ip("10.0.0.1"));
    }

    #[test]
    fn a_mapped_ipv4_peer_is_its_ipv4_address() {
        let limits = behind_proxies(ForwardedHeader::XForwardedFor);
        let forwarded = headers(&[("x-forwarded-for", "[::ffff:203.0.113.9]:1234")]);
        assert_eq!(
            limits.client(ip("::ffff:10.0.0.1"), &forwarded),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn each_route_is_in_the_class_its_cost_and_risk_put_it() {
        use RouteClass as C;
        let post = Method::POST;
        let get = Method::GET;
        for (method, path, class) in [
            (&post, "/v1/login/password", Some(C::Password)),
            (&post, "/v1/users", Some(C::Password)),
            (&post, "/v1/users/verify", Some(C::Password)),
            (&post, "/v1/password/forgot", Some(C::Password)),
            (&post, "/v1/password/reset", Some(C::Password)),
            (&post, "/sign-in", Some(C::Password)),
            (&post, "/register", Some(C::Password)),
            (&post, "/verify-email", Some(C::Password)),
            (&post, "/forgot-password", Some(C::Password)),
            (&post, "/reset-password", Some(C::Password)),
            (&post, "/v1/login/totp", Some(C::SecondFactor)),
            (&post, "/v1/login/enrollment/confirm", Some(C::SecondFactor)),
            (&post, "/v1/login/recovery-code", Some(C::SecondFactor)),
            (&post, "/v1/login/email-link/redeem", Some(C::SecondFactor)),
            (&post, "/v1/mfa-reset/deny", Some(C::SecondFactor)),
            (&post, "/sign-in/code", Some(C::SecondFactor)),
            (&post, "/sign-in/enroll/new", Some(C::SecondFactor)),
            (&post, "/sign-in/email-link", Some(C::SecondFactor)),
            (&post, "/mfa-reset/deny", Some(C::SecondFactor)),
            (&post, "/v1/report", Some(C::SecondFactor)),
            (&post, "/report", Some(C::SecondFactor)),
            (&get, "/v1/report", None),
            (&post, "/v1/me/activity/3/report", Some(C::Session)),
            (&get, "/v1/me", Some(C::Session)),
            (&post, "/v1/me/password", Some(C::Session)),
            (&post, "/v1/logout", Some(C::Session)),
            (&post, "/profile/reset-mfa", Some(C::Session)),
            (&post, "/sign-out", Some(C::Session)),
            (&get, "/v1/audit/events", Some(C::Staff)),
            (&post, "/v1/admin/users/x/unlock", Some(C::Staff)),
            (&get, "/v1/admin/users", Some(C::Staff)),
            (&get, "/admin", Some(C::Staff)),
            (&post, "/admin/users/x/suspend", Some(C::Staff)),
            (&post, "/admin/sign-in", Some(C::Password)),
            (&get, "/v1/me/sessions", Some(C::Session)),
            // A relying app asks from one address for all its users, with a
            // credential too long to guess.
            (&post, "/v1/introspect", None),
            (&get, "/sign-in", None),
            (&get, "/v1/users/verify", None),
            (&get, "/v1/login/email-link", None),
            (&get, "/healthz", None),
            (&get, "/metrics", None),
            (&post, "/v1/unknown", None),
        ] {
            assert_eq!(route_class(method, path), class, "{method} {path}");
        }
    }
}
