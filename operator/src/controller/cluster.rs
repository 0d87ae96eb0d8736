//! Cluster controller: applies the objects `reconcile::desired` builds, then reports what
//! the StatefulSet and the brokers say.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, Result, namespace};
use crate::crd::condition::{self, DEGRADED, PROGRESSING, READY};
use crate::crd::{Cluster, ClusterStatus};
use crate::reconcile::labels::{CLUSTER_LABEL, MANAGER};
use crate::reconcile::{self, rbac, service};

pub const FINALIZER: &str = "sluice.dev/cluster-cleanup";

pub async fn reconcile(cluster: Arc<Cluster>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile_started("cluster");
    let ns = namespace(&*cluster, "Cluster")?;
    // Only the cluster-scoped rack binding needs cleanup, so only rack-aware Clusters get
    // a finalizer: others can be deleted even when the operator is not running.
    let has_finalizer = cluster.finalizers().iter().any(|f| f == FINALIZER);
    if cluster.spec.rack.is_none() && !has_finalizer {
        if cluster.meta().deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        return apply(&cluster, &ctx, &ns).await;
    }
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            Finalizer::Apply(c) => apply(&c, &ctx, &ns).await,
            Finalizer::Cleanup(c) => cleanup(&c, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Server-side apply with the operator's field manager; `force` takes over fields another
/// manager (a human with kubectl) changed on objects the operator owns.
async fn apply_object<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let mut value = serde_json::to_value(obj).map_err(kube::Error::SerdeError)?;
    // Apply patches need apiVersion and kind, which k8s-openapi structs do not serialize.
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), K::api_version(&()).into());
        map.insert("kind".into(), K::kind(&()).into());
    }
    let params = PatchParams::apply(MANAGER).force();
    Ok(api.patch(&name, &params, &Patch::Apply(&value)).await?)
}

async fn apply(cluster: &Cluster, ctx: &Context, ns: &str) -> Result<Action> {
    let client = &ctx.client;
    let generation = cluster.metadata.generation;
    let old = cluster.status.clone().unwrap_or_default();
    let mut status = old.clone();
    status.replicas = cluster.spec.replicas;
    status.bootstrap_servers = Some(service::bootstrap_servers(cluster));

    let desired = match reconcile::desired(cluster, &ctx.settings) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.message.clone();
            condition::set(
                &mut status.conditions,
                READY,
                false,
                e.reason,
                &msg,
                generation,
            );
            condition::set(
                &mut status.conditions,
                PROGRESSING,
                false,
                e.reason,
                &msg,
                generation,
            );
            condition::set(
                &mut status.conditions,
                DEGRADED,
                true,
                e.reason,
                &msg,
                generation,
            );
            status.observed_generation = generation;
            if old.observed_generation != generation
                || condition::get(&old.conditions, DEGRADED).map(|c| &c.message) != Some(&msg)
            {
                ctx.event(
                    cluster,
                    EventType::Warning,
                    e.reason,
                    "Validate",
                    msg.clone(),
                )
                .await;
            }
            write_status(cluster, ctx, ns, &old, &status).await?;
            tracing::warn!(namespace = ns, cluster = %cluster.name_any(), error = %msg, "Cluster spec cannot be run");
            // Nothing to retry until the spec changes.
            return Ok(Action::requeue(Duration::from_secs(300)));
        }
    };

    let sts = match apply_all(ctx, ns, cluster, &desired).await {
        Ok(sts) => sts,
        Err(e) => {
            // Say so in the status (the API server's message names the object and field),
            // then let the error policy retry.
            let msg = format!("applying the Cluster's objects failed: {e}");
            condition::set(
                &mut status.conditions,
                DEGRADED,
                true,
                "ApplyFailed",
                &msg,
                generation,
            );
            condition::set(
                &mut status.conditions,
                READY,
                false,
                "ApplyFailed",
                &msg,
                generation,
            );
            if condition::get(&old.conditions, DEGRADED).map(|c| c.reason.as_str())
                != Some("ApplyFailed")
            {
                ctx.event(cluster, EventType::Warning, "ApplyFailed", "Apply", msg)
                    .await;
            }
            write_status(cluster, ctx, ns, &old, &status).await?;
            return Err(e);
        }
    };

    // A missing credentials Secret leaves pods in CreateContainerConfigError: say why.
    let mut degraded: Option<(&str, String)> = None;
    if let Some(creds) = cluster
        .spec
        .tiered_storage
        .as_ref()
        .and_then(|t| t.credentials_secret.as_ref())
    {
        let secrets = Api::<Secret>::namespaced(client.clone(), ns);
        match secrets.get_opt(&creds.name).await? {
            None => {
                degraded = Some((
                    "SecretNotFound",
                    format!(
                        "tiered storage credentials Secret {ns}/{} does not exist",
                        creds.name
                    ),
                ))
            }
            Some(s) => {
                let data = s.data.unwrap_or_default();
                for key in [&creds.access_key_id_key, &creds.secret_access_key_key] {
                    if !data.contains_key(key) {
                        degraded = Some((
                            "SecretKeyMissing",
                            format!("Secret {ns}/{} has no key {key}", creds.name),
                        ));
                    }
                }
            }
        }
    }

    let replicas = cluster.spec.replicas;
    let st = sts.status.clone().unwrap_or_default();
    let ready = st.ready_replicas.unwrap_or(0);
    status.ready_replicas = ready;
    let rolled_out = st.observed_generation >= sts.metadata.generation
        && st.updated_replicas.unwrap_or(0) == replicas
        && st.replicas == replicas
        && st.current_revision == st.update_revision;

    let mut admin_error = None;
    if ready > 0 {
        let admin = ctx.admin.connect(cluster)?;
        match admin.cluster_status().await {
            Ok(cs) => {
                status.cluster_id = Some(cs.cluster_id);
                status.registered_brokers = Some(cs.brokers.len() as i32);
                status.under_replicated_partitions = Some(cs.under_replicated_partitions);
                status.offline_partitions = Some(cs.offline_partitions);
            }
            Err(e) => admin_error = Some(e.to_string()),
        }
    }

    // Every broker runs but fewer are registered in the cluster metadata: some did not
    // join the metadata quorum (wrong voters, unreachable internal port, another
    // cluster's data on their volume).
    if degraded.is_none()
        && ready >= replicas
        && let Some(n) = status.registered_brokers.filter(|n| *n < replicas)
    {
        degraded = Some((
            "BrokersNotClustered",
            format!(
                "{replicas} brokers run but the cluster metadata lists {n}: the others did not join the metadata quorum (see their logs: controller.quorum.voters, internal port 9093, cluster.id of their volumes)"
            ),
        ));
    }
    let (is_ready, reason, message) = match (&admin_error, ready >= replicas) {
        (_, false) => (
            false,
            "BrokersNotReady",
            format!("{ready}/{replicas} brokers ready"),
        ),
        (Some(e), true) => (
            false,
            "AdminUnavailable",
            format!("{ready}/{replicas} brokers ready, but the admin API failed: {e}"),
        ),
        (None, true) => (true, "Ready", format!("{ready}/{replicas} brokers ready")),
    };
    condition::set(
        &mut status.conditions,
        READY,
        is_ready,
        reason,
        &message,
        generation,
    );
    if rolled_out {
        condition::set(
            &mut status.conditions,
            PROGRESSING,
            false,
            "RolledOut",
            format!("all {replicas} brokers run the current spec"),
            generation,
        );
    } else {
        let updated = st.updated_replicas.unwrap_or(0);
        condition::set(
            &mut status.conditions,
            PROGRESSING,
            true,
            "RollingOut",
            format!("{updated}/{replicas} brokers updated, {ready} ready"),
            generation,
        );
    }
    match degraded {
        Some((reason, msg)) => condition::set(
            &mut status.conditions,
            DEGRADED,
            true,
            reason,
            msg,
            generation,
        ),
        None => condition::set(
            &mut status.conditions,
            DEGRADED,
            false,
            "AsExpected",
            "",
            generation,
        ),
    }
    status.observed_generation = generation;

    if old.observed_generation != generation {
        ctx.event(
            cluster,
            EventType::Normal,
            "Applied",
            "Reconcile",
            format!(
                "applied generation {}: StatefulSet {} with {replicas} brokers, Services, ConfigMap, PodDisruptionBudget",
                generation.unwrap_or_default(),
                cluster.broker_name()
            ),
        )
        .await;
    }
    let was_ready = condition::is_true(&old.conditions, READY);
    if is_ready && !was_ready {
        ctx.event(
            cluster,
            EventType::Normal,
            "Ready",
            "Reconcile",
            message.clone(),
        )
        .await;
    } else if !is_ready && was_ready {
        ctx.event(
            cluster,
            EventType::Warning,
            reason,
            "Reconcile",
            message.clone(),
        )
        .await;
    }
    write_status(cluster, ctx, ns, &old, &status).await?;
    Ok(if is_ready && rolled_out {
        Action::requeue(Duration::from_secs(300))
    } else {
        Action::requeue(Duration::from_secs(15))
    })
}

/// Applies every object in dependency order; returns the StatefulSet as the API server
/// stored it (with its status).
async fn apply_all(
    ctx: &Context,
    ns: &str,
    cluster: &Cluster,
    desired: &reconcile::Desired,
) -> Result<StatefulSet> {
    let client = &ctx.client;
    apply_object(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        &desired.service_account,
    )
    .await?;
    apply_object(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &desired.config_map,
    )
    .await?;
    let services = Api::<Service>::namespaced(client.clone(), ns);
    apply_object(&services, &desired.headless_service).await?;
    apply_object(&services, &desired.bootstrap_service).await?;
    let bindings = Api::<ClusterRoleBinding>::all(client.clone());
    match &desired.rack_binding {
        Some(b) => {
            apply_object(&bindings, b).await?;
        }
        None => delete_rack_binding(&bindings, cluster).await?,
    }
    let sts = apply_object(
        &Api::<StatefulSet>::namespaced(client.clone(), ns),
        &desired.stateful_set,
    )
    .await?;
    apply_object(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        &desired.pdb,
    )
    .await?;
    Ok(sts)
}

async fn write_status(
    cluster: &Cluster,
    ctx: &Context,
    ns: &str,
    old: &ClusterStatus,
    new: &ClusterStatus,
) -> Result<()> {
    if old == new && cluster.status.is_some() {
        return Ok(());
    }
    let api: Api<Cluster> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({ "status": new });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Deletes this Cluster's rack binding, and only it: the binding must carry this
/// Cluster's labels, and the delete is conditional on the uid that was checked.
async fn delete_rack_binding(bindings: &Api<ClusterRoleBinding>, cluster: &Cluster) -> Result<()> {
    let name = rbac::rack_binding_name(cluster);
    let Some(existing) = bindings.get_opt(&name).await? else {
        return Ok(());
    };
    let labels = existing.metadata.labels.clone().unwrap_or_default();
    let ours = labels.get(CLUSTER_LABEL) == cluster.metadata.name.as_ref()
        && labels.get(rbac::NAMESPACE_LABEL) == cluster.metadata.namespace.as_ref()
        && labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some(MANAGER);
    if !ours {
        tracing::warn!(binding = %name, "ClusterRoleBinding is not this Cluster's rack binding; leaving it alone");
        return Ok(());
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match bindings.delete(&name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Namespaced objects go with the Cluster through owner references; the cluster-scoped
/// rack binding cannot carry one, so it is deleted here. Volumes are kept.
async fn cleanup(cluster: &Cluster, ctx: &Context) -> Result<Action> {
    let bindings = Api::<ClusterRoleBinding>::all(ctx.client.clone());
    delete_rack_binding(&bindings, cluster).await?;
    ctx.event(
        cluster,
        EventType::Normal,
        "Deleted",
        "Cleanup",
        format!(
            "Cluster deleted; its objects are garbage-collected, PersistentVolumeClaims data-{}-N are kept",
            cluster.broker_name()
        ),
    )
    .await;
    Ok(Action::await_change())
}
