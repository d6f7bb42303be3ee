# ---------------------------------------------------------------------------------------------
# Deployment
# ---------------------------------------------------------------------------------------------

variable "name" {
  description = "Prefix of every resource name (VPC, cluster, MSK cluster, buckets, keys, secrets). Lower case letters, digits and hyphens, starting with a letter."
  type        = string
  default     = "vigil"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3 to 24 characters of lower case letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "region" {
  description = "AWS Region to deploy into, e.g. eu-west-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS Region code such as eu-west-1 or us-gov-west-1."
  }
}

variable "layout" {
  description = "Vigil's process layout: \"single\" runs one `vigil run --role all` process on its embedded bus (no MSK is created); \"roles\" runs ingest, detect and index (with ui, and notify when configured) as separate processes over MSK."
  type        = string
  default     = "roles"

  validation {
    condition     = contains(["single", "roles"], var.layout)
    error_message = "layout must be \"single\" or \"roles\"."
  }
}

variable "tags" {
  description = "Tags added to every resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.tags : length(k) <= 128 && length(v) <= 256 && !startswith(lower(k), "aws:")])
    error_message = "Tag keys must be at most 128 characters and not start with \"aws:\"; values at most 256 characters."
  }
}

variable "kms_admin_arns" {
  description = "IAM roles or users that administer the KMS keys (change policies, schedule deletion), without being able to use them for data. Must include the principal that runs Terraform: KMS refuses a key policy that would lock its creator out."
  type        = list(string)

  validation {
    condition     = length(var.kms_admin_arns) > 0 && alltrue([for arn in var.kms_admin_arns : can(regex("^arn:aws(-cn|-us-gov|-iso[a-z-]*)?:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "kms_admin_arns must list at least one IAM role or user ARN (arn:aws:iam::123456789012:role/name)."
  }
}

variable "iam_permissions_boundary_arn" {
  description = "Managed policy set as the permissions boundary of every IAM role this module creates, where the account requires one (null for none)."
  type        = string
  default     = null

  validation {
    condition     = var.iam_permissions_boundary_arn == null || can(regex("^arn:aws(-cn|-us-gov|-iso[a-z-]*)?:iam::([0-9]{12}|aws):policy/[A-Za-z0-9+=,.@_/-]+$", var.iam_permissions_boundary_arn))
    error_message = "iam_permissions_boundary_arn must be an IAM managed policy ARN, or null."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the logs this module creates (VPC flow logs, EKS control plane, MSK brokers, Firehose errors). One year or more is the usual audit requirement."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention of at least one year: 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653."
  }
}

# ---------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC. It is split into one public and one private subnet per availability zone (public /4 of the private size)."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR block with a prefix length from /16 to /20."
  }

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && cidrhost(var.vpc_cidr, 0) == split("/", var.vpc_cidr)[0]
    error_message = "vpc_cidr must be a network address (no host bits set), e.g. 10.40.0.0/16."
  }
}

variable "availability_zone_ids" {
  description = "Availability zone IDs (not names, which differ between accounts) to spread subnets, EKS nodes and MSK brokers over, e.g. [\"euw1-az1\", \"euw1-az2\", \"euw1-az3\"]. A fixed list: a zone AWS adds later does not move anything."
  type        = list(string)

  validation {
    condition     = length(var.availability_zone_ids) >= 2 && length(var.availability_zone_ids) <= 4 && length(distinct(var.availability_zone_ids)) == length(var.availability_zone_ids)
    error_message = "availability_zone_ids must list 2 to 4 distinct zones (EKS and MSK need at least two)."
  }

  validation {
    condition     = alltrue([for z in var.availability_zone_ids : can(regex("^[a-z]{2,5}[0-9]+-az[0-9]+$", z))])
    error_message = "availability_zone_ids must be zone IDs such as euw1-az1 (see aws ec2 describe-availability-zones)."
  }
}

variable "nat_gateway_per_az" {
  description = "One NAT gateway per availability zone (true), so losing a zone does not cut the others' egress, or a single shared one (false, cheaper)."
  type        = bool
  default     = true
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints with private DNS instead of NAT (each costs an hourly fee per zone). Empty for none."
  type        = list(string)
  default     = ["sts", "logs", "secretsmanager", "ecr.api", "ecr.dkr"]

  validation {
    condition     = alltrue([for e in var.interface_endpoints : can(regex("^[a-z0-9-]+(\\.[a-z0-9-]+)?$", e))])
    error_message = "interface_endpoints must be service names as in com.amazonaws.<region>.<name>, e.g. sts or ecr.api."
  }
}

# ---------------------------------------------------------------------------------------------
# EKS
# ---------------------------------------------------------------------------------------------

variable "eks_version" {
  description = "Kubernetes version of the EKS control plane, e.g. 1.32."
  type        = string
  default     = "1.32"

  validation {
    condition     = can(regex("^1\\.[0-9]{2}$", var.eks_version))
    error_message = "eks_version must look like 1.32."
  }
}

variable "eks_public_access_cidrs" {
  description = "CIDR blocks allowed to reach the EKS API server's public endpoint. Empty (the default) turns the public endpoint off: the API is then reachable only from inside the VPC (a bastion, VPN or CI runner there)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.eks_public_access_cidrs : can(cidrhost(cidr, 0)) && !endswith(cidr, "/0")])
    error_message = "eks_public_access_cidrs must be valid IPv4 CIDR blocks, none of them the whole internet (/0)."
  }
}

variable "eks_admin_arns" {
  description = "IAM roles or users given cluster-admin through EKS access entries. The cluster's creator gets no implicit admin rights, so at least one is needed to install the Helm chart."
  type        = list(string)

  validation {
    condition     = length(var.eks_admin_arns) > 0 && alltrue([for arn in var.eks_admin_arns : can(regex("^arn:aws(-cn|-us-gov|-iso[a-z-]*)?:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$", arn))])
    error_message = "eks_admin_arns must list at least one IAM role or user ARN."
  }
}

variable "node_instance_types" {
  description = "EC2 instance types of the managed node group (several give the Auto Scaling group a fallback)."
  type        = list(string)
  default     = ["m6i.xlarge"]

  validation {
    condition     = length(var.node_instance_types) > 0 && alltrue([for t in var.node_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "node_instance_types must list at least one instance type such as m6i.xlarge."
  }
}

variable "node_count" {
  description = "Sizes of the managed node group: min, desired and max nodes."
  type = object({
    min     = number
    desired = number
    max     = number
  })
  default = { min = 3, desired = 3, max = 6 }

  validation {
    condition     = var.node_count.min >= 1 && var.node_count.min <= var.node_count.desired && var.node_count.desired <= var.node_count.max && var.node_count.max <= 100
    error_message = "node_count must satisfy 1 <= min <= desired <= max <= 100."
  }
}

variable "node_disk_gib" {
  description = "Size of each node's encrypted gp3 root volume in GiB (images and emptyDir; the index's data lives on its PersistentVolume)."
  type        = number
  default     = 50

  validation {
    condition     = var.node_disk_gib >= 20 && var.node_disk_gib <= 1000
    error_message = "node_disk_gib must be from 20 to 1000."
  }
}

variable "ebs_encryption_by_default" {
  description = "Turn on EBS encryption by default for the account in this Region, so that the index's PersistentVolume is encrypted whatever its StorageClass says. An account-wide setting: set false if another stack manages it (and give the StorageClass encrypted: \"true\")."
  type        = bool
  default     = true
}

variable "kubernetes_namespace" {
  description = "Namespace Vigil's pods run in; the IRSA roles trust only its service accounts."
  type        = string
  default     = "vigil"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS-1123 label."
  }
}

variable "service_accounts" {
  description = "Kubernetes service accounts, by role, as deploy/kubernetes/vigil names them (\"<release fullname>-<component>\"): ingest, detect and index (index,ui, and notify when it runs there; it also runs playbooks and uploads `vigil backup` output) in the role layout, all in the single-node layout, and eso, the one External Secrets Operator (ESO) signs in with. Each gets its own IAM role through IRSA, trusted by that service account only."
  type        = map(string)
  default = {
    ingest = "vigil-ingest"
    detect = "vigil-detect"
    index  = "vigil-index"
    all    = "vigil-all"
    eso    = "vigil-secrets-manager" # External Secrets Operator
  }

  validation {
    condition     = length(setsubtract(["ingest", "detect", "index", "all", "eso"], keys(var.service_accounts))) == 0 && length(setsubtract(keys(var.service_accounts), ["ingest", "detect", "index", "all", "eso"])) == 0
    error_message = "service_accounts must have exactly the keys ingest, detect, index, all and eso."
  }

  validation {
    condition     = alltrue([for sa in values(var.service_accounts) : can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", sa))])
    error_message = "Each service account name must be a DNS-1123 subdomain."
  }
}

# ---------------------------------------------------------------------------------------------
# MSK (role layout only)
# ---------------------------------------------------------------------------------------------

variable "kafka_version" {
  description = "Apache Kafka version of the MSK cluster."
  type        = string
  default     = "3.6.0"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+(\\.tiered)?$", var.kafka_version))
    error_message = "kafka_version must look like 3.6.0."
  }
}

variable "msk_instance_type" {
  description = "Instance type of the MSK brokers."
  type        = string
  default     = "kafka.m5.large"

  validation {
    condition     = can(regex("^kafka\\.[a-z0-9]+\\.[a-z0-9]+$", var.msk_instance_type))
    error_message = "msk_instance_type must be an MSK broker type such as kafka.m5.large."
  }
}

variable "msk_broker_count" {
  description = "Number of MSK brokers; a multiple of the number of availability zones, and at least 3 so that topics keep replication factor 3 with min.insync.replicas 2."
  type        = number
  default     = 3

  validation {
    condition     = var.msk_broker_count >= 3 && var.msk_broker_count % length(var.availability_zone_ids) == 0
    error_message = "msk_broker_count must be at least 3 and a multiple of the number of availability zones."
  }
}

variable "msk_volume_gib" {
  description = "EBS storage of each broker in GiB. Keep vigil.events' retention longer than a stage's worst backlog takes to drain (README, Running on Kafka)."
  type        = number
  default     = 500

  validation {
    condition     = var.msk_volume_gib >= 10 && var.msk_volume_gib <= 16384
    error_message = "msk_volume_gib must be from 10 to 16384."
  }
}

variable "kafka_topics" {
  description = "Vigil's Kafka topic names, as in vigil.toml's [bus.topics] and bus.kafka.state_topic. The IAM policies grant access to these topics only."
  type = object({
    events     = string
    alerts     = string
    quarantine = string
    state      = string
  })
  default = {
    events     = "vigil.events"
    alerts     = "vigil.alerts"
    quarantine = "vigil.quarantine"
    state      = "vigil.state"
  }

  validation {
    condition     = alltrue([for t in values(var.kafka_topics) : can(regex("^[A-Za-z0-9._-]{1,249}$", t))])
    error_message = "Kafka topic names are 1 to 249 characters of letters, digits, '.', '_' and '-'."
  }
}

variable "kafka_client_id" {
  description = "bus.kafka.client_id of Vigil (default \"vigil\"). The detect role reads the state topic as the consumer group \"<client_id>-reader\"."
  type        = string
  default     = "vigil"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]{1,200}$", var.kafka_client_id))
    error_message = "kafka_client_id must be 1 to 200 characters of letters, digits, '.', '_' and '-'."
  }
}

variable "kafka_create_topics" {
  description = "Grant kafka-cluster:CreateTopic on Vigil's four topics, for bus.kafka.create_topics = true. Set false once the topics exist (or when they are created with kafka-topics.sh), and set create_topics = false in vigil.toml."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------------------------
# CloudWatch Logs: polled by Vigil, and pushed to Vigil through Firehose
# ---------------------------------------------------------------------------------------------

variable "cloudwatch_log_groups" {
  description = "Log groups Vigil's [[sources.cloudwatch]] log_groups poll with FilterLogEvents. The ingest role may read these groups only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for g in var.cloudwatch_log_groups : can(regex("^[A-Za-z0-9_/.#-]{1,512}$", g))])
    error_message = "Log group names are 1 to 512 characters of letters, digits, '_', '-', '/', '.' and '#'."
  }
}

variable "cloudwatch_log_group_prefixes" {
  description = "Prefixes from [[sources.cloudwatch]] log_group_prefixes. The ingest role may read groups whose names start so, and gets logs:DescribeLogGroups (which has no resource-level scoping) to list them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for p in var.cloudwatch_log_group_prefixes : can(regex("^[A-Za-z0-9_/.#-]{2,511}$", p))])
    error_message = "Prefixes are 2 to 511 characters of letters, digits, '_', '-', '/', '.' and '#' (no wildcards; an empty prefix would be every group)."
  }
}

variable "firehose_log_groups" {
  description = "Log groups subscribed to the Firehose stream that delivers to Vigil's /ingest/firehose endpoint (CloudWatch allows two subscription filters per group)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for g in var.firehose_log_groups : can(regex("^[A-Za-z0-9_/.#-]{1,512}$", g))])
    error_message = "Log group names are 1 to 512 characters of letters, digits, '_', '-', '/', '.' and '#'."
  }
}

variable "firehose_filter_pattern" {
  description = "CloudWatch Logs filter pattern of the subscription filters; empty sends every event."
  type        = string
  default     = ""

  validation {
    condition     = length(var.firehose_filter_pattern) <= 1024
    error_message = "firehose_filter_pattern must be at most 1024 characters."
  }
}

variable "vigil_firehose_url" {
  description = "HTTPS URL of Vigil's Firehose endpoint as Firehose reaches it, ending in /ingest/firehose (e.g. https://vigil.example.com/ingest/firehose, the ingest Service behind the Ingress's TLS)."
  type        = string

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/ingest/firehose$", var.vigil_firehose_url))
    error_message = "vigil_firehose_url must be an https:// URL whose path is /ingest/firehose."
  }
}

variable "firehose_buffer" {
  description = "Firehose buffering before each delivery to Vigil: size in MiB (1 to 64; Vigil refuses a request whose records inflate past firehose.max_inflated_bytes, 64 MiB by default) and interval in seconds (0 to 900)."
  type = object({
    size_mib     = number
    interval_sec = number
  })
  default = { size_mib = 1, interval_sec = 60 }

  validation {
    condition     = var.firehose_buffer.size_mib >= 1 && var.firehose_buffer.size_mib <= 64 && var.firehose_buffer.interval_sec >= 0 && var.firehose_buffer.interval_sec <= 900
    error_message = "firehose_buffer.size_mib must be 1 to 64 and interval_sec 0 to 900."
  }
}

variable "firehose_retry_seconds" {
  description = "How long Firehose retries a delivery Vigil refused (503 while a stage lags) before it writes the records to the failed-delivery bucket."
  type        = number
  default     = 3600

  validation {
    condition     = var.firehose_retry_seconds >= 0 && var.firehose_retry_seconds <= 7200
    error_message = "firehose_retry_seconds must be from 0 to 7200."
  }
}

# ---------------------------------------------------------------------------------------------
# Backups, playbooks, secrets
# ---------------------------------------------------------------------------------------------

variable "backup_noncurrent_days" {
  description = "Days a replaced or deleted backup object version is kept before it expires."
  type        = number
  default     = 90

  validation {
    condition     = var.backup_noncurrent_days >= 1 && var.backup_noncurrent_days <= 3650
    error_message = "backup_noncurrent_days must be from 1 to 3650."
  }
}

variable "backup_expiry_days" {
  description = "Days after which a backup object expires (moves to a noncurrent version). Must exceed backup_lock_days."
  type        = number
  default     = 180

  validation {
    condition     = var.backup_expiry_days >= 7 && var.backup_expiry_days <= 3650 && var.backup_expiry_days > var.backup_lock_days
    error_message = "backup_expiry_days must be from 7 to 3650 and greater than backup_lock_days."
  }
}

variable "backup_lock_days" {
  description = "S3 Object Lock retention (governance mode) of each backup object: for this many days nobody without s3:BypassGovernanceRetention can delete or overwrite it, ransomware with Vigil's own credentials included."
  type        = number
  default     = 14

  validation {
    condition     = var.backup_lock_days >= 1 && var.backup_lock_days <= 365
    error_message = "backup_lock_days must be from 1 to 365."
  }
}
