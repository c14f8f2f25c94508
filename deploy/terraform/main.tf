# vxtap mirror target: an internal UDP/4789 Network Load Balancer in front of an Auto Scaling Group of
# instances that run the vxtap package, the traffic mirror target/filter/sessions that send mirrored
# traffic to it, and the security groups and IAM that this needs.

data "aws_partition" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

locals {
  # Fixed by AWS traffic mirroring: VXLAN to UDP 4789.
  vxlan_port = 4789

  tags = merge({ Application = "vxtap", ManagedBy = "terraform" }, var.tags)

  vpc_cidrs = length(var.vpc_cidr_blocks) > 0 ? var.vpc_cidr_blocks : distinct(concat(
    [data.aws_vpc.this.cidr_block],
    [for a in data.aws_vpc.this.cidr_block_associations : a.cidr_block],
  ))
  mirror_source_cidrs = length(var.mirror_source_cidrs) > 0 ? var.mirror_source_cidrs : local.vpc_cidrs
  instance_subnet_ids = var.instance_subnet_ids != null ? var.instance_subnet_ids : var.subnet_ids

  http_mirror_enabled = length(var.http_mirror_cidrs) > 0
  trusted_proxies     = var.trusted_proxies != null ? var.trusted_proxies : var.http_mirror_cidrs

  image_id = var.ami_id != null ? var.ami_id : "resolve:ssm:${var.ami_ssm_parameter}"

  create_instance_profile = var.iam_instance_profile_name == null
  instance_profile_name   = local.create_instance_profile ? aws_iam_instance_profile.this[0].name : var.iam_instance_profile_name
  # ["bucket", "key"] of package_s3_uri, or null.
  package_s3 = var.package_s3_uri == null ? null : regex("^s3://([^/]+)/(.+)$", var.package_s3_uri)

  # /etc/vxtap/vxtap.toml: the keys of configs/vxtap.toml, events in /var/log/vxtap (the unit's
  # LogsDirectory), only the VNI of the mirror sessions.
  vxtap_config = var.vxtap_config != null ? var.vxtap_config : templatefile("${path.module}/templates/vxtap.toml.tftpl", {
    vni              = var.vni
    http_ports       = var.http_ports
    body_limit       = var.body_limit
    detect           = var.detect
    memcap           = var.memcap
    workers          = var.workers == null ? 0 : var.workers
    idle_timeout     = var.idle_timeout
    replay_url       = var.replay_url == null ? "" : var.replay_url
    log_format       = var.log_format == null ? "" : var.log_format
    vxlan_port       = local.vxlan_port
    receivers        = var.receivers == null ? 0 : var.receivers
    recv_buffer      = var.recv_buffer == null ? "" : var.recv_buffer
    health_port      = var.health_port
    drain_timeout    = var.drain_timeout
    http_mirror_port = local.http_mirror_enabled ? var.http_mirror_port : 0
    trusted_proxies  = local.trusted_proxies
  })

  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    vxtap_config      = local.vxtap_config
    package_url       = var.package_url == null ? "" : var.package_url
    package_s3_bucket = local.package_s3 == null ? "" : local.package_s3[0]
    package_s3_key    = local.package_s3 == null ? "" : local.package_s3[1]
    package_s3_region = var.package_s3_region == null ? "" : var.package_s3_region
    package_sha256    = var.package_sha256 == null ? "" : var.package_sha256
    stop_timeout      = var.drain_timeout + 15
    health_port       = var.health_port
    extra_user_data   = var.extra_user_data
  })

  # Mirror filter rules. Per port: requests to a mirrored server (ingress, destination port) and its
  # responses (egress, source port); with mirror_client_side also the connections the interface opens
  # (egress to the port, ingress from it). No ports: all TCP. AWS allows 10 rules per filter.
  filter_port_rules = length(var.http_ports) == 0 ? [
    { key = "ingress-tcp", direction = "ingress", dst_port = null, src_port = null },
    { key = "egress-tcp", direction = "egress", dst_port = null, src_port = null },
    ] : flatten([
      for p in var.http_ports : concat(
        [
          { key = "ingress-to-${p}", direction = "ingress", dst_port = p, src_port = null },
          { key = "egress-from-${p}", direction = "egress", dst_port = null, src_port = p },
        ],
        var.mirror_client_side ? [
          { key = "egress-to-${p}", direction = "egress", dst_port = p, src_port = null },
          { key = "ingress-from-${p}", direction = "ingress", dst_port = null, src_port = p },
        ] : [],
      )
  ])
  filter_rule_list = flatten([
    for cidr in var.mirror_filter_cidr_blocks : [
      for r in local.filter_port_rules : merge(r, { cidr = cidr })
    ]
  ])
  # Rule numbers count up from 100 in each direction, in the order above.
  filter_rules = {
    for i, r in local.filter_rule_list : "${r.key}-${r.cidr}" => merge(r, {
      number = 100 + length([for j, q in local.filter_rule_list : j if j < i && q.direction == r.direction])
    })
  }
}

# ---------------------------------------------------------------------------------------------------
# Network Load Balancer: UDP 4789 (and optionally TCP for the HTTP mirror input) to the instances
# ---------------------------------------------------------------------------------------------------

resource "aws_lb" "this" {
  name                             = var.name
  internal                         = true
  load_balancer_type               = "network"
  subnets                          = var.subnet_ids
  enable_cross_zone_load_balancing = var.cross_zone_load_balancing
  enable_deletion_protection       = var.deletion_protection
  tags                             = local.tags
}

resource "aws_lb_target_group" "vxlan" {
  name                   = "${var.name}-vxlan"
  port                   = local.vxlan_port
  protocol               = "UDP"
  target_type            = "instance"
  vpc_id                 = var.vpc_id
  deregistration_delay   = var.deregistration_delay
  connection_termination = true

  # vxtap answers 200 while running, 503 while draining (SIGTERM) or when its intake is broken.
  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = tostring(var.health_port)
    path                = "/-/healthcheck"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "vxlan" {
  load_balancer_arn = aws_lb.this.arn
  port              = local.vxlan_port
  protocol          = "UDP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.vxlan.arn
  }

  tags = local.tags
}

resource "aws_lb_target_group" "http_mirror" {
  count = local.http_mirror_enabled ? 1 : 0

  name                 = "${var.name}-mirror"
  port                 = var.http_mirror_port
  protocol             = "TCP"
  target_type          = "instance"
  vpc_id               = var.vpc_id
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    protocol            = "HTTP"
    port                = tostring(var.health_port)
    path                = "/-/healthcheck"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }

  tags = local.tags
}

resource "aws_lb_listener" "http_mirror" {
  count = local.http_mirror_enabled ? 1 : 0

  load_balancer_arn = aws_lb.this.arn
  port              = var.http_mirror_port
  protocol          = "TCP"

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.http_mirror[0].arn
  }

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------------
# Security group of the instances
# ---------------------------------------------------------------------------------------------------

resource "aws_security_group" "instances" {
  name_prefix = "${var.name}-"
  description = "vxtap: VXLAN from mirror sources, health and metrics from the VPC"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-instances" })

  lifecycle {
    create_before_destroy = true
  }
}

# VXLAN from the mirrored interfaces only (an NLB UDP listener keeps the client address).
resource "aws_vpc_security_group_ingress_rule" "vxlan" {
  for_each = toset(local.mirror_source_cidrs)

  security_group_id = aws_security_group.instances.id
  description       = "VXLAN (traffic mirroring) from mirror sources"
  ip_protocol       = "udp"
  from_port         = local.vxlan_port
  to_port           = local.vxlan_port
  cidr_ipv4         = length(regexall(":", each.value)) > 0 ? null : each.value
  cidr_ipv6         = length(regexall(":", each.value)) > 0 ? each.value : null
  tags              = local.tags
}

# Health check, ping and metrics from the VPC only (the NLB's health checks come from its own
# addresses inside the VPC; a Prometheus in the VPC may scrape /metrics).
resource "aws_vpc_security_group_ingress_rule" "health" {
  for_each = toset(local.vpc_cidrs)

  security_group_id = aws_security_group.instances.id
  description       = "vxtap health check and metrics from the VPC"
  ip_protocol       = "tcp"
  from_port         = var.health_port
  to_port           = var.health_port
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "http_mirror" {
  for_each = toset(var.http_mirror_cidrs)

  security_group_id = aws_security_group.instances.id
  description       = "HTTP mirror copies from proxies"
  ip_protocol       = "tcp"
  from_port         = var.http_mirror_port
  to_port           = var.http_mirror_port
  cidr_ipv4         = length(regexall(":", each.value)) > 0 ? null : each.value
  cidr_ipv6         = length(regexall(":", each.value)) > 0 ? each.value : null
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = toset(var.egress_cidrs)

  security_group_id = aws_security_group.instances.id
  description       = "Package download, OS updates, replay target, SSM"
  ip_protocol       = "-1"
  cidr_ipv4         = length(regexall(":", each.value)) > 0 ? null : each.value
  cidr_ipv6         = length(regexall(":", each.value)) > 0 ? each.value : null
  tags              = local.tags
}

# ---------------------------------------------------------------------------------------------------
# IAM: instance role (SSM, package download from S3), unless an instance profile is given
# ---------------------------------------------------------------------------------------------------

resource "aws_iam_role" "this" {
  count = local.create_instance_profile ? 1 : 0

  name_prefix = "${var.name}-"
  description = "vxtap mirror target instances"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
  tags = local.tags
}

resource "aws_iam_instance_profile" "this" {
  count = local.create_instance_profile ? 1 : 0

  name_prefix = "${var.name}-"
  role        = aws_iam_role.this[0].name
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count = local.create_instance_profile && var.enable_ssm ? 1 : 0

  role       = aws_iam_role.this[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "package" {
  count = local.create_instance_profile && local.package_s3 != null ? 1 : 0

  name_prefix = "${var.name}-package-"
  role        = aws_iam_role.this[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "s3:GetObject"
      Resource = "arn:${data.aws_partition.current.partition}:s3:::${local.package_s3[0]}/${local.package_s3[1]}"
    }]
  })
}

# ---------------------------------------------------------------------------------------------------
# Launch template and Auto Scaling Group
# ---------------------------------------------------------------------------------------------------

resource "aws_launch_template" "this" {
  name_prefix            = "${var.name}-"
  description            = "vxtap mirror target"
  image_id               = local.image_id
  instance_type          = var.instance_type
  key_name               = var.key_name
  vpc_security_group_ids = concat([aws_security_group.instances.id], var.additional_security_group_ids)
  user_data              = base64encode(local.user_data)
  update_default_version = true

  iam_instance_profile {
    name = local.instance_profile_name
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = var.detailed_monitoring
  }

  block_device_mappings {
    device_name = var.root_device_name

    ebs {
      volume_size           = var.root_volume_size
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = var.name })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = merge(local.tags, { Name = var.name })
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = (var.package_url == null) != (var.package_s3_uri == null)
      error_message = "Set exactly one of package_url and package_s3_uri."
    }
  }
}

resource "aws_autoscaling_group" "this" {
  name_prefix               = "${var.name}-"
  vpc_zone_identifier       = local.instance_subnet_ids
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  target_group_arns         = concat([aws_lb_target_group.vxlan.arn], aws_lb_target_group.http_mirror[*].arn)
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period
  default_instance_warmup   = 120

  launch_template {
    id      = aws_launch_template.this.id
    version = aws_launch_template.this.latest_version
  }

  # A new launch template version (package, settings) replaces the instances a few at a time.
  instance_refresh {
    strategy = "Rolling"

    preferences {
      min_healthy_percentage = 50
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { Name = var.name })

    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = false
    }
  }

  lifecycle {
    # The scaling policy owns the capacity after creation.
    ignore_changes = [desired_capacity]

    precondition {
      condition     = var.min_size <= var.max_size
      error_message = "min_size must not exceed max_size."
    }
  }
}

resource "aws_autoscaling_policy" "cpu" {
  name                      = "${var.name}-cpu-target"
  autoscaling_group_name    = aws_autoscaling_group.this.name
  policy_type               = "TargetTrackingScaling"
  estimated_instance_warmup = 180

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }

    target_value = var.cpu_target_percent
  }
}

# ---------------------------------------------------------------------------------------------------
# Traffic mirroring: target (the NLB), filter (TCP on the HTTP ports, both directions), sessions
# ---------------------------------------------------------------------------------------------------

resource "aws_ec2_traffic_mirror_target" "this" {
  description               = "vxtap ${var.name}: UDP/4789 NLB"
  network_load_balancer_arn = aws_lb.this.arn
  tags                      = merge(local.tags, { Name = var.name })
}

resource "aws_ec2_traffic_mirror_filter" "this" {
  description      = "vxtap ${var.name}: TCP ${length(var.http_ports) > 0 ? join(",", var.http_ports) : "any port"}"
  network_services = var.mirror_amazon_dns ? ["amazon-dns"] : []
  tags             = merge(local.tags, { Name = var.name })

  lifecycle {
    precondition {
      condition     = length(local.filter_rules) <= 10
      error_message = "AWS allows 10 rules per traffic mirror filter: use fewer http_ports or mirror_filter_cidr_blocks, or turn mirror_client_side off."
    }
  }
}

resource "aws_ec2_traffic_mirror_filter_rule" "tcp" {
  for_each = local.filter_rules

  traffic_mirror_filter_id = aws_ec2_traffic_mirror_filter.this.id
  description              = "vxtap ${each.key}"
  traffic_direction        = each.value.direction
  rule_number              = each.value.number
  rule_action              = "accept"
  protocol                 = 6
  source_cidr_block        = each.value.cidr
  destination_cidr_block   = each.value.cidr

  dynamic "destination_port_range" {
    for_each = each.value.dst_port == null ? [] : [each.value.dst_port]

    content {
      from_port = destination_port_range.value
      to_port   = destination_port_range.value
    }
  }

  dynamic "source_port_range" {
    for_each = each.value.src_port == null ? [] : [each.value.src_port]

    content {
      from_port = source_port_range.value
      to_port   = source_port_range.value
    }
  }
}

resource "aws_ec2_traffic_mirror_session" "this" {
  for_each = toset(var.source_network_interface_ids)

  description              = "vxtap ${var.name}: ${each.value}"
  network_interface_id     = each.value
  traffic_mirror_target_id = aws_ec2_traffic_mirror_target.this.id
  traffic_mirror_filter_id = aws_ec2_traffic_mirror_filter.this.id
  session_number           = var.session_number
  virtual_network_id       = var.vni
  packet_length            = var.packet_length
  tags                     = merge(local.tags, { Name = "${var.name}-${each.value}" })

  # Mirror only once the filter accepts something.
  depends_on = [aws_ec2_traffic_mirror_filter_rule.tcp]
}
