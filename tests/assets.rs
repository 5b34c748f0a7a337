//! `man/` and `completions/` must be exactly what the clap definitions
//! generate. `scripts/gen-assets` (KT_REGENERATE_ASSETS=1) rewrites them.

#[allow(dead_code)]
#[path = "../commands/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

fn generate() -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let tmp = crate::harness::TestDir::new("assets");
    clap_mangen::generate_to(cli::command(), &tmp.path).unwrap();
    for entry in std::fs::read_dir(&tmp.path).unwrap() {
        let entry = entry.unwrap();
        files.insert(Path::new("man").join(entry.file_name()), std::fs::read(entry.path()).unwrap());
    }
    for (shell, name) in [(Shell::Bash, "kt.bash"), (Shell::Zsh, "_kt"), (Shell::Fish, "kt.fish")] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cli::command(), "kt", &mut buf);
        files.insert(Path::new("completions").join(name), buf);
    }
    files
}

fn checked_in(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for dir in ["man", "completions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for entry in entries.flatten() {
            files.insert(Path::new(dir).join(entry.file_name()), std::fs::read(entry.path()).unwrap());
        }
    }
    files
}

#[test]
fn are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = generate();
    if std::env::var_os("KT_REGENERATE_ASSETS").is_some() {
        for dir in ["man", "completions"] {
            let _ = std::fs::remove_dir_all(root.join(dir));
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (path, bytes) in &generated {
            std::fs::write(root.join(path), bytes).unwrap();
        }
        return;
    }
    let existing = checked_in(root);
    let all: std::collections::BTreeSet<_> = generated.keys().chain(existing.keys()).collect();
    let stale: Vec<_> = all.into_iter().filter(|p| generated.get(*p) != existing.get(*p)).collect();
    assert!(stale.is_empty(), "stale generated files {stale:?}: run scripts/gen-assets and commit the result");
}

#[test]
fn every_subcommand_has_a_man_page() {
    let generated = generate();
    let command = cli::command();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let page = PathBuf::from(format!("man/kt-{}.1", sub.get_name()));
        assert!(generated.contains_key(&page), "no {}", page.display());
    }
    assert!(generated.contains_key(Path::new("man/kt.1")));
}
