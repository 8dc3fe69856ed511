//! What the `chum` CLI and the worker (its HTTP API) share as Temporal clients: finding and
//! loading `chum.toml`, connecting to the server, and the operations people do to runs.
//!
//! Architecture invariant: no workflow or activity code here, and nothing the worker alone needs;
//! the CLI depends on this crate, never on `worker`. Both binaries get the same behaviour (and
//! the same typed [`control::ControlError`]) for the same request.

pub mod codec;
pub mod connect;
pub mod control;
pub mod coordinator;
pub mod dispatcher;
pub mod envconfig;
pub mod settings;
mod tls_probe;
