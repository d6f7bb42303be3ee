# MSK for the role layout: TLS between clients and brokers and between brokers, IAM client
# authentication only (port 9098; README "Running on Kafka", auth = "msk-iam"), storage
# encrypted with a customer-managed key, broker logs to CloudWatch, brokers in the private
# subnets, reachable from the EKS nodes only.

resource "aws_security_group" "msk" {
  count = local.kafka_enabled ? 1 : 0

  name        = "${var.name}-msk"
  description = "MSK brokers of ${var.name}: Kafka with IAM auth (9098) from the EKS nodes only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-msk" }
}

resource "aws_vpc_security_group_ingress_rule" "msk_from_nodes" {
  count = local.kafka_enabled ? 1 : 0

  security_group_id            = aws_security_group.msk[0].id
  description                  = "Kafka over TLS with IAM authentication from the EKS nodes"
  referenced_security_group_id = aws_security_group.eks_nodes.id
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
}

# Brokers replicate to each other through MSK's own network; the group needs no egress rule.

resource "aws_cloudwatch_log_group" "msk" {
  count = local.kafka_enabled ? 1 : 0

  name              = "/${var.name}/msk/brokers"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this["logs"].arn
}

resource "aws_msk_configuration" "this" {
  count = local.kafka_enabled ? 1 : 0

  name           = "${var.name}-kafka"
  kafka_versions = [var.kafka_version]
  description    = "Vigil: durable, explicit topics"

  # Vigil's producer is idempotent with acks=all; two in-sync replicas of three must have a
  # record before it is acknowledged. Topics are made by Vigil (create_topics) or by hand,
  # never by a client that mistypes a name.
  server_properties = <<-PROPERTIES
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
  PROPERTIES
}

resource "aws_msk_cluster" "this" {
  count = local.kafka_enabled ? 1 : 0

  cluster_name           = "${var.name}-kafka"
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.msk_broker_count
  enhanced_monitoring    = "PER_TOPIC_PER_BROKER"

  broker_node_group_info {
    instance_type   = var.msk_instance_type
    client_subnets  = aws_subnet.private[*].id
    security_groups = [aws_security_group.msk[0].id]

    storage_info {
      ebs_storage_info {
        volume_size = var.msk_volume_gib
      }
    }

    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this[0].arn
    revision = aws_msk_configuration.this[0].latest_revision
  }

  client_authentication {
    unauthenticated = false

    sasl {
      iam   = true
      scram = false
    }
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.this["msk"].arn

    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.msk[0].name
      }
    }
  }

  tags = { Name = "${var.name}-kafka" }
}
