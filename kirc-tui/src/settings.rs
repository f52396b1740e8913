//! Where kirc-tui finds the daemon: `--socket`, else `KIRC_API_SOCKET`, else
//! `api.socket` in kircd's config file, else the default path both programs
//! share.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("`api.socket` in {path} must be a string path")]
    SocketType { path: PathBuf },
}

/// kircd's config file: `KIRC_CONFIG`, else `$XDG_CONFIG_HOME/kirc/kircd.toml`.
pub fn kircd_config_file() -> Option<PathBuf> {
    std::env::var_os("KIRC_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("", "", "kirc")
                .map(|dirs| dirs.config_dir().join("kircd.toml"))
        })
}

/// `api.socket` from a kircd config file, if the file exists and sets it.
pub fn socket_from_config(path: &Path) -> Result<Option<PathBuf>, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let table: toml::Table =
        text.parse()
            .map_err(|err: toml::de::Error| SettingsError::Syntax {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?;
    match table.get("api").and_then(|api| api.get("socket")) {
        None => Ok(None),
        Some(toml::Value::String(socket)) => Ok(Some(PathBuf::from(socket))),
        Some(_) => Err(SettingsError::SocketType {
            path: path.to_path_buf(),
        }),
    }
}

/// Resolves the socket path in the documented order.
pub fn socket_path(flag: Option<PathBuf>) -> Result<PathBuf, SettingsError> {
    if let Some(path) = flag {
        return Ok(path);
    }
    if let Some(path) = std::env::var_os("KIRC_API_SOCKET").filter(|path| !path.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(file) = kircd_config_file()
        && let Some(path) = socket_from_config(&file)?
    {
        return Ok(path);
    }
    Ok(kirc_proto::default_socket_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_api_socket_from_kircd_config() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kircd.toml");
        std::fs::write(
            &file,
            "[api]\nsocket = \"/run/x/kircd.sock\"\n[kafka]\npartitions = 2\n",
        )
        .unwrap();
        assert_eq!(
            socket_from_config(&file).unwrap(),
            Some(PathBuf::from("/run/x/kircd.sock"))
        );
        std::fs::write(&file, "[kafka]\npartitions = 2\n").unwrap();
        assert_eq!(socket_from_config(&file).unwrap(), None);
        assert_eq!(
            socket_from_config(&dir.path().join("missing.toml")).unwrap(),
            None
        );
        std::fs::write(&file, "[api]\nsocket = 3\n").unwrap();
        assert!(socket_from_config(&file).is_err());
    }
}
