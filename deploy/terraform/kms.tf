# One customer-managed key per kind of data, each with yearly rotation and a policy of scoped
# statements: administrators manage the key but cannot use it, and use is granted only to the
# AWS service that stores the data (kms:ViaService, or the CloudWatch Logs service principal
# bound to this account's log groups) on behalf of principals whose IAM policies allow it.

locals {
  kms_keys = {
    logs    = "CloudWatch Logs of ${var.name}: VPC flow logs, EKS control plane, MSK brokers, Firehose errors"
    eks     = "Kubernetes Secrets envelope encryption of the ${var.name} EKS cluster"
    msk     = "MSK storage of ${var.name} at rest"
    data    = "S3 buckets of ${var.name} (backups, failed Firehose deliveries) and the Firehose stream"
    secrets = "Secrets Manager secrets of ${var.name}"
  }

  # The AWS services that may use each key on the account's behalf (none for logs, which the
  # CloudWatch Logs service principal uses directly, bound to this account's log groups).
  kms_via_services = {
    logs    = []
    eks     = ["eks.${var.region}.amazonaws.com"]
    msk     = ["kafka.${var.region}.amazonaws.com"]
    data    = ["s3.${var.region}.amazonaws.com", "firehose.${var.region}.amazonaws.com"]
    secrets = ["secretsmanager.${var.region}.amazonaws.com"]
  }

  kms_admin_actions = [
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKey",
    "kms:EnableKeyRotation",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListAliases",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:RotateKeyOnDemand",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
  ]

  kms_use_actions = [
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
  ]
}

data "aws_iam_policy_document" "kms" {
  for_each = local.kms_keys

  # In a key policy, "*" as the resource means this key and nothing else.
  #checkov:skip=CKV_AWS_111:A key policy, where the resource "*" is this key only; administration goes to the named administrators, and use is bound by kms:ViaService and kms:CallerAccount or by the log-group encryption context.
  #checkov:skip=CKV_AWS_356:A key policy, where the resource "*" is this key only, not every resource in the account.
  statement {
    sid       = "KeyAdministrationWithoutUse"
    effect    = "Allow"
    actions   = local.kms_admin_actions
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = var.kms_admin_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.kms_via_services[each.key]) > 0 ? [1] : []
    content {
      sid       = "UseThroughTheStoringServiceOnly"
      effect    = "Allow"
      actions   = concat(local.kms_use_actions, ["kms:CreateGrant", "kms:ListGrants"])
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
      }

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = local.kms_via_services[each.key]
      }

      condition {
        test     = "StringEquals"
        variable = "kms:CallerAccount"
        values   = [local.account_id]
      }
    }
  }

  dynamic "statement" {
    for_each = each.key == "logs" ? [1] : []
    content {
      sid       = "CloudWatchLogsForThisAccountsLogGroups"
      effect    = "Allow"
      actions   = local.kms_use_actions
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["logs.${var.region}.amazonaws.com"]
      }

      condition {
        test     = "ArnLike"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"]
      }
    }
  }

  # The EKS control plane encrypts and decrypts Secrets with its cluster role.
  dynamic "statement" {
    for_each = each.key == "eks" ? [1] : []
    content {
      sid       = "EksClusterRoleEnvelopeEncryption"
      effect    = "Allow"
      actions   = ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey", "kms:ListGrants"]
      resources = ["*"]

      principals {
        type        = "AWS"
        identifiers = [aws_iam_role.eks_cluster.arn]
      }
    }
  }
}

resource "aws_kms_key" "this" {
  for_each = local.kms_keys

  description             = each.value
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms[each.key].json

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_kms_alias" "this" {
  for_each = local.kms_keys

  name          = "alias/${var.name}-${each.key}"
  target_key_id = aws_kms_key.this[each.key].key_id
}
