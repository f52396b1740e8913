output "kafka_bootstrap_servers" {
  description = "host:port of the Kafka endpoint for kafka_auth (kircd's kafka.bootstrap_servers)."
  value       = local.kafka_endpoint == null ? null : "${local.kafka_endpoint.host}:${local.kafka_endpoint.port}"

  precondition {
    condition     = local.kafka_endpoint != null
    error_message = "The Kafka service has no endpoint for kafka_auth = \"${var.kafka_auth}\". For sasl: in the Aiven console, open the Kafka service, Service settings → Advanced configuration, set kafka_authentication_methods.sasl = true, then apply again."
  }
}

output "kafka_ca_pem" {
  description = "The project's CA certificate, which signed the brokers' certificates (kircd's kafka.ca_file)."
  value       = data.aiven_project.actor.ca_cert
  sensitive   = true
}

output "kafka_topics" {
  description = "The four topic names."
  value       = { for role, topic in aiven_kafka_topic.mailbox : role => topic.topic_name }
}

output "kircd_kafka_username" {
  description = "kircd's Kafka user."
  value       = aiven_kafka_user.kircd.username
}

output "kircd_kafka_password" {
  description = "kircd's SCRAM password (kafka.sasl_password_file)."
  value       = aiven_kafka_user.kircd.password
  sensitive   = true
}

output "kircd_kafka_access_cert" {
  description = "kircd's client certificate, for kafka_auth = \"certificate\" (kafka.client_cert_file)."
  value       = aiven_kafka_user.kircd.access_cert
  sensitive   = true
}

output "kircd_kafka_access_key" {
  description = "kircd's client key, for kafka_auth = \"certificate\" (kafka.client_key_file)."
  value       = aiven_kafka_user.kircd.access_key
  sensitive   = true
}

output "public_bootstrap_servers" {
  description = "The SASL endpoint contacts write to (public.bootstrap_servers)."
  value       = local.kafka_sasl_endpoint == null ? null : "${local.kafka_sasl_endpoint.host}:${local.kafka_sasl_endpoint.port}"

  precondition {
    condition     = local.kafka_sasl_endpoint != null
    error_message = "Contacts write over SASL, which is off on this Kafka service. In the Aiven console, open the Kafka service, Service settings → Advanced configuration, set kafka_authentication_methods.sasl = true, then apply again."
  }
}

output "public_username" {
  description = "The write-only user for the public profile (public.username)."
  value       = aiven_kafka_user.public.username
}

output "public_password" {
  description = "The write-only user's password (public.password_file). It goes into every invite you hand out: it can only write to data-in and rpc-in."
  value       = aiven_kafka_user.public.password
  sensitive   = true
}

output "postgres_uri" {
  description = "PostgreSQL URI (postgres.url; kircd init moves the password into postgres.password_file)."
  value       = aiven_pg.memory.service_uri
  sensitive   = true
}

output "valkey_uri" {
  description = "Valkey URI (valkey.url; kircd init moves the password into valkey.password_file)."
  value       = aiven_valkey.cache.service_uri
  sensitive   = true
}

output "kircd_init" {
  description = "Everything kircd init needs, as one JSON document: terraform output -json kircd_init | kircd init --from-terraform -"
  sensitive   = true
  value = {
    format = "kirc-terraform-1"
    kafka = {
      bootstrap_servers = local.kafka_endpoint == null ? null : "${local.kafka_endpoint.host}:${local.kafka_endpoint.port}"
      security_protocol = var.kafka_auth == "sasl" ? "sasl_ssl" : "ssl"
      sasl_mechanism    = "SCRAM-SHA-256"
      username          = aiven_kafka_user.kircd.username
      password          = var.kafka_auth == "sasl" ? aiven_kafka_user.kircd.password : null
      access_cert       = var.kafka_auth == "certificate" ? aiven_kafka_user.kircd.access_cert : null
      access_key        = var.kafka_auth == "certificate" ? aiven_kafka_user.kircd.access_key : null
      ca_pem            = data.aiven_project.actor.ca_cert
      partitions        = var.topic_partitions
      replication       = var.topic_replication
      topics            = { for role, topic in aiven_kafka_topic.mailbox : role => topic.topic_name }
    }
    public = {
      bootstrap_servers = local.kafka_sasl_endpoint == null ? null : "${local.kafka_sasl_endpoint.host}:${local.kafka_sasl_endpoint.port}"
      sasl_mechanism    = "SCRAM-SHA-256"
      username          = aiven_kafka_user.public.username
      password          = aiven_kafka_user.public.password
    }
    postgres = {
      url = aiven_pg.memory.service_uri
    }
    valkey = {
      url = aiven_valkey.cache.service_uri
    }
  }
}
