output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "private_subnet_ids" {
  description = "Private subnets (EKS nodes, MSK brokers, internal load balancers)."
  value       = aws_subnet.private[*].id
}

output "private_subnet_cidrs" {
  description = "CIDRs of the private subnets, where the MSK brokers are: the Helm chart's networkPolicy.kafka.cidrs."
  value       = aws_subnet.private[*].cidr_block
}

output "vpc_flow_log_group" {
  description = "Log group of the VPC flow logs; add it to cloudwatch_log_groups or firehose_log_groups for Vigil to read (preset vpc-flow)."
  value       = aws_cloudwatch_log_group.flow_logs.name
}

output "eks_cluster_name" {
  description = "Name of the EKS cluster (aws eks update-kubeconfig --name ...)."
  value       = aws_eks_cluster.this.name
}

output "eks_cluster_endpoint" {
  description = "Endpoint of the Kubernetes API server."
  value       = aws_eks_cluster.this.endpoint
}

output "eks_audit_log_group" {
  description = "Log group of the EKS control-plane logs, audit included; Vigil recognises its kube-apiserver-audit-* streams when it polls the group."
  value       = aws_cloudwatch_log_group.eks.name
}

output "eks_oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider of the cluster (IRSA)."
  value       = aws_iam_openid_connect_provider.eks.arn
}

output "irsa_role_arns" {
  description = "IAM role of each Vigil process, by role; the Helm chart's components.<role>.serviceAccount.roleArn (the eks.amazonaws.com/role-arn annotation)."
  value       = { for r, role in aws_iam_role.vigil : r => role.arn }
}

output "secrets_reader_role_arn" {
  description = "IAM role of External Secrets Operator's service account: the Helm chart's externalSecrets.secretStore.roleArn."
  value       = aws_iam_role.secrets_reader.arn
}

output "service_accounts" {
  description = "Namespace and service account each IRSA role trusts, by role."
  value       = { for r in concat(local.vigil_roles, ["eso"]) : r => "${var.kubernetes_namespace}/${var.service_accounts[r]}" }
}

output "msk_bootstrap_brokers_iam" {
  description = "bus.kafka.brokers for auth = \"msk-iam\" (port 9098); null in the single-node layout."
  value       = local.kafka_enabled ? aws_msk_cluster.this[0].bootstrap_brokers_sasl_iam : null
}

output "msk_cluster_arn" {
  description = "ARN of the MSK cluster; null in the single-node layout."
  value       = local.kafka_enabled ? aws_msk_cluster.this[0].arn : null
}

output "firehose_stream_arn" {
  description = "ARN of the Firehose stream that delivers to Vigil."
  value       = aws_kinesis_firehose_delivery_stream.vigil.arn
}

output "backup_bucket" {
  description = "Bucket for `vigil backup` output (upload with the index role; SSE-KMS, versioned, Object Lock)."
  value       = aws_s3_bucket.data["backups"].id
}

output "firehose_failed_bucket" {
  description = "Bucket where Firehose writes the records Vigil refused past the retry window."
  value       = aws_s3_bucket.data["firehose-failed"].id
}

output "secret_arns" {
  description = "Secrets Manager secrets Terraform created empty, by name; put their values out of band."
  value       = { for s in aws_secretsmanager_secret.this : s.name => s.arn }
}

output "kms_key_arns" {
  description = "Customer-managed KMS keys, by purpose (logs, eks, msk, data, secrets)."
  value       = { for k, key in aws_kms_key.this : k => key.arn }
}
