//! A bounded pool of pre-spawned threads for blocking work (the database clients), fed from the async
//! HTTP front, the push and the console.
//!
//! Every thread is spawned by [`BlockingPool::start`], so a process that later hits its thread limit
//! keeps serving with the threads it has. The queue is bounded: [`BlockingPool::submit`] never waits
//! and answers [`Submit::Full`] when as many jobs wait as the queue holds ([`BlockingPool::run`]:
//! [`JobError::Full`]), which the caller turns into a 503 at once. A job that panics is reported to
//! its caller as [`JobError::Panicked`]; the thread survives. Dropping the pool lets the threads
//! finish the queued jobs and exit; [`BlockingPool::join`] waits for them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

/// The default number of database threads: four per CPU core this process may use, 4 to 16.
pub fn default_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    cores.saturating_mul(4).clamp(4, 16)
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads running blocking jobs, with a bounded queue in front of them.
pub struct BlockingPool {
    queue: RwLock<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Why a job did not produce its value.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The queue was full (or the pool stopped): the job was not queued.
    #[error("the blocking pool's queue is full")]
    Full,
    /// The job panicked (logged by the pool); its thread goes on with the next job.
    #[error("the job panicked")]
    Panicked,
    /// The pool stopped before the job ran.
    #[error("the blocking pool stopped")]
    Stopped,
}

/// The answer of [`BlockingPool::submit`].
pub enum Submit<R> {
    /// Queued; the receiver yields the job's value.
    Queued(oneshot::Receiver<Result<R, JobError>>),
    /// The queue is full (or the pool stopped): the job was not queued.
    Full,
}

impl BlockingPool {
    /// Spawns `threads` threads named `{name}-{i}` sharing a queue of `queue` jobs.
    ///
    /// # Errors
    /// The OS error when a thread cannot be spawned; threads already spawned then exit.
    pub fn start(threads: usize, queue: usize, name: &str) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(threads.max(1));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let handle = std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || work(&rx))?;
            handles.push(handle);
        }
        Ok(BlockingPool { queue: RwLock::new(Some(tx)), threads: Mutex::new(handles) })
    }

    /// Queues `job` unless the queue is full; never blocks.
    pub fn submit<R, F>(&self, job: F) -> Submit<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let queue = self.queue.read();
        let Some(queue) = queue.as_ref() else { return Submit::Full };
        let (tx, rx) = oneshot::channel();
        let boxed: Job = Box::new(move || {
            let result = catch_unwind(AssertUnwindSafe(job)).map_err(|_| {
                log::error!("a blocking job panicked");
                JobError::Panicked
            });
            // The caller may have gone (its connection closed); the result is then dropped.
            let _ = tx.send(result);
        });
        match queue.try_send(boxed) {
            Ok(()) => Submit::Queued(rx),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Submit::Full,
        }
    }

    /// Queues `job` and waits for its value; [`JobError::Full`] at once when the queue is full.
    ///
    /// # Errors
    /// [`JobError`] when the job did not run or panicked.
    pub async fn run<R, F>(&self, job: F) -> Result<R, JobError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        match self.submit(job) {
            Submit::Full => Err(JobError::Full),
            Submit::Queued(rx) => rx.await.unwrap_or(Err(JobError::Stopped)),
        }
    }

    /// Closes the queue, lets the threads finish every queued job, and waits for them.
    pub fn join(&self) {
        *self.queue.write() = None;
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if t.join().is_err() {
                log::error!("a blocking pool thread panicked");
            }
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job, never while running one.
        let job = rx.lock().recv();
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(rx: oneshot::Receiver<T>) -> T {
        rx.blocking_recv().expect("job answered")
    }

    #[test]
    fn runs_jobs_and_survives_a_panic() {
        let pool = BlockingPool::start(1, 4, "t").expect("start");
        let Submit::Queued(rx) = pool.submit(|| -> u32 { panic!("boom") }) else { panic!("queued") };
        assert!(matches!(block_on(rx), Err(JobError::Panicked)));
        let Submit::Queued(rx) = pool.submit(|| 7) else { panic!("queued") };
        assert_eq!(block_on(rx).expect("value"), 7);
        pool.join();
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let pool = BlockingPool::start(1, 1, "t").expect("start");
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let Submit::Queued(first) = pool.submit(move || {
            let _ = started_tx.send(());
            let _ = hold_rx.recv();
        }) else {
            panic!("queued")
        };
        started_rx.recv().expect("first job running");
        let Submit::Queued(second) = pool.submit(|| ()) else { panic!("one slot in the queue") };
        assert!(matches!(pool.submit(|| ()), Submit::Full), "queue of one is full");
        hold_tx.send(()).expect("release");
        block_on(first).expect("first");
        block_on(second).expect("second");
        pool.join();
    }
}
