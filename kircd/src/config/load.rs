//! Reading the layers (file, `KIRC_*` environment, flags) into raw values,
//! each checked against its key's kind.

use super::*;

/// One value as read, before typing.
#[derive(Debug, Clone)]
pub(super) struct Raw {
    pub(super) value: toml::Value,
    pub(super) origin: Origin,
}

/// Loads, merges and validates the configuration.
pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
    let mut raw: BTreeMap<&'static str, Raw> = BTreeMap::new();

    let file = match &sources.explicit_file {
        Some(path) => Some(path.clone()),
        None => default_file().filter(|path| path.exists()),
    };
    if let Some(path) = &file {
        read_file(path, &mut raw)?;
    }
    read_env(&sources.env, &mut raw)?;
    for (key, flag, value) in &sources.flags {
        let spec = keys::find(key).ok_or_else(|| ConfigError::UnknownKey {
            key: (*key).to_owned(),
            origin: Origin::Flag(flag),
            fix: String::from("this is a bug in kircd's flag table"),
        })?;
        let origin = Origin::Flag(flag);
        let value = parse_text(spec, value, &origin)?;
        raw.insert(spec.key, Raw { value, origin });
    }
    for spec in KEYS {
        if let Some(entry) = raw.get(spec.key) {
            check_kind(spec, entry)?;
        }
    }
    Values { raw, file }.build()
}

fn read_file(path: &Path, raw: &mut BTreeMap<&'static str, Raw>) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|err: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
    let origin = Origin::File(path.to_path_buf());
    for (section, body) in table {
        let toml::Value::Table(body) = body else {
            return Err(unknown_key(&section, origin.clone()));
        };
        for (name, value) in body {
            let dotted = format!("{section}.{name}");
            let spec = keys::find(&dotted).ok_or_else(|| unknown_key(&dotted, origin.clone()))?;
            if spec.secret {
                return Err(ConfigError::Invalid {
                    key: spec.key,
                    origin: origin.clone(),
                    problem: String::from("secrets are not read from the config file"),
                    fix: format!(
                        "remove it; put it in a file named by `{}_file`, or set {}",
                        spec.key,
                        spec.env_var()
                    ),
                });
            }
            raw.insert(
                spec.key,
                Raw {
                    value,
                    origin: origin.clone(),
                },
            );
        }
    }
    Ok(())
}

fn read_env(
    env: &[(String, String)],
    raw: &mut BTreeMap<&'static str, Raw>,
) -> Result<(), ConfigError> {
    let sections: Vec<String> = KEYS
        .iter()
        .map(|spec| format!("KIRC_{}_", spec.section().to_ascii_uppercase()))
        .collect();
    for (name, value) in env {
        if !name.starts_with("KIRC_") {
            continue;
        }
        let origin = Origin::Env(name.clone());
        match KEYS.iter().find(|spec| spec.env_var() == *name) {
            Some(spec) => {
                let value = parse_text(spec, value, &origin)?;
                raw.insert(spec.key, Raw { value, origin });
            }
            // A variable that looks like a config key but is none is almost
            // certainly a typo; other KIRC_ variables belong to other tools.
            None if sections.iter().any(|prefix| name.starts_with(prefix)) => {
                let suggestion = closest(name, KEYS.iter().map(KeySpec::env_var));
                return Err(ConfigError::UnknownKey {
                    key: name.clone(),
                    origin,
                    fix: match suggestion {
                        Some(close) => {
                            format!("did you mean {close}? (`kircd config keys` lists them all)")
                        }
                        None => String::from("`kircd config keys` lists every variable"),
                    },
                });
            }
            None => {}
        }
    }
    Ok(())
}

fn unknown_key(key: &str, origin: Origin) -> ConfigError {
    let fix = match closest(key, KEYS.iter().map(|spec| spec.key.to_owned())) {
        Some(close) => format!("did you mean `{close}`? (`kircd config keys` lists them all)"),
        None => String::from("remove it; `kircd config keys` lists every key"),
    };
    ConfigError::UnknownKey {
        key: key.to_owned(),
        origin,
        fix,
    }
}

fn closest(wrong: &str, candidates: impl Iterator<Item = String>) -> Option<String> {
    candidates
        .map(|candidate| (strsim::jaro_winkler(wrong, &candidate), candidate))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// Turns an environment variable's or flag's text into the key's TOML type.
fn parse_text(
    spec: &'static KeySpec,
    text: &str,
    origin: &Origin,
) -> Result<toml::Value, ConfigError> {
    let invalid = |problem: String, fix: String| ConfigError::Invalid {
        key: spec.key,
        origin: origin.clone(),
        problem,
        fix,
    };
    Ok(match spec.kind {
        Kind::Str | Kind::Path | Kind::Duration { .. } | Kind::Choice(_) => {
            toml::Value::String(text.to_owned())
        }
        Kind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => {
                return Err(invalid(
                    format!("`{text}` is not a boolean"),
                    String::from("use true or false"),
                ));
            }
        },
        Kind::Int { min, max } => toml::Value::Integer(text.trim().parse().map_err(|_| {
            invalid(
                format!("`{text}` is not a whole number"),
                format!("use a number from {min} to {max}"),
            )
        })?),
    })
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// Checks a value against its key's kind (type, range, choices).
fn check_kind(spec: &'static KeySpec, raw: &Raw) -> Result<(), ConfigError> {
    let invalid = |problem: String, fix: String| ConfigError::Invalid {
        key: spec.key,
        origin: raw.origin.clone(),
        problem,
        fix,
    };
    let shown = || {
        if spec.secret {
            String::from("[redacted]")
        } else {
            raw.value.to_string()
        }
    };
    match (spec.kind, &raw.value) {
        (Kind::Str | Kind::Path, toml::Value::String(_))
        | (Kind::Bool, toml::Value::Boolean(_)) => Ok(()),
        (Kind::Int { min, max }, toml::Value::Integer(n)) => {
            if (min..=max).contains(n) {
                Ok(())
            } else {
                Err(invalid(
                    format!("{n} is out of range"),
                    format!("use a number from {min} to {max}"),
                ))
            }
        }
        (Kind::Duration { min, max }, toml::Value::String(text)) => {
            let duration = humantime::parse_duration(text).map_err(|err| {
                invalid(
                    format!("`{text}` is not a duration ({err})"),
                    String::from("write it like \"500ms\", \"10s\" or \"6h\""),
                )
            })?;
            if duration < min || duration > max {
                return Err(invalid(
                    format!("{text} is out of range"),
                    format!(
                        "use a duration from {} to {}",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                ));
            }
            Ok(())
        }
        (Kind::Choice(choices), toml::Value::String(text)) => {
            if choices.contains(&text.as_str()) {
                Ok(())
            } else {
                Err(invalid(
                    format!("`{text}` is not one of the choices"),
                    format!("use one of: {}", choices.join(", ")),
                ))
            }
        }
        (kind, value) => {
            let wanted = match kind {
                Kind::Str | Kind::Path | Kind::Choice(_) => "a string",
                Kind::Bool => "true or false",
                Kind::Int { .. } => "a whole number",
                Kind::Duration { .. } => "a duration string like \"10s\"",
            };
            Err(invalid(
                format!("{} is {}", shown(), type_name(value)),
                format!("write {wanted}"),
            ))
        }
    }
}
