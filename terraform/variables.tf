variable "aiven_api_token" {
  description = "Aiven API token (Console → User information → Tokens). Set it with TF_VAR_aiven_api_token rather than in a file."
  type        = string
  sensitive   = true
}

variable "project" {
  description = "Name of the Aiven project that holds the services."
  type        = string
}

variable "cloud_name" {
  description = "Cloud and region of the PostgreSQL and Valkey services. Free plans exist in a few regions only; list them with `avn service plans --service-type pg` or pick one in the console's free-plan dialog."
  type        = string
  default     = "do-ams"
}

variable "name_prefix" {
  description = "Prefix of the service names this configuration creates (<prefix>-pg, <prefix>-valkey)."
  type        = string
  default     = "kirc"
}

variable "pg_plan" {
  description = "PostgreSQL plan. Plan names change over time: `avn service plans --service-type pg --cloud <cloud>` lists the current ones."
  type        = string
  default     = "free-1-1gb"
}

variable "valkey_plan" {
  description = "Valkey plan. `avn service plans --service-type valkey --cloud <cloud>` lists the current ones."
  type        = string
  default     = "free-1"
}

variable "kafka_service_name" {
  description = "Name of the free Kafka service made in the Aiven console (the provider cannot create the free Kafka plan)."
  type        = string
}

variable "kafka_auth" {
  description = "How kircd authenticates to its own Kafka: \"sasl\" (SCRAM over TLS; enable SASL on the service in the console first) or \"certificate\" (TLS client certificate). Contacts always use SASL with the public user."
  type        = string
  default     = "sasl"

  validation {
    condition     = contains(["sasl", "certificate"], var.kafka_auth)
    error_message = "kafka_auth is \"sasl\" or \"certificate\"."
  }
}

variable "topic_prefix" {
  description = "Prefix of the four topic names (data-in, data-out, rpc-in, rpc-out); empty on a cluster of your own."
  type        = string
  default     = ""
}

variable "topic_partitions" {
  description = "Partitions per topic. The free Kafka plan allows 2."
  type        = number
  default     = 2
}

variable "topic_replication" {
  description = "Replication factor of the topics; at most the number of brokers of the plan."
  type        = number
  default     = 2
}

variable "kircd_username" {
  description = "Kafka service user for kircd: read and write on its four topics, its consumer groups."
  type        = string
  default     = "kircd"
}

variable "public_username" {
  description = "Kafka service user handed to contacts in the public profile: write-only on data-in and rpc-in."
  type        = string
  default     = "kirc-public"
}

variable "public_producer_quota" {
  description = "Whether to limit the public user's produce rate. Quotas need a plan that supports them; turn this off if apply reports that the plan does not."
  type        = bool
  default     = false
}

variable "public_producer_byte_rate" {
  description = "Produce rate allowed to the public user, in bytes per second, when public_producer_quota is on. The default is a quarter of the free tier's 250 KiB/s."
  type        = number
  default     = 64000
}
