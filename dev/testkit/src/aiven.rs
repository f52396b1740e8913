//! Aiven's access model on the local broker: for one actor, a `kircd` user and
//! a `public` user on the SASL_SSL listener, with the ACLs and the producer
//! quota terraform/kafka.tf creates (`GRANTS`; kircd/tests/terraform.rs checks
//! that the two agree), enforced by Kafka's StandardAuthorizer.
//!
//! On Aiven each actor has a cluster of its own; here actors share one broker,
//! so users carry the actor's suffix and kircd's group prefix names the actor
//! (`kircd.<actor id>.` where terraform grants `kircd.`).

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{Actor, repo_root, unique};

/// Whose grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum User {
    Kircd,
    Public,
}

/// What a grant is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// One of the actor's topics, by role.
    Topic(&'static str),
    /// kircd's consumer groups (a prefix).
    Groups,
}

/// One ACL: `user` may do `operation` on `resource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub user: User,
    pub resource: Resource,
    pub operation: &'static str,
}

const fn grant(user: User, resource: Resource, operation: &'static str) -> Grant {
    Grant {
        user,
        resource,
        operation,
    }
}

/// Every ACL of one actor, as terraform/kafka.tf makes them: kircd reads
/// and writes its four topics and reads its groups; the public user writes to
/// the two inboxes and nothing else.
pub const GRANTS: [Grant; 11] = [
    grant(User::Kircd, Resource::Topic("data-in"), "Read"),
    grant(User::Kircd, Resource::Topic("data-out"), "Read"),
    grant(User::Kircd, Resource::Topic("rpc-in"), "Read"),
    grant(User::Kircd, Resource::Topic("rpc-out"), "Read"),
    grant(User::Kircd, Resource::Topic("data-in"), "Write"),
    grant(User::Kircd, Resource::Topic("data-out"), "Write"),
    grant(User::Kircd, Resource::Topic("rpc-in"), "Write"),
    grant(User::Kircd, Resource::Topic("rpc-out"), "Write"),
    grant(User::Kircd, Resource::Groups, "Read"),
    grant(User::Public, Resource::Topic("data-in"), "Write"),
    grant(User::Public, Resource::Topic("rpc-in"), "Write"),
];

/// The public user's producer quota in bytes per second: terraform's
/// `public_producer_byte_rate` default.
pub const PUBLIC_PRODUCER_BYTE_RATE: u64 = 64_000;

/// An actor's two users on the SASL_SSL listener.
#[derive(Debug, Clone)]
pub struct Access {
    pub kircd_user: String,
    pub kircd_password: String,
    pub public_user: String,
    pub public_password: String,
}

fn kafka_tool(args: &[&str]) {
    let output = std::process::Command::new(repo_root().join("dev/stack"))
        .arg("kafka-tool")
        .args(args)
        .output()
        .expect("run dev/stack kafka-tool");
    assert!(
        output.status.success(),
        "dev/stack kafka-tool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes `value` to an owner-only file `name` in `dir`; returns its path.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, value.as_bytes()).unwrap();
    path.display().to_string()
}

/// Makes `actor` an Aiven actor on the local broker: its two users (the
/// public one with the producer quota), the ACLs of [`GRANTS`] on its topics
/// (which `kircd init` made with the admin listener), and its config: kircd
/// connects as the kircd user over SASL_SSL, may not create topics, and
/// publishes the public user in its profile.
pub fn aiven_actor(actor: &mut Actor) -> Access {
    let suffix = unique("u").replace('.', "_");
    let access = Access {
        kircd_user: format!("kircd-{suffix}"),
        kircd_password: unique("kircd-secret"),
        public_user: format!("public-{suffix}"),
        public_password: unique("public-secret"),
    };
    let bootstrap = format!("--bootstrap-server={}", actor.stack.kafka);
    let configs = [
        (
            &access.kircd_user,
            format!("SCRAM-SHA-256=[password={}]", access.kircd_password),
        ),
        (
            &access.public_user,
            format!("SCRAM-SHA-256=[password={}]", access.public_password),
        ),
        // Kafka takes a quota and a credential in separate requests.
        (
            &access.public_user,
            format!("producer_byte_rate={PUBLIC_PRODUCER_BYTE_RATE}"),
        ),
    ];
    for (user, config) in &configs {
        kafka_tool(&[
            "kafka.admin.ConfigCommand",
            &bootstrap,
            "--alter",
            "--entity-type=users",
            &format!("--entity-name={user}"),
            &format!("--add-config={config}"),
        ]);
    }
    // One AclCommand per user and operation set: each run starts a JVM.
    let topic = |role: &str| format!("--topic={}{role}", actor.topic_prefix);
    for user in [User::Kircd, User::Public] {
        let name = match user {
            User::Kircd => &access.kircd_user,
            User::Public => &access.public_user,
        };
        for operation in ["Read", "Write"] {
            let topics: Vec<String> = GRANTS
                .iter()
                .filter(|grant| grant.user == user && grant.operation == operation)
                .filter_map(|grant| match grant.resource {
                    Resource::Topic(role) => Some(topic(role)),
                    Resource::Groups => None,
                })
                .collect();
            if topics.is_empty() {
                continue;
            }
            let principal = format!("--allow-principal=User:{name}");
            let operation = format!("--operation={operation}");
            let mut args = vec![
                "org.apache.kafka.tools.AclCommand",
                &bootstrap,
                "--add",
                "--force",
                &principal,
                &operation,
            ];
            args.extend(topics.iter().map(String::as_str));
            kafka_tool(&args);
        }
    }
    let groups = format!("--group=kircd.{}.", actor.actor_id);
    kafka_tool(&[
        "org.apache.kafka.tools.AclCommand",
        &bootstrap,
        "--add",
        "--force",
        &format!("--allow-principal=User:{}", access.kircd_user),
        "--operation=Read",
        "--resource-pattern-type=prefixed",
        &groups,
    ]);

    let dir = actor.dir.path().to_path_buf();
    let kircd_password = secret_file(&dir, "kircd-kafka-password", &access.kircd_password);
    let public_password = secret_file(&dir, "public-kafka-password", &access.public_password);
    let ca = actor.stack.ca_file.display().to_string();
    let sasl = actor.stack.kafka_sasl.clone();
    actor
        .set("kafka.bootstrap_servers", sasl.as_str())
        .set("kafka.security_protocol", "sasl_ssl")
        .set("kafka.sasl_mechanism", "SCRAM-SHA-256")
        .set("kafka.sasl_username", access.kircd_user.as_str())
        .set("kafka.sasl_password_file", kircd_password)
        .set("kafka.ca_file", ca.as_str())
        .set("kafka.create_topics", false)
        .set("public.bootstrap_servers", sasl.as_str())
        .set("public.security_protocol", "sasl_ssl")
        .set("public.sasl_mechanism", "SCRAM-SHA-256")
        .set("public.username", access.public_user.as_str())
        .set("public.password_file", public_password)
        .set("public.ca_file", ca.as_str());
    access
}
