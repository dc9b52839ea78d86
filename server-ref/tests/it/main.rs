//! server-ref's integration tests, in one binary (one link instead of one per file). The shared
//! harness is the `possync-test-support` crate. The failpoint cases are a binary of their own
//! (`tests/failpoints`, feature `failpoints`): failpoints are process-global.

mod attention;
mod bad_input;
mod cli_messages;
mod config_file;
mod conformance;
mod console_login;
mod console_server;
mod deploy_doc;
mod doc_examples;
mod fuzz_push;
mod hostile;
mod openapi_doc;
mod operations;
mod protocol_curl;
mod push_idempotency;
mod recovery;
mod retention;
mod schema_version;
mod sqlite_cli;
mod two_instances;
mod verify;
