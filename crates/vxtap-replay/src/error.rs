//! Error types.

use std::path::PathBuf;

/// Why [`ReplayClient::start`](crate::ReplayClient::start) failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target URL is not usable.
    #[error("invalid replay target {url:?}: {reason}")]
    Target {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid replay configuration: {0}")]
    Config(String),
    /// The CA file could not be read or holds no usable certificate.
    #[error("replay CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// TLS setup failed.
    #[error("replay TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// The runtime or its thread could not be started.
    #[error("replay runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Why [`ReplaySender::submit`](crate::ReplaySender::submit) did not queue a job. The job is dropped
/// in every case, and counted in [`ReplayStats`](crate::ReplayStats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejected {
    /// The queue is full (by count or by bytes): counted as `dropped_queue_full`.
    #[error("replay queue full")]
    QueueFull,
    /// The request is incomplete (`gap`): counted as `skipped_gap`. It is never replayed.
    #[error("request incomplete (gap): not replayed")]
    Gap,
    /// The request body was cut by the body limit: counted as `skipped_truncated`. It is never
    /// replayed.
    #[error("request body truncated: not replayed")]
    Truncated,
    /// The client is finishing or gone: counted as `dropped_closed`.
    #[error("replay client closed")]
    Closed,
}
