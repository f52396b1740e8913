//! Where a received file may be saved. The names in a manifest are the
//! sender's words: each path component is made safe on its own (no
//! separators, no `..`, no control or bidi characters, no reserved or
//! overlong names), and the path they make can only go down from the
//! download folder. A name that had to change is reported, so the offer can
//! say so and the inbox can count it.

use std::path::{Component, Path, PathBuf};

/// The most components a received path may have (a folder nested deeper
/// than this is not something people send).
pub const MAX_DEPTH: usize = 32;

/// The longest a saved name may be, in bytes: below the 255 of Linux file
/// systems, with room for a collision suffix (` (999)`) and the partial
/// file's suffix.
pub const MAX_NAME_BYTES: usize = 200;

/// Appended to a file while it is being received; it is renamed to its
/// name only once its hash is verified.
pub const PARTIAL_SUFFIX: &str = ".kirc-partial";

/// The name given to a component with nothing usable left in it.
const PLACEHOLDER: &str = "_";

/// The longest extension kept when an overlong name is shortened.
const MAX_KEPT_EXTENSION: usize = 16;

/// A manifest path made safe: relative, every component a plain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafePath {
    pub path: PathBuf,
    /// Whether any component had to change.
    pub changed: bool,
}

/// Why a manifest path is refused rather than sanitised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the path has no components")]
    Empty,
    #[error("the path is {0} components deep; the limit is {MAX_DEPTH}")]
    TooDeep(usize),
}

/// Makes a manifest path safe to create under the download folder.
pub fn sanitize_path<S: AsRef<str>>(components: &[S]) -> Result<SafePath, NameError> {
    if components.is_empty() {
        return Err(NameError::Empty);
    }
    if components.len() > MAX_DEPTH {
        return Err(NameError::TooDeep(components.len()));
    }
    let mut path = PathBuf::new();
    let mut changed = false;
    for component in components {
        let component = component.as_ref();
        let safe = sanitize_component(component);
        changed |= safe != component;
        path.push(safe);
    }
    Ok(SafePath { path, changed })
}

/// One path component as a plain, visible, portable file name.
pub fn sanitize_component(name: &str) -> String {
    // Each rule may expose what another removes (a cut that ends in a dot,
    // a trimmed name that is reserved); a few passes reach a name that
    // every rule leaves alone, which is what makes sanitising idempotent.
    let mut safe = name.to_owned();
    for _ in 0..4 {
        let next = sanitize_once(&safe);
        if next == safe {
            break;
        }
        safe = next;
    }
    safe
}

fn sanitize_once(name: &str) -> String {
    let visible: String = name
        .chars()
        .filter(|&c| !is_invisible(c))
        .map(|c| if is_separator(c) { '_' } else { c })
        .collect();
    // Surrounding spaces and trailing dots are invisible in listings (and
    // dropped by some file systems); a leading dot would hide the file.
    let mut safe = shorten(&visible).trim().trim_end_matches('.').to_owned();
    if safe.starts_with('.') {
        safe.replace_range(0..1, "_");
    }
    if safe.is_empty() {
        return PLACEHOLDER.to_owned();
    }
    if is_reserved(&safe) {
        safe.insert(0, '_');
    }
    if safe.ends_with(PARTIAL_SUFFIX) {
        safe.push('_');
    }
    safe
}

/// Characters that would let a name lie about itself: control characters
/// (C0, DEL, C1), bidirectional overrides and isolates, and zero-width ones.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

fn is_separator(c: char) -> bool {
    matches!(c, '/' | '\\' | ':')
}

/// Names that Windows file systems (a shared or removable drive) refuse or
/// treat as devices, whatever the extension.
fn is_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

/// Cuts a name to `MAX_NAME_BYTES` less the two bytes the other rules may
/// add, on a character boundary, keeping a short extension.
fn shorten(name: &str) -> String {
    const LIMIT: usize = MAX_NAME_BYTES - 2;
    if name.len() <= LIMIT {
        return name.to_owned();
    }
    let extension = name
        .rfind('.')
        .map(|dot| &name[dot..])
        .filter(|extension| extension.len() <= MAX_KEPT_EXTENSION)
        .unwrap_or("");
    let mut cut = LIMIT - extension.len();
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{extension}", &name[..cut])
}

/// The first of `name`, `name (1)`, `name (2)`… (the number before the
/// extension) for which `taken` says no.
pub fn unused_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    if !taken(name) {
        return name.to_owned();
    }
    let (stem, extension) = match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    };
    (1u32..)
        .map(|n| format!("{stem} ({n}){extension}"))
        .find(|candidate| !taken(candidate))
        // The range is unbounded and `taken` is finite in practice; the
        // fallback keeps the function total.
        .unwrap_or_else(|| format!("{stem} ({}){extension}", u32::MAX))
}

/// Whether `path` stays below its base: relative, and made only of plain
/// names. Every path `sanitize_path` returns passes.
pub fn stays_below(path: &Path) -> bool {
    path.components().count() > 0
        && path
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn safe(components: &[&str]) -> String {
        sanitize_path(components)
            .unwrap()
            .path
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn hostile_names_become_plain_names_below_the_folder() {
        let cases: &[(&[&str], &str)] = &[
            (&["report.pdf"], "report.pdf"),
            (&["photos", "2026", "beach.jpg"], "photos/2026/beach.jpg"),
            (&[".."], "_"),
            (&["..", "..", "etc", "passwd"], "_/_/etc/passwd"),
            (&["/etc/passwd"], "_etc_passwd"),
            (&["a/../../b"], "a_.._.._b"),
            (&["C:\\Windows\\win.ini"], "C__Windows_win.ini"),
            (&[".bashrc"], "_bashrc"),
            (&["", "x"], "_/x"),
            (&["bell\x07and\nnewline\u{9b}"], "bellandnewline"),
            (&["cod\u{202E}fdp.exe"], "codfdp.exe"),
            (&["zero\u{200B}width\u{FEFF}"], "zerowidth"),
            (&["  spaced.txt.  "], "spaced.txt"),
            (&["CON"], "_CON"),
            (&["nul.txt"], "_nul.txt"),
            (&["COM1.log"], "_COM1.log"),
            (&["COMMON.txt"], "COMMON.txt"),
            (&["x.kirc-partial"], "x.kirc-partial_"),
            (&["日本語のファイル.txt"], "日本語のファイル.txt"),
        ];
        for (components, expected) in cases {
            assert_eq!(safe(components), *expected, "{components:?}");
        }
    }

    #[test]
    fn a_name_that_changed_says_so() {
        assert!(!sanitize_path(&["a", "b.txt"]).unwrap().changed);
        assert!(sanitize_path(&["a", "../b.txt"]).unwrap().changed);
    }

    #[test]
    fn empty_and_overdeep_paths_are_refused() {
        assert_eq!(sanitize_path::<&str>(&[]), Err(NameError::Empty));
        let deep = vec!["d"; MAX_DEPTH + 1];
        assert_eq!(sanitize_path(&deep), Err(NameError::TooDeep(MAX_DEPTH + 1)));
        assert!(sanitize_path(&vec!["d"; MAX_DEPTH]).is_ok());
    }

    #[test]
    fn an_overlong_name_keeps_its_extension_and_whole_characters() {
        let long = format!("{}.tar.gz", "é".repeat(300));
        let short = sanitize_component(&long);
        assert!(short.len() <= MAX_NAME_BYTES, "{} bytes", short.len());
        assert!(short.ends_with(".gz"));
        assert!(short.starts_with('é'));
    }

    #[test]
    fn collisions_get_a_number_before_the_extension() {
        let taken = ["notes.txt", "notes (1).txt", "folder"];
        let is_taken = |name: &str| taken.contains(&name);
        assert_eq!(unused_name("notes.txt", is_taken), "notes (2).txt");
        assert_eq!(unused_name("folder", is_taken), "folder (1)");
        assert_eq!(unused_name("fresh.txt", is_taken), "fresh.txt");
        assert_eq!(unused_name("_bashrc", |n| n == "_bashrc"), "_bashrc (1)");
    }

    proptest! {
        /// Whatever a sender writes, the saved path is below the folder,
        /// made of visible, bounded names.
        #[test]
        fn any_manifest_path_stays_below_the_folder(
            components in proptest::collection::vec(any::<String>(), 1..=MAX_DEPTH)
        ) {
            let safe = sanitize_path(&components).unwrap();
            prop_assert!(stays_below(&safe.path), "{:?}", safe.path);
            prop_assert_eq!(safe.path.components().count(), components.len());
            for component in safe.path.iter() {
                let name = component.to_str().unwrap();
                prop_assert!(!name.is_empty() && name.len() <= MAX_NAME_BYTES);
                prop_assert!(!name.starts_with('.'));
                prop_assert!(!name.chars().any(|c| is_invisible(c) || is_separator(c)));
                prop_assert!(!name.ends_with(PARTIAL_SUFFIX));
            }
        }

        /// Sanitising is idempotent: a safe name is left as it is.
        #[test]
        fn a_safe_name_is_left_alone(name in any::<String>()) {
            let once = sanitize_component(&name);
            prop_assert_eq!(sanitize_component(&once), once);
        }
    }
}
