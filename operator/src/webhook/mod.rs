//! The admission webhooks, served by the operator over TLS with a certificate from its own CA:
//! validation for what the schema cannot express ([`rules`]), and a mutating webhook for
//! defaults. [`registration`] writes the webhook configurations with the CA bundle injected.

pub mod registration;
pub mod rules;
pub mod runner;
pub mod server;

pub use server::{serve, WebhookServer};
