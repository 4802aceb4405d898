//! The email worker: takes mail from RabbitMQ, renders it, sends it through
//! SMTP, records it, then acks. A failed send waits in the retry queue with
//! a growing TTL; after its attempts it goes to the dead-letter queue.
mod consumer;
mod templates;

pub use consumer::{Outcome, Worker, WorkerSettings};
