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

/// Partitions of a topic, all led by the broker reachable at `leader`.
pub struct TopicLayout {
    pub partitions: Vec<i32>,
    pub leader: String,
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
    let mut leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader_id.0).collect();
    leaders.sort_unstable();
    leaders.dedup();
    if leaders.len() != 1 {
        bail!(
            "partitions of {topic} are led by several brokers {leaders:?}; point the load generator at a single-broker target"
        );
    }
    let leader = md
        .brokers
        .iter()
        .find(|b| b.node_id.0 == leaders[0])
        .map(|b| format!("{}:{}", b.host, b.port))
        .context("leader not among the brokers in metadata")?;
    let mut partitions: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
    partitions.sort_unstable();
    Ok(TopicLayout { partitions, leader })
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
