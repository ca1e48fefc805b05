//! Error types of the store.

use crate::selector::SelectorError;

/// What went wrong while serving a store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The caller sent something the store refuses (a 4xx for an HTTP front end).
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// A limit of [`crate::StoreOptions`] would be exceeded (a 4xx/429 for a front end).
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// The query names a profile type that was never ingested.
    #[error("unknown profile type {0:?}")]
    UnknownProfileType(String),
    /// The query is well-formed but cannot be answered as asked.
    #[error("invalid query: {0}")]
    BadQuery(String),
    /// The query text could not be parsed.
    #[error("invalid query")]
    Selector(#[from] SelectorError),
    /// redb failed (I/O, full disk, ...).
    #[error("storage engine error")]
    Storage(#[source] redb::Error),
    /// Bytes on disk could not be decoded.
    #[error("corrupt data in table {table}")]
    Corrupt {
        table: &'static str,
        #[source]
        source: CorruptError,
    },
    /// The data directory could not be created or opened.
    #[error("cannot use data directory {path}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The transaction this request was committed with failed (see the log).
    #[error("write failed: {0}")]
    WriteFailed(String),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// A previous writer panicked while holding the write lock: the in-memory index may
    /// hold uncommitted entries, so the store refuses further writes until reopened.
    #[error("the store's writer failed earlier (see the log); restart to reopen the store")]
    Poisoned,
}

impl StoreError {
    /// True when the error is the caller's fault (bad input, limits, unknown names).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            StoreError::Invalid(_)
                | StoreError::Limit(_)
                | StoreError::UnknownProfileType(_)
                | StoreError::Selector(_)
                | StoreError::BadQuery(_)
        )
    }
}

/// Reasons an ingest request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidInput {
    #[error("invalid profile")]
    Profile(#[from] kiln_proto::ValidationError),
    #[error("time range is reversed: from {from_nanos} is after until {until_nanos}")]
    ReversedRange { from_nanos: i64, until_nanos: i64 },
    #[error(
        "invalid label name {0:?}: must match [a-zA-Z_][a-zA-Z0-9_.]* and be at most 1024 bytes"
    )]
    LabelName(String),
    #[error("label value for {name:?} is longer than {max} bytes")]
    LabelValue { name: String, max: usize },
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
    #[error("too many labels: {got} (at most {max})")]
    TooManyLabels { got: usize, max: usize },
    #[error("time {0} ns is out of range (0 ..= 2^62)")]
    TimeOutOfRange(i64),
    #[error("profile type part {0:?} is empty or contains ':'")]
    ProfileTypePart(String),
    #[error("profile has {got} samples, more than the limit of {max}")]
    TooManySamples { got: usize, max: usize },
}

/// Bytes on disk that cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CorruptError {
    #[error("truncated record")]
    Truncated,
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    #[error("id does not fit 32 bits")]
    IdOverflow,
    #[error("invalid UTF-8")]
    Utf8,
    #[error("unsupported schema version {0}")]
    Schema(u64),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
