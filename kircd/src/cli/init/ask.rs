//! The questions `kircd init` asks for what the document and the flags
//! left open, each with a default.

use super::*;

/// Asks for every setting no flag or document gave.
pub(super) fn ask<R: std::io::BufRead, W: Write>(
    prompter: &mut Prompter<R, W>,
    plan: &mut Plan,
    existing: &Existing,
    layout: &Layout,
) -> Result<(), InitError> {
    prompter.say("Setting up kircd. Press Enter to keep the value in [brackets].")?;
    if !plan.has("actor.name") {
        let default = current(plan, existing, "actor.name")
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_default();
        plan.set(
            "actor.name",
            prompter.ask("Your display name", Some(&default))?,
        );
    }
    if !plan.has("kafka.bootstrap_servers") {
        let default = current(plan, existing, "kafka.bootstrap_servers").unwrap_or_default();
        plan.set(
            "kafka.bootstrap_servers",
            prompter.ask(
                "Kafka bootstrap servers (host:port; Aiven: the service's SASL or SSL endpoint)",
                Some(&default),
            )?,
        );
    }
    let bootstrap = current(plan, existing, "kafka.bootstrap_servers").unwrap_or_default();
    let auth = if plan.has("kafka.security_protocol") {
        current(plan, existing, "kafka.security_protocol")
            .and_then(|protocol| KafkaAuth::from_protocol(&protocol))
            .unwrap_or(KafkaAuth::Plaintext)
    } else {
        let default = existing
            .str("kafka.security_protocol")
            .and_then(|protocol| KafkaAuth::from_protocol(&protocol))
            .unwrap_or(if is_loopback(&bootstrap) {
                KafkaAuth::Plaintext
            } else {
                KafkaAuth::Sasl
            });
        let answer = prompter.choose(
            "Kafka authentication",
            &["plaintext", "sasl", "certificate"],
            default.name(),
        )?;
        let auth = match answer.as_str() {
            "sasl" => KafkaAuth::Sasl,
            "certificate" => KafkaAuth::Certificate,
            _ => KafkaAuth::Plaintext,
        };
        plan.kafka_auth(auth);
        auth
    };
    match auth {
        KafkaAuth::Sasl => {
            if !plan.has("kafka.sasl_mechanism") {
                let default = current(plan, existing, "kafka.sasl_mechanism")
                    .unwrap_or_else(|| "SCRAM-SHA-256".to_owned());
                plan.set(
                    "kafka.sasl_mechanism",
                    prompter.choose(
                        "SCRAM mechanism",
                        &["SCRAM-SHA-256", "SCRAM-SHA-512"],
                        &default,
                    )?,
                );
            }
            if !plan.has("kafka.sasl_username") {
                let default = current(plan, existing, "kafka.sasl_username")
                    .unwrap_or_else(|| "kircd".to_owned());
                plan.set(
                    "kafka.sasl_username",
                    prompter.ask("Kafka user name", Some(&default))?,
                );
            }
            if !plan.has("kafka.sasl_password_file") {
                let has_existing = existing.str("kafka.sasl_password_file").is_some();
                if let Some(password) = prompter.secret(
                    "Kafka password (terraform output -raw kircd_kafka_password)",
                    has_existing,
                )? {
                    plan.file(
                        "kafka.sasl_password_file",
                        layout.secret("kafka-password"),
                        password,
                        true,
                    );
                }
            }
        }
        KafkaAuth::Certificate => {
            for (key, question) in [
                ("kafka.client_cert_file", "Client certificate file (PEM)"),
                ("kafka.client_key_file", "Client key file (PEM)"),
            ] {
                if !plan.has(key) {
                    let default = current(plan, existing, key);
                    let answer = prompter.ask(question, default.as_deref())?;
                    plan.set(
                        key,
                        absolute(Path::new(&answer))?.to_string_lossy().into_owned(),
                    );
                }
            }
        }
        KafkaAuth::Plaintext => {}
    }
    if auth != KafkaAuth::Plaintext && !plan.has("kafka.ca_file") {
        let default = current(plan, existing, "kafka.ca_file").unwrap_or_default();
        let answer = prompter.ask(
            "CA certificate file (PEM; Aiven: the project CA; empty for the system store)",
            Some(&default),
        )?;
        if answer.is_empty() {
            plan.unset("kafka.ca_file");
        } else {
            let path = absolute(Path::new(&answer))?.to_string_lossy().into_owned();
            plan.set("kafka.ca_file", path.clone());
            plan.set("public.ca_file", path);
        }
    }
    let named_topics =
        plan.has("kafka.topic_data_in") || existing.str("kafka.topic_data_in").is_some();
    if !named_topics && !plan.has("kafka.topic_prefix") {
        let default = current(plan, existing, "kafka.topic_prefix").unwrap_or_default();
        plan.set(
            "kafka.topic_prefix",
            prompter.ask(
                "Topic name prefix (empty on a cluster of your own)",
                Some(&default),
            )?,
        );
    }
    if !plan.has("kafka.create_topics") {
        let default = existing
            .bool("kafka.create_topics")
            .unwrap_or(auth == KafkaAuth::Plaintext);
        plan.set(
            "kafka.create_topics",
            prompter.confirm(
                "Should kircd create missing topics? (no when terraform/ made them)",
                default,
            )?,
        );
    }
    for (url_key, password_key, secret_name, question) in [
        (
            "postgres.url",
            "postgres.password_file",
            "postgres-password",
            "PostgreSQL URI (terraform output -raw postgres_uri)",
        ),
        (
            "valkey.url",
            "valkey.password_file",
            "valkey-password",
            "Valkey URI (terraform output -raw valkey_uri)",
        ),
    ] {
        if !plan.has(url_key) {
            let default = current(plan, existing, url_key).unwrap_or_default();
            let answer = prompter.ask(question, Some(&default))?;
            plan_uri(plan, layout, url_key, password_key, secret_name, &answer)?;
        }
    }
    if auth != KafkaAuth::Plaintext {
        if !plan.has("public.username") {
            let default = current(plan, existing, "public.username")
                .unwrap_or_else(|| "kirc-public".to_owned());
            plan.set(
                "public.username",
                prompter.ask(
                    "Write-only user for contacts (terraform output public_username)",
                    Some(&default),
                )?,
            );
        }
        if !plan.has("public.password_file") {
            let has_existing = existing.str("public.password_file").is_some();
            if let Some(password) = prompter.secret(
                "Its password (terraform output -raw public_password)",
                has_existing,
            )? {
                plan.file(
                    "public.password_file",
                    layout.secret("public-password"),
                    password,
                    true,
                );
            }
        }
        if !plan.has("public.security_protocol") {
            plan.set("public.security_protocol", "sasl_ssl");
        }
    }
    Ok(())
}
