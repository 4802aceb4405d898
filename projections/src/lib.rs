//! Projections of the event log: the catch-up projector runtime, the read
//! models, the email relay and the integration events. They read the log
//! in its gap-free global order and keep their checkpoint in the same
//! transaction as their writes. One of them keeps the Merkle tree over the
//! log that signed tree heads commit to.
#![forbid(unsafe_code)]

pub mod audit_index;
pub mod email_relay;
pub mod integration;
pub mod locks;
pub mod mail;
pub mod merkle;
pub mod runtime;
pub mod tree;
pub mod users;

pub use runtime::{
    status, Projection, ProjectionMetrics, ProjectionRuns, ProjectionStatus, Projector,
    StoredEvent, PERSONAL_METADATA,
};
