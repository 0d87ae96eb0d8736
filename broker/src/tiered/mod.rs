//! Tiered storage: sealed segments go to an object store (S3, GCS, Azure or a local
//! directory) and are served back from there once local retention removed them.
//!
//! `manager.rs` decides what to upload, load, expire and delete per partition;
//! `upload.rs` writes one segment; `reader.rs` serves fetches and timestamp lookups from
//! remote segments through `cache.rs`; `manifest.rs` is the per-partition source of
//! truth in the bucket and `layout.rs` where objects live; `deletions.rs` remembers
//! deleted topics until their objects are gone.

pub mod cache;
pub mod deletions;
pub mod layout;
pub mod manager;
pub mod manifest;
pub mod reader;
pub mod store;
pub mod upload;

pub use manager::TierManager;

/// A remote storage failure, with the object it concerns. Cloneable: one download can
/// answer several waiting fetches.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TierError {
    #[error("object store {op} of {key} failed: {reason}")]
    Store {
        op: &'static str,
        key: String,
        reason: String,
    },
    #[error("remote object {key} is missing from the bucket")]
    NotFound { key: String },
    #[error("remote object {key} is corrupt at byte {position}: {reason}")]
    Corrupt {
        key: String,
        position: u64,
        reason: String,
    },
    #[error("manifest {key} is unusable: {reason}")]
    Manifest { key: String, reason: String },
    #[error("{what}: {reason}")]
    Local { what: String, reason: String },
}

impl TierError {
    pub fn store(op: &'static str, key: &object_store::path::Path, e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => TierError::NotFound {
                key: key.to_string(),
            },
            other => TierError::Store {
                op,
                key: key.to_string(),
                reason: other.to_string(),
            },
        }
    }

    /// The `reason` label of `sluice_remote_errors_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            TierError::Store { .. } => "unreachable",
            TierError::NotFound { .. } => "missing_object",
            TierError::Corrupt { .. } => "corrupt_object",
            TierError::Manifest { .. } => "bad_manifest",
            TierError::Local { .. } => "local_io",
        }
    }
}
