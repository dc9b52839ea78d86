//! possync-core's integration tests, in one binary: the outbox, the drain and the engine with
//! instrumented transports, the logs of a send, TLS options, the protocol's properties and its
//! published hash vectors. `common` holds the shared outbox and sale helpers.

mod common;
mod drain;
mod engine;
mod logs;
mod outbox;
mod protocol_props;
mod status_snapshot;
mod tls;
mod vectors;
