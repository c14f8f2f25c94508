//! The bounded queue between the engine's plain threads and the client's runtime.
//!
//! Producers never wait (unless they ask to, with a time limit) and take no lock: a lock-free bounded
//! channel (crossbeam) holds the jobs, an atomic counts their bytes, and a full queue refuses the job.
//! The single consumer, the dispatcher task, awaits a [`tokio::sync::Notify`] when the queue is empty.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::Notify;

use crate::job::ReplayJob;

/// Why a push failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    Full,
    Closed,
}

/// Jobs are boxed so that the channel's preallocated slots stay small (8 bytes) whatever the capacity.
type Slot = (Box<ReplayJob>, usize);

#[derive(Debug)]
pub(crate) struct Queue {
    tx: Sender<Slot>,
    rx: Receiver<Slot>,
    bytes: AtomicUsize,
    closed: AtomicBool,
    capacity: usize,
    max_bytes: usize,
    /// Wakes the consumer.
    ready: Notify,
}

impl Queue {
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Queue {
            tx,
            rx,
            bytes: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            capacity,
            max_bytes,
            ready: Notify::new(),
        }
    }

    /// Queues `job` if there is room now; gives it back when the queue is full.
    fn push(&self, job: Box<ReplayJob>, size: usize) -> Result<(), (PushError, Option<Box<ReplayJob>>)> {
        if self.closed.load(Ordering::Acquire) {
            return Err((PushError::Closed, None));
        }
        // Reserve the bytes first. A job larger than the byte limit still fits into a queue holding no
        // bytes, so that the limit never makes a request impossible to replay: memory stays bounded by
        // max(max_bytes, one job) plus what producers racing here reserve for an instant.
        let before = self.bytes.fetch_add(size, Ordering::AcqRel);
        if before != 0 && before + size > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            return Err((PushError::Full, Some(job)));
        }
        match self.tx.try_send((job, size)) {
            Ok(()) => {
                self.ready.notify_one();
                Ok(())
            }
            Err(e) => {
                self.bytes.fetch_sub(size, Ordering::AcqRel);
                match e {
                    TrySendError::Full((job, _)) => Err((PushError::Full, Some(job))),
                    TrySendError::Disconnected(_) => Err((PushError::Closed, None)),
                }
            }
        }
    }

    /// Queues `job` if there is room now.
    pub(crate) fn try_push(&self, job: ReplayJob) -> Result<(), PushError> {
        let size = job.size_estimate();
        self.push(Box::new(job), size).map_err(|(e, _)| e)
    }

    /// Queues `job`, waiting up to `wait` for room (polling with a short back-off). Blocks the calling
    /// (plain) thread.
    pub(crate) fn push_wait(&self, job: ReplayJob, wait: Duration) -> Result<(), PushError> {
        let size = job.size_estimate();
        let deadline = Instant::now() + wait;
        let mut job = Box::new(job);
        let mut pause = Duration::from_micros(50);
        loop {
            match self.push(job, size) {
                Ok(()) => return Ok(()),
                Err((PushError::Full, Some(back))) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(PushError::Full);
                    }
                    std::thread::sleep(pause.min(deadline - now));
                    pause = (pause * 2).min(Duration::from_millis(2));
                    job = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// The next job; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<ReplayJob> {
        loop {
            if let Ok((job, size)) = self.rx.try_recv() {
                self.bytes.fetch_sub(size, Ordering::AcqRel);
                return Some(*job);
            }
            if self.closed.load(Ordering::Acquire) {
                // A producer may have pushed just before the close: look once more.
                return self.rx.try_recv().ok().map(|(job, size)| {
                    self.bytes.fetch_sub(size, Ordering::AcqRel);
                    *job
                });
            }
            // `notify_one` stores a permit when nobody waits, so a push between the checks above and
            // this await is not lost.
            self.ready.notified().await;
        }
    }

    /// Refuses further jobs; the consumer still gets the queued ones.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// Removes every queued job; returns how many there were.
    pub(crate) fn clear(&self) -> usize {
        let mut n = 0;
        while let Ok((_, size)) = self.rx.try_recv() {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            n += 1;
        }
        n
    }

    /// (jobs, bytes) queued now.
    pub(crate) fn depth(&self) -> (usize, usize) {
        (self.rx.len(), self.bytes.load(Ordering::Acquire))
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}
