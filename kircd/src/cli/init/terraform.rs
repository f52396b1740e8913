//! The connection document terraform/ outputs as `kircd_init`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The `format` field of the document this kircd reads.
pub const TERRAFORM_FORMAT: &str = "kirc-terraform-1";

/// The fields each section of the document must have (terraform/'s test
/// checks its output against this list).
pub const TERRAFORM_FIELDS: &[(&str, &[&str])] = &[
    (
        "kafka",
        &[
            "bootstrap_servers",
            "security_protocol",
            "sasl_mechanism",
            "username",
            "password",
            "access_cert",
            "access_key",
            "ca_pem",
            "partitions",
            "replication",
            "topics",
        ],
    ),
    (
        "public",
        &[
            "bootstrap_servers",
            "sasl_mechanism",
            "username",
            "password",
        ],
    ),
    ("postgres", &["url"]),
    ("valkey", &["url"]),
];

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error(
        "not the kircd_init output of terraform/: make it with `terraform output -json kircd_init > kircd-init.json` in terraform/"
    )]
    NotInitDocument,
    #[error(
        "made for format {found}, this kircd reads {TERRAFORM_FORMAT}: use terraform/ from the same release as kircd"
    )]
    Format { found: String },
    #[error("{field} is empty: {fix}")]
    Missing {
        field: &'static str,
        fix: &'static str,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub format: String,
    pub kafka: Kafka,
    pub public: Option<Public>,
    pub postgres: Url,
    pub valkey: Url,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Kafka {
    pub bootstrap_servers: Option<String>,
    pub security_protocol: String,
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub access_cert: Option<String>,
    pub access_key: Option<String>,
    pub ca_pem: Option<String>,
    pub partitions: Option<i64>,
    pub replication: Option<i64>,
    /// By role: data_in, data_out, rpc_in, rpc_out.
    pub topics: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Public {
    pub bootstrap_servers: Option<String>,
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Url {
    pub url: String,
}

/// Reads the document from the output of `terraform output -json kircd_init`
/// or of `terraform output -json` (all outputs, with kircd_init among them).
pub fn parse(text: &str) -> Result<Document, DocumentError> {
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| DocumentError::Json(err.to_string()))?;
    if let Some(output) = value.get_mut("kircd_init") {
        value = output
            .get_mut("value")
            .map(serde_json::Value::take)
            .ok_or(DocumentError::NotInitDocument)?;
    }
    let Some(format) = value.get("format").and_then(serde_json::Value::as_str) else {
        return Err(DocumentError::NotInitDocument);
    };
    if format != TERRAFORM_FORMAT {
        return Err(DocumentError::Format {
            found: format.to_owned(),
        });
    }
    let document: Document =
        serde_json::from_value(value).map_err(|err| DocumentError::Json(without_values(&err)))?;
    if document
        .kafka
        .bootstrap_servers
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(DocumentError::Missing {
            field: "kafka.bootstrap_servers",
            fix: "the Kafka service has no endpoint for the chosen kafka_auth; for sasl, enable kafka_authentication_methods.sasl on the service in the Aiven console and run terraform apply again",
        });
    }
    Ok(document)
}

/// Serde quotes the offending value in type errors (`invalid type: string
/// "…", expected i64`); the value may be a password, so only what was
/// expected is kept.
fn without_values(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.split_once(", expected ") {
        Some((_, expected)) if text.starts_with("invalid") => {
            format!("a field has the wrong type (expected {expected})")
        }
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> serde_json::Value {
        serde_json::json!({
            "format": TERRAFORM_FORMAT,
            "kafka": {
                "bootstrap_servers": "kafka-x.aivencloud.com:12345",
                "security_protocol": "sasl_ssl",
                "sasl_mechanism": "SCRAM-SHA-256",
                "username": "kircd",
                "password": "pw",
                "access_cert": null,
                "access_key": null,
                "ca_pem": "-----BEGIN CERTIFICATE-----\n",
                "partitions": 2,
                "replication": 2,
                "topics": {"data_in": "data-in", "data_out": "data-out", "rpc_in": "rpc-in", "rpc_out": "rpc-out"}
            },
            "public": {"bootstrap_servers": "kafka-x.aivencloud.com:12346", "sasl_mechanism": "SCRAM-SHA-256", "username": "kirc-public", "password": "pub"},
            "postgres": {"url": "postgres://avnadmin:pw@pg:1/defaultdb?sslmode=require"},
            "valkey": {"url": "rediss://default:pw@valkey:2"}
        })
    }

    #[test]
    fn reads_the_single_output_and_the_full_output_listing() {
        let single = document().to_string();
        assert_eq!(
            parse(&single).unwrap().kafka.username.as_deref(),
            Some("kircd")
        );
        let all = serde_json::json!({
            "kircd_init": {"sensitive": true, "type": "object", "value": document()},
            "public_username": {"sensitive": false, "type": "string", "value": "kirc-public"}
        })
        .to_string();
        assert_eq!(
            parse(&all).unwrap().valkey.url,
            "rediss://default:pw@valkey:2"
        );
    }

    #[test]
    fn says_what_is_wrong_with_other_documents() {
        assert!(matches!(parse("{"), Err(DocumentError::Json(_))));
        assert!(matches!(
            parse(r#"{"kafka_topics": {}}"#),
            Err(DocumentError::NotInitDocument)
        ));
        let mut old = document();
        old["format"] = "kirc-terraform-0".into();
        assert!(matches!(
            parse(&old.to_string()),
            Err(DocumentError::Format { .. })
        ));
        let mut no_endpoint = document();
        no_endpoint["kafka"]["bootstrap_servers"] = serde_json::Value::Null;
        let err = parse(&no_endpoint.to_string()).unwrap_err();
        assert!(
            err.to_string()
                .contains("kafka_authentication_methods.sasl"),
            "{err}"
        );
    }

    #[test]
    fn errors_never_quote_secrets() {
        let mut wrong = document();
        wrong["kafka"]["partitions"] = "supersecret".into();
        let err = parse(&wrong.to_string()).unwrap_err().to_string();
        assert!(!err.contains("supersecret"), "{err}");
    }
}
