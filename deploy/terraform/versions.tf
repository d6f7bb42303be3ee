terraform {
  # Variable validations refer to other variables (Terraform 1.9 and later).
  required_version = ">= 1.9.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.90"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      "app.kubernetes.io/part-of" = "vigil"
      "vigil:deployment"          = var.name
    })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_availability_zones" "available" {
  state = "available"

  # Exactly the zones chosen, so the set cannot grow when AWS adds one.
  filter {
    name   = "zone-id"
    values = var.availability_zone_ids
  }
}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  az_count   = length(var.availability_zone_ids)
  # Names in the order of the IDs given.
  azs = [for id in var.availability_zone_ids : data.aws_availability_zones.available.names[index(data.aws_availability_zones.available.zone_ids, id)]]

  # Vigil's processes, as deploy/kubernetes/vigil runs them. "all" is the single-node layout
  # (embedded bus, no Kafka); the others the Kafka role layout, where ui (and notify, when
  # enabled) run in the index process, which holds the store.
  kafka_enabled = var.layout == "roles"
  vigil_roles   = local.kafka_enabled ? ["ingest", "detect", "index"] : ["all"]
}
