//! Authorization checks for request handlers: Kafka's operation on Kafka's resource,
//! with a rate-limited audit line for every denial.

use crate::metadata::ClusterMetadata;
use crate::security::acl::{CLUSTER_RESOURCE, Operation, ResourceType};

use super::RequestContext;
use super::versions::api_name;

impl RequestContext {
    /// Whether an authorizer is on at all (handlers skip work when not).
    pub fn authorizing(&self) -> bool {
        self.broker.security.authorizer
    }

    /// Checks `op` on a resource; a denial is counted and audited.
    pub fn allowed(
        &self,
        md: &ClusterMetadata,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let ok = self.allowed_quietly(md, op, resource_type, name);
        if !ok {
            self.denied(op, resource_type, name);
        }
        ok
    }

    /// For filtering lists (all topics in Metadata, all groups): no audit line.
    pub fn allowed_quietly(
        &self,
        md: &ClusterMetadata,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        self.broker
            .security
            .authorize(md, &self.principal, &self.host, op, resource_type, name)
    }

    pub fn cluster_allowed(&self, md: &ClusterMetadata, op: Operation) -> bool {
        self.allowed(md, op, ResourceType::Cluster, CLUSTER_RESOURCE)
    }

    /// `op` on some resource of this type (Kafka's authorizeByResourceType).
    pub fn any_allowed(
        &self,
        md: &ClusterMetadata,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        let ok =
            self.broker
                .security
                .authorize_any(md, &self.principal, &self.host, op, resource_type);
        if !ok {
            self.denied(op, resource_type, "*");
        }
        ok
    }

    /// True when an authorizer is on and denies `op` on the topic (audited).
    pub fn topic_denied(&self, op: Operation, name: &str) -> bool {
        self.authorizing()
            && !self.allowed(
                &self.broker.metadata.current(),
                op,
                ResourceType::Topic,
                name,
            )
    }

    pub fn cluster_denied(&self, op: Operation) -> bool {
        self.authorizing() && !self.cluster_allowed(&self.broker.metadata.current(), op)
    }

    pub fn group_denied(&self, op: Operation, group: &str) -> bool {
        self.authorizing()
            && !self.allowed(
                &self.broker.metadata.current(),
                op,
                ResourceType::Group,
                group,
            )
    }

    fn denied(&self, op: Operation, resource_type: ResourceType, name: &str) {
        let api = api_name(self.api);
        self.broker.metrics.authorization_denial(api);
        self.broker.security.audit.denied(
            &self.principal,
            &self.peer.to_string(),
            api,
            op.name(),
            resource_type.name(),
            name,
        );
    }
}
