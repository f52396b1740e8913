data "aiven_kafka" "mailbox" {
  project      = data.aiven_project.actor.project
  service_name = var.kafka_service_name
}

locals {
  # Retention per role. Chat envelopes wait in data-in until kircd stores
  # them, and in data-out until the contact's cluster acknowledges them (a
  # contact's free tier may be powered off for days); control traffic goes
  # stale in minutes. kircd uses the same figures when it creates topics
  # itself (kircd/src/kafka/mod.rs), and a test keeps the two in step.
  #
  # The inboxes take the broker's append time as record time: kircd limits
  # each contact's rate by the minute a record reached the inbox, which a
  # contact cannot forge, so that a backlog read after days offline is not
  # mistaken for a flood.
  topics = {
    data_in  = { name = "${var.topic_prefix}data-in", retention_ms = 604800000, timestamp_type = "LogAppendTime" }
    data_out = { name = "${var.topic_prefix}data-out", retention_ms = 1209600000, timestamp_type = "CreateTime" }
    rpc_in   = { name = "${var.topic_prefix}rpc-in", retention_ms = 86400000, timestamp_type = "LogAppendTime" }
    rpc_out  = { name = "${var.topic_prefix}rpc-out", retention_ms = 86400000, timestamp_type = "CreateTime" }
  }

  # The service's endpoint for the chosen authentication method.
  kafka_endpoint = one([
    for component in data.aiven_kafka.mailbox.components : component
    if component.component == "kafka" && component.kafka_authentication_method == var.kafka_auth && component.usage == "primary"
  ])

  # Contacts always write over SASL.
  kafka_sasl_endpoint = one([
    for component in data.aiven_kafka.mailbox.components : component
    if component.component == "kafka" && component.kafka_authentication_method == "sasl" && component.usage == "primary"
  ])
}

resource "aiven_kafka_topic" "mailbox" {
  for_each = local.topics

  project      = data.aiven_project.actor.project
  service_name = data.aiven_kafka.mailbox.service_name
  topic_name   = each.value.name
  partitions   = var.topic_partitions
  replication  = var.topic_replication

  config {
    retention_ms           = each.value.retention_ms
    message_timestamp_type = each.value.timestamp_type
    cleanup_policy         = "delete"
  }
}

resource "aiven_kafka_user" "kircd" {
  project      = data.aiven_project.actor.project
  service_name = data.aiven_kafka.mailbox.service_name
  username     = var.kircd_username
}

resource "aiven_kafka_user" "public" {
  project      = data.aiven_project.actor.project
  service_name = data.aiven_kafka.mailbox.service_name
  username     = var.public_username
}

# kircd reads and writes its own four topics (Read and Write imply Describe).
resource "aiven_kafka_native_acl" "kircd_topic_read" {
  for_each = aiven_kafka_topic.mailbox

  project         = data.aiven_project.actor.project
  service_name    = data.aiven_kafka.mailbox.service_name
  resource_type   = "Topic"
  resource_name   = each.value.topic_name
  pattern_type    = "LITERAL"
  principal       = "User:${aiven_kafka_user.kircd.username}"
  operation       = "Read"
  permission_type = "ALLOW"
  host            = "*"
}

resource "aiven_kafka_native_acl" "kircd_topic_write" {
  for_each = aiven_kafka_topic.mailbox

  project         = data.aiven_project.actor.project
  service_name    = data.aiven_kafka.mailbox.service_name
  resource_type   = "Topic"
  resource_name   = each.value.topic_name
  pattern_type    = "LITERAL"
  principal       = "User:${aiven_kafka_user.kircd.username}"
  operation       = "Write"
  permission_type = "ALLOW"
  host            = "*"
}

# kircd commits its offsets to kircd.<actor id>.topics, and reads once, after
# an upgrade, those of the groups it used before (kircd.<actor id>.<reader>).
resource "aiven_kafka_native_acl" "kircd_groups" {
  project         = data.aiven_project.actor.project
  service_name    = data.aiven_kafka.mailbox.service_name
  resource_type   = "Group"
  resource_name   = "kircd."
  pattern_type    = "PREFIXED"
  principal       = "User:${aiven_kafka_user.kircd.username}"
  operation       = "Read"
  permission_type = "ALLOW"
  host            = "*"
}

# Contacts may only write to the two inboxes: no reading, no other topic, no
# consumer group.
resource "aiven_kafka_native_acl" "public_data_in" {
  project         = data.aiven_project.actor.project
  service_name    = data.aiven_kafka.mailbox.service_name
  resource_type   = "Topic"
  resource_name   = aiven_kafka_topic.mailbox["data_in"].topic_name
  pattern_type    = "LITERAL"
  principal       = "User:${aiven_kafka_user.public.username}"
  operation       = "Write"
  permission_type = "ALLOW"
  host            = "*"
}

resource "aiven_kafka_native_acl" "public_rpc_in" {
  project         = data.aiven_project.actor.project
  service_name    = data.aiven_kafka.mailbox.service_name
  resource_type   = "Topic"
  resource_name   = aiven_kafka_topic.mailbox["rpc_in"].topic_name
  pattern_type    = "LITERAL"
  principal       = "User:${aiven_kafka_user.public.username}"
  operation       = "Write"
  permission_type = "ALLOW"
  host            = "*"
}

resource "aiven_kafka_quota" "public" {
  count = var.public_producer_quota ? 1 : 0

  project            = data.aiven_project.actor.project
  service_name       = data.aiven_kafka.mailbox.service_name
  user               = aiven_kafka_user.public.username
  producer_byte_rate = var.public_producer_byte_rate
}
