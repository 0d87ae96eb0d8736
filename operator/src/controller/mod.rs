//! The controllers: they diff and apply what `reconcile` builds, talk to brokers through
//! `admin`, and write status. Nothing here decides what objects look like.

pub mod cluster;
pub mod topic;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::admin::{AdminConnector, AdminError};
use crate::crd::{Cluster, Topic};
use crate::reconcile::Settings;
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0}")]
    Admin(#[from] AdminError),
    #[error("{kind} {name} has no namespace")]
    NoNamespace { kind: &'static str, name: String },
}

impl Error {
    /// Short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::Admin(AdminError::Unavailable { .. }) => "admin_unavailable",
            Error::Admin(AdminError::Rejected(_)) => "admin_rejected",
            Error::NoNamespace { .. } => "no_namespace",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shared by every reconcile.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub admin: Arc<dyn AdminConnector>,
    pub metrics: Arc<Metrics>,
    /// One recorder, so kube can fold repeated events into a series.
    pub recorder: Recorder,
    /// How often a Topic is compared with the broker even without changes (drift).
    pub topic_resync: Duration,
    /// The Topic controller's cache of Topics in its scope, for conflict checks without
    /// listing Topics on every reconcile. `None`: list from the API server.
    pub topics: Option<Store<Topic>>,
}

impl Context {
    /// Publishes a Kubernetes Event; failures are logged, never fatal.
    pub async fn event<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(truncate(note, MAX_NOTE_BYTES)),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
    }
}

/// The Events API refuses notes over 1 kB.
const MAX_NOTE_BYTES: usize = 1024;

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

pub fn namespace<K: Resource>(obj: &K, kind: &'static str) -> Result<String> {
    obj.meta()
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace {
            kind,
            name: obj.meta().name.clone().unwrap_or_default(),
        })
}

fn error_policy<K: ResourceExt>(
    controller: &'static str,
) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |obj, error, ctx| {
        tracing::warn!(
            controller,
            namespace = obj.namespace().unwrap_or_default(),
            name = %obj.name_any(),
            error = %error,
            "reconcile failed; retrying in 15s"
        );
        ctx.metrics
            .reconcile_error(controller, error.metric_label());
        Action::requeue(Duration::from_secs(15))
    }
}

/// APIs for one watch scope: a namespace, or all namespaces.
fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs both controllers for one scope until shutdown.
pub async fn run(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=sluice-operator");
    let clusters = Controller::new(api::<Cluster>(&client, ns), watcher::Config::default())
        .owns(api::<StatefulSet>(&client, ns), managed)
        .shutdown_on_signal()
        .run(cluster::reconcile, error_policy("cluster"), ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "cluster controller stream");
            }
        });

    let topic_controller = Controller::new(api::<Topic>(&client, ns), watcher::Config::default());
    let store = topic_controller.store();
    let topic_ctx = Arc::new(Context {
        topics: Some(store.clone()),
        ..(*ctx).clone()
    });
    let topics = topic_controller
        // A Cluster becoming ready (or going away) re-checks its Topics at once.
        .watches(
            api::<Cluster>(&client, ns),
            watcher::Config::default(),
            move |c: Cluster| {
                let (name, ns) = (c.name_any(), c.namespace());
                store
                    .state()
                    .into_iter()
                    .filter(|t| t.spec.cluster_ref == name && t.namespace() == ns)
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(topic::reconcile, error_policy("topic"), topic_ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "topic controller stream");
            }
        });
    futures::join!(clusters, topics);
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    #[test]
    fn notes_are_cut_on_a_char_boundary() {
        let long = "é".repeat(600);
        let t = super::truncate(long, 1024);
        assert!(t.len() <= 1024 && t.ends_with("..."));
        assert_eq!(super::truncate("short".into(), 1024), "short");
    }
}
