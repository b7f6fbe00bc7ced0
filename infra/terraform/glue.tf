# The audit trail for Athena: the table of infra/athena/trail.sql, with the same partition projection
# (a unit test checks the two agree). The views of infra/athena/views.sql are created in Athena from
# `python -m atlas audit sql --athena`.

resource "aws_glue_catalog_database" "atlas" {
  name = replace("${var.name_prefix}_audit", "-", "_")
}

locals {
  trail_location = "s3://${aws_s3_bucket.audit.bucket}/${var.audit_prefix}/"
  topics         = ["commands", "admin", "venue.orders", "venue.reports", "executions", "marketdata", "venue.control", "risk.control", "deadletter"]
}

resource "aws_glue_catalog_table" "audit_objects" {
  name          = "atlas_audit_objects"
  database_name = aws_glue_catalog_database.atlas.name
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "EXTERNAL"                    = "TRUE"
    "classification"              = "json"
    "projection.enabled"          = "true"
    "projection.topic.type"       = "enum"
    "projection.topic.values"     = join(",", [for t in local.topics : "${var.topic_prefix}.${t}"])
    "projection.dt.type"          = "date"
    "projection.dt.format"        = "yyyy-MM-dd"
    "projection.dt.range"         = "${var.trail_first_day},NOW"
    "projection.dt.interval"      = "1"
    "projection.dt.interval.unit" = "DAYS"
    "projection.hour.type"        = "integer"
    "projection.hour.range"       = "0,23"
    "projection.hour.digits"      = "2"
    "projection.partition.type"   = "integer"
    "projection.partition.range"  = "0,${var.topic_partitions - 1}"
    "storage.location.template"   = "${local.trail_location}topic=$${topic}/dt=$${dt}/hour=$${hour}/partition=$${partition}/"
  }

  partition_keys {
    name = "topic"
    type = "string"
  }
  partition_keys {
    name = "dt"
    type = "string"
  }
  partition_keys {
    name = "hour"
    type = "int"
  }
  partition_keys {
    name = "partition"
    type = "int"
  }

  storage_descriptor {
    location      = local.trail_location
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      serialization_library = "org.openx.data.jsonserde.JsonSerDe"
      parameters = {
        "ignore.malformed.json" = "true"
      }
    }

    columns {
      name = "offset"
      type = "bigint"
    }
    columns {
      name = "timestamp"
      type = "bigint"
    }
    columns {
      name = "key"
      type = "string"
    }
    columns {
      name = "value"
      type = "string"
    }
    columns {
      name = "headers"
      type = "array<array<string>>"
    }
    columns {
      name = "encoding"
      type = "string"
    }
  }
}
