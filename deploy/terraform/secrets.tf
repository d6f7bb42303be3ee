# Vigil's secrets, encrypted with their own key. Terraform creates the secrets but never their
# values: no aws_secretsmanager_secret_version here, so no secret reaches the Terraform state
# or plan. Put each value once, out of band (deploy/terraform/README.md):
#
#   aws secretsmanager put-secret-value --secret-id <name>/firehose-access-key \
#     --secret-string "{\"api_key\":\"$(openssl rand -hex 32)\"}"
#
# Pods read them through the External Secrets Operator or the Secrets Store CSI driver with
# their own IRSA role (iam.tf), so values never appear in Helm values files.

# Shared by the Firehose stream (it sends the value as X-Amz-Firehose-Access-Key) and Vigil's
# ingest process (firehose.access_key, VIGIL_FIREHOSE__ACCESS_KEY). Firehose reads HTTP
# endpoint secrets as JSON with the key "api_key"; give Vigil the same property.
resource "aws_secretsmanager_secret" "firehose_access_key" {
  #checkov:skip=CKV2_AWS_57:A shared key between Firehose and Vigil has no rotation Lambda; rotate it by hand (put a new value; Firehose re-reads within 10 minutes, restart ingest).
  name                    = "${var.name}/firehose-access-key"
  description             = "Access key Firehose sends to Vigil's /ingest/firehose as X-Amz-Firehose-Access-Key, as {\"api_key\":\"...\"} (at least 16 characters)"
  kms_key_id              = aws_kms_key.this["secrets"].arn
  recovery_window_in_days = 30
}

resource "aws_secretsmanager_secret" "notify" {
  for_each = toset(var.notify_secret_names)

  #checkov:skip=CKV2_AWS_57:Receivers' credentials (HMAC secret, PagerDuty routing key, SMTP password) are issued by other systems; there is no rotation Lambda for them, they are rotated by hand.
  name                    = "${var.name}/notify/${each.key}"
  description             = "Secret of Vigil's notification receivers: ${each.key}"
  kms_key_id              = aws_kms_key.this["secrets"].arn
  recovery_window_in_days = 30
}

# Only the roles named here may read Vigil's secrets; the playbook policy's RotateSecret needs
# the vigil-may-rotate tag, which these secrets do not carry.
data "aws_iam_policy_document" "secret_resource" {
  for_each = merge(
    { "firehose-access-key" = aws_secretsmanager_secret.firehose_access_key.arn },
    { for k, s in aws_secretsmanager_secret.notify : "notify/${k}" => s.arn },
  )

  statement {
    sid       = "DenyReadsByOtherPrincipals"
    effect    = "Deny"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = ["*"]
    }

    condition {
      test     = "StringNotLike"
      variable = "aws:PrincipalArn"
      values = concat(
        [for r in local.vigil_roles : aws_iam_role.vigil[r].arn if contains(local.secret_roles, r) && contains(local.secret_readers[r], each.value)],
        each.key == "firehose-access-key" ? [aws_iam_role.firehose.arn] : [],
      )
    }
  }
}

resource "aws_secretsmanager_secret_policy" "this" {
  for_each = data.aws_iam_policy_document.secret_resource

  secret_arn = each.key == "firehose-access-key" ? aws_secretsmanager_secret.firehose_access_key.arn : aws_secretsmanager_secret.notify[trimprefix(each.key, "notify/")].arn
  policy     = each.value.json
}
