# Offline tests of this module: a mocked AWS provider (no account, no network), so they check
# what the configuration decides (which permissions, on which ARNs; which settings; which
# inputs are refused), not what AWS does with it.
#
#   terraform init -backend=false -plugin-dir=/opt/tf-plugins   # or from the registry
#   terraform test

mock_provider "aws" {
  # A mocked data source does not render its document; the statements themselves (checked
  # below) are what this module decides.
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }

  # The provider checks ARNs' form; mocked ones must look like ARNs.
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:eu-west-1:123456789012:key/mock" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mock" }
  }
  mock_resource "aws_s3_bucket" {
    defaults = { arn = "arn:aws:s3:::mock" }
  }
  mock_resource "aws_msk_configuration" {
    defaults = { arn = "arn:aws:kafka:eu-west-1:123456789012:configuration/mock/1" }
  }
  mock_resource "aws_kinesis_firehose_delivery_stream" {
    defaults = { arn = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/mock" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mock" }
  }
  mock_resource "aws_cloudwatch_log_stream" {
    defaults = { arn = "arn:aws:logs:eu-west-1:123456789012:log-group:mock:log-stream:mock" }
  }
  mock_resource "aws_launch_template" {
    defaults = { id = "lt-0123456789abcdef0", latest_version = 1 }
  }
  mock_resource "aws_eks_cluster" {
    defaults = {
      arn      = "arn:aws:eks:eu-west-1:123456789012:cluster/mock"
      identity = [{ oidc = [{ issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC" }] }]
    }
  }

  override_data {
    target = data.aws_caller_identity.current
    values = { account_id = "123456789012" }
  }

  override_data {
    target = data.aws_partition.current
    values = { partition = "aws" }
  }

  override_data {
    target = data.aws_availability_zones.available
    values = {
      names    = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
      zone_ids = ["euw1-az3", "euw1-az1", "euw1-az2"]
    }
  }

  override_resource {
    target = aws_msk_cluster.this
    values = { arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/vigil-kafka/0b1c2d3e-uuid-1" }
  }

  override_resource {
    target = aws_iam_openid_connect_provider.eks
    values = {
      arn = "arn:aws:iam::123456789012:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC"
      url = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"
    }
  }
}

variables {
  region                        = "eu-west-1"
  availability_zone_ids         = ["euw1-az1", "euw1-az2", "euw1-az3"]
  kms_admin_arns                = ["arn:aws:iam::123456789012:role/terraform-deployer"]
  eks_admin_arns                = ["arn:aws:iam::123456789012:role/platform-admin"]
  vigil_firehose_url            = "https://vigil.example.com/ingest/firehose"
  cloudwatch_log_groups         = ["aws-cloudtrail-logs-org"]
  cloudwatch_log_group_prefixes = ["/app/"]
  firehose_log_groups           = ["aws-waf-logs-prod"]
}

run "role_layout" {
  command = apply

  # Network: subnets in the zones asked for, by name, in the order given.
  assert {
    condition     = aws_subnet.private[*].availability_zone == ["eu-west-1b", "eu-west-1c", "eu-west-1a"]
    error_message = "Private subnets must follow availability_zone_ids (euw1-az1 is eu-west-1b here)."
  }

  assert {
    condition     = length(setintersection(aws_subnet.private[*].cidr_block, aws_subnet.public[*].cidr_block)) == 0 && alltrue([for s in aws_subnet.public : !s.map_public_ip_on_launch])
    error_message = "Public and private subnets must not overlap, and public ones must not hand out public IPs."
  }

  assert {
    condition     = toset([for e in aws_vpc_endpoint.interface : e.service_name]) == toset(["com.amazonaws.eu-west-1.sts", "com.amazonaws.eu-west-1.logs", "com.amazonaws.eu-west-1.secretsmanager", "com.amazonaws.eu-west-1.ecr.api", "com.amazonaws.eu-west-1.ecr.dkr"]) && alltrue([for e in aws_vpc_endpoint.interface : e.private_dns_enabled])
    error_message = "STS, CloudWatch Logs, Secrets Manager and ECR must be reached through private endpoints."
  }

  assert {
    condition     = aws_flow_log.vpc.traffic_type == "ALL"
    error_message = "VPC flow logs must record all traffic."
  }

  # EKS
  assert {
    condition     = toset(aws_eks_cluster.this.enabled_cluster_log_types) == toset(["api", "audit", "authenticator", "controllerManager", "scheduler"])
    error_message = "Every control-plane log type must go to CloudWatch."
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_public_access == false && aws_eks_cluster.this.vpc_config[0].endpoint_private_access == true
    error_message = "With no public CIDRs, the API endpoint must be private only."
  }

  assert {
    condition     = aws_launch_template.eks_nodes.metadata_options[0].http_tokens == "required" && aws_launch_template.eks_nodes.metadata_options[0].http_put_response_hop_limit == 1
    error_message = "Nodes must require IMDSv2 with a hop limit of 1, so pods cannot take the node's role."
  }

  assert {
    condition     = aws_eks_cluster.this.encryption_config[0].provider[0].key_arn == aws_kms_key.this["eks"].arn
    error_message = "Kubernetes Secrets must be encrypted with the eks key."
  }

  # MSK
  assert {
    condition     = aws_msk_cluster.this[0].encryption_info[0].encryption_in_transit[0].client_broker == "TLS" && aws_msk_cluster.this[0].client_authentication[0].sasl[0].iam && !aws_msk_cluster.this[0].client_authentication[0].unauthenticated
    error_message = "MSK must take TLS clients with IAM authentication only."
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.msk_from_nodes[0].from_port == 9098 && aws_vpc_security_group_ingress_rule.msk_from_nodes[0].to_port == 9098 && aws_vpc_security_group_ingress_rule.msk_from_nodes[0].referenced_security_group_id == aws_security_group.eks_nodes.id
    error_message = "MSK must admit port 9098 from the EKS nodes' group only."
  }

  # KMS
  assert {
    condition     = alltrue([for k in aws_kms_key.this : k.enable_key_rotation])
    error_message = "Every KMS key must rotate."
  }

  # IAM: one role per process of the layout, trusted by its own service account only.
  assert {
    condition     = toset(keys(aws_iam_role.vigil)) == toset(["ingest", "detect", "index"])
    error_message = "The role layout must have the ingest, detect and index roles."
  }

  assert {
    condition = toset([for c in data.aws_iam_policy_document.irsa_trust["detect"].statement[0].condition : "${c.test} ${c.variable} ${join(",", c.values)}"]) == toset([
      "StringEquals oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub system:serviceaccount:vigil:vigil-detect",
      "StringEquals oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud sts.amazonaws.com",
    ])
    error_message = "The detect role must trust vigil/vigil-detect only."
  }

  # Kafka: topics and groups by ARN, derived from the cluster's.
  assert {
    condition = [for s in data.aws_iam_policy_document.kafka["ingest"].statement : s.resources if s.sid == "WriteTopics"][0] == toset([
      "arn:aws:kafka:eu-west-1:123456789012:topic/vigil-kafka/0b1c2d3e-uuid-1/vigil.events",
      "arn:aws:kafka:eu-west-1:123456789012:topic/vigil-kafka/0b1c2d3e-uuid-1/vigil.quarantine",
    ])
    error_message = "Ingest must write vigil.events and vigil.quarantine only."
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.kafka["ingest"].statement : s if s.sid == "ReadTopics"]) == 0
    error_message = "Ingest must read no topic."
  }

  assert {
    condition = [for s in data.aws_iam_policy_document.kafka["detect"].statement : s.resources if s.sid == "ConsumeAndCommitInOwnGroups"][0] == toset([
      "arn:aws:kafka:eu-west-1:123456789012:group/vigil-kafka/0b1c2d3e-uuid-1/detect",
    ])
    error_message = "Detect must join the detect group only."
  }

  assert {
    condition = [for s in data.aws_iam_policy_document.kafka["index"].statement : s.resources if s.sid == "ReadTopics"][0] == toset([
      "arn:aws:kafka:eu-west-1:123456789012:topic/vigil-kafka/0b1c2d3e-uuid-1/vigil.events",
      "arn:aws:kafka:eu-west-1:123456789012:topic/vigil-kafka/0b1c2d3e-uuid-1/vigil.alerts",
      "arn:aws:kafka:eu-west-1:123456789012:topic/vigil-kafka/0b1c2d3e-uuid-1/vigil.quarantine",
    ])
    error_message = "Index must read events, alerts and quarantine, and not the state topic."
  }

  # CloudWatch: FilterLogEvents on the named groups and the prefixes, nothing wider.
  assert {
    condition = [for s in data.aws_iam_policy_document.cloudwatch_read[0].statement : s.resources if s.sid == "FilterTheNamedLogGroupsOnly"][0] == toset([
      "arn:aws:logs:eu-west-1:123456789012:log-group:aws-cloudtrail-logs-org",
      "arn:aws:logs:eu-west-1:123456789012:log-group:aws-cloudtrail-logs-org:*",
      "arn:aws:logs:eu-west-1:123456789012:log-group:/app/*",
    ])
    error_message = "The CloudWatch reader must filter the named groups and prefixes only."
  }

  assert {
    condition     = toset(keys(aws_iam_role_policy.cloudwatch_read)) == toset(["ingest"]) && toset(keys(aws_iam_role_policy.playbooks)) == toset(["index"]) && toset(keys(aws_iam_role_policy.backup_write)) == toset(["index"])
    error_message = "CloudWatch reads belong to ingest; playbooks and backup uploads to index."
  }

  assert {
    condition     = strcontains(aws_iam_role_policy.playbooks["index"].policy, "arn:aws:iam::123456789012:user/break-glass-*") && !strcontains(aws_iam_role_policy.playbooks["index"].policy, "ACCOUNT_ID") && !strcontains(aws_iam_role_policy.playbooks["index"].policy, "REGION")
    error_message = "The playbook policy must be deploy/iam's, with the account and Region filled in."
  }

  # Firehose to Vigil, its key from Secrets Manager.
  assert {
    condition     = aws_kinesis_firehose_delivery_stream.vigil.http_endpoint_configuration[0].url == "https://vigil.example.com/ingest/firehose" && aws_kinesis_firehose_delivery_stream.vigil.http_endpoint_configuration[0].secrets_manager_configuration[0].secret_arn == aws_secretsmanager_secret.this["firehose-access-key"].arn
    error_message = "Firehose must deliver to Vigil's endpoint with the access key from Secrets Manager."
  }

  assert {
    condition     = aws_kinesis_firehose_delivery_stream.vigil.http_endpoint_configuration[0].s3_backup_mode == "FailedDataOnly" && aws_kinesis_firehose_delivery_stream.vigil.http_endpoint_configuration[0].request_configuration[0].content_encoding == "NONE"
    error_message = "Firehose must keep failed records in S3 and send uncompressed requests (Vigil does not decode Content-Encoding)."
  }

  assert {
    condition     = toset(keys(aws_cloudwatch_log_subscription_filter.to_vigil)) == toset(["aws-waf-logs-prod"])
    error_message = "Only the listed log groups are subscribed."
  }

  # S3
  assert {
    condition     = aws_s3_bucket.data["backups"].object_lock_enabled && alltrue([for v in aws_s3_bucket_versioning.data : v.versioning_configuration[0].status == "Enabled"])
    error_message = "Backups must be versioned and under Object Lock."
  }

  assert {
    condition     = alltrue([for b in aws_s3_bucket_public_access_block.data : b.block_public_acls && b.block_public_policy && b.ignore_public_acls && b.restrict_public_buckets])
    error_message = "Public access must be blocked on the data buckets."
  }

  # Secrets: created without values.
  assert {
    condition     = toset(keys(aws_secretsmanager_secret.this)) == toset(["firehose-access-key", "app"]) && alltrue([for s in aws_secretsmanager_secret.this : s.kms_key_id == aws_kms_key.this["secrets"].arn])
    error_message = "The two secrets must exist, encrypted with the secrets key."
  }
}

run "single_node_layout" {
  command = apply

  variables {
    layout                        = "single"
    cloudwatch_log_group_prefixes = []
  }

  assert {
    condition     = length(aws_msk_cluster.this) == 0 && length(aws_security_group.msk) == 0
    error_message = "The single-node layout must create no MSK."
  }

  assert {
    condition     = toset(keys(aws_iam_role.vigil)) == toset(["all"]) && length(aws_iam_role_policy.kafka) == 0
    error_message = "The single-node layout must have the one role \"all\", without Kafka permissions."
  }

  assert {
    condition     = length([for s in data.aws_iam_policy_document.cloudwatch_read[0].statement : s if s.sid == "ListLogGroupsForPrefixes"]) == 0
    error_message = "Without prefixes, logs:DescribeLogGroups must not be granted."
  }
}

run "public_endpoint_only_from_the_listed_cidrs" {
  command = plan

  variables {
    eks_public_access_cidrs = ["203.0.113.0/24"]
  }

  assert {
    condition     = aws_eks_cluster.this.vpc_config[0].endpoint_public_access && aws_eks_cluster.this.vpc_config[0].public_access_cidrs == toset(["203.0.113.0/24"])
    error_message = "The public endpoint must be on and limited to the CIDRs given."
  }
}

# Inputs the variables' validations refuse.

run "refuses_the_whole_internet_for_the_api" {
  command = plan
  variables {
    eks_public_access_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.eks_public_access_cidrs]
}

run "refuses_a_vpc_cidr_with_host_bits" {
  command = plan
  variables {
    vpc_cidr = "10.40.3.0/16"
  }
  expect_failures = [var.vpc_cidr]
}

run "refuses_a_plain_http_firehose_endpoint" {
  command = plan
  variables {
    vigil_firehose_url = "http://vigil.example.com/ingest/firehose"
  }
  expect_failures = [var.vigil_firehose_url]
}

run "refuses_brokers_not_spread_evenly" {
  command = plan
  variables {
    msk_broker_count = 4
  }
  expect_failures = [var.msk_broker_count]
}

run "refuses_no_key_administrator" {
  command = plan
  variables {
    kms_admin_arns = []
  }
  expect_failures = [var.kms_admin_arns]
}

run "refuses_a_wildcard_log_group" {
  command = plan
  variables {
    cloudwatch_log_groups = ["*"]
  }
  expect_failures = [var.cloudwatch_log_groups]
}
