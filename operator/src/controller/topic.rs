//! Topic controller: keeps a Kafka topic equal to its `Topic` through the admin API and
//! deletes it (finalizer) when the resource goes.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};

use super::{Context, Error, Result, namespace};
use crate::admin::AdminError;
use crate::crd::condition::{self, READY};
use crate::crd::{Cluster, Topic, TopicStatus};
use crate::topic_sync::{self, DesiredTopic};

pub const FINALIZER: &str = "sluice.dev/topic-deletion";

pub async fn reconcile(topic: Arc<Topic>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started("topic");
    let ns = namespace(&*topic, "Topic")?;
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, topic, |event| async {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx, &ns).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

fn desired(topic: &Topic) -> DesiredTopic {
    DesiredTopic {
        name: topic.kafka_name(),
        partitions: topic.spec.partitions,
        replication_factor: topic.spec.replication_factor,
        config: topic.spec.config.clone(),
    }
}

/// `sluice.dev/deletion-policy: retain` keeps the Kafka topic when the Topic is deleted.
pub const DELETION_POLICY_ANNOTATION: &str = "sluice.dev/deletion-policy";

/// Another Topic in the namespace declaring the same Kafka topic of the same cluster:
/// with `older_only`, one that claimed it first (older, or same age and smaller name).
async fn claimed_by_other(
    topic: &Topic,
    ctx: &Context,
    ns: &str,
    older_only: bool,
) -> Result<Option<String>> {
    let mine = (topic.creation_timestamp(), topic.name_any());
    let kafka = topic.kafka_name();
    let claims = |o: &Topic| {
        o.namespace().as_deref() == Some(ns)
            && o.uid() != topic.uid()
            && o.meta().deletion_timestamp.is_none()
            && o.spec.cluster_ref == topic.spec.cluster_ref
            && o.kafka_name() == kafka
            && (!older_only || (o.creation_timestamp(), o.name_any()) < mine)
    };
    // The controller's cache once it has listed everything; the API server otherwise.
    if let Some(store) = &ctx.topics
        && tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready())
            .await
            .is_ok_and(|r| r.is_ok())
    {
        return Ok(store.find(|o| claims(o)).map(|o| o.name_any()));
    }
    let api: Api<Topic> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|o| claims(o))
        .map(|o| o.name_any()))
}

async fn apply(topic: &Topic, ctx: &Context, ns: &str) -> Result<Action> {
    let generation = topic.metadata.generation;
    let old = topic.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.observed_generation = generation;
    let want = desired(topic);
    let cluster_ref = &topic.spec.cluster_ref;
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), ns);

    let not_ready = |status: &mut TopicStatus, reason: &str, message: String| {
        condition::set(
            &mut status.conditions,
            READY,
            false,
            reason,
            message,
            generation,
        );
    };
    let mut requeue = ctx.topic_resync;
    let cluster = clusters.get_opt(cluster_ref).await?;
    match cluster {
        None => {
            not_ready(
                &mut status,
                "ClusterNotFound",
                format!("Cluster {ns}/{cluster_ref} does not exist"),
            );
            requeue = Duration::from_secs(30);
        }
        Some(c) if c.status.as_ref().is_none_or(|s| s.ready_replicas == 0) => {
            not_ready(
                &mut status,
                "ClusterNotReady",
                format!("Cluster {ns}/{cluster_ref} has no ready broker yet"),
            );
            requeue = Duration::from_secs(15);
        }
        Some(c) => {
            if let Some(other) = claimed_by_other(topic, ctx, ns, true).await? {
                let msg = format!(
                    "Kafka topic {} of Cluster {cluster_ref} is already managed by Topic {ns}/{other}; this Topic changes nothing",
                    want.name
                );
                if condition::get(&old.conditions, READY).map(|c| c.reason.as_str())
                    != Some("Conflict")
                {
                    ctx.event(topic, EventType::Warning, "Conflict", "Sync", msg.clone())
                        .await;
                }
                not_ready(&mut status, "Conflict", msg);
            } else {
                let admin = ctx.admin.connect(&c)?;
                match topic_sync::sync(admin.as_ref(), &want).await {
                    Ok(s) => {
                        report_changes(topic, ctx, &s, old.topic_name.is_some()).await;
                        status.topic_name = Some(s.topic.name.clone());
                        status.topic_id = Some(s.topic.topic_id.clone());
                        status.partitions = Some(s.topic.partitions.len() as i32);
                        status.replication_factor = Some(s.topic.replication_factor);
                        status.config = Some(s.topic.configs.clone());
                        match s.refusals.first() {
                            Some(r) => {
                                if condition::get(&old.conditions, READY).map(|c| c.reason.as_str())
                                    != Some(r.reason)
                                {
                                    ctx.event(
                                        topic,
                                        EventType::Warning,
                                        r.reason,
                                        "Sync",
                                        r.message.clone(),
                                    )
                                    .await;
                                }
                                let all: Vec<&str> =
                                    s.refusals.iter().map(|r| r.message.as_str()).collect();
                                not_ready(&mut status, r.reason, all.join("; "));
                            }
                            None => condition::set(
                                &mut status.conditions,
                                READY,
                                true,
                                "Synced",
                                format!(
                                    "topic {} has {} partitions and the configured settings",
                                    s.topic.name,
                                    s.topic.partitions.len()
                                ),
                                generation,
                            ),
                        }
                    }
                    Err(AdminError::Rejected(msg)) => {
                        if condition::get(&old.conditions, READY).map(|c| &c.message) != Some(&msg)
                        {
                            ctx.event(topic, EventType::Warning, "Rejected", "Sync", msg.clone())
                                .await;
                        }
                        not_ready(&mut status, "Rejected", msg);
                    }
                    Err(e @ AdminError::Unavailable { .. }) => {
                        not_ready(&mut status, "BrokerUnavailable", e.to_string());
                        requeue = Duration::from_secs(30);
                    }
                }
            }
        }
    }
    if old != status || topic.status.is_none() {
        let api: Api<Topic> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(
            &topic.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    }
    Ok(Action::requeue(requeue))
}

async fn report_changes(topic: &Topic, ctx: &Context, s: &topic_sync::Synced, seen_before: bool) {
    if s.created {
        let what = if seen_before {
            "re-created (it was deleted outside Kubernetes)"
        } else {
            "created"
        };
        ctx.event(
            topic,
            EventType::Normal,
            "Created",
            "Sync",
            format!(
                "topic {} {what} with {} partitions",
                s.topic.name,
                s.topic.partitions.len()
            ),
        )
        .await;
    }
    if let Some((from, to)) = s.partitions_added {
        ctx.event(
            topic,
            EventType::Normal,
            "PartitionsAdded",
            "Sync",
            format!("topic {}: partitions {from} -> {to}", s.topic.name),
        )
        .await;
    }
    if !s.configs_set.is_empty() || !s.configs_removed.is_empty() {
        let set: Vec<String> = s
            .configs_set
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        ctx.event(
            topic,
            EventType::Normal,
            "ConfigChanged",
            "Sync",
            format!(
                "topic {}: set [{}], removed [{}]",
                s.topic.name,
                set.join(", "),
                s.configs_removed.join(", ")
            ),
        )
        .await;
    }
    if s.changed() {
        tracing::info!(topic = %s.topic.name, created = s.created, partitions = ?s.partitions_added,
            set = ?s.configs_set, removed = ?s.configs_removed, "synced topic");
    }
}

/// Deletes the Kafka topic, unless the Topic asks to retain it, the Cluster is gone, the
/// topic was never created by this resource, or another Topic still declares it.
async fn cleanup(topic: &Topic, ctx: &Context, ns: &str) -> Result<Action> {
    let name = topic.kafka_name();
    if topic
        .annotations()
        .get(DELETION_POLICY_ANNOTATION)
        .map(String::as_str)
        == Some("retain")
    {
        ctx.event(
            topic,
            EventType::Normal,
            "Retained",
            "Delete",
            format!("topic {name} kept ({DELETION_POLICY_ANNOTATION}: retain)"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), ns);
    let cluster = match clusters.get_opt(&topic.spec.cluster_ref).await? {
        Some(c) if c.meta().deletion_timestamp.is_none() => c,
        _ => {
            tracing::info!(namespace = ns, topic = %name, "Cluster gone or being deleted; nothing to delete");
            return Ok(Action::await_change());
        }
    };
    if topic
        .status
        .as_ref()
        .and_then(|s| s.topic_id.as_ref())
        .is_none()
    {
        // Never created (or never managed) by this resource.
        return Ok(Action::await_change());
    }
    if let Some(other) = claimed_by_other(topic, ctx, ns, false).await? {
        ctx.event(
            topic,
            EventType::Normal,
            "StillDeclared",
            "Delete",
            format!("topic {name} kept: Topic {ns}/{other} still declares it"),
        )
        .await;
        return Ok(Action::await_change());
    }
    let admin = ctx.admin.connect(&cluster)?;
    match admin.delete_topic(&name).await {
        Ok(existed) => {
            let note = if existed {
                format!("deleted topic {name}")
            } else {
                format!("topic {name} was already gone")
            };
            ctx.event(topic, EventType::Normal, "Deleted", "Delete", note)
                .await;
            Ok(Action::await_change())
        }
        // The broker will not delete it (e.g. delete.topic.enable=false): retrying cannot
        // help, so the resource goes and the topic stays, loudly.
        Err(AdminError::Rejected(msg)) => {
            ctx.event(
                topic,
                EventType::Warning,
                "DeleteRefused",
                "Delete",
                format!("broker refused to delete topic {name}, the topic is kept: {msg}"),
            )
            .await;
            tracing::warn!(namespace = ns, topic = %name, error = %msg, "broker refused topic deletion; releasing the finalizer");
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.event(
                topic,
                EventType::Warning,
                "DeleteFailed",
                "Delete",
                format!("deleting topic {name} failed, will retry: {e}"),
            )
            .await;
            Err(e.into())
        }
    }
}
