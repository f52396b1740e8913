//! terraform/ cannot be planned here (the Aiven provider cannot be
//! downloaded), so this test parses every `.tf` file and checks what a plan
//! would catch first, and what a plan would not catch at all: every reference
//! resolves, every output names something that exists and hides its secrets,
//! the public user can write to data-in and rpc-in and nothing else, and the
//! figures kircd relies on (retention, consumer-group prefix, the init JSON
//! format, Valkey's expiry events) match kircd's own.
//!
//! Past 600 lines on purpose: most of it is the small HCL reader the checks
//! share (references, blocks, attributes), which belongs with them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl_edit::expr::{Expression, ObjectKey, TraversalOperator};
use hcl_edit::structure::{Block, Body};
use hcl_edit::visit::{Visit, visit_expr};
use kirc_testkit::aiven::{GRANTS, Grant, PUBLIC_PRODUCER_BYTE_RATE, Resource, User};

fn terraform_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform")
}

/// Every `.tf` file, parsed, by file name.
fn parse_all() -> BTreeMap<String, Body> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(terraform_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "tf") {
            let text = std::fs::read_to_string(&path).unwrap();
            let body: Body = text
                .parse()
                .unwrap_or_else(|err| panic!("{} does not parse: {err}", path.display()));
            files.insert(
                path.file_name().unwrap().to_string_lossy().into_owned(),
                body,
            );
        }
    }
    assert!(
        files.len() >= 4,
        "terraform/ should hold the configuration: {files:?}"
    );
    files
}

fn label(block: &Block, index: usize) -> &str {
    block.labels.get(index).map_or("", |label| label.as_str())
}

fn blocks<'a>(files: &'a BTreeMap<String, Body>, ident: &'a str) -> Vec<&'a Block> {
    files
        .values()
        .flat_map(|body| body.get_blocks(ident))
        .collect()
}

/// A reference such as `var.project` or `aiven_kafka_topic.mailbox["data_in"].topic_name`:
/// the root and the steps after it (attribute names and literal string
/// indexes).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reference {
    root: String,
    steps: Vec<String>,
}

impl Reference {
    fn step(&self, index: usize) -> &str {
        self.steps.get(index).map_or("", String::as_str)
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.root)?;
        for step in &self.steps {
            write!(f, ".{step}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct References(Vec<Reference>);

impl Visit for References {
    fn visit_expr(&mut self, expr: &Expression) {
        match expr {
            Expression::Traversal(traversal) => {
                if let Expression::Variable(root) = &traversal.expr {
                    let mut steps = Vec::new();
                    for operator in &traversal.operators {
                        match operator.value() {
                            TraversalOperator::GetAttr(name) => steps.push(name.to_string()),
                            TraversalOperator::Index(Expression::String(key)) => {
                                steps.push(key.value().clone());
                            }
                            _ => break,
                        }
                    }
                    self.0.push(Reference {
                        root: root.to_string(),
                        steps,
                    });
                    // Index expressions may hold references of their own.
                    for operator in &traversal.operators {
                        if let TraversalOperator::Index(index) = operator.value() {
                            self.visit_expr(index);
                        }
                    }
                } else {
                    visit_expr(self, expr);
                }
            }
            Expression::Variable(root) => self.0.push(Reference {
                root: root.to_string(),
                steps: Vec::new(),
            }),
            _ => visit_expr(self, expr),
        }
    }
}

fn references_in_expr(expr: &Expression) -> Vec<Reference> {
    let mut visitor = References::default();
    visitor.visit_expr(expr);
    visitor.0
}

fn references_in_body(body: &Body) -> Vec<Reference> {
    let mut visitor = References::default();
    visitor.visit_body(body);
    visitor.0
}

fn attribute<'a>(block: &'a Block, key: &str) -> &'a Expression {
    &block
        .body
        .get_attribute(key)
        .unwrap_or_else(|| panic!("{} {:?} has no `{key}`", block.ident.as_str(), block.labels))
        .value
}

fn string_attribute<'a>(block: &'a Block, key: &str) -> &'a str {
    attribute(block, key).as_str().unwrap_or_else(|| {
        panic!(
            "{} {:?}: `{key}` should be a plain string",
            block.ident.as_str(),
            block.labels
        )
    })
}

fn object_entries(expr: &Expression) -> Vec<(String, &Expression)> {
    expr.as_object()
        .expect("an object")
        .iter()
        .map(|(key, value)| {
            let key = match key {
                ObjectKey::Ident(ident) => ident.to_string(),
                ObjectKey::Expression(expr) => expr.as_str().expect("a string key").to_owned(),
            };
            (key, value.expr())
        })
        .collect()
}

fn locals(files: &BTreeMap<String, Body>) -> BTreeMap<String, &Expression> {
    blocks(files, "locals")
        .into_iter()
        .flat_map(|block| block.body.attributes())
        .map(|attr| (attr.key.to_string(), &attr.value))
        .collect()
}

#[test]
fn every_reference_resolves_and_every_variable_is_used() {
    let files = parse_all();
    let variables: BTreeSet<&str> = blocks(&files, "variable")
        .iter()
        .map(|block| label(block, 0))
        .collect();
    let local_names: BTreeSet<String> = locals(&files).into_keys().collect();
    let resources: BTreeSet<(String, String)> = blocks(&files, "resource")
        .iter()
        .map(|block| (label(block, 0).to_owned(), label(block, 1).to_owned()))
        .collect();
    let data: BTreeSet<(String, String)> = blocks(&files, "data")
        .iter()
        .map(|block| (label(block, 0).to_owned(), label(block, 1).to_owned()))
        .collect();

    let mut used_variables = BTreeSet::new();
    let mut unresolved = Vec::new();
    for (file, body) in &files {
        for reference in references_in_body(body) {
            let resolved = match reference.root.as_str() {
                "var" => {
                    used_variables.insert(reference.step(0).to_owned());
                    variables.contains(reference.step(0))
                }
                "local" => local_names.contains(reference.step(0)),
                "data" => {
                    data.contains(&(reference.step(0).to_owned(), reference.step(1).to_owned()))
                }
                root if root.starts_with("aiven_") => {
                    resources.contains(&(root.to_owned(), reference.step(0).to_owned()))
                }
                // for-expression variables, each, count and the like.
                _ => true,
            };
            if !resolved {
                unresolved.push(format!("{file}: {reference}"));
            }
        }
    }
    assert!(
        unresolved.is_empty(),
        "references to nothing declared: {unresolved:#?}"
    );
    let unused: Vec<&&str> = variables
        .iter()
        .filter(|name| !used_variables.contains(**name))
        .collect();
    assert!(unused.is_empty(), "declared but never used: {unused:?}");
}

#[test]
fn outputs_name_real_things_and_hide_secrets() {
    let files = parse_all();
    let resources: BTreeSet<String> = blocks(&files, "resource")
        .iter()
        .map(|block| label(block, 0).to_owned())
        .collect();
    let local_names = locals(&files);
    let outputs = blocks(&files, "output");
    for wanted in [
        "kircd_init",
        "public_username",
        "public_password",
        "postgres_uri",
        "valkey_uri",
    ] {
        assert!(
            outputs.iter().any(|block| label(block, 0) == wanted),
            "output {wanted} is missing"
        );
    }
    // Attributes that carry a secret, wherever they are read from.
    let secret_steps = [
        "password",
        "service_uri",
        "service_password",
        "access_key",
        "access_cert",
        "ca_cert",
    ];
    for output in outputs {
        let name = label(output, 0);
        let value = attribute(output, "value");
        let mut references = references_in_expr(value);
        // An output may go through locals; what they refer to counts.
        for reference in references.clone() {
            if reference.root == "local" {
                references.extend(references_in_expr(local_names[reference.step(0)]));
            }
        }
        assert!(
            references
                .iter()
                .any(|reference| reference.root == "data" || resources.contains(&reference.root)),
            "output {name} refers to no resource or data source"
        );
        let secret = references.iter().any(|reference| {
            reference
                .steps
                .iter()
                .any(|step| secret_steps.contains(&step.as_str()))
        });
        let sensitive = output.body.get_attribute("sensitive").is_some_and(
            |attr| matches!(attr.value, Expression::Bool(ref value) if *value.value()),
        );
        assert!(
            !secret || sensitive,
            "output {name} carries a secret and must be marked sensitive = true"
        );
    }
}

#[test]
fn the_public_user_may_write_to_data_in_and_rpc_in_only() {
    let files = parse_all();
    let is_public = |block: &Block| {
        references_in_body(&block.body)
            .iter()
            .any(|reference| reference.root == "aiven_kafka_user" && reference.step(0) == "public")
    };
    let public_user = blocks(&files, "resource")
        .into_iter()
        .find(|block| label(block, 0) == "aiven_kafka_user" && label(block, 1) == "public")
        .expect("resource aiven_kafka_user.public");
    assert!(matches!(
        attribute(public_user, "username"),
        Expression::Traversal(_)
    ));

    // Aiven-style ACLs grant coarse permissions; none may name the public user.
    for acl in blocks(&files, "resource")
        .into_iter()
        .filter(|block| label(block, 0) == "aiven_kafka_acl")
    {
        assert!(
            !is_public(acl),
            "aiven_kafka_acl.{} grants the public user an Aiven ACL",
            label(acl, 1)
        );
    }

    let public_acls: Vec<&Block> = blocks(&files, "resource")
        .into_iter()
        .filter(|block| label(block, 0) == "aiven_kafka_native_acl" && is_public(block))
        .collect();
    let mut granted = BTreeSet::new();
    for acl in &public_acls {
        let name = label(acl, 1);
        assert!(
            acl.body.get_attribute("for_each").is_none()
                && acl.body.get_attribute("count").is_none(),
            "{name}: one ACL per grant, so that each can be read here"
        );
        assert_eq!(string_attribute(acl, "resource_type"), "Topic", "{name}");
        assert_eq!(string_attribute(acl, "operation"), "Write", "{name}");
        assert_eq!(string_attribute(acl, "permission_type"), "ALLOW", "{name}");
        assert_eq!(string_attribute(acl, "pattern_type"), "LITERAL", "{name}");
        let topic = references_in_expr(attribute(acl, "resource_name"))
            .into_iter()
            .find(|reference| reference.root == "aiven_kafka_topic")
            .unwrap_or_else(|| panic!("{name}: resource_name must name one of the topics"));
        assert_eq!(topic.step(0), "mailbox", "{name}");
        granted.insert(topic.step(1).to_owned());
    }
    assert_eq!(
        granted,
        BTreeSet::from(["data_in".to_owned(), "rpc_in".to_owned()]),
        "the public user writes to exactly data-in and rpc-in"
    );

    // The quota sits behind a variable and limits the public user.
    let quota = blocks(&files, "resource")
        .into_iter()
        .find(|block| label(block, 0) == "aiven_kafka_quota")
        .expect("a producer quota for the public user");
    assert!(is_public(quota), "the quota applies to the public user");
    assert!(
        references_in_expr(attribute(quota, "count"))
            .iter()
            .any(|reference| reference.root == "var"),
        "the quota is switched by a variable"
    );
    assert!(quota.body.get_attribute("producer_byte_rate").is_some());
}

#[test]
fn kircd_user_reaches_its_topics_and_groups() {
    let files = parse_all();
    let kircd_acls: Vec<&Block> = blocks(&files, "resource")
        .into_iter()
        .filter(|block| {
            label(block, 0) == "aiven_kafka_native_acl"
                && references_in_body(&block.body).iter().any(|reference| {
                    reference.root == "aiven_kafka_user" && reference.step(0) == "kircd"
                })
        })
        .collect();
    let topic_operations: BTreeSet<&str> = kircd_acls
        .iter()
        .filter(|acl| string_attribute(acl, "resource_type") == "Topic")
        .map(|acl| {
            // One ACL per topic: for_each over all four.
            let for_each = references_in_expr(attribute(acl, "for_each"));
            assert!(
                for_each
                    .iter()
                    .any(|reference| reference.root == "aiven_kafka_topic"),
                "kircd's topic ACLs cover every topic"
            );
            string_attribute(acl, "operation")
        })
        .collect();
    assert_eq!(topic_operations, BTreeSet::from(["Read", "Write"]));
    let group = kircd_acls
        .iter()
        .find(|acl| string_attribute(acl, "resource_type") == "Group")
        .expect("kircd may use its consumer groups");
    assert_eq!(string_attribute(group, "pattern_type"), "PREFIXED");
    assert_eq!(
        string_attribute(group, "resource_name"),
        kircd::backends::kafka::consumer::CONSUMER_GROUP_PREFIX
    );
}

#[test]
fn topics_match_what_kircd_creates_itself() {
    let files = parse_all();
    let local_values = locals(&files);
    let topics = object_entries(local_values["topics"]);
    let mut roles = BTreeMap::new();
    let mut append_time = BTreeSet::new();
    for (role, topic) in topics {
        let fields: BTreeMap<String, &Expression> = object_entries(topic).into_iter().collect();
        let retention = match fields["retention_ms"] {
            Expression::Number(number) => number.value().as_u64().unwrap(),
            other => panic!("{role}: retention_ms is not a number: {other:?}"),
        };
        let role = role.replace('_', "-");
        match fields["timestamp_type"].as_str() {
            Some("LogAppendTime") => {
                append_time.insert(role.clone());
            }
            Some("CreateTime") => {}
            other => panic!("{role}: timestamp_type is {other:?}"),
        }
        roles.insert(role, retention);
    }
    assert_eq!(
        append_time,
        kircd::backends::kafka::APPEND_TIME_TOPICS
            .iter()
            .map(|role| (*role).to_owned())
            .collect::<BTreeSet<_>>(),
        "the inboxes take the broker's append time, as kircd's own topics do"
    );
    let topic = blocks(&files, "resource")
        .into_iter()
        .find(|block| label(block, 0) == "aiven_kafka_topic")
        .expect("resource aiven_kafka_topic");
    let config = topic.body.get_blocks("config").next().expect("config");
    let timestamp_type = config
        .body
        .get_attribute("message_timestamp_type")
        .expect("the topics' message_timestamp_type comes from local.topics");
    assert!(
        references_in_expr(&timestamp_type.value)
            .iter()
            .any(|reference| reference.root == "each"),
        "message_timestamp_type = each.value.timestamp_type"
    );
    let kircd: BTreeMap<String, u64> = kircd::backends::kafka::TOPIC_RETENTION_MS
        .iter()
        .map(|(role, retention)| ((*role).to_owned(), *retention))
        .collect();
    assert_eq!(
        roles, kircd,
        "terraform/ and kircd give topics the same retention"
    );

    let variables = blocks(&files, "variable");
    let partitions = variables
        .iter()
        .find(|block| label(block, 0) == "topic_partitions")
        .expect("variable topic_partitions");
    assert!(
        matches!(attribute(partitions, "default"), Expression::Number(n) if n.value().as_u64() == Some(2)),
        "the free plan allows 2 partitions per topic"
    );
}

#[test]
fn valkey_sends_the_expiry_events_typing_needs() {
    let files = parse_all();
    let valkey = blocks(&files, "resource")
        .into_iter()
        .find(|block| label(block, 0) == "aiven_valkey")
        .expect("resource aiven_valkey");
    let config = valkey
        .body
        .get_blocks("valkey_user_config")
        .next()
        .expect("valkey_user_config");
    let events = config
        .body
        .get_attribute("valkey_notify_keyspace_events")
        .and_then(|attr| attr.value.as_str())
        .expect("valkey_notify_keyspace_events");
    assert!(
        events.contains('E') && (events.contains('x') || events.contains('A')),
        "typing expiry needs keyevent expiry notifications, got {events:?}"
    );
}

#[test]
fn provider_is_pinned_and_no_secret_is_committed() {
    let files = parse_all();
    let terraform = blocks(&files, "terraform");
    let providers = terraform
        .iter()
        .flat_map(|block| block.body.get_blocks("required_providers"))
        .next()
        .expect("required_providers");
    let aiven = object_entries(&providers.body.get_attribute("aiven").expect("aiven").value)
        .into_iter()
        .collect::<BTreeMap<_, _>>();
    assert_eq!(aiven["source"].as_str(), Some("aiven/aiven"));
    let version = aiven["version"].as_str().unwrap();
    assert!(
        version.starts_with("~> 4."),
        "pin the current major version: {version}"
    );

    let token = blocks(&files, "variable")
        .into_iter()
        .find(|block| label(block, 0) == "aiven_api_token")
        .expect("variable aiven_api_token");
    assert!(
        matches!(attribute(token, "sensitive"), Expression::Bool(value) if *value.value()),
        "the API token is sensitive"
    );
    assert!(
        token.body.get_attribute("default").is_none(),
        "the token has no default"
    );

    // The example assigns only declared variables, and never the token.
    let example: Body = std::fs::read_to_string(terraform_dir().join("terraform.tfvars.example"))
        .unwrap()
        .parse()
        .unwrap();
    let declared: BTreeSet<&str> = blocks(&files, "variable")
        .iter()
        .map(|block| label(block, 0))
        .collect();
    let assigned: Vec<String> = example
        .attributes()
        .map(|attr| attr.key.to_string())
        .collect();
    for name in &assigned {
        assert!(declared.contains(name.as_str()), "{name} is not a variable");
    }
    assert!(!assigned.iter().any(|name| name == "aiven_api_token"));
    let ignored = std::fs::read_to_string(terraform_dir().join(".gitignore")).unwrap();
    for pattern in ["terraform.tfvars", "*.tfstate"] {
        assert!(
            ignored.lines().any(|line| line == pattern),
            "{pattern} is git-ignored"
        );
    }
}

#[test]
fn the_init_document_has_what_kircd_init_reads() {
    let files = parse_all();
    let output = blocks(&files, "output")
        .into_iter()
        .find(|block| label(block, 0) == "kircd_init")
        .expect("output kircd_init");
    let document: BTreeMap<String, &Expression> = object_entries(attribute(output, "value"))
        .into_iter()
        .collect();
    assert_eq!(
        document["format"].as_str(),
        Some(kircd::cli::init::TERRAFORM_FORMAT)
    );
    let fields = |section: &str| -> BTreeSet<String> {
        object_entries(document[section])
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    };
    for (section, wanted) in kircd::cli::init::TERRAFORM_FIELDS {
        let present = fields(section);
        for field in *wanted {
            assert!(
                present.contains(*field),
                "kircd_init.{section}.{field} is missing"
            );
        }
    }
}

/// Every grant terraform/kafka.tf makes, as roles rather than names.
fn terraform_grants(files: &BTreeMap<String, Body>) -> BTreeSet<Grant> {
    let roles: Vec<String> = object_entries(locals(files)["topics"])
        .into_iter()
        .map(|(role, _)| role.replace('_', "-"))
        .collect();
    let role_of = |name: &str| -> &'static str {
        ["data-in", "data-out", "rpc-in", "rpc-out"]
            .into_iter()
            .find(|role| *role == name)
            .unwrap_or_else(|| panic!("unknown topic role {name}"))
    };
    let mut grants = BTreeSet::new();
    for acl in blocks(files, "resource")
        .into_iter()
        .filter(|block| label(block, 0) == "aiven_kafka_native_acl")
    {
        let references = references_in_body(&acl.body);
        let user = if references
            .iter()
            .any(|reference| reference.root == "aiven_kafka_user" && reference.step(0) == "public")
        {
            User::Public
        } else {
            User::Kircd
        };
        let operation: &'static str = match string_attribute(acl, "operation") {
            "Read" => "Read",
            "Write" => "Write",
            other => panic!(
                "{}: an operation the local broker does not grant: {other}",
                label(acl, 1)
            ),
        };
        match string_attribute(acl, "resource_type") {
            "Group" => {
                grants.insert(Grant {
                    user,
                    resource: Resource::Groups,
                    operation,
                });
            }
            "Topic" if acl.body.get_attribute("for_each").is_some() => {
                for role in &roles {
                    grants.insert(Grant {
                        user,
                        resource: Resource::Topic(role_of(role)),
                        operation,
                    });
                }
            }
            "Topic" => {
                let topic = references_in_expr(attribute(acl, "resource_name"))
                    .into_iter()
                    .find(|reference| reference.root == "aiven_kafka_topic")
                    .unwrap();
                grants.insert(Grant {
                    user,
                    resource: Resource::Topic(role_of(&topic.step(1).replace('_', "-"))),
                    operation,
                });
            }
            other => panic!("{}: resource type {other}", label(acl, 1)),
        }
    }
    grants
}

#[test]
fn the_local_broker_grants_what_terraform_grants() {
    let files = parse_all();
    assert_eq!(
        terraform_grants(&files),
        GRANTS.into_iter().collect::<BTreeSet<Grant>>(),
        "terraform/kafka.tf and kirc_testkit::aiven::GRANTS (what the tests' broker enforces) differ"
    );
    let rate = blocks(&files, "variable")
        .into_iter()
        .find(|block| label(block, 0) == "public_producer_byte_rate")
        .expect("variable public_producer_byte_rate");
    match attribute(rate, "default") {
        Expression::Number(number) => {
            assert_eq!(number.value().as_u64(), Some(PUBLIC_PRODUCER_BYTE_RATE));
        }
        other => panic!("public_producer_byte_rate's default: {other:?}"),
    }
}
