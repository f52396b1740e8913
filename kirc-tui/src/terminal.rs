//! What kirc-tui does outside its screen: text for the clipboard (OSC 52,
//! which reaches the local clipboard over SSH, and through tmux with
//! `set -g set-clipboard on`), links opened in a browser, and a message
//! written in `$EDITOR`.

use std::io::Write;
use std::process::{Child, Command, Stdio};

use crossterm::clipboard::CopyToClipboard;

/// Puts `text` on the terminal's clipboard.
pub fn copy(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    crossterm::execute!(out, CopyToClipboard::to_clipboard_from(text))
}

/// Opens a link with `opener` (tui.toml's `[links] opener`), else
/// `$BROWSER`, else the system's opener; only web links (see
/// `links::openable`). The program runs on its own, its output away from
/// the screen.
pub fn open_link(url: &str, opener: Option<&str>) -> std::io::Result<()> {
    let browser = std::env::var("BROWSER")
        .ok()
        .filter(|browser| !browser.trim().is_empty());
    match opener.map(str::to_owned).or(browser) {
        Some(program) => {
            let mut child = spawn_opener(url, &program)?;
            // Reaped when it ends, so that it leaves no zombie behind.
            std::thread::spawn(move || child.wait());
            Ok(())
        }
        None if crate::links::openable(url) => open::that_detached(url),
        None => Err(not_web(url)),
    }
}

fn not_web(url: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{url} is not a web link"),
    )
}

/// Starts `program` (words split at spaces; `%s`, if present, is where the
/// URL goes, else it is the last argument) on `url`.
fn spawn_opener(url: &str, program: &str) -> std::io::Result<Child> {
    if !crate::links::openable(url) {
        return Err(not_web(url));
    }
    let mut words = program.split_whitespace();
    let name = words.next().unwrap_or_default();
    let mut args: Vec<String> = words.map(|word| word.replace("%s", url)).collect();
    if !program.contains("%s") {
        args.push(url.to_owned());
    }
    Command::new(name)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Lets the user write `text` on in `$VISUAL`, else `$EDITOR`, else `vi`
/// (the terminal must be handed to it first), and returns what they saved.
pub fn edit_in_editor(text: &str) -> std::io::Result<String> {
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|editor| !editor.trim().is_empty())
        .unwrap_or_else(|| String::from("vi"));
    edit_with(text, &editor)
}

/// [`edit_in_editor`] with `editor` (words split at spaces; the file is its
/// last argument), on a file only this user can read, removed afterwards.
fn edit_with(text: &str, editor: &str) -> std::io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    let path = std::env::temp_dir().join(format!(
        "kirc-tui-message-{}-{nanos}.txt",
        std::process::id()
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(text.as_bytes())?;
    drop(file);
    let mut words = editor.split_whitespace();
    let status = Command::new(words.next().unwrap_or("vi"))
        .args(words)
        .arg(&path)
        .status();
    let written = std::fs::read_to_string(&path);
    let _ = std::fs::remove_file(&path);
    let status = status?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "{editor} ended with {status}; the message is as it was"
        )));
    }
    let mut written = written?;
    // Editors end the file with a newline the message does not have.
    if written.ends_with('\n') {
        written.pop();
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn the_editor_writes_on_the_draft_and_a_failed_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let appends = script(
            dir.path(),
            "appends",
            "printf ' and more\\nsecond line\\n' >> \"$1\"",
        );
        assert_eq!(
            edit_with("draft", &appends).unwrap(),
            "draft and more\nsecond line"
        );
        let fails = script(dir.path(), "fails", "exit 3");
        assert!(edit_with("draft", &fails).is_err());
    }

    #[test]
    fn the_opener_gets_the_link_and_only_web_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let script = dir.path().join("opener");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s %s' \"$1\" \"$2\" > {}\n",
                seen.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = format!("{} --new-tab", script.display());
        let mut child = spawn_opener("https://example.com/x", &program).unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(
            std::fs::read_to_string(&seen).unwrap(),
            "--new-tab https://example.com/x"
        );
        assert!(spawn_opener("file:///etc/passwd", &program).is_err());
    }

    #[test]
    fn a_copy_is_one_osc_52_sequence_with_the_text_in_base64() {
        let mut written = Vec::new();
        copy(&mut written, "hello ✓").unwrap();
        // "hello ✓" in base64, for the clipboard selection "c".
        assert_eq!(written, b"\x1b]52;c;aGVsbG8g4pyT\x1b\\");
    }
}
