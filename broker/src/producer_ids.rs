//! Producer ids for InitProducerId, handed out from blocks reserved in the cluster
//! metadata so no two brokers (or two runs of one broker) ever give out the same id.

use tokio::sync::Mutex;

use crate::metadata::{MetadataCommand, MetadataError, MetadataStore};

/// Ids reserved per metadata command.
pub const BLOCK_SIZE: i64 = 1000;

#[derive(Debug, Default)]
pub struct ProducerIdManager {
    /// `(next, end)` of the current block.
    block: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    pub async fn next_id(
        &self,
        broker_id: i32,
        metadata: &dyn MetadataStore,
    ) -> Result<i64, MetadataError> {
        let mut block = self.block.lock().await;
        if block.0 >= block.1 {
            let md = metadata
                .submit(MetadataCommand::AllocateProducerIds {
                    broker: broker_id,
                    count: BLOCK_SIZE,
                })
                .await?;
            let (first, count) =
                md.producer_id_blocks
                    .get(&broker_id)
                    .copied()
                    .ok_or_else(|| {
                        MetadataError::Storage("no producer id block was reserved".into())
                    })?;
            *block = (first, first + count);
            tracing::debug!(first, count, "reserved a block of producer ids");
        }
        let id = block.0;
        block.0 += 1;
        Ok(id)
    }
}
