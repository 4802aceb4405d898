//! Extractors that answer bad input with a problem, never a bare 4xx or 500.
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, OptionalFromRequestParts, Request,
};
use axum::http::header::{AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{ApiContext, ClientIp, ClientRequestId, RequestId};
use crate::app::{Caller, Role, Staff};

/// `axum::Json` with problem+json rejections. Serde's messages can quote
/// the offending value, which may be a password, so only the kind of
/// mistake is reported, and a missing or unknown field by name.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// "missing field `x`" or "unknown field `x`" from serde's message, the
/// only parts of it that cannot quote a value.
fn named_field(text: &str) -> Option<String> {
    ["missing field `", "unknown field `"]
        .iter()
        .find_map(|marker| {
            let start = text.find(marker)?;
            let rest = &text[start..];
            let end = rest[marker.len()..].find('`')? + marker.len() + 1;
            Some(rest[..end].to_owned())
        })
}

pub fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(err) => match named_field(&err.body_text()) {
            Some(field) => ApiError::invalid_body().with_detail(field),
            None => ApiError::invalid_body(),
        },
        JsonRejection::JsonSyntaxError(_) => ApiError::malformed_body(),
        JsonRejection::MissingJsonContentType(_) => ApiError::unsupported_media_type(),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::body_too_large(),
        _ => ApiError::malformed_body(),
    }
}

/// A query string that does not deserialize: 400 `invalid-query`, naming
/// an unknown or missing parameter.
pub fn query_rejection(rejection: QueryRejection) -> ApiError {
    match named_field(&rejection.body_text()) {
        Some(field) => {
            ApiError::invalid_query().with_detail(field.replacen("field", "parameter", 1))
        }
        None => ApiError::invalid_query(),
    }
}

/// Who is asking, from the request ids, the client's address (as the
/// rate limits name it) and the user agent.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        let client_request_id = parts
            .extensions
            .get::<ClientRequestId>()
            .map(|id| id.0.clone());
        let client_ip = parts
            .extensions
            .get::<ClientIp>()
            .map(|ClientIp(ip)| *ip)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(addr)| addr.ip())
            })
            .map_or_else(|| "unknown".into(), |ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect())
            .unwrap_or_default();
        Ok(Self {
            request_id,
            client_request_id,
            client_ip,
            user_agent,
        })
    }
}

/// The token from `Authorization: Bearer <token>`.
pub struct BearerToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <Self as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await?
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// No `Authorization` header is `None`; one that is not a bearer token is
/// still refused.
impl<S: Send + Sync> OptionalFromRequestParts<S> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(None);
        };
        let value = value.to_str().map_err(|_| ApiError::unauthenticated())?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(ApiError::unauthenticated)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthenticated());
        }
        Ok(Some(Self(token.trim().to_owned())))
    }
}

/// A raw body, for handlers that take more than JSON or an empty body.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::body_too_large()
        } else {
            ApiError::malformed_body()
        }
    })
}

/// Parses JSON the way the `Json` extractor answers it.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::invalid_body()
        } else {
            ApiError::malformed_body()
        }
    })
}

/// An auditor; each read is logged with the credential's name, so the
/// auditors' own access leaves a trail. A missing or unknown token is 401,
/// an admin's 403.
pub struct Auditor;

impl FromRequestParts<ApiContext> for Auditor {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let BearerToken(token) =
            <BearerToken as FromRequestParts<ApiContext>>::from_request_parts(parts, ctx).await?;
        let auditor = ctx.app.staff(&token, Role::Auditor)?;
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("(no route)", axum::extract::MatchedPath::as_str);
        tracing::info!(auditor = %auditor.name(), route, "audit read");
        Ok(Self)
    }
}

/// An admin or an auditor, for the operators' reads; each is logged
/// with the credential's name, as the auditors' reads are.
pub struct StaffReader;

impl FromRequestParts<ApiContext> for StaffReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let BearerToken(token) =
            <BearerToken as FromRequestParts<ApiContext>>::from_request_parts(parts, ctx).await?;
        let (staff, _) = ctx.app.staff_reader(&token)?;
        let route = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map_or("(no route)", axum::extract::MatchedPath::as_str);
        tracing::info!(staff = %staff.name(), route, "operator read");
        Ok(Self)
    }
}

/// An admin; an auditor's token is 403.
pub struct Admin(pub Staff);

impl FromRequestParts<ApiContext> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ApiContext,
    ) -> Result<Self, Self::Rejection> {
        let BearerToken(token) =
            <BearerToken as FromRequestParts<ApiContext>>::from_request_parts(parts, ctx).await?;
        Ok(Self(ctx.app.staff(&token, Role::Admin)?))
    }
}
