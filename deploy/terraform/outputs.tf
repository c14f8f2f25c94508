output "nlb_arn" {
  description = "ARN of the internal Network Load Balancer (UDP 4789)."
  value       = aws_lb.this.arn
}

output "nlb_dns_name" {
  description = "DNS name of the Network Load Balancer."
  value       = aws_lb.this.dns_name
}

output "nlb_zone_id" {
  description = "Route 53 zone of the Network Load Balancer's DNS name (for an alias record)."
  value       = aws_lb.this.zone_id
}

output "target_group_arn" {
  description = "ARN of the UDP 4789 target group (health check: HTTP on the health port, /-/healthcheck)."
  value       = aws_lb_target_group.vxlan.arn
}

output "http_mirror_endpoint" {
  description = "host:port for the proxies' HTTP mirror copies (nginx `mirror`, Envoy/Istio shadowing), or null when http_mirror_cidrs is empty."
  value       = length(aws_lb_listener.http_mirror) > 0 ? "${aws_lb.this.dns_name}:${var.http_mirror_port}" : null
}

output "traffic_mirror_target_id" {
  description = "ID of the traffic mirror target (the NLB), for more sessions made elsewhere."
  value       = aws_ec2_traffic_mirror_target.this.id
}

output "traffic_mirror_filter_id" {
  description = "ID of the traffic mirror filter (TCP on the HTTP ports, both directions)."
  value       = aws_ec2_traffic_mirror_filter.this.id
}

output "traffic_mirror_session_ids" {
  description = "Traffic mirror session ID of each mirrored network interface."
  value       = { for eni, s in aws_ec2_traffic_mirror_session.this : eni => s.id }
}

output "autoscaling_group_name" {
  description = "Name of the Auto Scaling Group."
  value       = aws_autoscaling_group.this.name
}

output "autoscaling_group_arn" {
  description = "ARN of the Auto Scaling Group."
  value       = aws_autoscaling_group.this.arn
}

output "launch_template_id" {
  description = "ID of the launch template."
  value       = aws_launch_template.this.id
}

output "security_group_id" {
  description = "ID of the instances' security group."
  value       = aws_security_group.instances.id
}

output "instance_role_name" {
  description = "Name of the instance role the module created (null when iam_instance_profile_name was given): attach more policies to it, e.g. for a log shipper."
  value       = length(aws_iam_role.this) > 0 ? aws_iam_role.this[0].name : null
}

output "vxtap_config" {
  description = "The /etc/vxtap/vxtap.toml the instances are given."
  value       = local.vxtap_config
}
