output "audit_sink" {
  description = "ATLAS_AUDIT_SINK of the exporter"
  value       = "s3://${aws_s3_bucket.audit.bucket}"
}

output "tables" {
  description = "The read model's tables"
  value = {
    orders      = aws_dynamodb_table.orders.name
    executions  = aws_dynamodb_table.executions.name
    balances    = aws_dynamodb_table.balances.name
    idempotency = aws_dynamodb_table.idempotency.name
  }
}

output "roles" {
  description = "The role of each part"
  value       = { for part, role in aws_iam_role.part : part => role.arn }
}

output "kms_key" {
  description = "The key of the bucket and the tables"
  value       = aws_kms_key.atlas.arn
}
