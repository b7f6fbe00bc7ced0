# One role per part, each allowed what that part does and nothing more.

data "aws_iam_policy_document" "task_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [var.task_principal]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }
}

locals {
  trail_objects = "${aws_s3_bucket.audit.arn}/${var.audit_prefix}/*"
  read_model    = [aws_dynamodb_table.orders.arn, aws_dynamodb_table.executions.arn, aws_dynamodb_table.balances.arn]
}

# The worker: its gateway reads the read model when ATLAS_READ_MODEL=dynamodb (its state is in Kafka), and its
# audit exporter (on unless ATLAS_AUDIT_ENABLED=false) writes the trail. The exporter role is for a process that
# runs the exporter alone.
data "aws_iam_policy_document" "worker" {
  source_policy_documents = [data.aws_iam_policy_document.exporter.json]
  statement {
    sid       = "ReadTheReadModel"
    actions   = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:DescribeTable"]
    resources = concat(local.read_model, ["${aws_dynamodb_table.orders.arn}/index/*"])
  }
}

# The audit exporter: writes each object once (with its retention), reads the trail back to resume.
data "aws_iam_policy_document" "exporter" {
  statement {
    sid       = "WriteAndReadTheTrail"
    actions   = ["s3:PutObject", "s3:PutObjectRetention", "s3:GetObject"]
    resources = [local.trail_objects]
  }
  statement {
    sid       = "ReadTheBucketsVersioning"
    actions   = ["s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"]
    resources = [aws_s3_bucket.audit.arn]
  }
  statement {
    sid       = "ListTheTrail"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.audit.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.audit_prefix}/*", "${var.audit_prefix}/"]
    }
  }
  statement {
    sid       = "EncryptTheTrail"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.atlas.arn]
  }
}

# The projector: conditional writes to the read model and its idempotency items.
data "aws_iam_policy_document" "projector" {
  statement {
    sid = "WriteTheReadModel"
    actions = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem",
    "dynamodb:TransactWriteItems", "dynamodb:DescribeTable"]
    resources = concat(local.read_model, [aws_dynamodb_table.idempotency.arn])
  }
  statement {
    sid       = "EncryptTheReadModel"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.atlas.arn]
  }
}

locals {
  roles = {
    worker    = data.aws_iam_policy_document.worker.json
    exporter  = data.aws_iam_policy_document.exporter.json
    projector = data.aws_iam_policy_document.projector.json
  }
}

resource "aws_iam_role" "part" {
  for_each           = local.roles
  name               = "${var.name_prefix}-${each.key}"
  assume_role_policy = data.aws_iam_policy_document.task_trust.json
}

resource "aws_iam_role_policy" "part" {
  for_each = local.roles
  name     = "${var.name_prefix}-${each.key}"
  role     = aws_iam_role.part[each.key].id
  policy   = each.value
}
