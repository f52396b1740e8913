terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aiven = {
      source  = "aiven/aiven"
      version = "~> 4.45"
    }
  }
}

provider "aiven" {
  api_token = var.aiven_api_token
}
