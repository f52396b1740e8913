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

/// How to tell the user about a message while the terminal is not focused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Desktop {
    Off,
    /// OSC 9 (iTerm2, WezTerm, kitty, Windows Terminal, foot).
    Osc9,
    /// OSC 777 (urxvt, VTE-based terminals).
    Osc777,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyConfig {
    pub bell: bool,
    pub desktop: Desktop,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            bell: true,
            desktop: Desktop::Osc9,
        }
    }
}

/// kirc-tui's own settings (`tui.toml`): key bindings, notifications,
/// links.
#[derive(Debug, Clone, Default)]
pub struct TuiConfig {
    pub keymap: crate::keys::Keymap,
    pub notify: NotifyConfig,
    /// `[links] opener`: the program links are opened with (the URL is
    /// its last argument); unset, `$BROWSER`, else the system's opener.
    pub opener: Option<String>,
    /// `[mouse] enabled`: the wheel scrolls and a click opens a
    /// conversation (the terminal's own selection then takes Shift).
    pub mouse: bool,
    pub theme: crate::theme::Theme,
}

#[derive(Debug, thiserror::Error)]
pub enum TuiConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Keys {
        path: PathBuf,
        #[source]
        source: crate::keys::KeyError,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// kirc-tui's settings file: `KIRC_TUI_CONFIG`, else
/// `$XDG_CONFIG_HOME/kirc/tui.toml`.
pub fn tui_config_file() -> Option<PathBuf> {
    std::env::var_os("KIRC_TUI_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            directories::ProjectDirs::from("", "", "kirc")
                .map(|dirs| dirs.config_dir().join("tui.toml"))
        })
}

/// Loads `tui.toml`; a missing file gives the defaults. Unknown sections or
/// keys, unknown actions and conflicting bindings are errors, reported at
/// start.
pub fn load_tui_config(path: &Path) -> Result<TuiConfig, TuiConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(TuiConfig::default()),
        Err(source) => {
            return Err(TuiConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let table: toml::Table =
        text.parse()
            .map_err(|err: toml::de::Error| TuiConfigError::Syntax {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?;
    let invalid = |problem: String| TuiConfigError::Invalid {
        path: path.to_path_buf(),
        problem,
    };
    let mut config = TuiConfig::default();
    for (section, body) in &table {
        let body = body
            .as_table()
            .ok_or_else(|| invalid(format!("`{section}` must be a [section]")))?;
        match section.as_str() {
            "keys" => {
                config.keymap = crate::keys::Keymap::from_config(body).map_err(|source| {
                    TuiConfigError::Keys {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
            }
            "notify" => {
                for (key, value) in body {
                    match (key.as_str(), value) {
                        ("bell", toml::Value::Boolean(bell)) => config.notify.bell = *bell,
                        ("desktop", toml::Value::String(kind)) => {
                            config.notify.desktop = match kind.as_str() {
                                "off" => Desktop::Off,
                                "osc9" => Desktop::Osc9,
                                "osc777" => Desktop::Osc777,
                                other => {
                                    return Err(invalid(format!(
                                        "[notify] desktop = {other:?}: use \"osc9\", \"osc777\" or \"off\""
                                    )));
                                }
                            }
                        }
                        _ => {
                            return Err(invalid(format!(
                                "[notify] {key}: unknown or of the wrong type; the keys are bell (true/false) and desktop (\"osc9\", \"osc777\", \"off\")"
                            )));
                        }
                    }
                }
            }
            "links" => {
                for (key, value) in body {
                    match (key.as_str(), value) {
                        ("opener", toml::Value::String(opener)) if !opener.trim().is_empty() => {
                            config.opener = Some(opener.clone());
                        }
                        _ => {
                            return Err(invalid(format!(
                                "[links] {key}: unknown or of the wrong type; the key is opener (a program, e.g. \"firefox\")"
                            )));
                        }
                    }
                }
            }
            "theme" => config.theme = crate::theme::Theme::from_config(body).map_err(invalid)?,
            "mouse" => {
                for (key, value) in body {
                    match (key.as_str(), value) {
                        ("enabled", toml::Value::Boolean(enabled)) => config.mouse = *enabled,
                        _ => {
                            return Err(invalid(format!(
                                "[mouse] {key}: unknown or of the wrong type; the key is enabled (true/false)"
                            )));
                        }
                    }
                }
            }
            other => {
                return Err(invalid(format!(
                    "unknown section [{other}]; the sections are [keys], [notify], [links], [mouse] and [theme]"
                )));
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tui_config_tests {
    use super::*;

    #[test]
    fn loads_keys_and_notifications_and_reports_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tui.toml");
        assert_eq!(
            load_tui_config(&path).unwrap().notify,
            NotifyConfig::default()
        );
        std::fs::write(
            &path,
            "[keys]\nhelp = \"f2\"\n[notify]\nbell = false\ndesktop = \"osc777\"\n",
        )
        .unwrap();
        let config = load_tui_config(&path).unwrap();
        assert_eq!(
            config.notify,
            NotifyConfig {
                bell: false,
                desktop: Desktop::Osc777
            }
        );
        std::fs::write(&path, "[keys]\nhelp = \"ctrl-n\"\n").unwrap();
        let err = load_tui_config(&path).unwrap_err().to_string();
        assert!(
            err.contains("bound to both next_conversation and help"),
            "{err}"
        );
        std::fs::write(&path, "[links]\nopener = \"firefox --new-tab\"\n").unwrap();
        assert_eq!(
            load_tui_config(&path).unwrap().opener.as_deref(),
            Some("firefox --new-tab")
        );
        std::fs::write(&path, "[links]\nopener = 3\n").unwrap();
        let err = load_tui_config(&path).unwrap_err().to_string();
        assert!(err.contains("[links] opener"), "{err}");
        std::fs::write(&path, "[mouse]\nenabled = true\n").unwrap();
        assert!(load_tui_config(&path).unwrap().mouse);
        std::fs::write(&path, "[mouse]\nenabled = \"yes\"\n").unwrap();
        let err = load_tui_config(&path).unwrap_err().to_string();
        assert!(err.contains("[mouse] enabled"), "{err}");
        std::fs::write(&path, "[colours]\nx = 1\n").unwrap();
        let err = load_tui_config(&path).unwrap_err().to_string();
        assert!(err.contains("unknown section [colours]"), "{err}");
    }
}
