//! possync-core: the till side of possync.
//!
//! For now this crate holds the wire protocol v1 ([`protocol`]) shared by the reference server and the
//! client: sale payload types, validation, RFC 8785 canonical JSON, the payload hash and the
//! `/sync/push` request and response types. The durable outbox and the drain scheduler build on it.

#![warn(missing_docs)]

pub mod protocol;
