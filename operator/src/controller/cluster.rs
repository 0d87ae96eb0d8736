//! Cluster controller: applies the objects `reconcile::desired` builds, then reports what
//! the StatefulSet and the brokers say.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Context, Error, Result, namespace};
use crate::admin::{AdminError, BrokerAdmin};
use crate::crd::cluster::{RebalanceStatus, RestartStatus};
use crate::crd::condition::{self, DEGRADED, PROGRESSING, READY, REBALANCING};
use crate::crd::{Cluster, ClusterStatus};
use crate::day2;
use crate::reconcile::labels::{self, CLUSTER_LABEL, MANAGER};
use crate::reconcile::{self, configmap, rbac, service};

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

    // Observe first: the day-2 plan decides the StatefulSet's size.
    let mut desired = desired;
    let world = observe(ctx, ns, cluster).await?;
    let mut view = None;
    let mut admin_error = None;
    let mut admin = None;
    if world.pods.iter().any(|p| p.ready) {
        let a = ctx.admin.connect(cluster)?;
        match a.cluster_status().await {
            Ok(cs) => {
                status.cluster_id = Some(cs.cluster_id.clone());
                status.registered_brokers = Some(cs.brokers.len() as i32);
                status.under_replicated_partitions = Some(cs.under_replicated_partitions);
                status.offline_partitions = Some(cs.offline_partitions);
                view = Some(day2::observe::cluster(&cs));
                admin = Some(a);
            }
            Err(e) => admin_error = Some(e.to_string()),
        }
    }
    let now = Timestamp::now();
    track_rebalance(cluster, ctx, &mut status, view.as_ref(), now).await;
    let ops = &cluster.spec.operations;
    let plan = day2::plan(&day2::Observed {
        target: cluster.spec.replicas,
        current: world.replicas,
        update_revision: world.update_revision.clone(),
        pods: &world.pods,
        claims: &world.claims,
        cluster: view.as_ref(),
        status: &status,
        ops,
        now: now.as_second(),
    });
    if let Some(spec) = desired.stateful_set.spec.as_mut() {
        spec.replicas = Some(plan.replicas);
    }

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
    status.current_brokers = Some(plan.replicas);

    let mut rolling = plan.rolling.clone();
    let mut degraded: Option<(&str, String)> = plan.degraded.clone();
    if let Some(admin) = &admin {
        match carry_out(ctx, ns, cluster, admin.as_ref(), &plan, &mut status, now).await {
            Ok(Some(blocked)) => rolling = Some(blocked),
            Ok(None) => {}
            Err(Error::Admin(AdminError::Rejected(msg))) => {
                degraded.get_or_insert((
                    "OperationRefused",
                    format!("the broker refused {:?}: {msg}", plan.step),
                ));
            }
            Err(e) => return Err(e),
        }
        if let Err(e) = apply_dynamic_config(ctx, cluster, admin.as_ref(), &mut status).await {
            degraded.get_or_insert((
                "ConfigRejected",
                format!("the brokers refused spec.config: {e}"),
            ));
        }
    }
    // The restarted broker is back: forget it.
    if let Some(r) = &status.restart
        && world
            .pods
            .iter()
            .any(|p| p.ordinal == r.broker && p.uid != r.pod_uid && p.ready)
    {
        status.restart = None;
    }

    // A missing credentials Secret leaves pods in CreateContainerConfigError: say why.
    if let Some(creds) = cluster
        .spec
        .tiered_storage
        .as_ref()
        .and_then(|t| t.credentials_secret.as_ref())
        && degraded.is_none()
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
    let ready = world
        .pods
        .iter()
        .filter(|p| p.ready && !p.terminating && p.ordinal < replicas)
        .count() as i32;
    status.ready_replicas = st.ready_replicas.unwrap_or(0);
    let rolled_out = rolling.is_none()
        && plan.scaling.is_none()
        && st.observed_generation >= sts.metadata.generation
        && st.replicas == replicas;

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
    let urp = view.as_ref().map_or(0, |v| v.under_replicated);
    let offline = view.as_ref().map_or(0, |v| v.offline);
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
        (None, true) if view.is_none() => (
            false,
            "AdminUnavailable",
            format!("{ready}/{replicas} brokers ready, but the admin API was not asked"),
        ),
        // Serving but not yet safe: a broker lost now could lose acknowledged data.
        (None, true) if urp > 0 || offline > 0 => (
            false,
            "UnderReplicated",
            format!(
                "{ready}/{replicas} brokers ready; {urp} partitions under-replicated, {offline} offline"
            ),
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
    match rolling.as_ref().or(plan.scaling.as_ref()) {
        Some((reason, msg)) if !rolled_out => condition::set(
            &mut status.conditions,
            PROGRESSING,
            true,
            reason,
            msg,
            generation,
        ),
        _ => condition::set(
            &mut status.conditions,
            PROGRESSING,
            false,
            "RolledOut",
            format!("all {replicas} brokers run the current spec"),
            generation,
        ),
    }
    let rebalancing = status
        .rebalance
        .as_ref()
        .filter(|r| r.finished_at.is_none())
        .map(|r| {
            (
                r.reason.clone(),
                format!(
                    "{}/{} partitions moved ({} bytes planned){}",
                    r.partitions_moved,
                    r.partitions_to_move,
                    r.bytes_to_move,
                    if r.draining.is_empty() {
                        String::new()
                    } else {
                        format!(", draining brokers {:?}", r.draining)
                    }
                ),
            )
        });
    let rebalancing_now = rebalancing.is_some();
    match rebalancing {
        Some((reason, msg)) => condition::set(
            &mut status.conditions,
            REBALANCING,
            true,
            &reason,
            msg,
            generation,
        ),
        None => condition::set(
            &mut status.conditions,
            REBALANCING,
            false,
            "Balanced",
            status
                .rebalance
                .as_ref()
                .map(|r| {
                    format!(
                        "last rebalance ({}, {} brokers) moved {} partitions",
                        r.reason, r.brokers, r.partitions_to_move
                    )
                })
                .unwrap_or_default(),
            generation,
        ),
    }
    let was_degraded = condition::get(&old.conditions, DEGRADED)
        .filter(|c| c.status == "True")
        .map(|c| (c.reason.clone(), c.message.clone()));
    match degraded {
        Some((reason, msg)) => {
            if was_degraded.as_ref().map(|(r, _)| r.as_str()) != Some(reason) {
                ctx.event(
                    cluster,
                    EventType::Warning,
                    reason,
                    "Reconcile",
                    msg.clone(),
                )
                .await;
            }
            condition::set(
                &mut status.conditions,
                DEGRADED,
                true,
                reason,
                msg,
                generation,
            )
        }
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
                "applied generation {}: StatefulSet {} with {} brokers, Services, ConfigMap, PodDisruptionBudget",
                generation.unwrap_or_default(),
                cluster.broker_name(),
                plan.replicas
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
    let busy = plan.step != day2::Step::Wait
        || plan.scaling.is_some()
        || rolling.is_some()
        || rebalancing_now;
    Ok(if busy {
        Action::requeue(Duration::from_secs(10))
    } else if is_ready && rolled_out {
        Action::requeue(Duration::from_secs(300))
    } else {
        Action::requeue(Duration::from_secs(15))
    })
}

/// What the controller reads before deciding.
struct World {
    replicas: Option<i32>,
    update_revision: Option<String>,
    pods: Vec<day2::PodView>,
    claims: Vec<i32>,
}

/// Reads the StatefulSet, the broker pods and their volumes straight from the API server
/// (not a cache): a decision to restart a broker must see every pod as it is now.
async fn observe(ctx: &Context, ns: &str, cluster: &Cluster) -> Result<World> {
    let sts_name = cluster.broker_name();
    let sts = Api::<StatefulSet>::namespaced(ctx.client.clone(), ns)
        .get_opt(&sts_name)
        .await?;
    let selector = labels::selector(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let lp = ListParams::default().labels(&selector);
    let pod_prefix = format!("{sts_name}-");
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns)
        .list(&lp)
        .await?
        .items
        .iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&pod_prefix))
        })
        .filter_map(day2::observe::pod)
        .collect();
    let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", cluster.name_any())))
        .await?
        .items
        .iter()
        .filter_map(|c| day2::observe::claim_ordinal(c.metadata.name.as_deref()?, &sts_name))
        .collect();
    Ok(World {
        replicas: sts.as_ref().and_then(|s| s.spec.as_ref()?.replicas),
        update_revision: sts
            .as_ref()
            .and_then(|s| s.status.as_ref()?.update_revision.clone()),
        pods,
        claims,
    })
}

/// Brings `status.rebalance` up to date from the moves still in progress.
async fn track_rebalance(
    cluster: &Cluster,
    ctx: &Context,
    status: &mut ClusterStatus,
    view: Option<&day2::ClusterView>,
    now: Timestamp,
) {
    let (Some(r), Some(v)) = (status.rebalance.as_mut(), view) else {
        return;
    };
    if r.finished_at.is_some() {
        return;
    }
    r.partitions_moved = (r.partitions_to_move - v.reassigning).clamp(0, r.partitions_to_move);
    if v.reassigning == 0 {
        r.partitions_moved = r.partitions_to_move;
        r.finished_at = Some(now.to_string());
        let msg = format!(
            "{} rebalance for {} brokers finished: {} partitions moved",
            r.reason, r.brokers, r.partitions_to_move
        );
        ctx.event(
            cluster,
            EventType::Normal,
            "RebalanceFinished",
            "Rebalance",
            msg,
        )
        .await;
    }
}

/// Carries out the plan's step. Returns a reason the roll is blocked, if it is.
async fn carry_out(
    ctx: &Context,
    ns: &str,
    cluster: &Cluster,
    admin: &dyn BrokerAdmin,
    plan: &day2::Plan,
    status: &mut ClusterStatus,
    now: Timestamp,
) -> Result<Option<(&'static str, String)>> {
    let ops = &cluster.spec.operations;
    let event = |reason: &'static str, msg: String| {
        ctx.event(cluster, EventType::Normal, reason, "DayTwo", msg)
    };
    match &plan.step {
        day2::Step::Wait => {}
        day2::Step::SetVoters(v) => {
            admin.set_quorum_voters(v.clone()).await?;
            event(
                "QuorumVotersChanged",
                format!("metadata quorum voters are now {v:?}"),
            )
            .await;
        }
        day2::Step::Drain(_) | day2::Step::Rebalance => {
            // A drain is a rebalance that empties the brokers being removed.
            let draining = match &plan.step {
                day2::Step::Drain(ids) => ids.clone(),
                _ => Vec::new(),
            };
            let p = admin
                .rebalance(draining.clone(), ops.throttle_bytes_per_second)
                .await?;
            let (reason, started, whither) = if draining.is_empty() {
                (
                    day2::scale::SCALE_UP,
                    "RebalanceStarted",
                    format!("onto the {} brokers", cluster.spec.replicas),
                )
            } else {
                (
                    day2::scale::SCALE_DOWN,
                    "DrainStarted",
                    format!("off brokers {draining:?} before removing them"),
                )
            };
            status.rebalance = Some(RebalanceStatus {
                reason: reason.into(),
                brokers: cluster.spec.replicas,
                draining,
                partitions_to_move: p.moves.len() as i32,
                partitions_moved: 0,
                bytes_to_move: p.bytes_to_move,
                started_at: now.to_string(),
                finished_at: p.moves.is_empty().then(|| now.to_string()),
            });
            event(
                started,
                format!(
                    "moving {} partitions ({} bytes) {whither}",
                    p.moves.len(),
                    p.bytes_to_move
                ),
            )
            .await;
        }
        day2::Step::Unregister(id) => {
            admin.unregister_broker(*id).await?;
            event(
                "BrokerRemoved",
                format!("broker {id} removed from the cluster metadata"),
            )
            .await;
        }
        day2::Step::DeleteClaim(ord) => {
            let name = format!("data-{}-{ord}", cluster.broker_name());
            let claims = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns);
            if let Some(c) = claims.get_opt(&name).await? {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: c.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match claims.delete(&name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
                event("VolumeDeleted", format!("deleted PersistentVolumeClaim {name} of removed broker {ord} (removedBrokerVolumes: Delete)")).await;
            }
        }
        day2::Step::Restart { ordinal, uid } => {
            let safety = admin.restart_safety(*ordinal).await?;
            if !safety.safe {
                let list = safety
                    .blocking
                    .iter()
                    .take(5)
                    .map(|p| {
                        format!(
                            "{}-{} (ISR {:?}, min.insync.replicas {})",
                            p.topic, p.partition, p.isr, p.min_insync_replicas
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Ok(Some((
                    "RollBlocked",
                    format!(
                        "restarting broker {ordinal} now would take {} partitions below min.insync.replicas: {list}; waiting for them to catch up",
                        safety.blocking.len()
                    ),
                )));
            }
            let name = format!("{}-{ordinal}", cluster.broker_name());
            let pods = Api::<Pod>::namespaced(ctx.client.clone(), ns);
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            // Written before the delete: an operator restart right after it still knows
            // which broker it is waiting for.
            status.restart = Some(RestartStatus {
                broker: *ordinal,
                pod_uid: uid.clone(),
                revision: String::new(),
                started_at: now.to_string(),
            });
            match pods.delete(&name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            event(
                "BrokerRestarted",
                format!(
                    "restarting broker {ordinal} (controlled shutdown) to apply the current spec"
                ),
            )
            .await;
        }
    }
    Ok(None)
}

/// Applies `spec.config` settings the brokers take without a restart as cluster-wide
/// dynamic configs; `status.dynamicConfig` remembers what was applied, so settings
/// removed from the spec are removed from the brokers too.
async fn apply_dynamic_config(
    ctx: &Context,
    cluster: &Cluster,
    admin: &dyn BrokerAdmin,
    status: &mut ClusterStatus,
) -> Result<(), AdminError> {
    let want = configmap::dynamic_properties(cluster);
    if want == status.dynamic_config {
        return Ok(());
    }
    let set: BTreeMap<String, String> = want
        .iter()
        .filter(|(k, v)| status.dynamic_config.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove: Vec<String> = status
        .dynamic_config
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    admin
        .alter_cluster_configs(set.clone(), remove.clone())
        .await?;
    ctx.event(
        cluster,
        EventType::Normal,
        "ConfigApplied",
        "DayTwo",
        format!("applied without restart: set {set:?}, removed {remove:?}"),
    )
    .await;
    status.dynamic_config = want;
    Ok(())
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
