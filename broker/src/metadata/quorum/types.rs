//! openraft's type configuration for the metadata quorum.

use serde::{Deserialize, Serialize};

use crate::metadata::image::{MetadataCommand, MetadataError};

/// What the state machine answered for one command: commands are validated when applied,
/// so a committed command can still be refused (a topic that exists, a stale ISR change).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandResult(pub Result<(), MetadataError>);

/// Raft node ids are broker ids.
pub type NodeId = u64;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = MetadataCommand,
        R = CommandResult,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = std::io::Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
