//! Writing the plan: the secret files and the config, owner-only and
//! atomically, once the result loads as a config.

use super::*;

pub(super) fn write_error(path: &Path, err: &std::io::Error) -> InitError {
    InitError::Write {
        path: path.display().to_string(),
        error: err.to_string(),
    }
}

/// Creates `dir` (and its parents) if missing; a folder init creates is the
/// owner's alone.
pub(super) fn private_dir(dir: &Path) -> Result<(), InitError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|err| write_error(dir, &err))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|err| write_error(dir, &err))
}

pub(super) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), InitError> {
    crate::files::write_atomically(path, contents, mode).map_err(|err| write_error(path, &err))
}

pub(super) fn render_config(table: &toml::Table) -> String {
    let body = toml::to_string(table).unwrap_or_default();
    format!(
        "# kircd's settings, written by `kircd init`; `kircd config keys` lists every key.\n\
         # Secrets are not in this file: the *_file keys name owner-only files.\n\n{body}"
    )
}

/// Writes the files and the config, checking first that the result loads.
pub(super) fn apply(
    plan: &Plan,
    existing: &Existing,
    layout: &Layout,
    sources: &Sources,
) -> Result<(), InitError> {
    private_dir(&layout.dir)?;
    if plan.files.iter().any(|file| file.secret) {
        private_dir(&layout.secrets)?;
    }
    for file in &plan.files {
        let mode = if file.secret { 0o600 } else { 0o644 };
        write_atomically(&file.path, file.contents.expose_secret().as_bytes(), mode)?;
    }
    let text = render_config(&existing.merged(plan));
    let mut candidate = layout.config.as_os_str().to_owned();
    candidate.push(".candidate");
    let candidate = PathBuf::from(candidate);
    write_atomically(&candidate, text.as_bytes(), 0o600)?;
    let checked = config::load(&Sources {
        explicit_file: Some(candidate.clone()),
        env: sources.env.clone(),
        flags: sources.flags.clone(),
    });
    let _ = std::fs::remove_file(&candidate);
    checked?;
    if let Ok(old) = std::fs::read(&layout.config)
        && old != text.as_bytes()
    {
        let mut backup = layout.config.as_os_str().to_owned();
        backup.push(".bak");
        write_atomically(Path::new(&backup), &old, 0o600)?;
    }
    write_atomically(&layout.config, text.as_bytes(), 0o600)
}
