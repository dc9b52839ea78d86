//! Wire protocol v1 of `POST /sync/push`, shared by the client and the server.
//!
//! - [`payload`]: the sale (header, items, payments); money as `i64` minor units, quantities as
//!   integer milli-units, no floats.
//! - [`validate`]: the rules every stored sale satisfies, with one typed error per broken rule.
//! - [`canonical`] and [`hash`]: RFC 8785 (JCS) canonical JSON and the payload hash v1
//!   (SHA-256 of the canonical bytes, lowercase hex).
//! - [`duplicate_keys`]: a JSON object naming a key twice is refused (`duplicate_key`).
//! - [`push`]: request and response bodies, per-sale statuses and the JSON error body.
//!
//! The normative description, with test vectors, is `docs/protocol.md`.

pub mod canonical;
pub mod duplicate_keys;
pub mod hash;
pub mod payload;
pub mod push;
pub mod validate;

pub use canonical::{canonical_json, canonical_json_string, CanonicalError};
pub use duplicate_keys::{first_duplicate_key, parse_sale_json};
pub use hash::{payload_sha256, PAYLOAD_HASH_VERSION_V1};
pub use payload::{SaleHeader, SaleItem, SaleKind, SalePayload, SalePayment};
pub use push::{
    BacklogReport, ErrorBody, PushRequest, PushResponse, PushResult, PushStatus, PushTransaction, Resend,
    MAX_RESEND_RANGES,
};
pub use validate::{validate_client_tx_id, validate_sale, InvalidSale, Limits, INVALID_SALE_CODES};
