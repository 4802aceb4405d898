//! Integration tests: the real server on a free port, against a fresh
//! Postgres database per test.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod helpers;

mod activity;
mod audit;
mod bad_input;
mod console;
mod email_link;
mod event_store;
mod hostile_input;
mod identity;
mod integration;
mod journey;
mod limits;
mod mail;
mod openapi;
mod operations;
mod operators;
mod pipeline;
mod races;
mod recovery;
mod secrets;
mod sessions;
mod throttling;
mod timed;
mod transparency;
mod webauthn;
