//! The plan of what `kircd init` writes: keys and secret files, from the
//! Terraform document, then flags, over what an earlier run wrote.

use super::*;

/// A file init writes, and the config key that names it.
pub(super) struct PlannedFile {
    pub(super) key: &'static str,
    pub(super) path: PathBuf,
    pub(super) contents: SecretString,
    pub(super) secret: bool,
}

/// What init will change: config keys to set or remove, and files to write.
#[derive(Default)]
pub(super) struct Plan {
    pub(super) set: BTreeMap<&'static str, toml::Value>,
    pub(super) unset: Vec<&'static str>,
    pub(super) files: Vec<PlannedFile>,
}

impl Plan {
    pub(super) fn set(&mut self, key: &'static str, value: impl Into<toml::Value>) {
        self.unset.retain(|unset| *unset != key);
        self.files.retain(|file| file.key != key);
        self.set.insert(key, value.into());
    }

    pub(super) fn unset(&mut self, key: &'static str) {
        self.set.remove(key);
        self.files.retain(|file| file.key != key);
        if !self.unset.contains(&key) {
            self.unset.push(key);
        }
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.set.contains_key(key)
    }

    pub(super) fn file(
        &mut self,
        key: &'static str,
        path: PathBuf,
        contents: SecretString,
        secret: bool,
    ) {
        self.set(key, path.to_string_lossy().into_owned());
        self.files.push(PlannedFile {
            key,
            path,
            contents,
            secret,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.set.is_empty() && self.unset.is_empty()
    }

    pub(super) fn kafka_auth(&mut self, auth: KafkaAuth) {
        self.set("kafka.security_protocol", auth.protocol());
        let unused: &[&'static str] = match auth {
            KafkaAuth::Plaintext => &[
                "kafka.sasl_username",
                "kafka.sasl_password_file",
                "kafka.client_cert_file",
                "kafka.client_key_file",
                "kafka.ca_file",
            ],
            KafkaAuth::Sasl => &["kafka.client_cert_file", "kafka.client_key_file"],
            KafkaAuth::Certificate => &["kafka.sasl_username", "kafka.sasl_password_file"],
        };
        for key in unused {
            self.unset(key);
        }
    }
}

/// Where init puts things: the config file, and beside it the CA and the
/// secrets folder.
pub(super) struct Layout {
    pub(super) config: PathBuf,
    pub(super) dir: PathBuf,
    pub(super) secrets: PathBuf,
}

impl Layout {
    pub(super) fn new(config: PathBuf) -> Self {
        let dir = config
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Layout {
            secrets: dir.join("secrets"),
            config,
            dir,
        }
    }

    pub(super) fn secret(&self, name: &str) -> PathBuf {
        self.secrets.join(name)
    }
}

/// The settings in an existing config file, for defaults and for keeping
/// what init does not change.
pub(super) struct Existing(pub(super) toml::Table);

impl Existing {
    pub(super) fn read(path: &Path) -> Result<Self, InitError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                text.parse::<toml::Table>()
                    .map(Existing)
                    .map_err(|err| InitError::ExistingConfig {
                        path: path.display().to_string(),
                        error: err.message().to_owned(),
                    })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Ok(Existing(toml::Table::new()))
            }
            Err(err) => Err(InitError::Read {
                path: path.display().to_string(),
                error: err.to_string(),
            }),
        }
    }

    pub(super) fn get(&self, key: &str) -> Option<&toml::Value> {
        let (section, name) = key.split_once('.')?;
        self.0.get(section)?.as_table()?.get(name)
    }

    pub(super) fn str(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            toml::Value::String(text) => Some(text.clone()),
            other => Some(other.to_string()),
        }
    }

    pub(super) fn bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// The table with `plan` applied.
    pub(super) fn merged(&self, plan: &Plan) -> toml::Table {
        let mut table = self.0.clone();
        for key in &plan.unset {
            if let Some((section, name)) = key.split_once('.')
                && let Some(section) = table.get_mut(section).and_then(toml::Value::as_table_mut)
            {
                section.remove(name);
            }
        }
        for (key, value) in &plan.set {
            if let Some((section, name)) = key.split_once('.') {
                let section = table
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let Some(section) = section.as_table_mut() {
                    section.insert(name.to_owned(), value.clone());
                }
            }
        }
        table.retain(|_, value| value.as_table().is_none_or(|section| !section.is_empty()));
        table
    }
}

pub(super) fn read_secret_file(path: &Path) -> Result<SecretString, InitError> {
    std::fs::read_to_string(path)
        .map(|text| SecretString::from(text.trim_end_matches(['\r', '\n']).to_owned()))
        .map_err(|err| InitError::Read {
            path: path.display().to_string(),
            error: err.to_string(),
        })
}

pub(super) fn read_file(path: &Path) -> Result<SecretString, InitError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|err| InitError::Read {
            path: path.display().to_string(),
            error: err.to_string(),
        })
}

/// Splits the password off a URI, so that it can live in a file of its own.
pub(super) fn split_password(
    key: &str,
    uri: &str,
) -> Result<(String, Option<SecretString>), InitError> {
    let mut parsed = url::Url::parse(uri)
        .map_err(|err| InitError::Answer(format!("{key}: not a URI ({err})")))?;
    let password = parsed.password().map(|password| {
        SecretString::from(
            percent_encoding::percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned(),
        )
    });
    if password.is_some() {
        parsed
            .set_password(None)
            .map_err(|()| InitError::Answer(format!("{key}: cannot remove the password")))?;
    }
    Ok((parsed.to_string(), password))
}

/// Sets `url_key` to `uri` without its password, and the password (if any)
/// into its secret file.
pub(super) fn plan_uri(
    plan: &mut Plan,
    layout: &Layout,
    url_key: &'static str,
    password_key: &'static str,
    secret_name: &str,
    uri: &str,
) -> Result<bool, InitError> {
    let (uri, password) = split_password(url_key, uri)?;
    plan.set(url_key, uri);
    match password {
        Some(password) => {
            plan.file(password_key, layout.secret(secret_name), password, true);
            Ok(true)
        }
        None => Ok(false),
    }
}

pub(super) fn plan_from_document(
    plan: &mut Plan,
    layout: &Layout,
    document: &terraform::Document,
) -> Result<(), InitError> {
    let kafka = &document.kafka;
    let missing = |field: &str| {
        InitError::Answer(format!(
            "the Terraform document has no {field}: run terraform apply again and re-export it"
        ))
    };
    if let Some(bootstrap) = &kafka.bootstrap_servers {
        plan.set("kafka.bootstrap_servers", bootstrap.clone());
    }
    let auth = KafkaAuth::from_protocol(&kafka.security_protocol).ok_or_else(|| {
        InitError::Answer(format!(
            "the Terraform document's kafka.security_protocol `{}` is none of plaintext, ssl, sasl_ssl",
            kafka.security_protocol
        ))
    })?;
    plan.kafka_auth(auth);
    match auth {
        KafkaAuth::Sasl => {
            if let Some(mechanism) = &kafka.sasl_mechanism {
                plan.set("kafka.sasl_mechanism", mechanism.clone());
            }
            plan.set(
                "kafka.sasl_username",
                kafka
                    .username
                    .clone()
                    .ok_or_else(|| missing("kafka.username"))?,
            );
            let password = kafka
                .password
                .clone()
                .ok_or_else(|| missing("kafka.password"))?;
            plan.file(
                "kafka.sasl_password_file",
                layout.secret("kafka-password"),
                SecretString::from(password),
                true,
            );
        }
        KafkaAuth::Certificate => {
            let cert = kafka
                .access_cert
                .clone()
                .ok_or_else(|| missing("kafka.access_cert"))?;
            let key = kafka
                .access_key
                .clone()
                .ok_or_else(|| missing("kafka.access_key"))?;
            plan.file(
                "kafka.client_cert_file",
                layout.dir.join("kafka-client.pem"),
                SecretString::from(cert),
                false,
            );
            plan.file(
                "kafka.client_key_file",
                layout.secret("kafka-client.key"),
                SecretString::from(key),
                true,
            );
        }
        KafkaAuth::Plaintext => {}
    }
    if let Some(ca) = &kafka.ca_pem {
        let path = layout.dir.join("kafka-ca.pem");
        plan.file(
            "kafka.ca_file",
            path.clone(),
            SecretString::from(ca.clone()),
            false,
        );
        plan.set("public.ca_file", path.to_string_lossy().into_owned());
    }
    for (role, key) in [
        ("data_in", "kafka.topic_data_in"),
        ("data_out", "kafka.topic_data_out"),
        ("rpc_in", "kafka.topic_rpc_in"),
        ("rpc_out", "kafka.topic_rpc_out"),
    ] {
        let name = kafka
            .topics
            .get(role)
            .ok_or_else(|| missing(&format!("kafka.topics.{role}")))?;
        plan.set(key, name.clone());
    }
    plan.unset("kafka.topic_prefix");
    // terraform/ made the topics; kircd's user may not create any.
    plan.set("kafka.create_topics", false);
    if let Some(partitions) = kafka.partitions {
        plan.set("kafka.partitions", partitions);
    }
    if let Some(replication) = kafka.replication {
        plan.set("kafka.replication_factor", replication);
    }

    if let Some(public) = &document.public {
        if let Some(bootstrap) = &public.bootstrap_servers {
            plan.set("public.bootstrap_servers", bootstrap.clone());
        }
        plan.set("public.security_protocol", "sasl_ssl");
        if let Some(mechanism) = &public.sasl_mechanism {
            plan.set("public.sasl_mechanism", mechanism.clone());
        }
        plan.set(
            "public.username",
            public
                .username
                .clone()
                .ok_or_else(|| missing("public.username"))?,
        );
        let password = public
            .password
            .clone()
            .ok_or_else(|| missing("public.password"))?;
        plan.file(
            "public.password_file",
            layout.secret("public-password"),
            SecretString::from(password),
            true,
        );
    }

    if !plan_uri(
        plan,
        layout,
        "postgres.url",
        "postgres.password_file",
        "postgres-password",
        &document.postgres.url,
    )? {
        plan.unset("postgres.password_file");
    }
    if !plan_uri(
        plan,
        layout,
        "valkey.url",
        "valkey.password_file",
        "valkey-password",
        &document.valkey.url,
    )? {
        plan.unset("valkey.password_file");
    }
    Ok(())
}

pub(super) fn plan_from_flags(
    plan: &mut Plan,
    layout: &Layout,
    args: &InitArgs,
) -> Result<(), InitError> {
    if let Some(name) = &args.name {
        plan.set("actor.name", name.clone());
    }
    if let Some(bootstrap) = &args.kafka_bootstrap {
        plan.set("kafka.bootstrap_servers", bootstrap.clone());
    }
    if let Some(auth) = args.kafka_auth {
        plan.kafka_auth(auth);
    }
    if let Some(mechanism) = &args.kafka_sasl_mechanism {
        plan.set("kafka.sasl_mechanism", mechanism.clone());
    }
    if let Some(username) = &args.kafka_username {
        plan.set("kafka.sasl_username", username.clone());
    }
    if let Some(path) = &args.kafka_password_file {
        plan.file(
            "kafka.sasl_password_file",
            layout.secret("kafka-password"),
            read_secret_file(path)?,
            true,
        );
    }
    if let Some(path) = &args.kafka_ca_file {
        let path = absolute(path)?;
        plan.set("kafka.ca_file", path.to_string_lossy().into_owned());
        plan.set("public.ca_file", path.to_string_lossy().into_owned());
    }
    if let Some(path) = &args.kafka_client_cert_file {
        plan.set(
            "kafka.client_cert_file",
            absolute(path)?.to_string_lossy().into_owned(),
        );
    }
    if let Some(path) = &args.kafka_client_key_file {
        plan.file(
            "kafka.client_key_file",
            layout.secret("kafka-client.key"),
            read_file(path)?,
            true,
        );
    }
    if let Some(prefix) = &args.topic_prefix {
        plan.set("kafka.topic_prefix", prefix.clone());
        for key in [
            "kafka.topic_data_in",
            "kafka.topic_data_out",
            "kafka.topic_rpc_in",
            "kafka.topic_rpc_out",
        ] {
            plan.unset(key);
        }
    }
    if let Some(create) = args.create_topics {
        plan.set("kafka.create_topics", create);
    }
    if let Some(uri) = &args.postgres_url {
        plan_uri(
            plan,
            layout,
            "postgres.url",
            "postgres.password_file",
            "postgres-password",
            uri,
        )?;
    }
    if let Some(uri) = &args.valkey_url {
        plan_uri(
            plan,
            layout,
            "valkey.url",
            "valkey.password_file",
            "valkey-password",
            uri,
        )?;
    }
    if let Some(username) = &args.public_username {
        plan.set("public.username", username.clone());
    }
    if let Some(path) = &args.public_password_file {
        plan.file(
            "public.password_file",
            layout.secret("public-password"),
            read_secret_file(path)?,
            true,
        );
    }
    Ok(())
}

pub(super) fn absolute(path: &Path) -> Result<PathBuf, InitError> {
    std::path::absolute(path).map_err(|err| InitError::Read {
        path: path.display().to_string(),
        error: err.to_string(),
    })
}

/// The value a key has: planned, else in the existing file, else its default.
pub(super) fn current(plan: &Plan, existing: &Existing, key: &str) -> Option<String> {
    if let Some(value) = plan.set.get(key) {
        return Some(match value {
            toml::Value::String(text) => text.clone(),
            other => other.to_string(),
        });
    }
    if plan.unset.contains(&key) {
        return None;
    }
    existing.str(key).or_else(|| {
        config::keys::KEYS
            .iter()
            .find(|spec| spec.key == key)
            .and_then(|spec| match spec.default {
                config::keys::Default::Str(text) => Some(text.to_owned()),
                config::keys::Default::Int(number) => Some(number.to_string()),
                config::keys::Default::Bool(flag) => Some(flag.to_string()),
                _ => None,
            })
    })
}

pub(super) fn is_loopback(bootstrap: &str) -> bool {
    bootstrap.split(',').all(|server| {
        let host = server
            .trim()
            .rsplit_once(':')
            .map_or(server, |(host, _)| host);
        matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
    })
}
