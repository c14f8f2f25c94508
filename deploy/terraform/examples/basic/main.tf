# The smallest useful deployment: vxtap behind an internal NLB, mirroring two web servers' network
# interfaces (HTTP on port 80), events in /var/log/vxtap/eve.json on each instance, and every request
# replayed to an internal ALB (omit replay_url to only write events).
#
#   cp terraform.tfvars.example terraform.tfvars   # then edit it
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.2"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region
}

module "vxtap" {
  source = "../.."

  name       = "vxtap-example"
  vpc_id     = var.vpc_id
  subnet_ids = var.subnet_ids

  # The mirrored interfaces send VXLAN from their own addresses: only they may reach UDP 4789.
  mirror_source_cidrs          = var.mirror_source_cidrs
  source_network_interface_ids = var.source_network_interface_ids

  package_url    = var.package_url
  package_sha256 = var.package_sha256

  vni        = 1377
  http_ports = [80]
  replay_url = var.replay_url
  memcap     = "1GiB"

  instance_type = "c5n.large"
  min_size      = 1
  max_size      = 3

  tags = {
    Environment = "example"
  }
}

output "nlb_dns_name" {
  value = module.vxtap.nlb_dns_name
}

output "traffic_mirror_target_id" {
  value = module.vxtap.traffic_mirror_target_id
}

output "traffic_mirror_session_ids" {
  value = module.vxtap.traffic_mirror_session_ids
}

output "autoscaling_group_name" {
  value = module.vxtap.autoscaling_group_name
}
