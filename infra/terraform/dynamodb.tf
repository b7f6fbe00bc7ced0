# The read model the projector writes (conditional on each item's version) and read-only gateways read.
# Item shapes are in the README's Cloud section.

resource "aws_dynamodb_table" "orders" {
  name                        = "${var.name_prefix}-orders"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "account_id"
  range_key                   = "order_id"
  deletion_protection_enabled = true

  attribute {
    name = "account_id"
    type = "S"
  }
  attribute {
    name = "order_id"
    type = "S"
  }
  attribute {
    name = "open_account_id"
    type = "S"
  }
  attribute {
    name = "created_key"
    type = "S"
  }

  # Sparse: an order has open_account_id only while it is open. Newest first by created_key.
  global_secondary_index {
    name            = "open-orders"
    hash_key        = "open_account_id"
    range_key       = "created_key"
    projection_type = "ALL"
  }

  # An account's orders, newest first (created_key: creation time, then order id).
  local_secondary_index {
    name            = "by-created"
    range_key       = "created_key"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.atlas.arn
  }
}

resource "aws_dynamodb_table" "executions" {
  name                        = "${var.name_prefix}-executions"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "order_id"
  range_key                   = "seq"
  deletion_protection_enabled = true

  attribute {
    name = "order_id"
    type = "S"
  }
  attribute {
    name = "seq"
    type = "N"
  }

  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.atlas.arn
  }
}

resource "aws_dynamodb_table" "balances" {
  name                        = "${var.name_prefix}-balances"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "account_id"
  range_key                   = "asset"
  deletion_protection_enabled = true

  attribute {
    name = "account_id"
    type = "S"
  }
  attribute {
    name = "asset"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.atlas.arn
  }
}

resource "aws_dynamodb_table" "idempotency" {
  name                        = "${var.name_prefix}-idempotency"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "id"
  deletion_protection_enabled = true

  attribute {
    name = "id"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }
  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.atlas.arn
  }
}
