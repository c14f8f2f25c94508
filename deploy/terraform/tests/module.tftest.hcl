# `terraform test` of the module with a mocked AWS provider: plans only, no credentials, no API calls.
# Run by scripts/deploy-check.sh where terraform and the hashicorp/aws provider are installed.

mock_provider "aws" {
  mock_data "aws_vpc" {
    defaults = {
      cidr_block = "10.0.0.0/16"
      cidr_block_associations = [
        { association_id = "vpc-cidr-assoc-1", cidr_block = "10.0.0.0/16", state = "associated" },
        { association_id = "vpc-cidr-assoc-2", cidr_block = "100.64.0.0/16", state = "associated" },
      ]
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
}

variables {
  vpc_id                       = "vpc-0123456789abcdef0"
  subnet_ids                   = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  package_url                  = "https://artifacts.example.invalid/vxtap/vxtap_0.1.0-1_amd64.deb"
  source_network_interface_ids = ["eni-0123456789abcdef0", "eni-0123456789abcdef1"]
}

run "defaults" {
  command = plan

  assert {
    condition     = aws_lb.this.internal && aws_lb.this.load_balancer_type == "network"
    error_message = "The load balancer must be an internal NLB."
  }

  assert {
    condition     = aws_lb_listener.vxlan.protocol == "UDP" && aws_lb_listener.vxlan.port == 4789
    error_message = "The listener must be UDP 4789."
  }

  assert {
    condition = (
      aws_lb_target_group.vxlan.protocol == "UDP" && aws_lb_target_group.vxlan.port == 4789 &&
      aws_lb_target_group.vxlan.health_check[0].protocol == "HTTP" &&
      aws_lb_target_group.vxlan.health_check[0].port == "9445" &&
      aws_lb_target_group.vxlan.health_check[0].path == "/-/healthcheck"
    )
    error_message = "The target group must be UDP 4789 with an HTTP health check on 9445 /-/healthcheck."
  }

  assert {
    condition     = toset(keys(aws_vpc_security_group_ingress_rule.vxlan)) == toset(["10.0.0.0/16", "100.64.0.0/16"])
    error_message = "VXLAN must be allowed from the VPC's CIDR blocks by default."
  }

  assert {
    condition = alltrue([for r in aws_vpc_security_group_ingress_rule.vxlan :
    r.ip_protocol == "udp" && r.from_port == 4789 && r.to_port == 4789])
    error_message = "The VXLAN rules must allow UDP 4789 only."
  }

  assert {
    condition = alltrue([for r in aws_vpc_security_group_ingress_rule.health :
    r.ip_protocol == "tcp" && r.from_port == 9445 && r.to_port == 9445])
    error_message = "The health rules must allow TCP 9445 only."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.health) == 2
    error_message = "The health port must be open to each VPC CIDR block."
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.http_mirror) == 0 && length(aws_lb_listener.http_mirror) == 0
    error_message = "The HTTP mirror input must be off by default."
  }

  assert {
    condition     = length(aws_ec2_traffic_mirror_session.this) == 2
    error_message = "One mirror session per network interface."
  }

  assert {
    condition = alltrue([for s in aws_ec2_traffic_mirror_session.this :
    s.virtual_network_id == 1377 && s.session_number == 1])
    error_message = "Sessions must use VNI 1377, session number 1."
  }

  assert {
    condition = (
      length(aws_ec2_traffic_mirror_filter_rule.tcp) == 2 &&
      toset([for r in aws_ec2_traffic_mirror_filter_rule.tcp : r.traffic_direction]) == toset(["ingress", "egress"]) &&
      alltrue([for r in aws_ec2_traffic_mirror_filter_rule.tcp : r.protocol == 6 && r.rule_action == "accept"])
    )
    error_message = "The filter must accept TCP on port 80 in both directions."
  }

  assert {
    condition     = aws_ec2_traffic_mirror_filter_rule.tcp["ingress-to-80-0.0.0.0/0"].destination_port_range[0].from_port == 80
    error_message = "Inbound requests to port 80 must be mirrored."
  }

  assert {
    condition     = aws_ec2_traffic_mirror_filter_rule.tcp["egress-from-80-0.0.0.0/0"].source_port_range[0].from_port == 80
    error_message = "Outbound responses from port 80 must be mirrored."
  }

  assert {
    condition     = aws_autoscaling_policy.cpu.policy_type == "TargetTrackingScaling" && aws_autoscaling_policy.cpu.target_tracking_configuration[0].predefined_metric_specification[0].predefined_metric_type == "ASGAverageCPUUtilization"
    error_message = "The scaling policy must track average CPU."
  }

  assert {
    condition     = aws_autoscaling_group.this.health_check_type == "ELB" && aws_autoscaling_group.this.min_size == 1 && aws_autoscaling_group.this.max_size == 4
    error_message = "The Auto Scaling Group must use ELB health checks, 1 to 4 instances."
  }

  assert {
    condition     = aws_launch_template.this.image_id == "resolve:ssm:/aws/service/debian/release/12/latest/amd64"
    error_message = "The default AMI is the latest Debian 12, resolved at launch."
  }

  assert {
    condition     = aws_launch_template.this.metadata_options[0].http_tokens == "required"
    error_message = "IMDSv2 must be required."
  }

  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "https://artifacts.example.invalid/vxtap/vxtap_0.1.0-1_amd64.deb") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "TimeoutStopSec=45") &&
      strcontains(base64decode(aws_launch_template.this.user_data), output.vxtap_config)
    )
    error_message = "The user data must download the package, set the stop timeout and embed the config."
  }

  assert {
    condition = (
      strcontains(output.vxtap_config, "vni = [1377]") && strcontains(output.vxtap_config, "ports = [80]") &&
      strcontains(output.vxtap_config, "events = \"/var/log/vxtap/eve.json\"") &&
      strcontains(output.vxtap_config, "health = \"0.0.0.0:9445\"") &&
      !strcontains(output.vxtap_config, "replay") && !strcontains(output.vxtap_config, "http_mirror")
    )
    error_message = "The default vxtap.toml is wrong."
  }

  assert {
    condition     = length(aws_iam_role_policy.package) == 0 && length(aws_iam_role_policy_attachment.ssm) == 1
    error_message = "A package URL needs no S3 policy; SSM is on by default."
  }

  assert {
    condition     = aws_lb.this.tags["Application"] == "vxtap" && aws_ec2_traffic_mirror_target.this.tags["ManagedBy"] == "terraform"
    error_message = "Resources must carry the module's tags."
  }
}

run "s3_package_http_mirror_replay" {
  command = plan

  variables {
    package_url         = null
    package_s3_uri      = "s3://artifacts-bucket/vxtap/vxtap_0.1.0-1_amd64.deb"
    package_sha256      = "0000000000000000000000000000000000000000000000000000000000000000"
    replay_url          = "http://internal-filtering-alb.example.invalid:80"
    http_mirror_cidrs   = ["10.1.0.0/16"]
    mirror_source_cidrs = ["10.0.1.0/24"]
    http_ports          = [80, 8080]
    mirror_client_side  = true
    vni                 = 42
    packet_length       = 8500
    workers             = 2
    drain_timeout       = 60
    log_format          = "json"
    vpc_cidr_blocks     = ["10.0.0.0/16"]
    tags                = { Environment = "test" }
  }

  assert {
    condition     = aws_lb_listener.http_mirror[0].protocol == "TCP" && aws_lb_listener.http_mirror[0].port == 8445
    error_message = "The HTTP mirror listener must be TCP 8445."
  }

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.http_mirror) == ["10.1.0.0/16"] && aws_vpc_security_group_ingress_rule.http_mirror["10.1.0.0/16"].from_port == 8445
    error_message = "TCP 8445 must be open to the HTTP mirror sources only."
  }

  assert {
    condition     = keys(aws_vpc_security_group_ingress_rule.vxlan) == ["10.0.1.0/24"]
    error_message = "VXLAN must be allowed from the given mirror sources only."
  }

  assert {
    condition     = length(aws_ec2_traffic_mirror_filter_rule.tcp) == 8
    error_message = "Two ports, both roles, both directions: 8 rules."
  }

  assert {
    condition = alltrue([for s in aws_ec2_traffic_mirror_session.this :
    s.virtual_network_id == 42 && s.packet_length == 8500])
    error_message = "Sessions must take the VNI and packet length given."
  }

  assert {
    condition     = length(aws_iam_role_policy.package) == 1 && strcontains(aws_iam_role_policy.package[0].policy, "arn:aws:s3:::artifacts-bucket/vxtap/vxtap_0.1.0-1_amd64.deb")
    error_message = "The instance role must read the package object."
  }

  assert {
    condition = (
      strcontains(base64decode(aws_launch_template.this.user_data), "BUCKET='artifacts-bucket'") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "sha256sum -c") &&
      strcontains(base64decode(aws_launch_template.this.user_data), "TimeoutStopSec=75")
    )
    error_message = "The user data must fetch from S3, verify the checksum and follow the drain timeout."
  }

  assert {
    condition = (
      strcontains(output.vxtap_config, "replay = \"http://internal-filtering-alb.example.invalid:80\"") &&
      strcontains(output.vxtap_config, "http_mirror = \"0.0.0.0:8445\"") &&
      strcontains(output.vxtap_config, "trusted_proxies = [\"10.1.0.0/16\"]") &&
      strcontains(output.vxtap_config, "vni = [42]") && strcontains(output.vxtap_config, "ports = [80,8080]") &&
      strcontains(output.vxtap_config, "workers = 2") && strcontains(output.vxtap_config, "log_format = \"json\"") &&
      strcontains(output.vxtap_config, "drain_timeout = 60")
    )
    error_message = "The vxtap.toml must carry the given settings."
  }

  assert {
    condition     = aws_lb.this.tags["Environment"] == "test"
    error_message = "User tags must reach the resources."
  }
}

run "too_many_filter_rules" {
  command = plan

  variables {
    http_ports         = [80, 81, 82]
    mirror_client_side = true
  }

  expect_failures = [aws_ec2_traffic_mirror_filter.this]
}

run "no_package" {
  command = plan

  variables {
    package_url = null
  }

  expect_failures = [aws_launch_template.this]
}

run "bad_vni" {
  command = plan

  variables {
    vni = 16777216
  }

  expect_failures = [var.vni]
}
