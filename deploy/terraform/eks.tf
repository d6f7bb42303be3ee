# EKS: private API endpoint (public only from the listed CIDRs), every control-plane log type
# to CloudWatch, Secrets envelope-encrypted with a customer-managed key, access through EKS
# access entries, one managed node group in the private subnets with IMDSv2 only, and an
# OIDC provider so that each Vigil pod gets its own IAM role (IRSA; iam.tf).

locals {
  eks_public_endpoint = length(var.eks_public_access_cidrs) > 0
}

# --- Cluster role ----------------------------------------------------------------------------

data "aws_iam_policy_document" "eks_cluster_trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]

    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }

    # This account's cluster of this name only (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${local.cluster_name}"]
    }
  }
}

resource "aws_iam_role" "eks_cluster" {
  name                 = "${var.name}-eks-cluster"
  assume_role_policy   = data.aws_iam_policy_document.eks_cluster_trust.json
  permissions_boundary = var.iam_permissions_boundary_arn
}

resource "aws_iam_role_policy_attachment" "eks_cluster" {
  role       = aws_iam_role.eks_cluster.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonEKSClusterPolicy"
}

# --- Control plane ---------------------------------------------------------------------------

# Created before the cluster so that its retention and key apply from the first line (EKS
# would otherwise create it unencrypted, kept forever).
resource "aws_cloudwatch_log_group" "eks" {
  name              = "/aws/eks/${local.cluster_name}/cluster"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.this["logs"].arn
}

resource "aws_security_group" "eks_control_plane" {
  name        = "${var.name}-eks-control-plane"
  description = "Extra group of the EKS control plane ENIs: HTTPS to the API from the private subnets only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-eks-control-plane" }
}

resource "aws_vpc_security_group_ingress_rule" "eks_api_from_private_subnets" {
  for_each = toset(local.private_cidrs)

  security_group_id = aws_security_group.eks_control_plane.id
  description       = "Kubernetes API over HTTPS from a private subnet (nodes, bastion, VPN)"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_eks_cluster" "this" {
  name     = local.cluster_name
  version  = var.eks_version
  role_arn = aws_iam_role.eks_cluster.arn

  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  vpc_config {
    subnet_ids              = aws_subnet.private[*].id
    security_group_ids      = [aws_security_group.eks_control_plane.id]
    endpoint_private_access = true
    endpoint_public_access  = local.eks_public_endpoint
    # Unset while the public endpoint is off (it then applies to nothing); when on, only the
    # CIDRs given, never 0.0.0.0/0 (variables.tf).
    public_access_cidrs = local.eks_public_endpoint ? var.eks_public_access_cidrs : null
  }

  encryption_config {
    resources = ["secrets"]
    provider {
      key_arn = aws_kms_key.this["eks"].arn
    }
  }

  access_config {
    authentication_mode                         = "API"
    bootstrap_cluster_creator_admin_permissions = false
  }

  depends_on = [
    aws_iam_role_policy_attachment.eks_cluster,
    aws_cloudwatch_log_group.eks,
  ]
}

resource "aws_eks_access_entry" "admin" {
  for_each = toset(var.eks_admin_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
}

resource "aws_eks_access_policy_association" "admin" {
  for_each = toset(var.eks_admin_arns)

  cluster_name  = aws_eks_cluster.this.name
  principal_arn = each.value
  policy_arn    = "arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"

  access_scope {
    type = "cluster"
  }

  depends_on = [aws_eks_access_entry.admin]
}

# --- IRSA ------------------------------------------------------------------------------------

resource "aws_iam_openid_connect_provider" "eks" {
  url            = aws_eks_cluster.this.identity[0].oidc[0].issuer
  client_id_list = ["sts.amazonaws.com"]

  tags = { Name = "${local.cluster_name}-irsa" }
}

# --- Storage for the index's PersistentVolume ----------------------------------------------

# The EBS CSI driver provisions the index StatefulSet's volume. Its controller has its own
# IRSA role with AWS's managed policy for the driver (volumes and snapshots it tags).
data "aws_iam_policy_document" "ebs_csi_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.eks.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:sub"
      values   = ["system:serviceaccount:kube-system:ebs-csi-controller-sa"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.oidc_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ebs_csi" {
  name                 = "${var.name}-ebs-csi"
  description          = "EBS CSI controller of ${local.cluster_name} (kube-system/ebs-csi-controller-sa)"
  assume_role_policy   = data.aws_iam_policy_document.ebs_csi_trust.json
  permissions_boundary = var.iam_permissions_boundary_arn
}

resource "aws_iam_role_policy_attachment" "ebs_csi" {
  role       = aws_iam_role.ebs_csi.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}

resource "aws_eks_addon" "ebs_csi" {
  cluster_name             = aws_eks_cluster.this.name
  addon_name               = "aws-ebs-csi-driver"
  service_account_role_arn = aws_iam_role.ebs_csi.arn

  depends_on = [aws_eks_node_group.this]
}

# Every new EBS volume in this account and Region is encrypted, whatever StorageClass or
# launch template asks for: the index's volume included. An account-wide setting: turn
# ebs_encryption_by_default off if another stack owns it.
resource "aws_ebs_encryption_by_default" "this" {
  count = var.ebs_encryption_by_default ? 1 : 0

  enabled = true
}

# --- Nodes -----------------------------------------------------------------------------------

data "aws_iam_policy_document" "eks_node_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "eks_node" {
  name                 = "${var.name}-eks-node"
  assume_role_policy   = data.aws_iam_policy_document.eks_node_trust.json
  permissions_boundary = var.iam_permissions_boundary_arn
}

# The node role holds only what the kubelet and the VPC CNI need; pods cannot reach it
# (the instance metadata hop limit is 1), so Vigil's pods have only their IRSA roles.
resource "aws_iam_role_policy_attachment" "eks_node" {
  for_each = toset([
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
  ])

  role       = aws_iam_role.eks_node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/${each.value}"
}

# Nodes' own group: the handle MSK's group admits on 9098. Traffic between nodes and the
# control plane goes through the cluster security group EKS creates, attached below too.
resource "aws_security_group" "eks_nodes" {
  name        = "${var.name}-eks-nodes"
  description = "EKS worker nodes of ${var.name}; MSK admits this group only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-eks-nodes" }
}

# This group adds only the way to MSK. General egress (images, AWS APIs through NAT) comes
# from the cluster security group EKS creates and manages, attached to the nodes as well;
# pods' egress is narrowed by the chart's default-deny NetworkPolicies.
resource "aws_vpc_security_group_egress_rule" "eks_nodes_to_msk" {
  count = local.kafka_enabled ? 1 : 0

  security_group_id            = aws_security_group.eks_nodes.id
  description                  = "Kafka over TLS with IAM authentication to MSK"
  referenced_security_group_id = aws_security_group.msk[0].id
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
}

resource "aws_launch_template" "eks_nodes" {
  name_prefix            = "${var.name}-eks-node-"
  description            = "EKS nodes of ${var.name}: IMDSv2 only, hop limit 1, encrypted root volume"
  update_default_version = true

  vpc_security_group_ids = [
    aws_eks_cluster.this.vpc_config[0].cluster_security_group_id,
    aws_security_group.eks_nodes.id,
  ]

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  block_device_mappings {
    device_name = "/dev/xvda"

    ebs {
      volume_size           = var.node_disk_gib
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  monitoring {
    enabled = true
  }

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-eks-node" }
  }
}

resource "aws_eks_node_group" "this" {
  cluster_name    = aws_eks_cluster.this.name
  node_group_name = "${var.name}-default"
  node_role_arn   = aws_iam_role.eks_node.arn
  subnet_ids      = aws_subnet.private[*].id
  ami_type        = "AL2023_x86_64_STANDARD"
  instance_types  = var.node_instance_types
  capacity_type   = "ON_DEMAND"

  launch_template {
    id      = aws_launch_template.eks_nodes.id
    version = aws_launch_template.eks_nodes.latest_version
  }

  scaling_config {
    min_size     = var.node_count.min
    desired_size = var.node_count.desired
    max_size     = var.node_count.max
  }

  update_config {
    max_unavailable = 1
  }

  depends_on = [aws_iam_role_policy_attachment.eks_node]

  lifecycle {
    # The cluster autoscaler (or an operator) moves the desired size.
    ignore_changes = [scaling_config[0].desired_size]
  }
}
