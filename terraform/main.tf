# One actor's infrastructure on Aiven: PostgreSQL (memory) and Valkey
# (presence, typing, session cache) on free plans, and the topics, users and
# ACLs on the free Kafka service made in the console (mailbox).

data "aiven_project" "actor" {
  project = var.project
}

resource "aiven_pg" "memory" {
  project      = data.aiven_project.actor.project
  cloud_name   = var.cloud_name
  plan         = var.pg_plan
  service_name = "${var.name_prefix}-pg"
}

resource "aiven_valkey" "cache" {
  project      = data.aiven_project.actor.project
  cloud_name   = var.cloud_name
  plan         = var.valkey_plan
  service_name = "${var.name_prefix}-valkey"

  valkey_user_config {
    # Expiry events (E: keyevent channel, x: expired) end typing indicators
    # whose "stopped" message was lost.
    valkey_notify_keyspace_events = "Ex"
  }
}
