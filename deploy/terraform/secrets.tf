# Vigil's secrets, encrypted with their own key. Terraform creates the secrets but never their
# values: there is no aws_secretsmanager_secret_version here, so no secret value reaches the
# Terraform plan or state. Put each value once, out of band (README.md in this directory).
#
# Two secrets, so that Firehose can read its key and nothing else:
# - <name>/firehose-access-key, {"api_key": "..."}: the form Firehose reads for an HTTP
#   endpoint; it sends the value as X-Amz-Firehose-Access-Key, and Vigil's ingest process
#   checks it (firehose.access_key, i.e. VIGIL_FIREHOSE__ACCESS_KEY).
# - <name>/app, a JSON object of Vigil's other secrets (api_token, the console's admin token;
#   ingest_token, the ingest pods' own, which senders hold; receivers' HMAC secrets, the SMTP password, ...), whose properties the Helm chart's
#   externalSecrets.data picks.
#
# External Secrets Operator reads both as its own service account (deploy/kubernetes/vigil's
# "<fullname>-secrets-manager") with the role below; no Vigil pod can read Secrets Manager.

locals {
  secrets = {
    firehose-access-key = "Access key Firehose sends to Vigil's /ingest/firehose as X-Amz-Firehose-Access-Key, as {\"api_key\":\"...\"} (16 characters or more)"
    app                 = "Vigil's own secrets as one JSON object (api_token, ingest_token, receivers' secrets), read by External Secrets Operator"
  }
}

resource "aws_secretsmanager_secret" "this" {
  for_each = local.secrets

  #checkov:skip=CKV2_AWS_57:No rotation Lambda exists for these values: the Firehose key is shared by Firehose and Vigil, the others are issued by other systems (PagerDuty, SMTP relay, webhook receivers); they are rotated by hand, as README.md here describes.
  name                    = "${var.name}/${each.key}"
  description             = each.value
  kms_key_id              = aws_kms_key.this["secrets"].arn
  recovery_window_in_days = 30
}

# --- The reader: External Secrets Operator ---------------------------------------------------

resource "aws_iam_role" "secrets_reader" {
  name                 = "${var.name}-secrets-reader"
  description          = "External Secrets Operator for Vigil (service account ${var.kubernetes_namespace}/${var.service_accounts["eso"]}): reads Vigil's secrets only"
  assume_role_policy   = data.aws_iam_policy_document.irsa_trust["eso"].json
  permissions_boundary = var.iam_permissions_boundary_arn
  max_session_duration = 3600
}

data "aws_iam_policy_document" "secrets_reader" {
  statement {
    sid       = "ReadVigilsSecretsOnly"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = [for s in aws_secretsmanager_secret.this : s.arn]
  }

  statement {
    sid       = "DecryptThemThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.this["secrets"].arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "secrets_reader" {
  name   = "secrets-read"
  role   = aws_iam_role.secrets_reader.id
  policy = data.aws_iam_policy_document.secrets_reader.json
}

# --- Resource policies: nobody else reads them -----------------------------------------------

# Even a principal whose IAM policy allows secretsmanager:GetSecretValue on "*" cannot read
# these. The playbook policy's RotateSecret needs the vigil-may-rotate tag, which they lack.
data "aws_iam_policy_document" "secret_resource" {
  for_each = local.secrets

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
      test     = "StringNotEquals"
      variable = "aws:PrincipalArn"
      values = concat(
        [aws_iam_role.secrets_reader.arn],
        each.key == "firehose-access-key" ? [aws_iam_role.firehose.arn] : [],
      )
    }
  }
}

resource "aws_secretsmanager_secret_policy" "this" {
  for_each = local.secrets

  secret_arn          = aws_secretsmanager_secret.this[each.key].arn
  policy              = data.aws_iam_policy_document.secret_resource[each.key].json
  block_public_policy = true
}
