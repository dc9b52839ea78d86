//! The failpoint cases of server-ref's integration tests (feature `failpoints`): a binary of their
//! own, since failpoints are process-global. The shared harness is `possync-test-support`.

mod conformance_failpoint;
mod failpoint_push;

/// Failpoints are process-global: each test of this binary holds this lock for its whole run, so
/// one test's failpoint never fires in another's push.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
