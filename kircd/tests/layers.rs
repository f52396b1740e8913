//! kircd's modules form layers (ARCHITECTURE.md, "Code map"): a module may
//! name only modules of lower layers, never one beside or above it. This
//! reads every source file's `crate::` paths and checks the rule, so a
//! circle or an arrow back up fails here, not in review.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module of kircd's library and its layer, lowest first.
const LAYERS: [(&str, u8); 19] = [
    ("files", 0),
    ("content", 0),
    ("crypto", 1),
    ("config", 2),
    ("store", 3),
    ("book", 4),
    ("hub", 5),
    ("backends", 6),
    ("live", 7),
    ("transport", 8),
    ("contacts", 9),
    ("messaging", 9),
    ("presence", 9),
    ("peers", 9),
    ("transfers", 9),
    ("channels", 10),
    ("api", 11),
    ("daemon", 12),
    ("cli", 12),
];

/// Fixtures for the unit tests, compiled only with them.
const TEST_ONLY: &str = "testing";

fn layer(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
}

fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The top-level modules a file names as `crate::<module>`.
fn named(text: &str) -> BTreeSet<String> {
    text.match_indices("crate::")
        .map(|(at, _)| {
            text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn modules_name_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if ["lib", "main", TEST_ONLY].contains(&top.as_str()) {
            continue;
        }
        let own = layer(&top)
            .unwrap_or_else(|| panic!("{top} (in {}) has no layer in LAYERS", relative.display()));
        checked += 1;
        for module in named(&std::fs::read_to_string(file).unwrap()) {
            if module == top || module == TEST_ONLY {
                continue;
            }
            let theirs = layer(&module).unwrap_or_else(|| {
                panic!("{module} (named in {}) has no layer", relative.display())
            });
            if theirs >= own {
                broken.push(format!(
                    "{} ({top}, layer {own}) names {module} (layer {theirs})",
                    relative.display()
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} files read under {}",
        src.display()
    );
    assert!(
        broken.is_empty(),
        "arrows across or up the layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_reader_finds_crate_paths() {
    let names = named("use crate::book::ContactBook;\nlet x = crate::hub::convert::contact(c);");
    assert_eq!(
        names,
        BTreeSet::from([String::from("book"), String::from("hub")])
    );
}
