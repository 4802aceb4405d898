//! authledger: an event-sourced authentication backend that enforces
//! multi-factor authentication.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod cli;
pub mod command_bus;
pub mod config;
pub mod db;
pub mod http;
pub mod integrity;
pub mod keys;
pub mod metrics;
pub mod services;
pub mod snapshots;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod timeline;
pub mod tokens;
pub mod transparency;
pub mod user_agent;
pub mod webauthn;
pub mod words;
pub mod worker;
