# CloudWatch Logs subscriptions → Firehose → Vigil's POST /ingest/firehose (README, "Other
# sources"). Firehose authenticates with the X-Amz-Firehose-Access-Key header, whose value it
# reads from the firehose-access-key secret (secrets.tf). It sends the subscription records
# as CloudWatch wrote them (base64 of gzip), which is what Vigil's endpoint decodes, so the
# request itself is not compressed again. What Vigil refuses past the retry window lands in
# the failed-delivery bucket (backup.tf).

locals {
  firehose_name = "${var.name}-to-vigil"
}

resource "aws_cloudwatch_log_group" "firehose" {
  name              = "/${var.name}/firehose/${local.firehose_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this["logs"].arn
}

resource "aws_cloudwatch_log_stream" "firehose" {
  for_each = toset(["HttpEndpointDelivery", "BackupDelivery"])

  name           = each.value
  log_group_name = aws_cloudwatch_log_group.firehose.name
}

# --- Firehose's role -------------------------------------------------------------------------

data "aws_iam_policy_document" "firehose_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }

    # Firehose passes the stream's account as the external id: streams of other accounts
    # cannot use this role (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name                 = "${var.name}-firehose"
  description          = "Firehose stream ${local.firehose_name}: reads its access key, writes failed records and its error log"
  assume_role_policy   = data.aws_iam_policy_document.firehose_trust.json
  permissions_boundary = var.iam_permissions_boundary_arn
}

data "aws_iam_policy_document" "firehose" {
  statement {
    sid = "WriteFailedDeliveries"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetBucketLocation",
      "s3:ListBucket",
      "s3:ListBucketMultipartUploads",
      "s3:PutObject",
    ]
    resources = [aws_s3_bucket.data["firehose-failed"].arn, "${aws_s3_bucket.data["firehose-failed"].arn}/*"]
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

  statement {
    sid       = "ReadTheAccessKey"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.this["firehose-access-key"].arn]
  }

  statement {
    sid       = "DecryptItThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this["secrets"].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "WriteItsErrorLog"
    actions   = ["logs:PutLogEvents"]
    resources = [for s in aws_cloudwatch_log_stream.firehose : s.arn]
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "deliver-to-vigil"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}

# --- The stream ------------------------------------------------------------------------------

resource "aws_kinesis_firehose_delivery_stream" "vigil" {
  name        = local.firehose_name
  destination = "http_endpoint"

  server_side_encryption {
    enabled  = true
    key_type = "CUSTOMER_MANAGED_CMK"
    key_arn  = aws_kms_key.this["data"].arn
  }

  http_endpoint_configuration {
    name               = "Vigil"
    url                = var.vigil_firehose_url
    role_arn           = aws_iam_role.firehose.arn
    buffering_size     = var.firehose_buffer.size_mib
    buffering_interval = var.firehose_buffer.interval_sec
    retry_duration     = var.firehose_retry_seconds
    s3_backup_mode     = "FailedDataOnly"

    secrets_manager_configuration {
      enabled    = true
      secret_arn = aws_secretsmanager_secret.this["firehose-access-key"].arn
      role_arn   = aws_iam_role.firehose.arn
    }

    request_configuration {
      content_encoding = "NONE"
    }

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose["HttpEndpointDelivery"].name
    }

    s3_configuration {
      role_arn            = aws_iam_role.firehose.arn
      bucket_arn          = aws_s3_bucket.data["firehose-failed"].arn
      prefix              = "failed/"
      error_output_prefix = "errors/!{firehose:error-output-type}/"
      compression_format  = "GZIP"
      kms_key_arn         = aws_kms_key.this["data"].arn
      buffering_size      = 5
      buffering_interval  = 300

      cloudwatch_logging_options {
        enabled         = true
        log_group_name  = aws_cloudwatch_log_group.firehose.name
        log_stream_name = aws_cloudwatch_log_stream.firehose["BackupDelivery"].name
      }
    }
  }

  depends_on = [aws_iam_role_policy.firehose]
}

# --- Subscriptions ---------------------------------------------------------------------------

data "aws_iam_policy_document" "cwl_to_firehose_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["logs.amazonaws.com"]
    }

    # Only this account's log groups may use the role (confused deputy).
    condition {
      test     = "StringLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "cwl_to_firehose" {
  name                 = "${var.name}-cwl-to-firehose"
  description          = "CloudWatch Logs subscription filters: put records to ${local.firehose_name} only"
  assume_role_policy   = data.aws_iam_policy_document.cwl_to_firehose_trust.json
  permissions_boundary = var.iam_permissions_boundary_arn
}

data "aws_iam_policy_document" "cwl_to_firehose" {
  statement {
    sid       = "PutToTheVigilStreamOnly"
    actions   = ["firehose:PutRecord", "firehose:PutRecordBatch"]
    resources = [aws_kinesis_firehose_delivery_stream.vigil.arn]
  }
}

resource "aws_iam_role_policy" "cwl_to_firehose" {
  name   = "put-to-vigil-stream"
  role   = aws_iam_role.cwl_to_firehose.id
  policy = data.aws_iam_policy_document.cwl_to_firehose.json
}

resource "aws_cloudwatch_log_subscription_filter" "to_vigil" {
  for_each = toset(var.firehose_log_groups)

  name            = "${var.name}-to-vigil"
  log_group_name  = each.value
  filter_pattern  = var.firehose_filter_pattern
  destination_arn = aws_kinesis_firehose_delivery_stream.vigil.arn
  role_arn        = aws_iam_role.cwl_to_firehose.arn

  depends_on = [aws_iam_role_policy.cwl_to_firehose]
}
