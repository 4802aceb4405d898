//! The verifiable log over HTTP: the public key, signed tree heads, and
//! inclusion and consistency proofs in RFC 9162's shape.
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::query;
use super::extract::Auditor;
use super::{ApiContext, ApiError, Problem, Result, ServerProblems};
use crate::app::AppError;
use crate::transparency::TreeHead;

fn hex(hash: &[u8; 32]) -> String {
    authledger_projections::tree::hex(hash)
}

#[derive(Serialize, ToSchema)]
pub struct PublicKeyView {
    /// The id of the server key it is derived from.
    key_id: String,
    algorithm: &'static str,
    /// Base64 of the 32-byte Ed25519 public key.
    public_key: String,
    /// Whether new tree heads are signed with it; the others signed heads
    /// before a key rotation.
    current: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PublicKeys {
    keys: Vec<PublicKeyView>,
}

/// The keys tree heads are signed with, the current first. Public: anyone
/// may check a head with them.
#[utoipa::path(get, path = "/v1/audit/public-key", tag = "audit",
    responses(
        (status = 200, description = "The Ed25519 public keys", body = PublicKeys),
        ServerProblems,
    ))]
pub async fn public_key(State(ctx): State<ApiContext>) -> axum::Json<PublicKeys> {
    axum::Json(PublicKeys {
        keys: ctx
            .app
            .tree_public_keys()
            .into_iter()
            .map(|key| PublicKeyView {
                key_id: key.key_id,
                algorithm: "ed25519",
                public_key: key.public_key,
                current: key.current,
            })
            .collect(),
    })
}

/// The newest signed tree head.
#[utoipa::path(get, path = "/v1/audit/checkpoints/latest", tag = "audit",
    security(("auditor" = [])),
    responses(
        (status = 200, description = "The newest signed head", body = TreeHead),
        (status = 401, description = "`unauthenticated`: no auditor credential", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: an admin's credential", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-tree-head`: none is signed yet", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn latest_checkpoint(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
) -> Result<axum::Json<TreeHead>> {
    Ok(axum::Json(ctx.app.latest_tree_head().await?))
}

/// The head signed at exactly this tree size.
#[utoipa::path(get, path = "/v1/audit/checkpoints/{size}", tag = "audit",
    params(("size" = u64, Path, description = "Tree size")),
    security(("auditor" = [])),
    responses(
        (status = 200, description = "The signed head", body = TreeHead),
        (status = 401, description = "`unauthenticated`: no auditor credential", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: an admin's credential", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-tree-head`: none is signed at this size", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn checkpoint(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
    size: std::result::Result<Path<u64>, PathRejection>,
) -> Result<axum::Json<TreeHead>> {
    let Path(size) = size.map_err(|_| ApiError::no_tree_head())?;
    Ok(axum::Json(ctx.app.tree_head_at(size).await?))
}

/// Signs a head now, over every event committed before the request
/// (heads are also signed every `AUTHLEDGER_TREE_HEAD_SECS` while events
/// arrive). Answers the existing head when the log has not grown.
#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit",
    security(("auditor" = [])),
    responses(
        (status = 200, description = "The newest signed head, covering every event committed before the request", body = TreeHead),
        (status = 401, description = "`unauthenticated`: no auditor credential", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: an admin's credential", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no-tree-head`: the log is empty", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn sign_checkpoint(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
) -> Result<axum::Json<TreeHead>> {
    Ok(axum::Json(ctx.app.sign_tree_head().await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    /// The tree size to prove inclusion in (default: the newest signed
    /// head's).
    size: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct InclusionProofView {
    /// The event's global position, as the history shows it.
    position: i64,
    /// Its leaf's index in the tree (from 0).
    leaf_index: u64,
    tree_size: u64,
    /// SHA-256(0x00 || leaf data), hex.
    leaf_hash: String,
    /// RFC 9162's inclusion path, nearest the leaf first, hex.
    inclusion_path: Vec<String>,
}

/// The inclusion proof of the event at a global position in the tree of
/// a given size (RFC 9162 2.1.3).
#[utoipa::path(get, path = "/v1/audit/events/{position}/proof", tag = "audit",
    params(("position" = i64, Path, description = "The event's global position"), ProofQuery),
    security(("auditor" = [])),
    responses(
        (status = 200, description = "The proof", body = InclusionProofView),
        (status = 400, description = "`invalid-query`: an unknown parameter, or a size that does not hold the event", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`: no auditor credential", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: an admin's credential", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-event`: no event at this position is in the tree yet; `no-tree-head`: no size given and none signed", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`tree-size-unavailable`: the tree is not that large yet", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn inclusion(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
    position: std::result::Result<Path<i64>, PathRejection>,
    params: std::result::Result<Query<ProofQuery>, QueryRejection>,
) -> Result<axum::Json<InclusionProofView>> {
    let params = query(params)?;
    let Path(position) = position.map_err(|_| ApiError::from(AppError::UnknownEvent))?;
    let proof = ctx.app.inclusion_proof(position, params.size).await?;
    Ok(axum::Json(InclusionProofView {
        position: proof.position,
        leaf_index: proof.leaf_index,
        tree_size: proof.tree_size,
        leaf_hash: hex(&proof.leaf_hash),
        inclusion_path: proof.audit_path.iter().map(hex).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    /// The smaller tree size.
    from: u64,
    /// The larger tree size.
    to: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ConsistencyProofView {
    first: u64,
    second: u64,
    /// RFC 9162's consistency path, hex.
    consistency_path: Vec<String>,
}

/// The consistency proof between two tree sizes (RFC 9162 2.1.4): that the
/// smaller tree is a prefix of the larger.
#[utoipa::path(get, path = "/v1/audit/consistency", tag = "audit",
    params(ConsistencyQuery),
    security(("auditor" = [])),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProofView),
        (status = 400, description = "`invalid-query`: a missing or unknown parameter, or not 1 <= from <= to", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`unauthenticated`: no auditor credential", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: an admin's credential", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`tree-size-unavailable`: the tree is not that large yet", body = Problem, content_type = "application/problem+json"),
        ServerProblems,
    ))]
pub async fn consistency(
    State(ctx): State<ApiContext>,
    _auditor: Auditor,
    params: std::result::Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<axum::Json<ConsistencyProofView>> {
    let params = query(params)?;
    let proof = ctx.app.consistency_proof(params.from, params.to).await?;
    Ok(axum::Json(ConsistencyProofView {
        first: proof.first,
        second: proof.second,
        consistency_path: proof.path.iter().map(hex).collect(),
    }))
}
