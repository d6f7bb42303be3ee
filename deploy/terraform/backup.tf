# S3: the bucket for `vigil backup` output, the bucket for Firehose deliveries Vigil refused
# (firehose.tf), and the bucket both write their access logs to. The two data buckets share
# their settings: SSE-KMS with the data key, versioning, public access blocked, TLS-only
# policy, a lifecycle, and access logging. Backups also get Object Lock.

locals {
  bucket_suffix = "${local.account_id}-${var.region}"

  data_buckets = {
    backups = {
      name        = "${var.name}-${local.bucket_suffix}-backups"
      expiry_days = var.backup_expiry_days
      object_lock = true
    }
    firehose-failed = {
      name        = "${var.name}-${local.bucket_suffix}-fh-failed"
      expiry_days = var.log_retention_days
      object_lock = false
    }
  }
}

# --- Data buckets ----------------------------------------------------------------------------

resource "aws_s3_bucket" "data" {
  for_each = local.data_buckets

  #checkov:skip=CKV_AWS_144:Cross-region replication needs a second Region's bucket and key, chosen by the operator; backups are versioned and under Object Lock here, and failed Firehose records are also still in their CloudWatch log groups.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications for these buckets; uploads are audited through CloudTrail and the access logs.
  bucket              = each.value.name
  object_lock_enabled = each.value.object_lock

  tags = { Name = each.value.name }
}

resource "aws_s3_bucket_ownership_controls" "data" {
  for_each = local.data_buckets

  bucket = aws_s3_bucket.data[each.key].id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  for_each = local.data_buckets

  bucket                  = aws_s3_bucket.data[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "data" {
  for_each = local.data_buckets

  bucket = aws_s3_bucket.data[each.key].id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  for_each = local.data_buckets

  bucket = aws_s3_bucket.data[each.key].id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.this["data"].arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "data" {
  for_each = local.data_buckets

  bucket        = aws_s3_bucket.data[each.key].id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  for_each = local.data_buckets

  bucket = aws_s3_bucket.data[each.key].id

  rule {
    id     = "expire-and-clean-up"
    status = "Enabled"

    filter {}

    expiration {
      days = each.value.expiry_days
    }

    noncurrent_version_expiration {
      noncurrent_days = var.backup_noncurrent_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

data "aws_iam_policy_document" "data_bucket" {
  for_each = local.data_buckets

  statement {
    sid       = "DenyAnythingButTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data[each.key].arn, "${aws_s3_bucket.data[each.key].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  statement {
    sid       = "DenyOldTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data[each.key].arn, "${aws_s3_bucket.data[each.key].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "NumericLessThan"
      variable = "s3:TlsVersion"
      values   = ["1.2"]
    }
  }

  # Objects are encrypted with the data key or not written at all.
  statement {
    sid       = "DenyOtherKeys"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.data[each.key].arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotEqualsIfExists"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [aws_kms_key.this["data"].arn]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  for_each = local.data_buckets

  bucket = aws_s3_bucket.data[each.key].id
  policy = data.aws_iam_policy_document.data_bucket[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

# Governance mode: an administrator with s3:BypassGovernanceRetention can still remove a
# backup by hand; Vigil's role cannot (it has neither that nor s3:DeleteObject*).
resource "aws_s3_bucket_object_lock_configuration" "backups" {
  bucket = aws_s3_bucket.data["backups"].id

  rule {
    default_retention {
      mode = "GOVERNANCE"
      days = var.backup_lock_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.data]
}

# --- Access-log bucket -----------------------------------------------------------------------

resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log target; logging it into itself would log its own log writes without end.
  #checkov:skip=CKV_AWS_144:Access logs stay in the Region of the buckets they describe; replicate them with the rest of your log archive if you keep one.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications for access logs.
  #checkov:skip=CKV_AWS_145:S3 server access logging can deliver only to a bucket with SSE-S3 (AES256) default encryption, not SSE-KMS.
  bucket = "${var.name}-${local.bucket_suffix}-s3-logs"

  tags = { Name = "${var.name}-${local.bucket_suffix}-s3-logs" }
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  versioning_configuration {
    status = "Enabled"
  }
}

# SSE-S3, not SSE-KMS: S3 server access logging delivers only to buckets encrypted so.
resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"

    filter {}

    expiration {
      days = var.log_retention_days
    }

    noncurrent_version_expiration {
      noncurrent_days = 30
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.access_logs]
}

data "aws_iam_policy_document" "access_logs" {
  statement {
    sid       = "S3ServerAccessLogsFromTheDataBuckets"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]

    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [for b in aws_s3_bucket.data : b.arn]
    }
  }

  statement {
    sid       = "DenyAnythingButTls"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  policy = data.aws_iam_policy_document.access_logs.json

  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}
