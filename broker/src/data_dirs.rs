//! Log directory ownership: an exclusive lock per directory and Kafka's
//! `meta.properties` (cluster id, node id), so a directory is never used by two brokers
//! or mixed into another cluster.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::log::checkpoint::write_atomic;

const META_FILE: &str = "meta.properties";
const LOCK_FILE: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("I/O on log directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("log directory {0} is locked by another process (is another broker using it?)")]
    Locked(String),
    #[error("log directory {path} belongs to node {found}, but this broker is node.id={expected}")]
    WrongNode {
        path: String,
        found: i32,
        expected: i32,
    },
    #[error("log directories belong to different clusters: {0:?}")]
    MixedClusters(BTreeSet<String>),
    #[error("{path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
}

/// Owned, locked log directories. Dropping this releases the locks.
#[derive(Debug)]
pub struct DataDirs {
    pub cluster_id: String,
    /// Whether any directory was initialised by an earlier run.
    pub previously_initialised: bool,
    _locks: Vec<File>,
}

fn io_err(path: &Path, source: std::io::Error) -> DataDirError {
    DataDirError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A new cluster id: 16 random bytes, base64url, as Kafka's `kafka-storage random-uuid`.
pub fn new_cluster_id() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

fn read_meta(path: &Path) -> Result<Option<(String, i32)>, DataDirError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, e)),
    };
    let malformed = |reason: &str| DataDirError::Malformed {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let props = java_properties::read(std::io::BufReader::new(file))
        .map_err(|e| malformed(&e.to_string()))?;
    let cluster = props
        .get("cluster.id")
        .cloned()
        .ok_or_else(|| malformed("no cluster.id"))?;
    let node = props
        .get("node.id")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| malformed("no numeric node.id"))?;
    Ok(Some((cluster, node)))
}

/// Locks every directory, checks their `meta.properties`, and writes it where missing.
/// `known_cluster_id` is used for fresh directories when no directory has one yet (for
/// example from an existing metadata store).
pub fn prepare(
    dirs: &[PathBuf],
    node_id: i32,
    known_cluster_id: Option<String>,
) -> Result<DataDirs, DataDirError> {
    let mut locks = Vec::new();
    let mut clusters = BTreeSet::new();
    let mut missing = Vec::new();
    for dir in dirs {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DataDirError::Locked(dir.display().to_string()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path, e)),
        }
        locks.push(lock);
        let meta = dir.join(META_FILE);
        match read_meta(&meta)? {
            Some((cluster, node)) => {
                if node != node_id {
                    return Err(DataDirError::WrongNode {
                        path: dir.display().to_string(),
                        found: node,
                        expected: node_id,
                    });
                }
                clusters.insert(cluster);
            }
            None => missing.push(dir.clone()),
        }
    }
    if clusters.len() > 1 {
        return Err(DataDirError::MixedClusters(clusters));
    }
    let previously_initialised = !clusters.is_empty();
    let cluster_id = clusters
        .into_iter()
        .next()
        .or(known_cluster_id)
        .unwrap_or_else(new_cluster_id);
    for dir in missing {
        let directory_id = new_cluster_id();
        let text = format!(
            "#\n# Written by sluice-broker. Do not edit.\nversion=1\ncluster.id={cluster_id}\nnode.id={node_id}\ndirectory.id={directory_id}\n"
        );
        write_atomic(&dir.join(META_FILE), text.as_bytes())
            .map_err(|e| io_err(&dir, std::io::Error::other(e.to_string())))?;
    }
    Ok(DataDirs {
        cluster_id,
        previously_initialised,
        _locks: locks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initialises_then_verifies() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = vec![tmp.path().join("a"), tmp.path().join("b")];
        let first = prepare(&dirs, 1, None).unwrap();
        assert!(!first.previously_initialised);
        let id = first.cluster_id.clone();
        assert!(matches!(
            prepare(&dirs, 1, None),
            Err(DataDirError::Locked(_))
        ));
        drop(first);
        let again = prepare(&dirs, 1, None).unwrap();
        assert!(again.previously_initialised);
        assert_eq!(again.cluster_id, id);
        drop(again);
        assert!(matches!(
            prepare(&dirs, 2, None),
            Err(DataDirError::WrongNode {
                found: 1,
                expected: 2,
                ..
            })
        ));
    }
}
