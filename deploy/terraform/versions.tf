terraform {
  # Lifecycle preconditions need 1.2; `terraform test` of tests/ (mocked provider) needs 1.7.
  required_version = ">= 1.2"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0, < 7.0"
    }
  }
}
