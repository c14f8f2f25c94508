# ---------------------------------------------------------------------------------------------------
# General
# ---------------------------------------------------------------------------------------------------

variable "name" {
  description = "Name prefix of every resource (load balancer, target groups, Auto Scaling Group, ...). At most 24 characters: letters, digits and hyphens."
  type        = string
  default     = "vxtap"

  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,22}[A-Za-z0-9])?$", var.name))
    error_message = "The name must be 1-24 letters, digits or hyphens, and must not start or end with a hyphen."
  }
}

variable "tags" {
  description = "Tags added to every resource that takes tags (and to the instances and volumes the Auto Scaling Group launches)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the load balancer and the instances. Its CIDR blocks are the only sources allowed to reach the health/metrics port."
  type        = string
}

variable "vpc_cidr_blocks" {
  description = "The VPC's CIDR blocks (health/metrics sources, default mirror sources). Default: read from the VPC; give them when the VPC is created in the same configuration."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.vpc_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "Every VPC CIDR block must be a CIDR block such as 10.0.0.0/16."
  }
}

variable "subnet_ids" {
  description = "Private subnets of the internal Network Load Balancer, one per Availability Zone of the mirror sources."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "Give at least one subnet."
  }
}

variable "instance_subnet_ids" {
  description = "Subnets of the Auto Scaling Group's instances. Default: subnet_ids."
  type        = list(string)
  default     = null
}

variable "mirror_source_cidrs" {
  description = "CIDR blocks of the mirrored network interfaces: the only sources allowed to send VXLAN (UDP 4789) to the instances (the NLB keeps the source address). Default: the VPC's CIDR blocks."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.mirror_source_cidrs : can(cidrhost(c, 0))])
    error_message = "Every mirror source must be a CIDR block such as 10.0.0.0/16."
  }
}

variable "egress_cidrs" {
  description = "Destinations the instances may connect to (package download, OS updates, the replay target, SSM). Narrow it to your proxies and the replay ALB if you can."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "additional_security_group_ids" {
  description = "More security groups for the instances (for example one that lets a log shipper reach its destination)."
  type        = list(string)
  default     = []
}

variable "cross_zone_load_balancing" {
  description = "Let the NLB send mirrored traffic to instances in every Availability Zone, not only the zone it arrived in."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "Protect the Network Load Balancer from deletion."
  type        = bool
  default     = false
}

variable "deregistration_delay" {
  description = "Seconds the NLB keeps sending existing flows to an instance being removed (scale-in, instance refresh) before moving them."
  type        = number
  default     = 60
}

# ---------------------------------------------------------------------------------------------------
# Instances
# ---------------------------------------------------------------------------------------------------

variable "instance_type" {
  description = "Instance type. Mirrored traffic arrives as packets: prefer network-optimised types (c5n, c6in)."
  type        = string
  default     = "c5n.large"
}

variable "ami_id" {
  description = "AMI of the instances (Debian 12 or another distribution that installs .deb packages, amd64). Default: the latest Debian 12 AMI, resolved at launch from ami_ssm_parameter."
  type        = string
  default     = null
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter naming the AMI, used when ami_id is null. Each launch takes the AMI it names then."
  type        = string
  default     = "/aws/service/debian/release/12/latest/amd64"
}

variable "key_name" {
  description = "EC2 key pair for SSH. Default: none (use SSM Session Manager)."
  type        = string
  default     = null
}

variable "iam_instance_profile_name" {
  description = "Existing instance profile for the instances. Default: the module creates one (SSM access if enable_ssm, read access to package_s3_uri)."
  type        = string
  default     = null
}

variable "enable_ssm" {
  description = "Attach AmazonSSMManagedInstanceCore to the instance role the module creates (Session Manager instead of SSH)."
  type        = bool
  default     = true
}

variable "root_device_name" {
  description = "Root device name of the AMI (Debian and Amazon Linux: /dev/xvda)."
  type        = string
  default     = "/dev/xvda"
}

variable "root_volume_size" {
  description = "Root volume size in GiB (events are kept in /var/log/vxtap, rotated daily or at 1 GiB, 7 kept)."
  type        = number
  default     = 20
}

variable "detailed_monitoring" {
  description = "One-minute EC2 metrics, so that the CPU scaling policy reacts faster."
  type        = bool
  default     = true
}

variable "extra_user_data" {
  description = "Shell commands run as root at the end of the instances' user data (for example, installing a log shipper for /var/log/vxtap/eve.json)."
  type        = string
  default     = ""
}

# ---------------------------------------------------------------------------------------------------
# Package
# ---------------------------------------------------------------------------------------------------

variable "package_url" {
  description = "HTTP(S) URL of the vxtap .deb (`cargo deb -p vxtap`). Set exactly one of package_url and package_s3_uri."
  type        = string
  default     = null

  validation {
    condition     = var.package_url == null || can(regex("^https?://[^\\s'\"]+$", var.package_url))
    error_message = "The package URL must be http:// or https:// and contain no spaces or quotes."
  }
}

variable "package_s3_uri" {
  description = "S3 location of the vxtap .deb, s3://bucket/key (read with the instance role). Set exactly one of package_url and package_s3_uri."
  type        = string
  default     = null

  validation {
    condition     = var.package_s3_uri == null || can(regex("^s3://[a-z0-9][a-z0-9.-]+/[A-Za-z0-9!_.*()/=+-]+$", var.package_s3_uri))
    error_message = "The package location must look like s3://bucket/path/vxtap_0.1.0-1_amd64.deb (letters, digits and !_.*()/=+- in the key)."
  }
}

variable "package_s3_region" {
  description = "Region of the package_s3_uri bucket. Default: the instances' region."
  type        = string
  default     = null
}

variable "package_sha256" {
  description = "SHA-256 of the .deb; when set, an instance refuses a package with another checksum."
  type        = string
  default     = null

  validation {
    condition     = var.package_sha256 == null || can(regex("^[0-9a-f]{64}$", var.package_sha256))
    error_message = "The checksum must be 64 lowercase hexadecimal digits."
  }
}

# ---------------------------------------------------------------------------------------------------
# Auto Scaling
# ---------------------------------------------------------------------------------------------------

variable "min_size" {
  description = "Fewest instances."
  type        = number
  default     = 1
}

variable "max_size" {
  description = "Most instances."
  type        = number
  default     = 4
}

variable "desired_capacity" {
  description = "Instances at creation. Default: min_size. Later changes come from the scaling policy, not from this variable."
  type        = number
  default     = null
}

variable "cpu_target_percent" {
  description = "Average CPU utilisation the target-tracking policy keeps the group at."
  type        = number
  default     = 60

  validation {
    condition     = var.cpu_target_percent > 0 && var.cpu_target_percent <= 100
    error_message = "The CPU target must be a percentage between 1 and 100."
  }
}

variable "health_check_grace_period" {
  description = "Seconds after launch before a failing NLB health check replaces an instance (boot, package download, start)."
  type        = number
  default     = 300
}

# ---------------------------------------------------------------------------------------------------
# vxtap settings, written to /etc/vxtap/vxtap.toml (keys documented in configs/vxtap.toml)
# ---------------------------------------------------------------------------------------------------

variable "vni" {
  description = "VXLAN network identifier of the mirror sessions; vxtap accepts only this VNI."
  type        = number
  default     = 1377

  validation {
    condition     = var.vni >= 0 && var.vni <= 16777215 && floor(var.vni) == var.vni
    error_message = "A VNI is an integer from 0 to 16777215."
  }
}

variable "http_ports" {
  description = "TCP server ports of the mirrored HTTP services: the mirror filter accepts TCP to and from them, and vxtap treats them as HTTP. Empty: every TCP port."
  type        = list(number)
  default     = [80]

  validation {
    condition     = alltrue([for p in var.http_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "Ports are integers from 1 to 65535."
  }
}

variable "replay_url" {
  description = "Replay every reconstructed request to this internal ALB, http://host:port (vxtap `replay`). Default: no replay."
  type        = string
  default     = null

  validation {
    condition     = var.replay_url == null || can(regex("^https?://[^\\s'\"]+$", var.replay_url))
    error_message = "The replay URL must be http://host:port or https://host:port."
  }
}

variable "memcap" {
  description = "vxtap `memcap`: ceiling on all buffered stream and body bytes (keep it well under the instance's memory)."
  type        = string
  default     = "1GiB"

  validation {
    condition     = can(regex("^[0-9]+ ?([KMG]i?B?|B)?$", var.memcap))
    error_message = "The memcap is a number of bytes with an optional unit: 1GiB, 512MiB, 2GB."
  }
}

variable "workers" {
  description = "vxtap `workers`: reassembly/detection threads. Default: one per core."
  type        = number
  default     = null
}

variable "receivers" {
  description = "vxtap `[listen] receivers`: UDP receive threads. Default: vxtap's own (1)."
  type        = number
  default     = null
}

variable "recv_buffer" {
  description = "vxtap `[listen] recv_buffer`: kernel receive buffer of each UDP socket, what a burst can queue while the workers catch up (the kernel doubles it). Default: vxtap's own (256MiB)."
  type        = string
  default     = null

  validation {
    condition     = var.recv_buffer == null || can(regex("^[0-9]+ ?([KMG]i?B?|B)?$", var.recv_buffer))
    error_message = "The receive buffer is a number of bytes with an optional unit: 256MiB, 1GiB."
  }
}

variable "body_limit" {
  description = "vxtap `body_limit`: request body bytes kept per request."
  type        = string
  default     = "1MiB"

  validation {
    condition     = can(regex("^[0-9]+ ?([KMG]i?B?|B)?$", var.body_limit))
    error_message = "The body limit is a number of bytes with an optional unit: 1MiB, 64KiB."
  }
}

variable "detect" {
  description = "vxtap `detect`: run the built-in attack detector."
  type        = bool
  default     = true
}

variable "idle_timeout" {
  description = "vxtap `idle_timeout`: seconds without a packet after which a flow is closed."
  type        = number
  default     = 30
}

variable "drain_timeout" {
  description = "vxtap `[listen] drain_timeout`: seconds allowed after SIGTERM to write the complete requests of open flows. The unit's TimeoutStopSec is set 15 s above it."
  type        = number
  default     = 30
}

variable "log_format" {
  description = "vxtap `log_format`: \"human\" or \"json\" log lines on stderr (the journal). Default: vxtap's own (human)."
  type        = string
  default     = null

  validation {
    condition     = var.log_format == null || contains(["human", "json"], coalesce(var.log_format, "human"))
    error_message = "The log format is \"human\" or \"json\"."
  }
}

variable "health_port" {
  description = "Port of vxtap's health (/-/healthcheck), ping and Prometheus metrics server; the NLB health check asks it."
  type        = number
  default     = 9445
}

variable "vxtap_config" {
  description = "The whole /etc/vxtap/vxtap.toml, replacing the one the module writes from the variables above (its health address must still be on health_port)."
  type        = string
  default     = null
}

# ---------------------------------------------------------------------------------------------------
# HTTP mirror input (nginx `mirror`, Envoy/Istio shadowing, Traefik mirroring), optional
# ---------------------------------------------------------------------------------------------------

variable "http_mirror_cidrs" {
  description = "Proxies that send HTTP mirror copies. Non-empty: vxtap listens on http_mirror_port, the NLB gets a TCP listener on it and only these CIDR blocks may connect."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.http_mirror_cidrs : can(cidrhost(c, 0))])
    error_message = "Every HTTP mirror source must be a CIDR block."
  }
}

variable "http_mirror_port" {
  description = "TCP port of the HTTP mirror input."
  type        = number
  default     = 8445
}

variable "trusted_proxies" {
  description = "vxtap `[listen] trusted_proxies`: peers whose X-Forwarded-For / X-Server-Addr headers are believed. Default: http_mirror_cidrs."
  type        = list(string)
  default     = null
}

# ---------------------------------------------------------------------------------------------------
# Traffic mirroring
# ---------------------------------------------------------------------------------------------------

variable "source_network_interface_ids" {
  description = "Network interfaces (eni-...) to mirror, one traffic mirror session each. Their IDs must be known at plan time."
  type        = list(string)
  default     = []
}

variable "session_number" {
  description = "Session number (1-32766) of the mirror sessions: the order among up to three sessions of one interface."
  type        = number
  default     = 1

  validation {
    condition     = var.session_number >= 1 && var.session_number <= 32766
    error_message = "The session number is from 1 to 32766."
  }
}

variable "packet_length" {
  description = "Bytes of each packet to mirror, counted after the VXLAN header. Default: the whole packet (an NLB target takes up to 8500)."
  type        = number
  default     = null

  validation {
    condition     = var.packet_length == null || (coalesce(var.packet_length, 1) >= 1 && coalesce(var.packet_length, 1) <= 8500)
    error_message = "The packet length is from 1 to 8500 bytes, or null for whole packets."
  }
}

variable "mirror_filter_cidr_blocks" {
  description = "Source and destination CIDR blocks of the mirror filter rules (add ::/0 to mirror IPv6)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "mirror_client_side" {
  description = "Also mirror connections the interfaces make as clients (TCP to http_ports out, from them in), not only those they serve."
  type        = bool
  default     = false
}

variable "mirror_amazon_dns" {
  description = "Also mirror Amazon DNS traffic (the filter's amazon-dns network service)."
  type        = bool
  default     = false
}
