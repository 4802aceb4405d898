//! What lets anyone check the log from outside: the tree heads' public
//! keys, the signed heads, inclusion and consistency proofs, and signed
//! bundles of events for offline verification.
use authledger_projections::merkle::{self, Hash};
use authledger_projections::tree::{self, logged_event, LOGGED_COLUMNS};
use authledger_projections::Projector;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use sqlx::Row;
use uuid::Uuid;

use super::{App, AppError, AppResult};
use crate::transparency::{self, encode_public_key, ProvenEvent, TreeHead};

/// A key tree heads are signed with.
#[derive(Debug, Clone)]
pub struct PublicKey {
    pub key_id: String,
    /// Base64 of the Ed25519 public key's 32 bytes.
    pub public_key: String,
    /// Whether new heads are signed with it.
    pub current: bool,
}

/// Leaf `leaf_index`'s audit path in the tree of `tree_size` leaves.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub position: i64,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    pub audit_path: Vec<Hash>,
}

/// The proof that the tree of `first` leaves is a prefix of the tree of
/// `second`.
#[derive(Debug, Clone)]
pub struct ConsistencyProof {
    pub first: u64,
    pub second: u64,
    pub path: Vec<Hash>,
}

/// Which events a signed bundle holds.
#[derive(Debug, Clone)]
pub enum BundleScope {
    All,
    User(String),
    Period {
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    },
}

const BUNDLE_PAGE: i64 = 1000;

/// The longest a head made on demand waits for the tree to reach the log.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl App {
    /// Every key of the ring's public tree-head key, the current first.
    pub fn tree_public_keys(&self) -> Vec<PublicKey> {
        self.keyring
            .tree_public_keys()
            .into_iter()
            .enumerate()
            .map(|(i, (id, key))| PublicKey {
                key_id: id.to_owned(),
                public_key: encode_public_key(&key),
                current: i == 0,
            })
            .collect()
    }

    /// The newest signed tree head.
    pub async fn latest_tree_head(&self) -> AppResult<TreeHead> {
        transparency::latest_head(&self.pool)
            .await
            .map_err(store)?
            .ok_or(AppError::NoTreeHead)
    }

    /// The head signed at `size`.
    pub async fn tree_head_at(&self, size: u64) -> AppResult<TreeHead> {
        transparency::head_at(&self.pool, size)
            .await
            .map_err(store)?
            .ok_or(AppError::NoTreeHead)
    }

    /// Brings the tree up to the log, then signs it if it grew: a head that
    /// covers every event committed before the call.
    pub async fn sign_tree_head(&self) -> AppResult<TreeHead> {
        let tree = Projector::new(
            self.pool.clone(),
            crate::integrity::merkle_tree(self.keyring.clone()),
        )
        .with_batch_size(2000);
        // The tree takes events in the gap-free order only, below every
        // open transaction of the cluster: a moment's wait lets the short
        // ones end, so the head covers what was committed before the call.
        let waited = std::time::Instant::now();
        loop {
            tree.catch_up().await.map_err(|error| {
                if error.downcast_ref::<tree::Forged>().is_some() {
                    AppError::IntegrityFailure
                } else {
                    AppError::Internal(error)
                }
            })?;
            let behind: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events e, projection_checkpoints c
                                 WHERE c.name = $1
                                   AND (e.transaction_id, e.position) > (c.transaction_id, c.position))",
            )
            .bind(tree::NAME)
            .fetch_one(&self.pool)
            .await
            .map_err(store)?;
            if !behind || waited.elapsed() > CATCH_UP_WAIT {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        transparency::sign_head(&self.pool, &self.keyring, self.now(), &[])
            .await
            .map_err(AppError::Internal)?
            .ok_or(AppError::NoTreeHead)
    }

    async fn tree_size(&self) -> AppResult<u64> {
        let mut conn = self.pool.acquire().await.map_err(store)?;
        tree::size(&mut conn).await.map_err(store)
    }

    /// The proof that the event at global `position` is in the tree of
    /// `size` leaves (default: the newest signed head's).
    pub async fn inclusion_proof(
        &self,
        position: i64,
        size: Option<u64>,
    ) -> AppResult<InclusionProof> {
        let leaf_index = tree::leaf_index(&self.pool, position)
            .await
            .map_err(store)?
            .ok_or(AppError::UnknownEvent)?;
        let tree_size = match size {
            Some(size) => size,
            None => self.latest_tree_head().await?.tree_size,
        };
        if leaf_index >= tree_size {
            return Err(AppError::InvalidQuery(
                "the event is not in a tree of this size: ask for a larger size",
            ));
        }
        if tree_size > self.tree_size().await? {
            return Err(AppError::TreeSizeUnavailable);
        }
        let mut conn = self.pool.acquire().await.map_err(store)?;
        let (leaf, path) = tree::with_nodes(&mut conn, |nodes| {
            let leaf = nodes.node(merkle::NodeId {
                level: 0,
                index: leaf_index,
            })?;
            let path = merkle::inclusion_proof(nodes, leaf_index, tree_size)?.unwrap_or_default();
            Ok((leaf, path))
        })
        .await
        .map_err(AppError::Internal)?;
        Ok(InclusionProof {
            position,
            leaf_index,
            tree_size,
            leaf_hash: leaf,
            audit_path: path,
        })
    }

    /// The proof that the tree of `first` leaves is a prefix of the tree of
    /// `second` leaves.
    pub async fn consistency_proof(&self, first: u64, second: u64) -> AppResult<ConsistencyProof> {
        if first == 0 || first > second {
            return Err(AppError::InvalidQuery(
                "from and to are tree sizes, 1 <= from <= to",
            ));
        }
        if second > self.tree_size().await? {
            return Err(AppError::TreeSizeUnavailable);
        }
        let mut conn = self.pool.acquire().await.map_err(store)?;
        let path = tree::with_nodes(&mut conn, |nodes| {
            Ok(merkle::consistency_proof(nodes, first, second)?.unwrap_or_default())
        })
        .await
        .map_err(AppError::Internal)?;
        Ok(ConsistencyProof {
            first,
            second,
            path,
        })
    }

    /// A new head over the whole log, and the scope's events under it, each
    /// with its proof, streamed page by page.
    pub async fn signed_bundle(
        &self,
        scope: BundleScope,
    ) -> AppResult<(
        TreeHead,
        String,
        impl Stream<Item = AppResult<ProvenEvent>> + Send + 'static,
    )> {
        let (user, since, until, label) = match &scope {
            BundleScope::All => (None, None, None, "all".to_owned()),
            BundleScope::User(who) => {
                let user = self.resolve_user(who).await?.ok_or(AppError::UnknownUser)?;
                (Some(user), None, None, format!("user:{user}"))
            }
            BundleScope::Period { since, until } => (
                None,
                *since,
                *until,
                format!(
                    "period:{}..{}",
                    since.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    until.map(|t| t.to_rfc3339()).unwrap_or_default()
                ),
            ),
        };
        let head = self.sign_tree_head().await?;
        let pool = self.pool.clone();
        let size = head.tree_size;
        let events = futures_util::stream::try_unfold(
            (Some(-1i64), Vec::<ProvenEvent>::new()),
            move |(after, mut ready)| {
                let pool = pool.clone();
                async move {
                    if let Some(next) = ready.pop() {
                        return Ok(Some((next, (after, ready))));
                    }
                    let Some(after) = after else {
                        return Ok(None);
                    };
                    let mut page = bundle_page(&pool, user, since, until, size, after).await?;
                    let next_after = (page.len() as i64 == BUNDLE_PAGE)
                        .then(|| page.last().map(|e| e.leaf_index as i64))
                        .flatten();
                    page.reverse();
                    match page.pop() {
                        Some(first) => Ok(Some((first, (next_after, page)))),
                        None => Ok(None),
                    }
                }
            },
        );
        Ok((head, label, events))
    }
}

/// One page of a bundle's events after leaf `after`, with their proofs.
async fn bundle_page(
    pool: &sqlx::PgPool,
    user: Option<Uuid>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    size: u64,
    after: i64,
) -> AppResult<Vec<ProvenEvent>> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let rows = match user {
        // A user's stream by its key, then each event's leaf.
        Some(user) => sqlx::query(&format!(
            "SELECT l.leaf_index, {LOGGED_COLUMNS}
               FROM events e JOIN merkle_leaves l ON l.position = e.position
              WHERE e.aggregate_type = 'UserAuth' AND e.aggregate_id = $1
                AND l.leaf_index > $2 AND l.leaf_index < $3
              ORDER BY l.leaf_index LIMIT {BUNDLE_PAGE}"
        ))
        .bind(user.to_string())
        .bind(after)
        .bind(size)
        .fetch_all(pool)
        .await
        .map_err(store)?,
        None => sqlx::query(&format!(
            "SELECT l.leaf_index, {LOGGED_COLUMNS}
               FROM merkle_leaves l
               JOIN events e ON e.transaction_id = l.transaction_id AND e.position = l.position
              WHERE l.leaf_index > $1 AND l.leaf_index < $2
                AND ($3::timestamptz IS NULL OR e.recorded_at >= $3)
                AND ($4::timestamptz IS NULL OR e.recorded_at < $4)
              ORDER BY l.leaf_index LIMIT {BUNDLE_PAGE}"
        ))
        .bind(after)
        .bind(size)
        .bind(since)
        .bind(until)
        .fetch_all(pool)
        .await
        .map_err(store)?,
    };
    let size = u64::try_from(size).unwrap_or(0);
    let mut conn = pool.acquire().await.map_err(store)?;
    let mut page = Vec::with_capacity(rows.len());
    for row in &rows {
        let leaf_index: i64 = row.try_get("leaf_index").map_err(store)?;
        let leaf_index = u64::try_from(leaf_index).unwrap_or(0);
        let path = tree::with_nodes(&mut conn, |nodes| {
            Ok(merkle::inclusion_proof(nodes, leaf_index, size)?.unwrap_or_default())
        })
        .await
        .map_err(AppError::Internal)?;
        page.push(ProvenEvent {
            leaf_index,
            event: logged_event(row).map_err(store)?,
            audit_path: path.iter().map(|h| tree::hex(h)).collect(),
        });
    }
    Ok(page)
}

fn store(error: sqlx::Error) -> AppError {
    AppError::Unavailable {
        what: "Postgres",
        cause: error.into(),
    }
}
