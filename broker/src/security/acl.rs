//! Kafka's ACL model (resource patterns plus access control entries) and an authorizer that
//! reaches the same decisions as Kafka's `StandardAuthorizer`, so clients and tooling written
//! against Kafka see identical results.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// Kafka has a single cluster resource and every CLUSTER ACL must name it.
pub const CLUSTER_RESOURCE: &str = "kafka-cluster";
/// A literal ACL with this name applies to every resource of its type.
pub const WILDCARD_RESOURCE: &str = "*";
/// ACLs for this principal apply to every user (Kafka only treats `User:*` as a wildcard).
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// ACLs with this host apply to every client address.
pub const WILDCARD_HOST: &str = "*";

/// Kafka's `authorizeByResourceType` first authorizes this fixed literal name; keeping the same
/// probe makes super users and `allow.everyone.if.no.acl.found` behave exactly as in Kafka.
const PROBE_RESOURCE: &str = "hardcode";

/// Defines one of Kafka's ACL enums with its wire codes and upper-case names, so the codes and
/// names cannot drift apart between `code`, `from_code`, `name` and `parse`.
macro_rules! kafka_enum {
    (
        $(#[$meta:meta])*
        $ty:ident { $($variant:ident = $code:literal => $name:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        pub enum $ty {
            $($variant,)+
        }

        impl $ty {
            /// Every value, in wire-code order.
            pub const VARIANTS: &'static [$ty] = &[$($ty::$variant,)+];

            pub fn code(self) -> i8 {
                match self {
                    $($ty::$variant => $code,)+
                }
            }

            /// `None` for UNKNOWN, ANY and codes this broker does not know: none of them name a
            /// concrete value that an ACL can hold.
            pub fn from_code(code: i8) -> Option<Self> {
                match code {
                    $($code => Some($ty::$variant),)+
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }

            /// Accepts Kafka's names case-insensitively and with or without `_`/`-`, because
            /// admin tools spell them every way ("ClusterAction", "cluster_action").
            pub fn parse(s: &str) -> Option<Self> {
                Self::VARIANTS.iter().copied().find(|v| loose_eq(v.name(), s))
            }
        }
    };
}

kafka_enum! {
    ResourceType {
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
    }
}

kafka_enum! {
    PatternType {
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
}

kafka_enum! {
    Operation {
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
    }
}

kafka_enum! {
    Permission {
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
}

/// Characters of `s` with separators dropped and ASCII case folded, for lenient name parsing.
fn folded(s: &str) -> impl Iterator<Item = char> + '_ {
    s.chars()
        .filter(|&c| !matches!(c, '_' | '-' | ' '))
        .map(|c| c.to_ascii_lowercase())
}

fn loose_eq(a: &str, b: &str) -> bool {
    folded(a).eq(folded(b))
}

/// One ACL: a resource pattern plus an access control entry, flattened as Kafka's
/// CreateAcls/DescribeAcls carry them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    /// `Type:name`, e.g. `User:alice`; `User:*` matches every user.
    pub principal: String,
    /// `*` or an exact client IP address string.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// The checks Kafka makes in CreateAcls, so bindings Kafka would refuse never get stored.
    pub fn validate(&self) -> Result<(), AclError> {
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(AclError::Invalid(format!(
                    "could not parse principal `{}`: expected `Type:name`",
                    self.principal
                )));
            }
        }
        if self.name.is_empty() {
            return Err(AclError::Invalid("resource name must not be empty".into()));
        }
        if self.resource_type == ResourceType::Cluster
            && (self.pattern != PatternType::Literal || self.name != CLUSTER_RESOURCE)
        {
            return Err(AclError::Invalid(format!(
                "the only valid CLUSTER resource is the literal `{CLUSTER_RESOURCE}`"
            )));
        }
        if self.pattern == PatternType::Prefixed && self.name == WILDCARD_RESOURCE {
            return Err(AclError::Invalid(
                "a PREFIXED pattern cannot use the wildcard name `*`; use a LITERAL `*`".into(),
            ));
        }
        if self.host.is_empty() {
            return Err(AclError::Invalid("host must not be empty".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("invalid ACL: {0}")]
    Invalid(String),
}

/// DescribeAcls / DeleteAcls filter. None = ANY.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

/// The pattern-type part of a filter: ANY and MATCH only exist in filters, never in ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatternFilter {
    #[default]
    Any,
    /// Every ACL that would apply to the named resource (literal, `*` and covering prefixes).
    Match,
    Exact(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<Self> {
        match code {
            1 => Some(PatternFilter::Any),
            2 => Some(PatternFilter::Match),
            3 => Some(PatternFilter::Exact(PatternType::Literal)),
            4 => Some(PatternFilter::Exact(PatternType::Prefixed)),
            _ => None,
        }
    }

    pub fn code(self) -> i8 {
        match self {
            PatternFilter::Any => 1,
            PatternFilter::Match => 2,
            PatternFilter::Exact(p) => p.code(),
        }
    }
}

impl AclFilter {
    /// Kafka's `ResourcePatternFilter.matches` and `AccessControlEntryFilter.matches`: names,
    /// principals and hosts compare exactly; only MATCH expands to wildcard and prefix ACLs.
    pub fn matches(&self, b: &AclBinding) -> bool {
        self.matches_pattern(b) && self.matches_entry(b)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        if self.resource_type.is_some_and(|t| t != b.resource_type) {
            return false;
        }
        if matches!(self.pattern, PatternFilter::Exact(p) if p != b.pattern) {
            return false;
        }
        let Some(name) = &self.name else {
            return true;
        };
        match self.pattern {
            PatternFilter::Any | PatternFilter::Exact(_) => *name == b.name,
            PatternFilter::Match => match b.pattern {
                PatternType::Literal => *name == b.name || b.name == WILDCARD_RESOURCE,
                PatternType::Prefixed => name.starts_with(b.name.as_str()),
            },
        }
    }

    fn matches_entry(&self, b: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }
}

/// Who is asking, from where, and the broker settings that decide the default.
#[derive(Debug, Clone, Copy)]
pub struct AuthzContext<'a> {
    /// `User:alice`, or `User:ANONYMOUS` when unauthenticated.
    pub principal: &'a str,
    /// The client's IP address as a string.
    pub host: &'a str,
    pub super_users: &'a [String],
    /// `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

impl AuthzContext<'_> {
    pub fn is_super_user(&self) -> bool {
        self.super_users
            .iter()
            .any(|u| u.as_str() == self.principal)
    }

    fn matches_principal(&self, acl: &AclBinding) -> bool {
        acl.principal == self.principal || acl.principal == WILDCARD_PRINCIPAL
    }

    fn matches_host(&self, acl: &AclBinding) -> bool {
        acl.host == WILDCARD_HOST || acl.host == self.host
    }
}

/// The ACLs of one resource type, keyed so a lookup only touches ACLs that can match.
#[derive(Debug, Default)]
struct TypeIndex {
    /// Literal ACLs by name, the wildcard `*` included.
    literal: HashMap<String, Vec<AclBinding>>,
    /// Prefixed ACLs by prefix.
    prefixed: HashMap<String, Vec<AclBinding>>,
    /// Distinct byte lengths of the prefixes, ascending: a resource name only needs one lookup
    /// per length instead of one per prefix of the name.
    prefix_lens: Vec<usize>,
    /// Every ACL of the type, for the per-type question of `authorize_any`.
    all: Vec<AclBinding>,
}

impl TypeIndex {
    /// Literal ACLs for the name, the literal wildcard, and prefixed ACLs covering the name.
    fn matching<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a AclBinding> + 'a {
        let exact = self.literal.get(name);
        let wildcard = if name == WILDCARD_RESOURCE {
            None
        } else {
            self.literal.get(WILDCARD_RESOURCE)
        };
        let prefixed = self
            .prefix_lens
            .iter()
            .take_while(move |&&len| len <= name.len())
            .filter_map(move |&len| name.get(..len))
            .filter_map(move |prefix| self.prefixed.get(prefix));
        exact.into_iter().chain(wildcard).chain(prefixed).flatten()
    }
}

/// An immutable index over the cluster's ACLs, rebuilt when they change.
#[derive(Debug, Default)]
pub struct AclIndex {
    by_type: HashMap<ResourceType, TypeIndex>,
    len: usize,
}

impl AclIndex {
    pub fn new<'a>(bindings: impl IntoIterator<Item = &'a AclBinding>) -> Self {
        let mut index = AclIndex::default();
        for b in bindings {
            let t = index.by_type.entry(b.resource_type).or_default();
            let by_name = match b.pattern {
                PatternType::Literal => &mut t.literal,
                PatternType::Prefixed => &mut t.prefixed,
            };
            by_name.entry(b.name.clone()).or_default().push(b.clone());
            t.all.push(b.clone());
            index.len += 1;
        }
        for t in index.by_type.values_mut() {
            let mut lens: Vec<usize> = t.prefixed.keys().map(String::len).collect();
            lens.sort_unstable();
            lens.dedup();
            t.prefix_lens = lens;
        }
        index
    }

    /// Kafka's rule: super users are always allowed. A resource with no ACL at all that matches
    /// it (any principal) gets `allow_if_no_acl`. Otherwise a matching DENY wins, then a matching
    /// ALLOW (including the implied DESCRIBE / DESCRIBE_CONFIGS), else denied.
    pub fn authorize(
        &self,
        ctx: &AuthzContext<'_>,
        op: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if ctx.is_super_user() {
            return true;
        }
        let Some(t) = self.by_type.get(&resource_type) else {
            return ctx.allow_if_no_acl;
        };
        let mut any_acl = false;
        let mut allowed = false;
        for acl in t.matching(name) {
            any_acl = true;
            match decide(ctx, op, acl) {
                Some(Permission::Deny) => return false,
                Some(Permission::Allow) => allowed = true,
                None => {}
            }
        }
        if any_acl {
            allowed
        } else {
            ctx.allow_if_no_acl
        }
    }

    /// Kafka's `authorizeByResourceType` (the default the StandardAuthorizer uses): could the
    /// principal do `op` on SOME resource of this type, as idempotent producers need WRITE on
    /// any topic. Kafka first authorizes the fixed name "hardcode" (so super users and the
    /// no-ACL default apply), then a DENY on literal `*` denies, an ALLOW on literal `*` allows,
    /// and otherwise any ALLOW not covered by an equal literal DENY or a covering prefixed DENY
    /// allows. Only `op` and ALL count in that scan, as in Kafka.
    pub fn authorize_any(
        &self,
        ctx: &AuthzContext<'_>,
        op: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if self.authorize(ctx, op, resource_type, PROBE_RESOURCE) {
            return true;
        }
        let Some(t) = self.by_type.get(&resource_type) else {
            return false;
        };
        let mut deny_literal: HashSet<&str> = HashSet::new();
        let mut deny_prefixed: Vec<&str> = Vec::new();
        let mut allow_literal: Vec<&str> = Vec::new();
        let mut allow_prefixed: Vec<&str> = Vec::new();
        let mut wildcard_allow = false;
        for acl in &t.all {
            if !ctx.matches_host(acl)
                || !ctx.matches_principal(acl)
                || (acl.operation != op && acl.operation != Operation::All)
            {
                continue;
            }
            let name = acl.name.as_str();
            match (acl.permission, acl.pattern) {
                (Permission::Deny, PatternType::Literal) => {
                    if name == WILDCARD_RESOURCE {
                        return false;
                    }
                    deny_literal.insert(name);
                }
                (Permission::Deny, PatternType::Prefixed) => {
                    // Validation forbids it, but an empty prefix would deny every name.
                    if name.is_empty() {
                        return false;
                    }
                    deny_prefixed.push(name);
                }
                (Permission::Allow, PatternType::Literal) => {
                    if name == WILDCARD_RESOURCE {
                        wildcard_allow = true;
                    }
                    allow_literal.push(name);
                }
                (Permission::Allow, PatternType::Prefixed) => allow_prefixed.push(name),
            }
        }
        if wildcard_allow {
            return true;
        }
        let dominated = |name: &str| deny_prefixed.iter().any(|&d| name.starts_with(d));
        allow_literal
            .iter()
            .any(|&name| !deny_literal.contains(name) && !dominated(name))
            || allow_prefixed.iter().any(|&name| !dominated(name))
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

/// Kafka's `StandardAuthorizerData.findResult` for an ACL whose resource already matches:
/// `None` when the ACL does not apply to this principal, host or operation.
fn decide(ctx: &AuthzContext<'_>, op: Operation, acl: &AclBinding) -> Option<Permission> {
    if !ctx.matches_principal(acl) || !ctx.matches_host(acl) {
        return None;
    }
    if acl.operation != Operation::All {
        // Implication only widens ALLOWs: a DENY on READ does not deny DESCRIBE.
        let applies = match acl.permission {
            Permission::Allow => acl.operation == op || implies(acl.operation, op),
            Permission::Deny => acl.operation == op,
        };
        if !applies {
            return None;
        }
    }
    Some(acl.permission)
}

/// Kafka grants DESCRIBE with READ, WRITE, DELETE or ALTER, and DESCRIBE_CONFIGS with
/// ALTER_CONFIGS, because a client that may change something must be able to see it.
fn implies(granted: Operation, wanted: Operation) -> bool {
    match wanted {
        Operation::Describe => matches!(
            granted,
            Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
        ),
        Operation::DescribeConfigs => granted == Operation::AlterConfigs,
        _ => false,
    }
}

/// `super.users` value: "User:a;User:b" (semicolon-separated, trimmed, empties dropped).
pub fn parse_super_users(raw: &str) -> Vec<String> {
    raw.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn acl(
        resource_type: ResourceType,
        name: &str,
        pattern: PatternType,
        principal: &str,
        host: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            name: name.to_owned(),
            pattern,
            principal: principal.to_owned(),
            host: host.to_owned(),
            operation,
            permission,
        }
    }

    fn topic(name: &str, pattern: PatternType, principal: &str, op: Operation) -> AclBinding {
        acl(
            ResourceType::Topic,
            name,
            pattern,
            principal,
            "*",
            op,
            Permission::Allow,
        )
    }

    fn deny(mut b: AclBinding) -> AclBinding {
        b.permission = Permission::Deny;
        b
    }

    fn ctx<'a>(
        principal: &'a str,
        supers: &'a [String],
        allow_if_no_acl: bool,
    ) -> AuthzContext<'a> {
        AuthzContext {
            principal,
            host: "10.0.0.1",
            super_users: supers,
            allow_if_no_acl,
        }
    }

    const NO_SUPERS: &[String] = &[];
    const ALICE: &str = "User:alice";
    const BOB: &str = "User:bob";
    use Operation::*;
    use PatternType::*;

    #[test]
    fn literal_acl_matches_only_its_name() {
        let idx = AclIndex::new(&[topic("orders", Literal, ALICE, Read)]);
        let c = ctx(ALICE, NO_SUPERS, false);
        assert!(idx.authorize(&c, Read, ResourceType::Topic, "orders"));
        assert!(!idx.authorize(&c, Read, ResourceType::Topic, "orders2"));
        assert!(!idx.authorize(&c, Read, ResourceType::Topic, "order"));
        assert!(!idx.authorize(&c, Write, ResourceType::Topic, "orders"));
        assert!(!idx.authorize(&c, Read, ResourceType::Group, "orders"));
        assert!(!idx.authorize(
            &ctx(BOB, NO_SUPERS, false),
            Read,
            ResourceType::Topic,
            "orders"
        ));
    }

    #[test]
    fn prefixed_acl_matches_names_starting_with_it() {
        let idx = AclIndex::new(&[
            topic("logs-", Prefixed, ALICE, Write),
            topic("x", Prefixed, ALICE, Read),
        ]);
        let c = ctx(ALICE, NO_SUPERS, false);
        assert!(idx.authorize(&c, Write, ResourceType::Topic, "logs-app"));
        assert!(idx.authorize(&c, Write, ResourceType::Topic, "logs-"));
        assert!(!idx.authorize(&c, Write, ResourceType::Topic, "logs"));
        assert!(!idx.authorize(&c, Write, ResourceType::Topic, "app-logs-1"));
        assert!(idx.authorize(&c, Read, ResourceType::Topic, "xyz"));
        assert!(!idx.authorize(&c, Read, ResourceType::Topic, "yx"));
        // Multi-byte names: prefix lengths that split a character are skipped, not a panic.
        assert!(!idx.authorize(&c, Write, ResourceType::Topic, "ééé"));
    }

    #[test]
    fn literal_wildcard_matches_every_name() {
        let idx = AclIndex::new(&[topic("*", Literal, BOB, Read)]);
        let c = ctx(BOB, NO_SUPERS, false);
        assert!(idx.authorize(&c, Read, ResourceType::Topic, "anything"));
        assert!(idx.authorize(&c, Read, ResourceType::Topic, "other"));
        assert!(!idx.authorize(&c, Read, ResourceType::Group, "anything"));
    }

    #[test]
    fn deny_beats_allow() {
        let idx = AclIndex::new(&[
            topic("*", Literal, "User:*", Read),
            deny(topic("secret", Literal, ALICE, Read)),
            deny(topic("private-", Prefixed, ALICE, All)),
        ]);
        let alice = ctx(ALICE, NO_SUPERS, false);
        let bob = ctx(BOB, NO_SUPERS, false);
        assert!(!idx.authorize(&alice, Read, ResourceType::Topic, "secret"));
        assert!(idx.authorize(&alice, Read, ResourceType::Topic, "public"));
        assert!(!idx.authorize(&alice, Read, ResourceType::Topic, "private-1"));
        assert!(idx.authorize(&bob, Read, ResourceType::Topic, "secret"));
        assert!(idx.authorize(&bob, Read, ResourceType::Topic, "private-1"));
    }

    #[test]
    fn allow_implies_describe_but_deny_does_not() {
        let idx = AclIndex::new(&[
            topic("t", Literal, ALICE, Write),
            deny(topic("t", Literal, ALICE, Read)),
            acl(
                ResourceType::Topic,
                "c",
                Literal,
                ALICE,
                "*",
                AlterConfigs,
                Permission::Allow,
            ),
        ]);
        let c = ctx(ALICE, NO_SUPERS, false);
        assert!(idx.authorize(&c, Describe, ResourceType::Topic, "t"));
        assert!(idx.authorize(&c, Write, ResourceType::Topic, "t"));
        assert!(!idx.authorize(&c, Read, ResourceType::Topic, "t"));
        assert!(!idx.authorize(&c, Delete, ResourceType::Topic, "t"));
        assert!(idx.authorize(&c, DescribeConfigs, ResourceType::Topic, "c"));
        assert!(!idx.authorize(&c, Describe, ResourceType::Topic, "c"));
        // READ does not imply WRITE.
        let idx = AclIndex::new(&[topic("r", Literal, ALICE, Read)]);
        assert!(!idx.authorize(&c, Write, ResourceType::Topic, "r"));
        assert!(idx.authorize(&c, Describe, ResourceType::Topic, "r"));
    }

    #[test]
    fn all_operation_covers_every_operation() {
        let idx = AclIndex::new(&[
            topic("a", Literal, ALICE, All),
            deny(topic("b", Literal, "User:*", All)),
            topic("b", Literal, ALICE, Read),
        ]);
        let c = ctx(ALICE, NO_SUPERS, false);
        for op in [Read, Write, Describe, DescribeConfigs, Alter, Delete] {
            assert!(idx.authorize(&c, op, ResourceType::Topic, "a"));
            assert!(!idx.authorize(&c, op, ResourceType::Topic, "b"));
        }
    }

    #[test]
    fn super_user_is_always_allowed() {
        let supers = parse_super_users("User:admin");
        let idx = AclIndex::new(&[deny(topic("*", Literal, "User:*", All))]);
        assert!(idx.authorize(
            &ctx("User:admin", &supers, false),
            Write,
            ResourceType::Topic,
            "t"
        ));
        assert!(!idx.authorize(&ctx(ALICE, &supers, false), Write, ResourceType::Topic, "t"));
        assert!(AclIndex::default().authorize(
            &ctx("User:admin", &supers, false),
            ClusterAction,
            ResourceType::Cluster,
            CLUSTER_RESOURCE
        ));
    }

    #[test]
    fn no_acl_found_uses_the_default() {
        let empty = AclIndex::default();
        assert!(empty.is_empty());
        assert!(empty.authorize(&ctx(ALICE, NO_SUPERS, true), Read, ResourceType::Topic, "t"));
        assert!(!empty.authorize(
            &ctx(ALICE, NO_SUPERS, false),
            Read,
            ResourceType::Topic,
            "t"
        ));

        // ACLs on the resource for someone else mean "ACLs found": the default no longer applies.
        let idx = AclIndex::new(&[topic("t", Literal, ALICE, Read)]);
        assert!(!idx.is_empty());
        assert_eq!(idx.len(), 1);
        assert!(!idx.authorize(&ctx(BOB, NO_SUPERS, true), Read, ResourceType::Topic, "t"));
        assert!(idx.authorize(
            &ctx(BOB, NO_SUPERS, true),
            Read,
            ResourceType::Topic,
            "other"
        ));
        assert!(!idx.authorize(
            &ctx(BOB, NO_SUPERS, false),
            Read,
            ResourceType::Topic,
            "other"
        ));
        // ... also when the only ACL is for a different operation.
        assert!(!idx.authorize(
            &ctx(ALICE, NO_SUPERS, true),
            Write,
            ResourceType::Topic,
            "t"
        ));
        // Another resource type is unaffected.
        assert!(idx.authorize(&ctx(BOB, NO_SUPERS, true), Read, ResourceType::Group, "t"));
    }

    #[test]
    fn host_must_match_or_be_wildcard() {
        let idx = AclIndex::new(&[
            acl(
                ResourceType::Topic,
                "t",
                Literal,
                ALICE,
                "10.0.0.1",
                Read,
                Permission::Allow,
            ),
            acl(
                ResourceType::Topic,
                "u",
                Literal,
                ALICE,
                "*",
                Read,
                Permission::Allow,
            ),
            acl(
                ResourceType::Topic,
                "u",
                Literal,
                ALICE,
                "10.0.0.2",
                Read,
                Permission::Deny,
            ),
        ]);
        let mut c = ctx(ALICE, NO_SUPERS, false);
        assert!(idx.authorize(&c, Read, ResourceType::Topic, "t"));
        assert!(idx.authorize(&c, Read, ResourceType::Topic, "u"));
        c.host = "10.0.0.2";
        assert!(!idx.authorize(&c, Read, ResourceType::Topic, "t"));
        assert!(!idx.authorize(&c, Read, ResourceType::Topic, "u"));
        c.host = "10.0.0.3";
        assert!(idx.authorize(&c, Read, ResourceType::Topic, "u"));
    }

    #[test]
    fn wildcard_principal_matches_every_user() {
        let idx = AclIndex::new(&[
            topic("t", Literal, "User:*", Read),
            topic("g", Literal, "Group:*", Read),
        ]);
        assert!(idx.authorize(&ctx(BOB, NO_SUPERS, false), Read, ResourceType::Topic, "t"));
        assert!(idx.authorize(
            &ctx("User:ANONYMOUS", NO_SUPERS, false),
            Read,
            ResourceType::Topic,
            "t"
        ));
        // Only `User:*` is a wildcard.
        assert!(!idx.authorize(&ctx(BOB, NO_SUPERS, false), Read, ResourceType::Topic, "g"));
    }

    #[test]
    fn authorize_any_basics() {
        let supers = parse_super_users("User:admin");
        let empty = AclIndex::default();
        assert!(empty.authorize_any(
            &ctx("User:admin", &supers, false),
            Write,
            ResourceType::Topic
        ));
        assert!(empty.authorize_any(&ctx(ALICE, NO_SUPERS, true), Write, ResourceType::Topic));
        assert!(!empty.authorize_any(&ctx(ALICE, NO_SUPERS, false), Write, ResourceType::Topic));

        let idx = AclIndex::new(&[topic("app-", Prefixed, ALICE, Write)]);
        assert!(idx.authorize_any(&ctx(ALICE, NO_SUPERS, false), Write, ResourceType::Topic));
        assert!(!idx.authorize_any(&ctx(ALICE, NO_SUPERS, false), Read, ResourceType::Topic));
        assert!(!idx.authorize_any(&ctx(BOB, NO_SUPERS, false), Write, ResourceType::Topic));
        assert!(!idx.authorize_any(&ctx(ALICE, NO_SUPERS, false), Write, ResourceType::Group));
        // Some other topic has no ACLs, so with the permissive default bob could write to it.
        assert!(idx.authorize_any(&ctx(BOB, NO_SUPERS, true), Write, ResourceType::Topic));

        let idx = AclIndex::new(&[topic("t", Literal, ALICE, All)]);
        assert!(idx.authorize_any(&ctx(ALICE, NO_SUPERS, false), Write, ResourceType::Topic));
    }

    #[test]
    fn authorize_any_respects_denies() {
        let c = ctx(ALICE, NO_SUPERS, false);
        let lit = AclIndex::new(&[
            topic("t1", Literal, ALICE, Write),
            deny(topic("t1", Literal, ALICE, Write)),
        ]);
        assert!(!lit.authorize_any(&c, Write, ResourceType::Topic));
        let lit2 = AclIndex::new(&[
            topic("t1", Literal, ALICE, Write),
            deny(topic("t1", Literal, ALICE, Write)),
            topic("t2", Literal, ALICE, Write),
        ]);
        assert!(lit2.authorize_any(&c, Write, ResourceType::Topic));

        let covered = AclIndex::new(&[
            topic("app-", Prefixed, ALICE, Write),
            topic("app-x", Literal, ALICE, Write),
            deny(topic("app", Prefixed, "User:*", Write)),
        ]);
        assert!(!covered.authorize_any(&c, Write, ResourceType::Topic));
        let narrower = AclIndex::new(&[
            topic("app-", Prefixed, ALICE, Write),
            deny(topic("app-x", Prefixed, ALICE, Write)),
        ]);
        assert!(narrower.authorize_any(&c, Write, ResourceType::Topic));
        // A literal DENY with the same name does not cover a prefixed ALLOW.
        let lit_vs_prefix = AclIndex::new(&[
            topic("app-", Prefixed, ALICE, Write),
            deny(topic("app-", Literal, ALICE, Write)),
        ]);
        assert!(lit_vs_prefix.authorize_any(&c, Write, ResourceType::Topic));

        let deny_all = AclIndex::new(&[
            topic("t", Literal, ALICE, Write),
            deny(topic("*", Literal, ALICE, Write)),
        ]);
        assert!(!deny_all.authorize_any(&c, Write, ResourceType::Topic));
        assert!(!deny_all.authorize_any(&ctx(ALICE, NO_SUPERS, true), Write, ResourceType::Topic));

        let allow_all = AclIndex::new(&[
            topic("*", Literal, ALICE, Write),
            deny(topic("a", Prefixed, ALICE, Write)),
        ]);
        assert!(allow_all.authorize_any(&c, Write, ResourceType::Topic));

        // A wildcard ACL for someone else means every topic has an ACL: no default for bob.
        let others = AclIndex::new(&[topic("*", Literal, BOB, Write)]);
        assert!(!others.authorize_any(&ctx(ALICE, NO_SUPERS, true), Write, ResourceType::Topic));
    }

    #[test]
    fn filter_any_matches_exact_names_of_any_pattern() {
        let f = AclFilter {
            name: Some("foo".into()),
            ..AclFilter::default()
        };
        assert!(f.matches(&topic("foo", Literal, ALICE, Read)));
        assert!(f.matches(&topic("foo", Prefixed, ALICE, Read)));
        assert!(!f.matches(&topic("*", Literal, ALICE, Read)));
        assert!(!f.matches(&topic("f", Prefixed, ALICE, Read)));
        assert!(AclFilter::default().matches(&topic("x", Prefixed, BOB, Write)));
    }

    #[test]
    fn filter_match_expands_to_applicable_acls() {
        let f = AclFilter {
            name: Some("foo".into()),
            pattern: PatternFilter::Match,
            ..AclFilter::default()
        };
        assert!(f.matches(&topic("foo", Literal, ALICE, Read)));
        assert!(f.matches(&topic("*", Literal, ALICE, Read)));
        assert!(f.matches(&topic("f", Prefixed, ALICE, Read)));
        assert!(f.matches(&topic("foo", Prefixed, ALICE, Read)));
        assert!(!f.matches(&topic("fooo", Prefixed, ALICE, Read)));
        assert!(!f.matches(&topic("fo", Literal, ALICE, Read)));
        let unnamed = AclFilter {
            pattern: PatternFilter::Match,
            ..AclFilter::default()
        };
        assert!(unnamed.matches(&topic("anything", Prefixed, ALICE, Read)));
    }

    #[test]
    fn filter_exact_pattern() {
        let f = AclFilter {
            name: Some("foo".into()),
            pattern: PatternFilter::Exact(Prefixed),
            ..AclFilter::default()
        };
        assert!(f.matches(&topic("foo", Prefixed, ALICE, Read)));
        assert!(!f.matches(&topic("foo", Literal, ALICE, Read)));
        assert!(!f.matches(&topic("f", Prefixed, ALICE, Read)));
        let literals = AclFilter {
            pattern: PatternFilter::Exact(Literal),
            ..AclFilter::default()
        };
        assert!(literals.matches(&topic("*", Literal, ALICE, Read)));
        assert!(!literals.matches(&topic("p", Prefixed, ALICE, Read)));
    }

    #[test]
    fn filter_entry_fields() {
        let b = acl(
            ResourceType::Group,
            "g",
            Literal,
            ALICE,
            "1.2.3.4",
            Read,
            Permission::Deny,
        );
        let f = AclFilter {
            resource_type: Some(ResourceType::Group),
            principal: Some(ALICE.into()),
            host: Some("1.2.3.4".into()),
            operation: Some(Read),
            permission: Some(Permission::Deny),
            ..AclFilter::default()
        };
        assert!(f.matches(&b));
        let wrong = [
            AclFilter {
                resource_type: Some(ResourceType::Topic),
                ..f.clone()
            },
            AclFilter {
                principal: Some("User:*".into()),
                ..f.clone()
            },
            AclFilter {
                host: Some("*".into()),
                ..f.clone()
            },
            AclFilter {
                operation: Some(All),
                ..f.clone()
            },
            AclFilter {
                permission: Some(Permission::Allow),
                ..f.clone()
            },
        ];
        for w in wrong {
            assert!(!w.matches(&b), "{w:?}");
        }
    }

    #[test]
    fn pattern_filter_codes() {
        assert_eq!(PatternFilter::from_code(1), Some(PatternFilter::Any));
        assert_eq!(PatternFilter::from_code(2), Some(PatternFilter::Match));
        assert_eq!(
            PatternFilter::from_code(3),
            Some(PatternFilter::Exact(Literal))
        );
        assert_eq!(
            PatternFilter::from_code(4),
            Some(PatternFilter::Exact(Prefixed))
        );
        assert_eq!(PatternFilter::from_code(0), None);
        assert_eq!(PatternFilter::from_code(5), None);
        for code in 1..=4 {
            assert_eq!(
                PatternFilter::from_code(code).map(PatternFilter::code),
                Some(code)
            );
        }
    }

    #[test]
    fn validate_follows_create_acls() {
        let ok = topic("t", Literal, ALICE, Read);
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(topic("*", Literal, ALICE, Read).validate(), Ok(()));
        assert_eq!(topic("p", Prefixed, "User:*", Read).validate(), Ok(()));
        let cluster = acl(
            ResourceType::Cluster,
            CLUSTER_RESOURCE,
            Literal,
            ALICE,
            "*",
            ClusterAction,
            Permission::Allow,
        );
        assert_eq!(cluster.validate(), Ok(()));

        let bad = [
            AclBinding {
                principal: "alice".into(),
                ..ok.clone()
            },
            AclBinding {
                principal: ":alice".into(),
                ..ok.clone()
            },
            AclBinding {
                principal: "User:".into(),
                ..ok.clone()
            },
            AclBinding {
                name: String::new(),
                ..ok.clone()
            },
            AclBinding {
                host: String::new(),
                ..ok.clone()
            },
            AclBinding {
                name: "*".into(),
                pattern: Prefixed,
                ..ok.clone()
            },
            AclBinding {
                name: "other".into(),
                ..cluster.clone()
            },
            AclBinding {
                pattern: Prefixed,
                ..cluster.clone()
            },
        ];
        for b in bad {
            assert!(matches!(b.validate(), Err(AclError::Invalid(_))), "{b:?}");
        }
    }

    #[test]
    fn codes_and_names_round_trip() {
        for v in ResourceType::VARIANTS {
            assert_eq!(ResourceType::from_code(v.code()), Some(*v));
            assert_eq!(ResourceType::parse(v.name()), Some(*v));
        }
        for v in PatternType::VARIANTS {
            assert_eq!(PatternType::from_code(v.code()), Some(*v));
            assert_eq!(PatternType::parse(v.name()), Some(*v));
        }
        for v in Operation::VARIANTS {
            assert_eq!(Operation::from_code(v.code()), Some(*v));
            assert_eq!(Operation::parse(v.name()), Some(*v));
        }
        for v in Permission::VARIANTS {
            assert_eq!(Permission::from_code(v.code()), Some(*v));
            assert_eq!(Permission::parse(v.name()), Some(*v));
        }
        assert_eq!(ResourceType::Topic.code(), 2);
        assert_eq!(ResourceType::User.code(), 7);
        assert_eq!(PatternType::Literal.code(), 3);
        assert_eq!(Operation::All.code(), 2);
        assert_eq!(Operation::DescribeTokens.code(), 14);
        assert_eq!(Permission::Allow.code(), 3);
        assert_eq!(Operation::ClusterAction.name(), "CLUSTER_ACTION");
        for code in [0, 1, 8, -1, i8::MAX] {
            assert_eq!(ResourceType::from_code(code), None);
            assert_eq!(Permission::from_code(code), None);
        }
        for code in [0, 1, 2, 5] {
            assert_eq!(PatternType::from_code(code), None);
        }
        assert_eq!(Operation::from_code(0), None);
        assert_eq!(Operation::from_code(1), None);
        assert_eq!(Operation::from_code(15), None);
    }

    #[test]
    fn parse_accepts_kafka_spellings() {
        for s in [
            "ClusterAction",
            "cluster_action",
            "CLUSTER_ACTION",
            "cluster-action",
        ] {
            assert_eq!(Operation::parse(s), Some(ClusterAction), "{s}");
        }
        for s in [
            "transactional-id",
            "TransactionalId",
            "TRANSACTIONAL_ID",
            "transactionalid",
        ] {
            assert_eq!(
                ResourceType::parse(s),
                Some(ResourceType::TransactionalId),
                "{s}"
            );
        }
        assert_eq!(PatternType::parse("prefixed"), Some(Prefixed));
        assert_eq!(Permission::parse("Allow"), Some(Permission::Allow));
        assert_eq!(Operation::parse("idempotentWrite"), Some(IdempotentWrite));
        assert_eq!(Operation::parse("any"), None);
        assert_eq!(Operation::parse(""), None);
        assert_eq!(PatternType::parse("match"), None);
        assert_eq!(ResourceType::parse("topics"), None);
    }

    #[test]
    fn super_users_parsing() {
        assert_eq!(
            parse_super_users(" User:a ; User:b;; "),
            ["User:a", "User:b"]
        );
        assert!(parse_super_users("").is_empty());
        assert!(parse_super_users(" ; ").is_empty());
    }
}
