//! Partitions of deleted topics whose remote objects still have to go. Kept in a file so
//! that a restart between the topic deletion and the bucket cleanup leaves no orphans.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::log::checkpoint::write_atomic;

pub const FILE: &str = "remote-log-deletions.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedPartition {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
}

#[derive(Debug)]
pub struct PendingDeletions {
    path: PathBuf,
    list: Mutex<Vec<DeletedPartition>>,
}

impl PendingDeletions {
    /// Loads the list from `dir`; an unreadable file is logged and treated as empty.
    pub fn open(dir: &Path) -> Self {
        let path = dir.join(FILE);
        let list = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::error!(file = %path.display(), error = %e,
                    "cannot parse pending remote deletions; remote objects of deleted topics may be left in the bucket");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Self {
            path,
            list: Mutex::new(list),
        }
    }

    fn persist(&self, list: &[DeletedPartition]) {
        let json = serde_json::to_vec(list).unwrap_or_default();
        if let Err(e) = write_atomic(&self.path, &json) {
            tracing::error!(file = %self.path.display(), error = %e,
                "cannot record pending remote deletions; remote objects of deleted topics may be left in the bucket");
        }
    }

    pub fn add(&self, items: impl IntoIterator<Item = DeletedPartition>) {
        let mut list = self.list.lock();
        let before = list.len();
        for item in items {
            if !list.contains(&item) {
                list.push(item);
            }
        }
        if list.len() != before {
            self.persist(&list);
        }
    }

    pub fn pending(&self) -> Vec<DeletedPartition> {
        self.list.lock().clone()
    }

    pub fn done(&self, item: &DeletedPartition) {
        let mut list = self.list.lock();
        list.retain(|d| d != item);
        self.persist(&list);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let d = PendingDeletions::open(dir.path());
        let a = DeletedPartition {
            topic: "a".into(),
            topic_id: Uuid::from_u128(1),
            partition: 0,
        };
        let b = DeletedPartition {
            partition: 1,
            ..a.clone()
        };
        d.add([a.clone(), b.clone(), a.clone()]);
        assert_eq!(PendingDeletions::open(dir.path()).pending().len(), 2);
        d.done(&a);
        assert_eq!(PendingDeletions::open(dir.path()).pending(), vec![b]);
    }
}
