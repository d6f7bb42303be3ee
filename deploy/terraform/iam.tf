# One IAM role per Vigil process, assumed through IRSA by that process's service account only,
# with inline policies per concern, each scoped to the resources Vigil really touches:
#
# | process | Kafka (MSK IAM)                          | CloudWatch Logs | playbooks | backups |
# |---------|------------------------------------------|-----------------|-----------|---------|
# | ingest  | write events and quarantine              | FilterLogEvents |           |         |
# | detect  | read events, write alerts and state      |                 |           |         |
# | index   | read events, alerts, quarantine          |                 | yes       | upload  |
# | all     | none (single-node layout, embedded bus)  | FilterLogEvents | yes       | upload  |
#
# No Vigil process reads Secrets Manager: External Secrets Operator does, as its own service
# account with its own role (secrets.tf), and hands the values to the pods as a Secret.

locals {
  oidc_issuer = replace(aws_iam_openid_connect_provider.eks.url, "https://", "")

  polls_cloudwatch = length(var.cloudwatch_log_groups) + length(var.cloudwatch_log_group_prefixes) > 0

  # What each process reaches, by concern.
  cloudwatch_roles = [for r in local.vigil_roles : r if contains(["ingest", "all"], r) && local.polls_cloudwatch]
  playbook_roles   = [for r in local.vigil_roles : r if contains(["index", "all"], r)]
  backup_roles     = [for r in local.vigil_roles : r if contains(["index", "all"], r)]
  kafka_roles      = [for r in local.vigil_roles : r if r != "all"]

  # --- Kafka resources (README "Running on Kafka"; bus-kafka and pipeline/src/stages) -------
  msk_arn          = local.kafka_enabled ? aws_msk_cluster.this[0].arn : ""
  kafka_topic_base = replace(local.msk_arn, ":cluster/", ":topic/")
  kafka_group_base = replace(local.msk_arn, ":cluster/", ":group/")
  kafka_topic_arns = { for k, t in var.kafka_topics : k => "${local.kafka_topic_base}/${t}" }

  # Every process publishes: its audit entries go into vigil.events through its own ingestor
  # (pipeline/src/audit_forward.rs), and lines that cannot become events into quarantine.
  # Consumer groups are fixed in the code: detect, index, index-alerts, index-quarantine,
  # respond (playbooks) and notify, the last two in the index process. Ingest reads the
  # committed offsets of detect and index to hold new events back while they lag, and every
  # client lists topics and reads state as the group "<client_id>-reader" without joining it.
  kafka_access = {
    ingest = { read = [], write = ["events", "quarantine"], join = [], watch = ["detect", "index"] }
    detect = { read = ["events", "state"], write = ["events", "quarantine", "alerts", "state"], join = ["detect"], watch = [] }
    index  = { read = ["events", "alerts", "quarantine"], write = ["events", "quarantine"], join = ["index", "index-alerts", "index-quarantine", "respond", "notify"], watch = [] }
  }
}

# --- Roles -----------------------------------------------------------------------------------

# Vigil's processes and External Secrets Operator's service account (secrets.tf).
data "aws_iam_policy_document" "irsa_trust" {
  for_each = toset(concat(local.vigil_roles, ["eso"]))

  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:${var.service_accounts[each.key]}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "vigil" {
  for_each = toset(local.vigil_roles)

  name                 = "${var.name}-${each.key}"
  description          = "Vigil ${each.key} process (service account ${var.kubernetes_namespace}/${var.service_accounts[each.key]})"
  assume_role_policy   = data.aws_iam_policy_document.irsa_trust[each.key].json
  permissions_boundary = var.iam_permissions_boundary_arn
  max_session_duration = 3600
}

# --- Kafka -----------------------------------------------------------------------------------

data "aws_iam_policy_document" "kafka" {
  for_each = toset(local.kafka_roles)

  statement {
    sid = "ConnectAndProduceIdempotently"
    actions = [
      "kafka-cluster:Connect",
      "kafka-cluster:DescribeCluster",
      "kafka-cluster:WriteDataIdempotently",
    ]
    resources = [local.msk_arn]
  }

  # Start-up checks that all four topics exist (and creates them when allowed).
  statement {
    sid       = "DescribeVigilsTopics"
    actions   = concat(["kafka-cluster:DescribeTopic"], var.kafka_create_topics ? ["kafka-cluster:CreateTopic"] : [])
    resources = values(local.kafka_topic_arns)
  }

  statement {
    sid       = "WriteTopics"
    actions   = ["kafka-cluster:WriteData"]
    resources = [for t in local.kafka_access[each.key].write : local.kafka_topic_arns[t]]
  }

  dynamic "statement" {
    for_each = length(local.kafka_access[each.key].read) > 0 ? [1] : []
    content {
      sid       = "ReadTopics"
      actions   = ["kafka-cluster:ReadData"]
      resources = [for t in local.kafka_access[each.key].read : local.kafka_topic_arns[t]]
    }
  }

  dynamic "statement" {
    for_each = length(local.kafka_access[each.key].join) > 0 ? [1] : []
    content {
      sid       = "ConsumeAndCommitInOwnGroups"
      actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
      resources = [for g in local.kafka_access[each.key].join : "${local.kafka_group_base}/${g}"]
    }
  }

  statement {
    sid       = "DescribeWatchedAndReaderGroups"
    actions   = ["kafka-cluster:DescribeGroup"]
    resources = [for g in concat(local.kafka_access[each.key].watch, ["${var.kafka_client_id}-reader"]) : "${local.kafka_group_base}/${g}"]
  }
}

resource "aws_iam_role_policy" "kafka" {
  for_each = toset(local.kafka_roles)

  name   = "msk-vigil-topics"
  role   = aws_iam_role.vigil[each.key].id
  policy = data.aws_iam_policy_document.kafka[each.key].json
}

# --- CloudWatch Logs (pull) ------------------------------------------------------------------

# ingest/src/cloudwatch/pull.rs calls FilterLogEvents on each group, and DescribeLogGroups only
# to list the groups under log_group_prefixes; nothing else.
data "aws_iam_policy_document" "cloudwatch_read" {
  count = local.polls_cloudwatch ? 1 : 0

  statement {
    sid     = "FilterTheNamedLogGroupsOnly"
    actions = ["logs:FilterLogEvents"]
    resources = concat(
      flatten([for g in var.cloudwatch_log_groups : [
        "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${g}",
        "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${g}:*",
      ]]),
      [for p in var.cloudwatch_log_group_prefixes : "arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:${p}*"],
    )
  }

  dynamic "statement" {
    for_each = length(var.cloudwatch_log_group_prefixes) > 0 ? [1] : []
    content {
      # DescribeLogGroups has no resource-level permissions (IAM evaluates it against "*");
      # it returns group names and settings, not events. Bound to this Region.
      sid       = "ListLogGroupsForPrefixes"
      actions   = ["logs:DescribeLogGroups"]
      resources = ["*"]

      condition {
        test     = "StringEquals"
        variable = "aws:RequestedRegion"
        values   = [var.region]
      }
    }
  }
}

resource "aws_iam_role_policy" "cloudwatch_read" {
  for_each = toset(local.cloudwatch_roles)

  name   = "cloudwatch-logs-read"
  role   = aws_iam_role.vigil[each.key].id
  policy = data.aws_iam_policy_document.cloudwatch_read[0].json
}

# --- Playbooks -------------------------------------------------------------------------------

# The policy deploy/iam/ ships, as it is: deploy/iam/README.md explains each statement (the
# explicit deny on vigil-* and break-glass-* users, rotation only of secrets tagged
# vigil-may-rotate = true).
resource "aws_iam_role_policy" "playbooks" {
  for_each = toset(local.playbook_roles)

  name = "playbook-actions"
  role = aws_iam_role.vigil[each.key].id
  policy = replace(
    replace(file("${path.module}/../iam/playbook-actions-policy.json"), "ACCOUNT_ID", local.account_id),
    "REGION", var.region,
  )
}

# --- Backups ---------------------------------------------------------------------------------

# The index process (where the store lives) uploads `vigil backup` output. Write-only: a
# compromised Vigil can add backups but neither read nor delete old ones (Object Lock keeps
# them too). Restores are an operator's job, with the operator's own credentials.
data "aws_iam_policy_document" "backup_write" {
  statement {
    sid       = "ListTheBackupBucket"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.data["backups"].arn]
  }

  statement {
    sid       = "UploadBackups"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.data["backups"].arn}/*"]
  }

  statement {
    sid       = "EncryptThemThroughS3"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.this["data"].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "backup_write" {
  for_each = toset(local.backup_roles)

  name   = "backup-upload"
  role   = aws_iam_role.vigil[each.key].id
  policy = data.aws_iam_policy_document.backup_write.json
}
