//! Topic setup: create if missing, look up partitions and their leader.

use anyhow::{Context, bail};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::Connection;

/// Partitions of a topic and the brokers (host:port) leading them.
pub struct TopicLayout {
    pub partitions: Vec<i32>,
    pub by_leader: Vec<(String, Vec<i32>)>,
}

impl TopicLayout {
    /// The one broker leading every partition (consume and e2e modes need one).
    pub fn single_leader(&self) -> anyhow::Result<String> {
        match self.by_leader.as_slice() {
            [(addr, _)] => Ok(addr.clone()),
            _ => bail!(
                "partitions are led by several brokers; this mode needs a single-broker target"
            ),
        }
    }
}

pub async fn ensure(
    conn: &mut Connection,
    topic: &str,
    create_partitions: i32,
    configs: &[(String, String)],
) -> anyhow::Result<TopicLayout> {
    if create_partitions > 0 {
        let v = conn.pick_version(ApiKey::CreateTopics, (2, 4))?;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_num_partitions(create_partitions)
                    .with_replication_factor(-1)
                    .with_configs(
                        configs
                            .iter()
                            .map(|(k, v)| {
                                CreatableTopicConfig::default()
                                    .with_name(StrBytes::from_string(k.clone()))
                                    .with_value(Some(StrBytes::from_string(v.clone())))
                            })
                            .collect(),
                    ),
            ]);
        let resp: CreateTopicsResponse = conn.call(ApiKey::CreateTopics, v, &req).await?;
        for t in &resp.topics {
            // 36: TOPIC_ALREADY_EXISTS is fine.
            if t.error_code != 0 && t.error_code != 36 {
                bail!(
                    "creating topic {topic} failed with error {}: {:?}",
                    t.error_code,
                    t.error_message
                );
            }
        }
    }
    let v = conn.pick_version(ApiKey::Metadata, (1, 12))?;
    let req = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]));
    let md: MetadataResponse = conn.call(ApiKey::Metadata, v, &req).await?;
    let t = md
        .topics
        .first()
        .context("metadata response without topics")?;
    if t.error_code != 0 {
        bail!("metadata for {topic} failed with error {}", t.error_code);
    }
    let mut by_leader: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
    for p in &t.partitions {
        let addr = md
            .brokers
            .iter()
            .find(|b| b.node_id == p.leader_id)
            .map(|b| format!("{}:{}", b.host, b.port))
            .with_context(|| {
                format!(
                    "leader {} of {topic}-{} is not among the brokers in metadata",
                    p.leader_id.0, p.partition_index
                )
            })?;
        by_leader.entry(addr).or_default().push(p.partition_index);
    }
    let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    let by_leader = by_leader
        .into_iter()
        .map(|(a, mut ps)| {
            ps.sort_unstable();
            (a, ps)
        })
        .collect();
    Ok(TopicLayout {
        partitions,
        by_leader,
    })
}

/// Deletes a topic (versions 1-5 name topics directly).
pub async fn delete(conn: &mut Connection, topic: &str) -> anyhow::Result<()> {
    let v = conn.pick_version(ApiKey::DeleteTopics, (1, 5))?;
    let req = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(vec![TopicName(StrBytes::from_string(topic.to_string()))]);
    let resp: DeleteTopicsResponse = conn.call(ApiKey::DeleteTopics, v, &req).await?;
    for r in &resp.responses {
        if r.error_code != 0 {
            bail!("deleting topic {topic} failed with error {}", r.error_code);
        }
    }
    Ok(())
}
