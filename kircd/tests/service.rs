//! `kircd service install|status|uninstall` in a temporary home, and
//! `systemd-analyze verify` on the unit it writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kirc_testkit::{bin, repo_root};

fn kircd(home: &Path, args: &[&str]) -> Output {
    Command::new(bin("kircd"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("USER", "alice")
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn unit_path(home: &Path) -> PathBuf {
    home.join(".config/systemd/user/kircd.service")
}

#[test]
fn install_writes_the_unit_for_this_binary_and_says_how_to_enable_it() {
    let home = tempfile::tempdir().unwrap();
    let output = kircd(home.path(), &["service", "install"]);
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    for step in [
        "systemctl --user daemon-reload",
        "systemctl --user enable --now kircd.service",
        "loginctl enable-linger alice",
    ] {
        assert!(
            said.contains(step),
            "install should print `{step}`:\n{said}"
        );
    }

    let path = unit_path(home.path());
    let unit = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // The template, with ExecStart pointing at the kircd that ran install.
    let exe = bin("kircd").canonicalize().unwrap();
    let template = std::fs::read_to_string(repo_root().join("systemd/kircd.service")).unwrap();
    let expected: String = template
        .lines()
        .map(|line| {
            if line.starts_with("ExecStart=") {
                format!("ExecStart={} run\n", exe.display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_eq!(unit, expected);
    for line in [
        "Type=notify",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "RestartPreventExitStatus=75 78",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "EnvironmentFile=-%h/.config/kirc/kircd.env",
        "WantedBy=default.target",
    ] {
        assert!(
            unit.lines().any(|unit_line| unit_line == line),
            "missing {line}"
        );
    }

    let status = kircd(home.path(), &["service", "status"]);
    assert!(text(&status).contains("(up to date)"), "{}", text(&status));

    let output = kircd(home.path(), &["service", "uninstall"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(!path.exists());
    let status = kircd(home.path(), &["service", "status"]);
    assert_eq!(status.status.code(), Some(3));
    assert!(text(&status).contains("not installed"), "{}", text(&status));
}

#[test]
fn a_config_given_to_install_goes_into_the_unit() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("elsewhere/kircd.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "").unwrap();
    let output = kircd(
        home.path(),
        &["--config", config.to_str().unwrap(), "service", "install"],
    );
    assert!(output.status.success(), "{}", text(&output));
    let unit = std::fs::read_to_string(unit_path(home.path())).unwrap();
    assert!(
        unit.contains(&format!("\nEnvironment=KIRC_CONFIG={}\n", config.display())),
        "{unit}"
    );
}

#[test]
fn systemd_analyze_verify_accepts_the_installed_unit() {
    let home = tempfile::tempdir().unwrap();
    let output = kircd(home.path(), &["service", "install"]);
    assert!(output.status.success(), "{}", text(&output));
    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .arg(unit_path(home.path()))
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join(".config"))
        .env("XDG_RUNTIME_DIR", runtime.path())
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    // verify exits 0 on warnings such as unknown keys, so its output must be
    // empty too.
    assert!(
        verify.status.success() && text(&verify).trim().is_empty(),
        "systemd-analyze verify:\n{}",
        text(&verify)
    );
}
