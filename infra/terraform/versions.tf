# What ATLAS needs in AWS: the audit bucket (Object Lock, versioning, KMS, lifecycle, a policy that
# refuses plain HTTP and deletes), the DynamoDB read model's tables, a Glue table for Athena over the
# trail, and one least-privilege role each for the worker, the audit exporter and the projector.
# `python -m atlas cloud provision` makes the same resources through boto3; `cloud verify` checks them.

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      project = "atlas"
    }
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}
