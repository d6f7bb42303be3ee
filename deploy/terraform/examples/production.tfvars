# An example for the role layout in eu-west-1. Copy it, change every value, and apply with
#   terraform apply -var-file=production.tfvars
# No secret belongs here: secrets are created empty (secrets.tf) and filled out of band.

name   = "vigil-prod"
region = "eu-west-1"
layout = "roles"

tags = {
  owner       = "security-engineering"
  environment = "production"
}

# The principal that runs Terraform must be one of these (KMS refuses a policy that would
# lock its creator out).
kms_admin_arns = [
  "arn:aws:iam::123456789012:role/terraform-deployer",
  "arn:aws:iam::123456789012:role/security-admin",
]

vpc_cidr              = "10.40.0.0/16"
availability_zone_ids = ["euw1-az1", "euw1-az2", "euw1-az3"]
nat_gateway_per_az    = true

eks_version = "1.32"
# Empty: the API server is reachable from inside the VPC only.
eks_public_access_cidrs = []
eks_admin_arns = [
  "arn:aws:iam::123456789012:role/platform-admin",
]
node_instance_types = ["m6i.xlarge", "m5.xlarge"]
node_count          = { min = 3, desired = 3, max = 6 }

kubernetes_namespace = "vigil"
# As deploy/kubernetes/vigil names them for a release called "vigil".
service_accounts = {
  ingest = "vigil-ingest"
  detect = "vigil-detect"
  index  = "vigil-index"
  all    = "vigil-all"
  eso    = "vigil-secrets-manager" # External Secrets Operator
}

kafka_version       = "3.6.0"
msk_instance_type   = "kafka.m5.large"
msk_broker_count    = 3
msk_volume_gib      = 500
kafka_create_topics = true

# Polled by [[sources.cloudwatch]] (FilterLogEvents on these groups only).
cloudwatch_log_groups         = ["aws-cloudtrail-logs-org", "/aws/eks/vigil-prod-eks/cluster", "/vigil-prod/vpc-flow-logs"]
cloudwatch_log_group_prefixes = ["/app/"]

# Pushed through Firehose to Vigil's endpoint instead.
firehose_log_groups     = ["aws-waf-logs-prod"]
firehose_filter_pattern = ""
vigil_firehose_url      = "https://vigil.example.com/ingest/firehose"
firehose_buffer         = { size_mib = 1, interval_sec = 60 }

backup_lock_days       = 14
backup_expiry_days     = 180
backup_noncurrent_days = 90
