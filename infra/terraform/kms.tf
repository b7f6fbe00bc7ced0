# One customer-managed key for the bucket and the tables, rotated yearly.
data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_111:A key policy's Resource "*" is this key alone; the account administers it, as in AWS's default key policy.
  # checkov:skip=CKV_AWS_356:A key policy's Resource "*" is this key alone (not every resource of the account).
  # checkov:skip=CKV_AWS_109:The account's own root administers its key (AWS's default key policy); IAM policies grant the rest.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "atlas" {
  description             = "ATLAS: the audit trail and the read model"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.key.json
}

resource "aws_kms_alias" "atlas" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.atlas.key_id
}
