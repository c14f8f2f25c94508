variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "vpc_id" {
  description = "VPC of the mirrored servers and of vxtap."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the NLB and the instances, one per Availability Zone."
  type        = list(string)
}

variable "mirror_source_cidrs" {
  description = "CIDR blocks of the mirrored interfaces (empty: the whole VPC)."
  type        = list(string)
  default     = []
}

variable "source_network_interface_ids" {
  description = "Network interfaces (eni-...) of the servers to mirror."
  type        = list(string)
}

variable "package_url" {
  description = "Where the instances download the vxtap .deb (built with `cargo deb -p vxtap`)."
  type        = string
}

variable "package_sha256" {
  description = "SHA-256 of that .deb (`sha256sum target/debian/vxtap_*.deb`), or null."
  type        = string
  default     = null
}

variable "replay_url" {
  description = "Internal ALB to replay requests to, http://host:port, or null for events only."
  type        = string
  default     = null
}
