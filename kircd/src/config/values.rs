//! Typed access to the checked raw values, with defaults and the checks
//! that need more than one value's kind (files that must exist, secrets).

use super::*;

/// Typed access to checked raw values, with defaults.
pub(super) struct Values {
    pub(super) raw: BTreeMap<&'static str, Raw>,
    pub(super) file: Option<PathBuf>,
}

impl Values {
    pub(super) fn spec(key: &'static str) -> &'static KeySpec {
        // Every key this module asks for is in KEYS; the unit test
        // `every_key_is_read` pins that.
        keys::find(key).unwrap_or_else(|| panic!("config key {key} missing from KEYS"))
    }

    pub(super) fn origin(&self, key: &'static str) -> Origin {
        self.raw
            .get(key)
            .map_or(Origin::Default, |raw| raw.origin.clone())
    }

    pub(super) fn opt_str(&self, key: &'static str) -> Option<String> {
        match self.raw.get(key).map(|raw| &raw.value) {
            Some(toml::Value::String(text)) => Some(text.clone()),
            _ => match Self::spec(key).default {
                keys::Default::Str(text) => Some(text.to_owned()),
                _ => None,
            },
        }
    }

    pub(super) fn str(&self, key: &'static str) -> String {
        self.opt_str(key).unwrap_or_default()
    }

    pub(super) fn opt_path(&self, key: &'static str) -> Option<PathBuf> {
        self.opt_str(key)
            .filter(|text| !text.is_empty())
            .map(PathBuf::from)
    }

    pub(super) fn bool(&self, key: &'static str) -> bool {
        match self.raw.get(key).map(|raw| &raw.value) {
            Some(toml::Value::Boolean(value)) => *value,
            _ => matches!(Self::spec(key).default, keys::Default::Bool(true)),
        }
    }

    pub(super) fn int(&self, key: &'static str) -> i64 {
        match self.raw.get(key).map(|raw| &raw.value) {
            Some(toml::Value::Integer(value)) => *value,
            _ => match Self::spec(key).default {
                keys::Default::Int(value) => value,
                _ => 0,
            },
        }
    }

    pub(super) fn duration(&self, key: &'static str) -> Duration {
        // check_kind has parsed every present value; defaults are pinned by
        // the unit test `defaults_load`.
        self.opt_str(key)
            .and_then(|text| humantime::parse_duration(&text).ok())
            .unwrap_or_default()
    }

    pub(super) fn invalid(
        &self,
        key: &'static str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            key,
            origin: self.origin(key),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    /// A secret from its environment variable or from its `_file` key.
    pub(super) fn secret(
        &self,
        key: &'static str,
        file_key: &'static str,
    ) -> Result<Option<SecretString>, ConfigError> {
        if let Some(value) = self.opt_str(key) {
            return Ok(Some(SecretString::from(value)));
        }
        let Some(path) = self.opt_path(file_key) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&path).map_err(|err| {
            self.invalid(
                file_key,
                format!("cannot read {}: {err}", path.display()),
                "point it at a readable file that holds only the secret",
            )
        })?;
        Ok(Some(SecretString::from(
            text.trim_end_matches(['\n', '\r']).to_owned(),
        )))
    }

    pub(super) fn existing_file(
        &self,
        key: &'static str,
        what: &str,
    ) -> Result<Option<PathBuf>, ConfigError> {
        let Some(path) = self.opt_path(key) else {
            return Ok(None);
        };
        match std::fs::File::open(&path) {
            Ok(_) => Ok(Some(path)),
            Err(err) => Err(self.invalid(
                key,
                format!("cannot read the {what} {}: {err}", path.display()),
                format!("point `{key}` at an existing, readable {what}"),
            )),
        }
    }

    pub(super) fn required_file(
        &self,
        key: &'static str,
        what: &str,
        protocol: &str,
    ) -> Result<PathBuf, ConfigError> {
        self.existing_file(key, what)?.ok_or_else(|| {
            self.invalid(
                key,
                format!("is required when kafka.security_protocol is {protocol}"),
                format!("set `{key}` to the {what}"),
            )
        })
    }
}
