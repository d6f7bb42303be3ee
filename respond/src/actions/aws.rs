//! The AWS actions: IAM keys and users, EC2 instances, Secrets Manager secrets.
//!
//! Credentials come from the SDK's standard chain (environment, profile, web identity, the
//! instance or task role); `[respond.aws]` may set the region and an `endpoint_url` (a VPC
//! endpoint, a proxy, moto in tests), as the CloudWatch source's settings do. What each action
//! needs is in deploy/iam/playbook-actions-policy.json.

use std::fmt::Debug;
use std::sync::Arc;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;
use vigil_event::{Alert, Event};

use super::{
    documents, first_string, lookup, Action, ActionError, Executed, Params, PlannedAction,
};
use crate::{AwsConfig, RespondConfig};

pub(super) const DEACTIVATE_ACCESS_KEY: &str = "aws.iam.deactivate_access_key";
pub(super) const QUARANTINE_USER: &str = "aws.iam.quarantine_user";
pub(super) const ISOLATE_INSTANCE: &str = "aws.ec2.isolate_instance";
pub(super) const ROTATE_SECRET: &str = "aws.secretsmanager.rotate_secret";

/// The inline policy `quarantine_user` puts on a user: every action on every resource denied.
/// An explicit deny beats any allow the user has, from any policy or group.
const DENY_ALL_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"VigilQuarantine","Effect":"Deny","Action":"*","Resource":"*"}]}"#;
const DEFAULT_POLICY_NAME: &str = "vigil-quarantine-deny-all";
const DEFAULT_QUARANTINE_GROUP: &str = "vigil-quarantine";

/// The SDK configuration, loaded once on first use: loading the chain may call the instance
/// metadata service, which a process that never acts should not wait for.
#[derive(Clone)]
pub struct AwsClients {
    config: AwsConfig,
    sdk: Arc<OnceCell<aws_config::SdkConfig>>,
}

impl AwsClients {
    pub fn new(config: AwsConfig) -> Self {
        AwsClients {
            config,
            sdk: Arc::new(OnceCell::new()),
        }
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
                let http = aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .build_https();
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .http_client(http)
                    .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3));
                if let Some(region) = &self.config.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                if let Some(endpoint) = &self.config.endpoint_url {
                    loader = loader.endpoint_url(endpoint.clone());
                }
                loader.load().await
            })
            .await
    }

    async fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(self.sdk().await)
    }

    async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(self.sdk().await)
    }

    async fn secrets(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(self.sdk().await)
    }
}

/// An SDK error as an [`ActionError`]: no answer, throttling and server faults are worth
/// retrying; any other answer from the service is its refusal.
fn classify<E, R>(what: &str, error: SdkError<E, R>) -> ActionError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug,
{
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or("");
            let text = format!("{what}: {code}: {message}");
            let transient = code.contains("Throttl")
                || matches!(
                    code,
                    "RequestLimitExceeded"
                        | "ServiceUnavailable"
                        | "InternalError"
                        | "InternalFailure"
                        | "ServiceFailure"
                        | "InternalServiceError"
                );
            if transient {
                ActionError::Transient(text)
            } else {
                ActionError::Rejected(text)
            }
        }
        _ => ActionError::Transient(format!(
            "{what}: {}",
            aws_smithy_types::error::display::DisplayErrorContext(&error)
        )),
    }
}

pub(super) fn build(
    name: &str,
    mut params: Params<'_>,
    clients: &AwsClients,
    config: &RespondConfig,
) -> Result<Option<Arc<dyn Action>>, String> {
    let clients = clients.clone();
    let action: Arc<dyn Action> = match name {
        DEACTIVATE_ACCESS_KEY => {
            let key = params.string("key")?.unwrap_or_else(|| "created".into());
            let which = match key.as_str() {
                "created" => WhichKey::Created,
                "caller" => WhichKey::Caller,
                other => return Err(format!("`key` is `created` or `caller`, not {other:?}")),
            };
            params.finish()?;
            Arc::new(DeactivateAccessKey { clients, which })
        }
        QUARANTINE_USER => {
            let user = params.string("user")?.unwrap_or_else(|| "target".into());
            let which = match user.as_str() {
                "target" => WhichUser::Target,
                "caller" => WhichUser::Caller,
                other => return Err(format!("`user` is `target` or `caller`, not {other:?}")),
            };
            let policy_name = params
                .string("policy_name")?
                .unwrap_or_else(|| DEFAULT_POLICY_NAME.into());
            params.finish()?;
            Arc::new(QuarantineUser {
                clients,
                which,
                policy_name,
            })
        }
        ISOLATE_INSTANCE => {
            let group_name = params
                .string("quarantine_group")?
                .or_else(|| config.quarantine_group.clone())
                .unwrap_or_else(|| DEFAULT_QUARANTINE_GROUP.into());
            let instance_field = params.string("instance_field")?;
            params.finish()?;
            Arc::new(IsolateInstance {
                clients,
                group_name,
                instance_field,
            })
        }
        ROTATE_SECRET => {
            let secret_field = params.string("secret_field")?;
            params.finish()?;
            Arc::new(RotateSecret {
                clients,
                secret_field,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(action))
}

fn param<'a>(plan: &'a PlannedAction, key: &str) -> Result<&'a str, ActionError> {
    plan.params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| ActionError::Plan(format!("the plan has no {key}")))
}

#[derive(Debug, Clone, Copy)]
enum WhichKey {
    /// The key the event's call created: `responseElements.accessKey.accessKeyId` of a
    /// CreateAccessKey. An attacker with a foothold mints a key of their own to keep access;
    /// that is the key to take away, while the key they came in with may be the victim's own.
    Created,
    /// The key the call was signed with: `userIdentity.accessKeyId`. For an attacker using a
    /// stolen key. Temporary (ASIA…) keys cannot be deactivated and are refused at plan time.
    Caller,
}

struct DeactivateAccessKey {
    clients: AwsClients,
    which: WhichKey,
}

/// The key and its user from one event. For a created key the user is the one named in the
/// response (or the request's `userName`; with neither, the caller made it for themselves).
fn key_of(document: &Map<String, Value>, which: WhichKey) -> Option<(String, String)> {
    let text = |path: &str| match lookup(document, path) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    match which {
        WhichKey::Created => {
            let key = text("responseElements.accessKey.accessKeyId")?;
            let user = text("responseElements.accessKey.userName")
                .or_else(|| text("requestParameters.userName"))
                .or_else(|| text("userIdentity.userName"))?;
            Some((key, user))
        }
        WhichKey::Caller => {
            let key = text("userIdentity.accessKeyId")?;
            let user = text("userIdentity.userName")?;
            Some((key, user))
        }
    }
}

#[async_trait::async_trait]
impl Action for DeactivateAccessKey {
    fn name(&self) -> &'static str {
        DEACTIVATE_ACCESS_KEY
    }

    fn plan(&self, _alert: &Alert, events: &[Event]) -> Result<PlannedAction, ActionError> {
        let (key, user) = documents(events)
            .iter()
            .find_map(|doc| key_of(doc, self.which))
            .ok_or_else(|| {
                ActionError::Plan(match self.which {
                    WhichKey::Created => "no event holds responseElements.accessKey.accessKeyId (a CreateAccessKey response)".into(),
                    WhichKey::Caller => "no event holds userIdentity.accessKeyId with userIdentity.userName (an IAM user's key)".into(),
                })
            })?;
        if key.starts_with("ASIA") {
            return Err(ActionError::Plan(format!(
                "{key} is a temporary key; it expires by itself and cannot be deactivated"
            )));
        }
        Ok(PlannedAction {
            action: DEACTIVATE_ACCESS_KEY.into(),
            summary: format!("Deactivate access key {key} of IAM user {user}"),
            params: json!({ "access_key_id": key, "user_name": user }),
        })
    }

    async fn execute(&self, plan: &PlannedAction) -> Result<Executed, ActionError> {
        let (key, user) = (param(plan, "access_key_id")?, param(plan, "user_name")?);
        set_key_status(
            &self.clients,
            key,
            user,
            aws_sdk_iam::types::StatusType::Inactive,
        )
        .await?;
        Ok(Executed {
            result: json!({ "access_key_id": key, "status": "Inactive" }),
            undo: None,
        })
    }

    fn undoable(&self) -> bool {
        true
    }

    async fn undo(
        &self,
        plan: &PlannedAction,
        _undo: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let (key, user) = (param(plan, "access_key_id")?, param(plan, "user_name")?);
        set_key_status(
            &self.clients,
            key,
            user,
            aws_sdk_iam::types::StatusType::Active,
        )
        .await?;
        Ok(json!({ "access_key_id": key, "status": "Active" }))
    }
}

async fn set_key_status(
    clients: &AwsClients,
    key: &str,
    user: &str,
    status: aws_sdk_iam::types::StatusType,
) -> Result<(), ActionError> {
    clients
        .iam()
        .await
        .update_access_key()
        .access_key_id(key)
        .user_name(user)
        .status(status)
        .send()
        .await
        .map_err(|e| classify("iam:UpdateAccessKey", e))?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum WhichUser {
    /// The user the call was about (`requestParameters.userName`).
    Target,
    /// The IAM user who made the call (`userIdentity.userName`).
    Caller,
}

struct QuarantineUser {
    clients: AwsClients,
    which: WhichUser,
    policy_name: String,
}

#[async_trait::async_trait]
impl Action for QuarantineUser {
    fn name(&self) -> &'static str {
        QUARANTINE_USER
    }

    fn plan(&self, _alert: &Alert, events: &[Event]) -> Result<PlannedAction, ActionError> {
        let paths: &[&str] = match self.which {
            WhichUser::Target => &[
                "requestParameters.userName",
                "responseElements.accessKey.userName",
            ],
            WhichUser::Caller => &["userIdentity.userName"],
        };
        let user = first_string(&documents(events), paths).ok_or_else(|| {
            ActionError::Plan(format!("no event names the user ({})", paths.join(" or ")))
        })?;
        Ok(PlannedAction {
            action: QUARANTINE_USER.into(),
            summary: format!(
                "Put the deny-all inline policy {} on IAM user {user}",
                self.policy_name
            ),
            params: json!({ "user_name": user, "policy_name": self.policy_name }),
        })
    }

    async fn execute(&self, plan: &PlannedAction) -> Result<Executed, ActionError> {
        let (user, policy) = (param(plan, "user_name")?, param(plan, "policy_name")?);
        self.clients
            .iam()
            .await
            .put_user_policy()
            .user_name(user)
            .policy_name(policy)
            .policy_document(DENY_ALL_POLICY)
            .send()
            .await
            .map_err(|e| classify("iam:PutUserPolicy", e))?;
        Ok(Executed {
            result: json!({ "user_name": user, "policy_name": policy }),
            undo: None,
        })
    }

    fn undoable(&self) -> bool {
        true
    }

    async fn undo(
        &self,
        plan: &PlannedAction,
        _undo: Option<&Value>,
    ) -> Result<Value, ActionError> {
        let (user, policy) = (param(plan, "user_name")?, param(plan, "policy_name")?);
        self.clients
            .iam()
            .await
            .delete_user_policy()
            .user_name(user)
            .policy_name(policy)
            .send()
            .await
            .map_err(|e| classify("iam:DeleteUserPolicy", e))?;
        Ok(json!({ "user_name": user, "policy_name": policy, "removed": true }))
    }
}

struct IsolateInstance {
    clients: AwsClients,
    group_name: String,
    instance_field: Option<String>,
}

/// Where CloudTrail (RunInstances, StartInstances, ...), GuardDuty findings and plain events
/// name an instance, in that order.
const INSTANCE_PATHS: &[&str] = &[
    "responseElements.instancesSet.items.0.instanceId",
    "requestParameters.instancesSet.items.0.instanceId",
    "requestParameters.instanceId",
    "detail.resource.instanceDetails.instanceId",
    "instanceId",
];

#[async_trait::async_trait]
impl Action for IsolateInstance {
    fn name(&self) -> &'static str {
        ISOLATE_INSTANCE
    }

    fn plan(&self, _alert: &Alert, events: &[Event]) -> Result<PlannedAction, ActionError> {
        let custom;
        let paths: &[&str] = match &self.instance_field {
            Some(field) => {
                custom = [field.as_str()];
                &custom
            }
            None => INSTANCE_PATHS,
        };
        let instance = first_string(&documents(events), paths)
            .filter(|id| id.starts_with("i-"))
            .ok_or_else(|| {
                ActionError::Plan(format!("no event names an instance ({})", paths.join(", ")))
            })?;
        Ok(PlannedAction {
            action: ISOLATE_INSTANCE.into(),
            summary: format!(
                "Replace the security groups of instance {instance} with the quarantine group {}",
                self.group_name
            ),
            params: json!({ "instance_id": instance, "quarantine_group": self.group_name }),
        })
    }

    async fn execute(&self, plan: &PlannedAction) -> Result<Executed, ActionError> {
        let (instance_id, group_name) = (
            param(plan, "instance_id")?,
            param(plan, "quarantine_group")?,
        );
        let ec2 = self.clients.ec2().await;
        let described = ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| classify("ec2:DescribeInstances", e))?;
        let instance = described
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| ActionError::Rejected(format!("no instance {instance_id}")))?;
        let vpc = instance
            .vpc_id()
            .ok_or_else(|| ActionError::Rejected(format!("{instance_id} is not in a VPC")))?
            .to_owned();
        let old_groups: Vec<String> = instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect();
        let quarantine = quarantine_group(&ec2, &vpc, group_name).await?;
        // A replay after a crash finds the instance already isolated: its "old" groups are
        // the quarantine group, and recording them would make the undo a no-op.
        let undo = (old_groups != [quarantine.clone()])
            .then(|| json!({ "security_group_ids": old_groups }));
        ec2.modify_instance_attribute()
            .instance_id(instance_id)
            .groups(&quarantine)
            .send()
            .await
            .map_err(|e| classify("ec2:ModifyInstanceAttribute", e))?;
        Ok(Executed {
            result: json!({
                "instance_id": instance_id,
                "security_group_ids": [quarantine],
                "previous_security_group_ids": old_groups,
            }),
            undo,
        })
    }

    fn undoable(&self) -> bool {
        true
    }

    async fn undo(&self, plan: &PlannedAction, undo: Option<&Value>) -> Result<Value, ActionError> {
        let instance_id = param(plan, "instance_id")?;
        let groups: Vec<String> = undo
            .and_then(|u| u.get("security_group_ids"))
            .and_then(|g| serde_json::from_value(g.clone()).ok())
            .filter(|g: &Vec<String>| !g.is_empty())
            .ok_or_else(|| {
                ActionError::Rejected("the run kept no previous security groups".into())
            })?;
        let ec2 = self.clients.ec2().await;
        let mut call = ec2.modify_instance_attribute().instance_id(instance_id);
        for group in &groups {
            call = call.groups(group);
        }
        call.send()
            .await
            .map_err(|e| classify("ec2:ModifyInstanceAttribute", e))?;
        Ok(json!({ "instance_id": instance_id, "security_group_ids": groups }))
    }
}

/// The quarantine group of `vpc`, made if missing: no inbound rules, and its default
/// allow-all outbound rule removed, so the instance can reach nothing and be reached by
/// nothing (existing tracked connections aside; see deploy/iam/README.md).
async fn quarantine_group(
    ec2: &aws_sdk_ec2::Client,
    vpc: &str,
    name: &str,
) -> Result<String, ActionError> {
    use aws_sdk_ec2::types::Filter;
    let found = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("vpc-id").values(vpc).build())
        .filters(Filter::builder().name("group-name").values(name).build())
        .send()
        .await
        .map_err(|e| classify("ec2:DescribeSecurityGroups", e))?;
    if let Some(id) = found.security_groups().iter().find_map(|g| g.group_id()) {
        return Ok(id.to_owned());
    }
    let created = ec2
        .create_security_group()
        .group_name(name)
        .description("Vigil quarantine: no inbound or outbound traffic")
        .vpc_id(vpc)
        .send()
        .await
        .map_err(|e| classify("ec2:CreateSecurityGroup", e))?;
    let id = created
        .group_id()
        .ok_or_else(|| ActionError::Transient("CreateSecurityGroup returned no id".into()))?
        .to_owned();
    let all = aws_sdk_ec2::types::IpPermission::builder()
        .ip_protocol("-1")
        .ip_ranges(
            aws_sdk_ec2::types::IpRange::builder()
                .cidr_ip("0.0.0.0/0")
                .build(),
        )
        .build();
    if let Err(error) = ec2
        .revoke_security_group_egress()
        .group_id(&id)
        .ip_permissions(all)
        .send()
        .await
    {
        // The group still blocks all inbound traffic; say so rather than fail the isolation.
        tracing::warn!(group = %id, error = %classify("ec2:RevokeSecurityGroupEgress", error), "the quarantine group keeps its default outbound rule");
    }
    Ok(id)
}

struct RotateSecret {
    clients: AwsClients,
    secret_field: Option<String>,
}

#[async_trait::async_trait]
impl Action for RotateSecret {
    fn name(&self) -> &'static str {
        ROTATE_SECRET
    }

    fn plan(&self, _alert: &Alert, events: &[Event]) -> Result<PlannedAction, ActionError> {
        let custom;
        let paths: &[&str] = match &self.secret_field {
            Some(field) => {
                custom = [field.as_str()];
                &custom
            }
            None => &["requestParameters.secretId", "responseElements.arn"],
        };
        let secret = first_string(&documents(events), paths).ok_or_else(|| {
            ActionError::Plan(format!("no event names a secret ({})", paths.join(", ")))
        })?;
        Ok(PlannedAction {
            action: ROTATE_SECRET.into(),
            summary: format!("Rotate secret {secret} with its configured rotation"),
            params: json!({ "secret_id": secret }),
        })
    }

    async fn execute(&self, plan: &PlannedAction) -> Result<Executed, ActionError> {
        let secret = param(plan, "secret_id")?;
        let rotated = self
            .clients
            .secrets()
            .await
            .rotate_secret()
            .secret_id(secret)
            .send()
            .await
            .map_err(|e| classify("secretsmanager:RotateSecret", e))?;
        Ok(Executed {
            result: json!({ "secret_id": secret, "version_id": rotated.version_id() }),
            undo: None,
        })
    }
}
