//! kirc-tui in a real pty, driven through tmux.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use crate::*;

/// A program running in a real pseudo-terminal: a detached tmux session on a
/// server of its own.
#[derive(Debug)]
pub struct Tmux {
    server: String,
    pid_file: tempfile::NamedTempFile,
}

impl Tmux {
    /// Starts `command` (a shell command line without single quotes) in a
    /// `width`×`height` pane, after a marker line, `before the TUI`, that must
    /// be on screen again once a full-screen program has restored the
    /// terminal. When the program exits, the pane's shell prints
    /// `exited with <status>` and stays, so that the final screen can be read
    /// (tmux clears a pane whose process has ended).
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        assert!(!command.contains('\''), "no single quotes in the command");
        let tmux = Tmux {
            server: format!("kirc-test-{}", unique_suffix()),
            pid_file: tempfile::NamedTempFile::new().unwrap(),
        };
        let shell = format!(
            "printf 'before the TUI\\n'; sh -c 'echo $$ > {pid_file}; exec {command}'; printf 'exited with %s\\n' $?; exec sleep 3600",
            pid_file = tmux.pid_file.path().display()
        );
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "test",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            &shell,
        ]);
        tmux
    }

    /// `actor`'s kirc-tui in a `width`×`height` pane, in UTC and without a
    /// tui.toml, with `args` after its socket.
    pub fn kirc_tui(actor: &Actor, args: &str, width: u16, height: u16) -> Tmux {
        Tmux::start(
            &format!(
                "env TZ=UTC KIRC_TUI_CONFIG=/nonexistent {} --socket {} {args}",
                bin("kirc-tui").display(),
                actor.socket.display()
            ),
            width,
            height,
        )
    }

    /// Types `text` and Enter.
    pub fn type_line(&self, text: &str) {
        self.send_keys(&["-l", text]);
        self.send_keys(&["Enter"]);
    }

    fn run(&self, args: &[&str]) -> String {
        let output = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The pane's visible text.
    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "test"])
    }

    /// Sends keys as tmux names them (`"q"`, `"C-c"`, `"Enter"`).
    pub fn send_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "test"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The program's exit status, once it has exited.
    pub fn exit_status(&self) -> Option<i32> {
        Self::exit_status_on(&self.screen())
    }

    /// The exit status shown on `screen`, once the program has exited.
    pub fn exit_status_on(screen: &str) -> Option<i32> {
        screen
            .lines()
            .find_map(|line| line.strip_prefix("exited with ")?.trim().parse().ok())
    }

    /// Sends `signal` to the program in the pane.
    pub fn signal_program(&self, signal: rustix::process::Signal) {
        let pid: i32 = std::fs::read_to_string(self.pid_file.path())
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid).unwrap(), signal)
            .unwrap();
    }

    /// Waits until the screen satisfies `condition`. A terminal has no
    /// readiness signal of its own, so the screen is read every 50 ms until
    /// `timeout`; the panic shows the last screen.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if condition(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; screen:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

/// Whether kirc-tui's conversation list (left of the bar) on `screen`
/// shows `name`.
pub fn listed(screen: &str, name: &str) -> bool {
    screen
        .lines()
        .filter_map(|line| line.split_once('│'))
        .any(|(list, _)| list.contains(name))
}
