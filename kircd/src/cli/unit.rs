//! `kircd service install|uninstall|status`: kircd as a systemd user service.
//! The unit is systemd/kircd.service from the repository, with ExecStart
//! pointing at the running kircd binary.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub const UNIT_NAME: &str = "kircd.service";
const TEMPLATE: &str = include_str!("../../../systemd/kircd.service");

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot find your home folder (HOME is unset)")]
    NoHome,
    #[error("cannot find the kircd binary: {0}")]
    Exe(String),
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: String },
    #[error("cannot remove {path}: {error}")]
    Remove { path: String, error: String },
}

/// `$XDG_CONFIG_HOME/systemd/user`, where the user's own units live.
pub fn unit_dir() -> Result<PathBuf, ServiceError> {
    directories::BaseDirs::new()
        .map(|dirs| dirs.config_dir().join("systemd").join("user"))
        .ok_or(ServiceError::NoHome)
}

/// Quotes a word for a unit file: `%` starts a specifier and must be
/// doubled; whitespace needs the word quoted.
fn unit_word(text: &str) -> String {
    let text = text.replace('%', "%%");
    if text.contains(char::is_whitespace) || text.contains('"') {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text
    }
}

/// The unit for the kircd at `exe`; `config` is set in its environment when
/// kircd was pointed at a config file other than the default.
pub fn render_unit(exe: &Path, config: Option<&Path>) -> String {
    let mut unit = String::with_capacity(TEMPLATE.len() + 128);
    for line in TEMPLATE.lines() {
        if line.starts_with("ExecStart=") {
            let _ = writeln!(unit, "ExecStart={} run", unit_word(&exe.to_string_lossy()));
        } else if line.starts_with("EnvironmentFile=") {
            unit.push_str(line);
            unit.push('\n');
            if let Some(config) = config {
                let assignment = format!("KIRC_CONFIG={}", config.to_string_lossy());
                let _ = writeln!(unit, "Environment={}", unit_word(&assignment));
            }
        } else {
            unit.push_str(line);
            unit.push('\n');
        }
    }
    unit
}

/// The commands that start kircd now and at every boot, without a login.
fn next_steps(user: &str) -> [String; 3] {
    [
        "systemctl --user daemon-reload".to_owned(),
        format!("systemctl --user enable --now {UNIT_NAME}"),
        format!("loginctl enable-linger {user}"),
    ]
}

fn user_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| rustix::process::getuid().as_raw().to_string())
}

/// Runs `command` (a line from [`next_steps`]) and says how it went.
fn run_step(command: &str) -> bool {
    let mut words = command.split_whitespace();
    let Some(program) = words.next() else {
        return false;
    };
    match Command::new(program).args(words).status() {
        Ok(status) if status.success() => {
            println!("ran: {command}");
            true
        }
        Ok(status) => {
            println!("FAILED ({status}): {command}");
            false
        }
        Err(err) => {
            println!("could not run {command}: {err}");
            false
        }
    }
}

fn current_exe() -> Result<PathBuf, ServiceError> {
    std::env::current_exe()
        .and_then(|exe| exe.canonicalize())
        .map_err(|err| ServiceError::Exe(err.to_string()))
}

/// A path under a build folder or /tmp may vanish; the unit would then fail
/// at the next boot.
fn looks_temporary(exe: &Path) -> bool {
    let text = exe.to_string_lossy();
    text.contains("/target/debug/")
        || text.contains("/target/release/")
        || text.starts_with("/tmp/")
}

pub fn install(config: Option<&Path>, now: bool) -> Result<ExitCode, ServiceError> {
    let exe = current_exe()?;
    let dir = unit_dir()?;
    let path = dir.join(UNIT_NAME);
    std::fs::create_dir_all(&dir).map_err(|err| ServiceError::Write {
        path: dir.display().to_string(),
        error: err.to_string(),
    })?;
    let unit = render_unit(&exe, config);
    crate::files::write_atomically(&path, unit.as_bytes(), 0o644).map_err(|err| {
        ServiceError::Write {
            path: path.display().to_string(),
            error: err.to_string(),
        }
    })?;
    println!("wrote {}", path.display());
    println!("      ExecStart={} run", exe.display());
    if looks_temporary(&exe) {
        println!(
            "note: {} is a build folder; install kircd first (cargo install --path kircd) and run `kircd service install` from there, or the unit breaks with the next `cargo clean`",
            exe.display()
        );
    }
    warn_about_env_file();
    let steps = next_steps(&user_name());
    if now {
        let ok = steps.iter().all(|step| run_step(step));
        if !ok {
            return Ok(ExitCode::FAILURE);
        }
        println!("kircd runs now, at every boot, and without a login session.");
    } else {
        println!("to start kircd now and at every boot, even when you are not logged in:");
        for step in &steps {
            println!("  {step}");
        }
        println!("(or run `kircd service install --now` to have these run for you)");
    }
    Ok(ExitCode::SUCCESS)
}

/// The optional env file may hold passwords; say so if others can read it.
fn warn_about_env_file() {
    let Some(dirs) = directories::BaseDirs::new() else {
        return;
    };
    let env_file = dirs.config_dir().join("kirc").join("kircd.env");
    if let Ok(metadata) = std::fs::metadata(&env_file) {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            println!(
                "warning: {} has mode {mode:o}; if it holds a password, run: chmod 600 {}",
                env_file.display(),
                env_file.display()
            );
        }
    }
}

pub fn uninstall(now: bool) -> Result<ExitCode, ServiceError> {
    let path = unit_dir()?.join(UNIT_NAME);
    if now {
        run_step(&format!("systemctl --user disable --now {UNIT_NAME}"));
    }
    match std::fs::remove_file(&path) {
        Ok(()) => println!("removed {}", path.display()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            println!("{} is not installed", path.display());
        }
        Err(err) => {
            return Err(ServiceError::Remove {
                path: path.display().to_string(),
                error: err.to_string(),
            });
        }
    }
    if now {
        run_step("systemctl --user daemon-reload");
    } else {
        println!(
            "then: systemctl --user disable --now {UNIT_NAME} && systemctl --user daemon-reload"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What systemctl says about the unit, if systemctl and a user manager are
/// there to ask.
fn systemctl_says(verb: &str) -> Option<String> {
    let output = Command::new("systemctl")
        .args(["--user", verb, UNIT_NAME])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

pub fn status(config: Option<&Path>) -> Result<ExitCode, ServiceError> {
    let path = unit_dir()?.join(UNIT_NAME);
    let installed = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) => {
            println!("unit:    not installed ({})", path.display());
            println!("install: kircd service install");
            return Ok(ExitCode::from(3));
        }
    };
    let expected = render_unit(&current_exe()?, config);
    if installed == expected {
        println!("unit:    {} (up to date)", path.display());
    } else {
        println!(
            "unit:    {} (differs from what this kircd would write; `kircd service install` rewrites it)",
            path.display()
        );
    }
    match (systemctl_says("is-enabled"), systemctl_says("is-active")) {
        (Some(enabled), Some(active)) => println!("systemd: {enabled}, {active}"),
        _ => println!("systemd: no user service manager answered (systemctl --user)"),
    }
    let user = user_name();
    let linger = Path::new("/var/lib/systemd/linger").join(&user).exists();
    println!(
        "linger:  {}",
        if linger {
            "on: kircd runs without a login session".to_owned()
        } else {
            format!("off: kircd stops when you log out (loginctl enable-linger {user})")
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_runs_this_binary_and_keeps_the_rest_of_the_template() {
        let unit = render_unit(
            Path::new("/opt/k irc/kircd"),
            Some(Path::new("/etc/kirc.toml")),
        );
        assert!(
            unit.contains("\nExecStart=\"/opt/k irc/kircd\" run\n"),
            "{unit}"
        );
        assert!(
            unit.contains("\nEnvironment=KIRC_CONFIG=/etc/kirc.toml\n"),
            "{unit}"
        );
        let template_lines = TEMPLATE
            .lines()
            .filter(|line| !line.starts_with("ExecStart="))
            .count();
        let unit_lines = unit
            .lines()
            .filter(|line| !line.starts_with("ExecStart=") && !line.starts_with("Environment=KIRC"))
            .count();
        assert_eq!(template_lines, unit_lines);
    }

    #[test]
    fn percent_signs_are_not_specifiers() {
        assert_eq!(unit_word("/home/a%b/kircd"), "/home/a%%b/kircd");
    }
}
