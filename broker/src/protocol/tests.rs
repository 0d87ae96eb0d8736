//! Every handler at every advertised version, through the real dispatch path: decodes a
//! client-built request, handles it, and decodes the encoded response again.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use uuid::Uuid;

use super::{Outcome, handle_frame, versions};
use crate::broker::Broker;
use crate::config::{BrokerConfig, ConfigSources};
use crate::log::batch::test_util::make_batch;
use crate::metadata::local::LocalMetadataStore;
use crate::metadata::{
    BrokerRegistration, ClusterMetadata, Endpoint, MetadataCommand, MetadataStore,
};
use crate::metrics::Metrics;
use crate::replica::ReplicaManager;

struct Harness {
    broker: Arc<Broker>,
    topic_id: Uuid,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig::load(&ConfigSources {
        overrides: vec![
            (
                "log.dirs".into(),
                dir.path().join("data").display().to_string(),
            ),
            ("listeners".into(), "PLAINTEXT://127.0.0.1:0".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let store = Arc::new(
        LocalMetadataStore::new(
            &dir.path().join("md"),
            ClusterMetadata::new("test-cluster".into()),
        )
        .unwrap(),
    );
    store
        .submit(MetadataCommand::RegisterBroker(BrokerRegistration {
            id: 0,
            endpoints: vec![Endpoint {
                listener: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            rack: Some("r1".into()),
            incarnation: Uuid::new_v4(),
            fenced: false,
        }))
        .await
        .unwrap();
    let topic_id = Uuid::new_v4();
    let md = store
        .submit(MetadataCommand::CreateTopic {
            name: "t".into(),
            id: topic_id,
            assignments: vec![vec![0], vec![0]],
            configs: BTreeMap::new(),
        })
        .await
        .unwrap();
    let replicas = Arc::new(
        ReplicaManager::open(0, config.log_dirs.clone(), config.statics.clone(), 1, &md).unwrap(),
    );
    let broker = Arc::new(Broker::new(
        config,
        "test-cluster".into(),
        store,
        replicas,
        Arc::new(Metrics::default()),
    ));
    Harness {
        broker,
        topic_id,
        _dir: dir,
    }
}

/// Sends `req` through `handle_frame` and decodes the response.
async fn roundtrip<R: Request>(h: &Harness, key: ApiKey, version: i16, req: &R) -> R::Response {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("unit-test")));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, R::header_version(version)).unwrap();
    req.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: test request does not encode: {e}"));
    let mut session = super::sasl::Session::plaintext();
    let outcome = handle_frame(
        &h.broker,
        buf.freeze(),
        "127.0.0.1:1".parse().unwrap(),
        &mut session,
    )
    .await;
    let Outcome::Respond(mut frame) = outcome else {
        panic!("{key:?} v{version}: expected a response, got {outcome:?}");
    };
    let size = frame.get_i32() as usize;
    assert_eq!(size, frame.remaining(), "{key:?} v{version}: size prefix");
    let hv = if key == ApiKey::ApiVersions {
        0
    } else {
        <R::Response as HeaderVersion>::header_version(version)
    };
    let rh = ResponseHeader::decode(&mut frame, hv).unwrap();
    assert_eq!(rh.correlation_id, 42);
    let resp = <R::Response as Decodable>::decode(&mut frame, version)
        .unwrap_or_else(|e| panic!("{key:?} v{version}: response does not decode: {e}"));
    assert_eq!(frame.remaining(), 0, "{key:?} v{version}: trailing bytes");
    resp
}

fn range(key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let (min, max) = versions::supported_range(key).unwrap();
    min..=max
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

#[tokio::test]
async fn produce_fetch_and_list_offsets_at_every_version() {
    let h = harness().await;
    let mut next = 0i64;
    for v in 3..=*range(ApiKey::Produce).end() {
        let mut topic = produce_request::TopicProduceData::default().with_partition_data(vec![
            produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(make_batch(3, 1_000 + i64::from(v), 10))),
        ]);
        if v >= 13 {
            topic.topic_id = h.topic_id;
        } else {
            topic.name = name("t");
        }
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(vec![topic]);
        let resp = roundtrip(&h, ApiKey::Produce, v, &req).await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "produce v{v}");
        assert_eq!(p.base_offset, next, "produce v{v}");
        next += 3;
    }
    for v in range(ApiKey::Fetch) {
        let mut topic = fetch_request::FetchTopic::default().with_partitions(vec![
            fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(3)
                .with_partition_max_bytes(1 << 20)
                .with_current_leader_epoch(if v >= 9 { 0 } else { -1 }),
        ]);
        if v >= 13 {
            topic.topic_id = h.topic_id;
        } else {
            topic.topic = name("t");
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let resp = roundtrip(&h, ApiKey::Fetch, v, &req).await;
        let p = &resp.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "fetch v{v}");
        assert_eq!(p.high_watermark, next, "fetch v{v}");
        let records = p.records.clone().unwrap();
        let first = crate::log::batch::BatchHeader::parse(&records).unwrap();
        assert_eq!(first.base_offset, 3, "fetch v{v}");
    }
    for v in range(ApiKey::ListOffsets) {
        let mut partitions = vec![
            list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1),
            list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2),
            list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(1_005),
        ];
        if v >= 7 {
            partitions.push(
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-3),
            );
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(partitions),
            ]);
        let resp = roundtrip(&h, ApiKey::ListOffsets, v, &req).await;
        let ps = &resp.topics[0].partitions;
        assert_eq!(
            (ps[0].error_code, ps[0].offset),
            (0, next),
            "list_offsets v{v} latest"
        );
        assert_eq!(ps[1].offset, 0, "list_offsets v{v} earliest");
        // Batches at timestamps 1003.., records +0..2: 1005 is record 2 of the first batch.
        assert_eq!(
            (ps[2].offset, ps[2].timestamp),
            (2, 1_005),
            "list_offsets v{v} by time"
        );
        if v >= 7 {
            assert_eq!(
                ps[3].timestamp,
                1_000 + 13 + 2,
                "list_offsets v{v} max timestamp"
            );
        }
    }
    for v in range(ApiKey::OffsetForLeaderEpoch) {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![
                offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(0)
                            .with_leader_epoch(0),
                    ]),
            ]);
        let resp = roundtrip(&h, ApiKey::OffsetForLeaderEpoch, v, &req).await;
        let p = &resp.topics[0].partitions[0];
        assert_eq!(
            (p.error_code, p.leader_epoch, p.end_offset),
            (0, 0, next),
            "v{v}"
        );
    }
    // Fencing: a newer epoch than the broker knows.
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(name("t"))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(5)
                        .with_partition_max_bytes(100),
                ]),
        ]);
    let resp = roundtrip(&h, ApiKey::Fetch, 12, &req).await;
    assert_eq!(
        resp.responses[0].partitions[0].error_code,
        kafka_protocol::ResponseError::UnknownLeaderEpoch.code()
    );
    for v in range(ApiKey::DeleteRecords) {
        let req = DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(1)
                        .with_offset(0),
                ]),
        ]);
        let resp = roundtrip(&h, ApiKey::DeleteRecords, v, &req).await;
        assert_eq!(resp.topics[0].partitions[0].error_code, 0, "v{v}");
    }
}

#[tokio::test]
async fn metadata_and_admin_apis_at_every_version() {
    let h = harness().await;
    for v in range(ApiKey::ApiVersions) {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("unit-test"))
            .with_client_software_version(StrBytes::from_static_str("1.0"));
        let resp = roundtrip(&h, ApiKey::ApiVersions, v, &req).await;
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.api_keys.len(), versions::SUPPORTED.len());
    }
    for v in range(ApiKey::Metadata) {
        let topics = if v == 0 {
            vec![metadata_request::MetadataRequestTopic::default().with_name(Some(name("t")))]
        } else {
            vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("t"))),
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("bad name"))),
            ]
        };
        let req = MetadataRequest::default()
            .with_topics(Some(topics))
            .with_allow_auto_topic_creation(v < 4);
        let resp = roundtrip(&h, ApiKey::Metadata, v, &req).await;
        assert_eq!(resp.brokers.len(), 1, "v{v}");
        assert_eq!(resp.brokers[0].port, 9092);
        assert_eq!(resp.topics[0].error_code, 0, "v{v}");
        assert_eq!(resp.topics[0].partitions.len(), 2, "v{v}");
        if v >= 1 {
            assert_eq!(
                resp.topics[1].error_code,
                kafka_protocol::ResponseError::InvalidTopicException.code()
            );
        }
        if v >= 10 {
            assert_eq!(resp.topics[0].topic_id, h.topic_id);
        }
    }
    for v in range(ApiKey::CreateTopics) {
        let topic = format!("created-v{v}");
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name(&topic))
                    .with_num_partitions(3)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_value(Some(StrBytes::from_static_str("1000"))),
                    ]),
                create_topics_request::CreatableTopic::default()
                    .with_name(name("t"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]);
        let resp = roundtrip(&h, ApiKey::CreateTopics, v, &req).await;
        assert_eq!(
            resp.topics[0].error_code, 0,
            "v{v}: {:?}",
            resp.topics[0].error_message
        );
        assert_eq!(
            resp.topics[1].error_code,
            kafka_protocol::ResponseError::TopicAlreadyExists.code()
        );
        assert!(h.broker.replicas.get(&topic, 2).is_some());
    }
    for v in range(ApiKey::CreatePartitions) {
        let topic = format!("created-v{}", 2 + v);
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(1000)
            .with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name(&topic))
                    .with_count(4),
            ]);
        let resp = roundtrip(&h, ApiKey::CreatePartitions, v, &req).await;
        assert_eq!(
            resp.results[0].error_code, 0,
            "v{v}: {:?}",
            resp.results[0].error_message
        );
        assert!(h.broker.replicas.get(&topic, 3).is_some());
    }
    for v in range(ApiKey::DescribeConfigs) {
        let req = DescribeConfigsRequest::default()
            .with_include_synonyms(v >= 1)
            .with_include_documentation(v >= 3)
            .with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("created-v2"))
                    .with_configuration_keys(None),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("0"))
                    .with_configuration_keys(None),
            ]);
        let resp = roundtrip(&h, ApiKey::DescribeConfigs, v, &req).await;
        let retention = resp.results[0]
            .configs
            .iter()
            .find(|c| c.name.as_str() == "retention.ms")
            .unwrap();
        assert_eq!(retention.value.as_deref(), Some("1000"));
        assert_eq!(retention.config_source, 1);
        assert!(
            resp.results[1]
                .configs
                .iter()
                .any(|c| c.name.as_str() == "num.partitions")
        );
    }
    for v in range(ApiKey::AlterConfigs) {
        let req = AlterConfigsRequest::default().with_resources(vec![
            alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_string(format!("{}", 1000 + v)))),
                ]),
        ]);
        let resp = roundtrip(&h, ApiKey::AlterConfigs, v, &req).await;
        assert_eq!(resp.responses[0].error_code, 0, "v{v}");
        assert_eq!(
            h.broker.replicas.get("t", 0).unwrap().config().retention_ms,
            1000 + i64::from(v)
        );
    }
    for v in range(ApiKey::IncrementalAlterConfigs) {
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("segment.bytes"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("1048576"))),
                ]),
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("t"))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_config_operation(0)
                        .with_value(Some(StrBytes::from_static_str("soon"))),
                ]),
        ]);
        let resp = roundtrip(&h, ApiKey::IncrementalAlterConfigs, v, &req).await;
        assert_eq!(resp.responses[0].error_code, 0, "v{v}");
        assert_eq!(
            resp.responses[1].error_code,
            kafka_protocol::ResponseError::InvalidConfig.code()
        );
        assert_eq!(
            h.broker
                .replicas
                .get("t", 0)
                .unwrap()
                .config()
                .segment_bytes,
            1_048_576
        );
    }
    for v in range(ApiKey::DescribeCluster) {
        let req = DescribeClusterRequest::default().with_endpoint_type(1);
        let resp = roundtrip(&h, ApiKey::DescribeCluster, v, &req).await;
        assert_eq!(resp.cluster_id.as_str(), "test-cluster");
        assert_eq!(resp.brokers.len(), 1);
    }
    for v in range(ApiKey::FindCoordinator) {
        let mut req = FindCoordinatorRequest::default();
        if v >= 4 {
            req.coordinator_keys = vec![
                StrBytes::from_static_str("g1"),
                StrBytes::from_static_str("g2"),
            ];
        } else {
            req.key = StrBytes::from_static_str("g1");
        }
        let resp = roundtrip(&h, ApiKey::FindCoordinator, v, &req).await;
        let codes: Vec<i16> = if v >= 4 {
            resp.coordinators.iter().map(|c| c.error_code).collect()
        } else {
            vec![resp.error_code]
        };
        assert!(!codes.is_empty());
        // __consumer_offsets is created on the first request; this broker leads it.
        assert!(codes.iter().all(|c| *c == 0), "v{v}: {codes:?}");
        let node = if v >= 4 {
            resp.coordinators[0].node_id
        } else {
            resp.node_id
        };
        assert_eq!(node.0, 0);
    }
    for v in range(ApiKey::DeleteTopics) {
        let topic = format!("created-v{}", v + 1);
        let mut req = DeleteTopicsRequest::default().with_timeout_ms(1000);
        if v >= 6 {
            req.topics = vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(name(&topic))),
            ];
        } else {
            req.topic_names = vec![name(&topic)];
        }
        let resp = roundtrip(&h, ApiKey::DeleteTopics, v, &req).await;
        assert_eq!(resp.responses[0].error_code, 0, "v{v}");
        assert!(h.broker.replicas.get(&topic, 0).is_none());
    }
}

fn subscription(topic: &str) -> Bytes {
    let sub = ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_string(topic.to_string())]);
    let mut b = BytesMut::new();
    b.put_i16(0);
    sub.encode(&mut b, 0).unwrap();
    b.freeze()
}

/// Join, sync, heartbeat, commit, fetch, describe, list, leave and delete a group at every
/// advertised version of each group API.
#[tokio::test]
async fn group_apis_at_every_version() {
    let mut h = harness().await;
    // A new group's first rebalance would otherwise wait 3 s.
    let config = h
        .broker
        .config
        .clone()
        .with("group.initial.rebalance.delay.ms", "0")
        .unwrap();
    let b = Arc::get_mut(&mut h.broker).unwrap();
    b.config = config;
    let fc = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("boot"));
    let resp = roundtrip(&h, ApiKey::FindCoordinator, 3, &fc).await;
    assert_eq!(resp.error_code, 0);
    for v in range(ApiKey::JoinGroup) {
        let group = GroupId(StrBytes::from_string(format!("g-v{v}")));
        let protocol = join_group_request::JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(subscription("t"));
        let mut join = JoinGroupRequest::default()
            .with_group_id(group.clone())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![protocol]);
        let mut resp = roundtrip(&h, ApiKey::JoinGroup, v, &join).await;
        if v >= 4 {
            assert_eq!(
                resp.error_code,
                kafka_protocol::ResponseError::MemberIdRequired.code()
            );
            join.member_id = resp.member_id.clone();
            resp = roundtrip(&h, ApiKey::JoinGroup, v, &join).await;
        }
        assert_eq!(resp.error_code, 0, "JoinGroup v{v}");
        assert_eq!(resp.generation_id, 1);
        assert_eq!(resp.leader, resp.member_id);
        assert_eq!(resp.members.len(), 1);
        let member = resp.member_id.clone();
        let sv = v.min(*range(ApiKey::SyncGroup).end());
        let sync = SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(1)
            .with_member_id(member.clone())
            .with_assignments(vec![
                sync_group_request::SyncGroupRequestAssignment::default()
                    .with_member_id(member.clone())
                    .with_assignment(Bytes::from_static(b"assignment")),
            ]);
        let resp = roundtrip(&h, ApiKey::SyncGroup, sv, &sync).await;
        assert_eq!(resp.error_code, 0, "SyncGroup v{sv}");
        assert_eq!(&resp.assignment[..], b"assignment");
        let hv = v.min(*range(ApiKey::Heartbeat).end());
        let hb = HeartbeatRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(1)
            .with_member_id(member.clone());
        assert_eq!(
            roundtrip(&h, ApiKey::Heartbeat, hv, &hb).await.error_code,
            0
        );
        let stale = hb.clone().with_generation_id(0);
        assert_eq!(
            roundtrip(&h, ApiKey::Heartbeat, hv, &stale)
                .await
                .error_code,
            kafka_protocol::ResponseError::IllegalGeneration.code()
        );
        let ov = v.clamp(
            *range(ApiKey::OffsetCommit).start(),
            *range(ApiKey::OffsetCommit).end(),
        );
        let commit = OffsetCommitRequest::default()
            .with_group_id(group.clone())
            .with_generation_id_or_member_epoch(1)
            .with_member_id(member.clone())
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(40 + i64::from(v))
                            .with_committed_metadata(Some(StrBytes::from_static_str("m"))),
                    ]),
            ]);
        let resp = roundtrip(&h, ApiKey::OffsetCommit, ov, &commit).await;
        assert_eq!(
            resp.topics[0].partitions[0].error_code, 0,
            "OffsetCommit v{ov}"
        );
        let stale = commit.clone().with_generation_id_or_member_epoch(7);
        let resp = roundtrip(&h, ApiKey::OffsetCommit, ov, &stale).await;
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            kafka_protocol::ResponseError::IllegalGeneration.code()
        );
        for fv in range(ApiKey::OffsetFetch) {
            let committed = if fv >= 8 {
                let req = OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group.clone())
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(name("t"))
                                .with_partition_indexes(vec![0, 1]),
                        ])),
                ]);
                let resp = roundtrip(&h, ApiKey::OffsetFetch, fv, &req).await;
                let p = &resp.groups[0].topics[0].partitions;
                (p[0].committed_offset, p[1].committed_offset)
            } else {
                let req = OffsetFetchRequest::default()
                    .with_group_id(group.clone())
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name("t"))
                            .with_partition_indexes(vec![0, 1]),
                    ]));
                let resp = roundtrip(&h, ApiKey::OffsetFetch, fv, &req).await;
                let p = &resp.topics[0].partitions;
                (p[0].committed_offset, p[1].committed_offset)
            };
            assert_eq!(committed, (-1, 40 + i64::from(v)), "OffsetFetch v{fv}");
        }
        for dv in range(ApiKey::DescribeGroups) {
            let req = DescribeGroupsRequest::default().with_groups(vec![group.clone()]);
            let resp = roundtrip(&h, ApiKey::DescribeGroups, dv, &req).await;
            let g = &resp.groups[0];
            assert_eq!(g.error_code, 0);
            assert_eq!(g.group_state.as_str(), "Stable");
            assert_eq!(g.protocol_data.as_str(), "range");
            assert_eq!(g.members.len(), 1);
        }
        for lv in range(ApiKey::ListGroups) {
            let resp = roundtrip(&h, ApiKey::ListGroups, lv, &ListGroupsRequest::default()).await;
            assert!(
                resp.groups.iter().any(|g| g.group_id == group),
                "ListGroups v{lv}"
            );
        }
        // Not empty: cannot be deleted.
        let del = DeleteGroupsRequest::default().with_groups_names(vec![group.clone()]);
        let dv = v.min(*range(ApiKey::DeleteGroups).end());
        assert_eq!(
            roundtrip(&h, ApiKey::DeleteGroups, dv, &del).await.results[0].error_code,
            kafka_protocol::ResponseError::NonEmptyGroup.code()
        );
        let lv = v.min(*range(ApiKey::LeaveGroup).end());
        let leave = if lv >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(member.clone()),
                ])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(group.clone())
                .with_member_id(member.clone())
        };
        let resp = roundtrip(&h, ApiKey::LeaveGroup, lv, &leave).await;
        assert_eq!(resp.error_code, 0);
        let od = OffsetDeleteRequest::default()
            .with_group_id(group.clone())
            .with_topics(vec![
                offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        offset_delete_request::OffsetDeleteRequestPartition::default()
                            .with_partition_index(1),
                    ]),
            ]);
        let resp = roundtrip(&h, ApiKey::OffsetDelete, 0, &od).await;
        assert_eq!(resp.error_code, 0);
        assert_eq!(resp.topics[0].partitions[0].error_code, 0);
        let resp = roundtrip(&h, ApiKey::DeleteGroups, dv, &del).await;
        assert_eq!(resp.results[0].error_code, 0, "DeleteGroups v{dv}");
        let resp = roundtrip(&h, ApiKey::DeleteGroups, dv, &del).await;
        assert_eq!(
            resp.results[0].error_code,
            kafka_protocol::ResponseError::GroupIdNotFound.code()
        );
    }
    for v in range(ApiKey::InitProducerId) {
        let req = InitProducerIdRequest::default().with_transaction_timeout_ms(60_000);
        let a = roundtrip(&h, ApiKey::InitProducerId, v, &req).await;
        let b = roundtrip(&h, ApiKey::InitProducerId, v, &req).await;
        assert_eq!(
            (a.error_code, a.producer_epoch),
            (0, 0),
            "InitProducerId v{v}"
        );
        assert!(a.producer_id.0 >= 0 && b.producer_id.0 > a.producer_id.0);
    }
}

#[tokio::test]
async fn protocol_violations_close_the_connection() {
    let h = harness().await;
    let mut session = super::sasl::Session::plaintext();
    let peer = "127.0.0.1:1".parse().unwrap();
    let frame = |key: i16, version: i16, body: &[u8]| {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(7);
        b.put_i16(-1);
        b.put_slice(body);
        b.freeze()
    };
    for (f, why) in [
        (Bytes::from_static(&[0, 1, 2]), "too short"),
        (frame(9999, 0, &[]), "unknown API"),
        (
            frame(ApiKey::Metadata as i16, 99, &[]),
            "unsupported version",
        ),
        (frame(ApiKey::JoinGroup as i16, 0, &[]), "unimplemented API"),
        (
            frame(ApiKey::Metadata as i16, 1, &[0, 0, 0, 5, 0]),
            "truncated body",
        ),
    ] {
        let out = handle_frame(&h.broker, f, peer, &mut session).await;
        assert!(matches!(out, Outcome::Close(_)), "{why}: {out:?}");
    }
    // ApiVersions of an unknown version: a v0 answer with UNSUPPORTED_VERSION.
    let Outcome::Respond(mut resp) = handle_frame(
        &h.broker,
        frame(ApiKey::ApiVersions as i16, 99, &[]),
        peer,
        &mut session,
    )
    .await
    else {
        panic!("ApiVersions v99 must be answered");
    };
    resp.advance(4);
    let _ = ResponseHeader::decode(&mut resp, 0).unwrap();
    let body = ApiVersionsResponse::decode(&mut resp, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert!(!body.api_keys.is_empty());
}

#[tokio::test]
async fn admin_describe_reports_local_and_remote_sizes() {
    let h = harness().await;
    let p = h.broker.replicas.get("t", 0).unwrap();
    p.update_remote(|v| {
        v.loaded = true;
        v.segments = 3;
        v.start = 0;
        v.end = 100;
        v.size_bytes = 12_345;
        v.lag_bytes = 7;
    });
    let d = crate::admin::describe_current(&h.broker, "t").unwrap();
    let p0 = &d.partitions[0];
    assert_eq!(p0.remote_size_bytes, 12_345);
    assert_eq!(p0.remote_segments, 3);
    assert_eq!(p0.remote_upload_lag_bytes, 7);
    assert_eq!(p0.local_size_bytes, 0);
    assert_eq!((p0.log_start_offset, p0.local_log_start_offset), (0, 0));
    assert_eq!(p0.high_watermark, 0);
    // A partition without remote data reports zeros for the remote tier.
    assert_eq!(d.partitions[1].remote_size_bytes, 0);
    assert_eq!(d.partitions[1].remote_segments, 0);
}
