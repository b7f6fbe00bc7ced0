variable "region" {
  description = "AWS region of every resource"
  type        = string
  default     = "eu-west-1"
}

variable "name_prefix" {
  description = "Prefix of the tables, roles and key alias (ATLAS_CLOUD_TABLE_PREFIX for the tables)"
  type        = string
  default     = "atlas"
}

variable "audit_bucket" {
  description = "Name of the audit trail's bucket (ATLAS_AUDIT_SINK=s3://<bucket>)"
  type        = string
}

variable "audit_prefix" {
  description = "Key prefix of the trail inside the bucket (ATLAS_AUDIT_PREFIX)"
  type        = string
  default     = "audit"
}

variable "access_log_bucket" {
  description = "An existing bucket that receives the audit bucket's server access logs"
  type        = string
}

variable "lock_days" {
  description = "Default Object Lock retention of each audit object, in COMPLIANCE mode (no one can shorten it)"
  type        = number
  default     = 365
}

variable "cold_after_days" {
  description = "Days after which audit objects move to Glacier Instant Retrieval"
  type        = number
  default     = 90
}

variable "topic_prefix" {
  description = "Prefix of ATLAS's Kafka topics (ATLAS_TOPIC_PREFIX): the Glue table's topic partitions"
  type        = string
  default     = "atlas"
}

variable "topic_partitions" {
  description = "Partitions of every ATLAS topic (ATLAS_PARTITIONS)"
  type        = number
  default     = 8
}

variable "trail_first_day" {
  description = "First dt (YYYY-MM-DD) the Glue table's partition projection names"
  type        = string
  default     = "2026-01-01"
}

variable "task_principal" {
  description = "The service that assumes ATLAS's roles (ECS tasks by default)"
  type        = string
  default     = "ecs-tasks.amazonaws.com"
}
