//! The Merkle tree over the log, kept by a projection: each event becomes
//! the next leaf in the log's gap-free global order, and every complete
//! subtree it closes is stored, so that any size's root and any proof is a
//! handful of rows. The tree is a function of the log: rebuilding it gives
//! the same hashes, and the signed heads stay valid.
use std::collections::HashMap;

use sqlx::{PgConnection, PgPool, Row};

use crate::merkle::{self, Hash, LoggedEvent, MissingNode, NodeId, Nodes, Wanted};
use crate::runtime::{Projection, StoredEvent};

pub const NAME: &str = "merkle_tree";

/// Checks each event's MAC before it becomes a leaf: the tree, and so the
/// heads the server signs, never take in an event the application did not
/// write. The key is the application's, so the check is handed in.
pub trait ChainCheck: Send + Sync {
    /// Whether `mac` (made with key `mac_key`) is `event`'s MAC chained
    /// from `previous`, the MAC of the event before it in its stream (none
    /// for a stream's first). The error says why not, without the payload.
    fn check(
        &self,
        event: &LoggedEvent,
        mac_key: Option<&str>,
        mac: Option<&[u8]>,
        previous: Option<&[u8]>,
    ) -> Result<(), String>;
}

/// An event the tree refused: its MAC does not hold.
#[derive(Debug, thiserror::Error)]
#[error("event {sequence} of {user} fails its MAC: {why}")]
pub struct Forged {
    pub user: String,
    pub sequence: i64,
    pub why: String,
}

pub struct MerkleTree {
    check: std::sync::Arc<dyn ChainCheck>,
}

impl MerkleTree {
    pub fn new(check: std::sync::Arc<dyn ChainCheck>) -> Self {
        Self { check }
    }
}

/// The columns a leaf covers, for `logged_event`.
pub const LOGGED_COLUMNS: &str =
    "e.aggregate_type, e.aggregate_id, e.sequence, e.event_type, e.event_version,
     e.payload::text AS payload, e.metadata::text AS metadata,
     (extract(epoch FROM e.recorded_at) * 1000000)::bigint AS recorded_at_micros";

/// A row selected with [`LOGGED_COLUMNS`] as the log stores it.
pub fn logged_event(row: &sqlx::postgres::PgRow) -> Result<LoggedEvent, sqlx::Error> {
    Ok(LoggedEvent {
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        recorded_at_micros: row.try_get("recorded_at_micros")?,
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many leaves the tree has.
pub async fn size(conn: &mut PgConnection) -> Result<u64, sqlx::Error> {
    let size: i64 =
        sqlx::query_scalar("SELECT coalesce(max(leaf_index) + 1, 0) FROM merkle_leaves")
            .fetch_one(conn)
            .await?;
    Ok(u64::try_from(size).unwrap_or(0))
}

/// The stored hashes of `ids`; those not stored are missing.
pub async fn nodes(
    conn: &mut PgConnection,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, sqlx::Error> {
    let levels: Vec<i16> = ids.iter().map(|id| i16::from(id.level)).collect();
    let indexes: Vec<i64> = ids
        .iter()
        .map(|id| i64::try_from(id.index).unwrap_or(i64::MAX))
        .collect();
    // Planned afresh each time (an unnamed statement), not once per
    // connection: a plan made while the tree was small joined by hashing
    // the whole table, and a connection kept it as the table grew, until a
    // batch took 20 ms to read a dozen nodes.
    let rows = sqlx::query(
        "SELECT n.level, n.index, n.hash FROM merkle_nodes n
           JOIN unnest($1::smallint[], $2::bigint[]) AS w(level, index)
             ON n.level = w.level AND n.index = w.index",
    )
    .bind(levels)
    .bind(indexes)
    .persistent(false)
    .fetch_all(conn)
    .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let level: i16 = row.try_get("level")?;
        let index: i64 = row.try_get("index")?;
        let hash: Vec<u8> = row.try_get("hash")?;
        if let Ok(hash) = Hash::try_from(hash.as_slice()) {
            found.insert(
                NodeId {
                    level: u8::try_from(level).unwrap_or(u8::MAX),
                    index: u64::try_from(index).unwrap_or(u64::MAX),
                },
                hash,
            );
        }
    }
    Ok(found)
}

/// Runs `compute` over exactly the stored nodes it reads: a dry run tells
/// which, one query fetches them.
pub async fn with_nodes<T>(
    conn: &mut PgConnection,
    compute: impl Fn(&dyn Nodes) -> Result<T, MissingNode>,
) -> anyhow::Result<T> {
    let wanted = Wanted::default();
    compute(&wanted)?;
    let found = nodes(conn, &wanted.into_ids()).await?;
    Ok(compute(&found)?)
}

/// The leaf index of the event at global `position`, if the tree has it.
pub async fn leaf_index(pool: &PgPool, position: i64) -> Result<Option<u64>, sqlx::Error> {
    let index: Option<i64> =
        sqlx::query_scalar("SELECT leaf_index FROM merkle_leaves WHERE position = $1")
            .bind(position)
            .fetch_optional(pool)
            .await?;
    Ok(index.and_then(|i| u64::try_from(i).ok()))
}

#[async_trait::async_trait]
impl Projection for MerkleTree {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[StoredEvent]) -> anyhow::Result<()> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        // The batch is every event in this range of the global order: the
        // runtime read it below the xmin horizon, so no other can appear in
        // it. Read again for the bytes as stored, which a leaf covers, with
        // each event's MAC and its predecessor's, in one statement so that
        // a key rotation cannot fall between the two.
        let rows = sqlx::query(&format!(
            "SELECT e.position, e.transaction_id::text::bigint AS transaction_id, {LOGGED_COLUMNS},
                    e.mac_key, e.mac,
                    (SELECT p.mac FROM events p
                      WHERE p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id
                        AND p.sequence = e.sequence - 1) AS previous_mac
               FROM events e
              WHERE (e.transaction_id, e.position) >= ($1::text::xid8, $2)
                AND (e.transaction_id, e.position) <= ($3::text::xid8, $4)
              ORDER BY e.transaction_id, e.position"
        ))
        .bind(first.transaction_id.to_string())
        .bind(first.position)
        .bind(last.transaction_id.to_string())
        .bind(last.position)
        .fetch_all(&mut *tx)
        .await?;
        if rows.len() != events.len() {
            anyhow::bail!(
                "the log changed under the tree: {} events read, {} in the batch",
                rows.len(),
                events.len()
            );
        }
        let mut size = size(tx).await?;
        let mut known = nodes(tx, &merkle::frontier(size)).await?;
        let mut positions = Vec::with_capacity(rows.len());
        let mut transactions = Vec::with_capacity(rows.len());
        let mut leaf_indexes = Vec::with_capacity(rows.len());
        let (mut levels, mut indexes, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let position: i64 = row.try_get("position")?;
            let event = logged_event(row)?;
            let mac_key: Option<String> = row.try_get("mac_key")?;
            let mac: Option<Vec<u8>> = row.try_get("mac")?;
            let previous: Option<Vec<u8>> = row.try_get("previous_mac")?;
            if let Err(why) = self.check.check(
                &event,
                mac_key.as_deref(),
                mac.as_deref(),
                previous.as_deref(),
            ) {
                tracing::error!(
                    user = %event.aggregate_id,
                    sequence = event.sequence,
                    %why,
                    "INTEGRITY ALARM: an event fails its MAC; the Merkle tree stops before it and no head covers it"
                );
                return Err(Forged {
                    user: event.aggregate_id,
                    sequence: event.sequence,
                    why,
                }
                .into());
            }
            let leaf = event.leaf_hash();
            for (id, hash) in merkle::append(&mut known, size, leaf)? {
                levels.push(i16::from(id.level));
                indexes.push(i64::try_from(id.index)?);
                hashes.push(hash.to_vec());
            }
            positions.push(position);
            transactions.push(row.try_get::<i64, _>("transaction_id")?.to_string());
            leaf_indexes.push(i64::try_from(size)?);
            size += 1;
        }
        sqlx::query(
            "INSERT INTO merkle_leaves (position, transaction_id, leaf_index)
             SELECT p, t::xid8, i FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS b(p, t, i)",
        )
        .bind(positions)
        .bind(transactions)
        .bind(leaf_indexes)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO merkle_nodes (level, index, hash)
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])",
        )
        .bind(levels)
        .bind(indexes)
        .bind(hashes)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn reset(&self, tx: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query("TRUNCATE merkle_leaves, merkle_nodes")
            .execute(&mut *tx)
            .await?;
        Ok(())
    }
}
