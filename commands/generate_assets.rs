//! The hidden `kt generate-assets`: man pages and shell completions from the
//! clap definitions, so they can never drift from the parser. Run through
//! `scripts/gen-assets`; a test fails when the checked-in copies are stale.

use std::fs;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;
use kt::error::Context;

use crate::cli::{Cli, GenerateAssetsArgs};
use crate::printer::Printer;
use crate::{CommandResult, Status};

pub fn run(args: GenerateAssetsArgs, printer: &Printer) -> CommandResult {
    let man_dir = args.out_dir.join("man");
    let completions_dir = args.out_dir.join("completions");
    for dir in [&man_dir, &completions_dir] {
        fs::create_dir_all(dir).env_context(|| format!("cannot create {}", dir.display()))?;
    }
    clap_mangen::generate_to(Cli::command(), &man_dir)
        .env_context(|| format!("cannot write man pages to {}", man_dir.display()))?;
    for (shell, file) in [(Shell::Bash, "kt.bash"), (Shell::Zsh, "_kt"), (Shell::Fish, "kt.fish")] {
        write_completion(shell, &completions_dir.join(file))?;
    }
    printer.info(format!("kt: wrote {} and {}", man_dir.display(), completions_dir.display()));
    Ok(Status::Success)
}

fn write_completion(shell: Shell, path: &Path) -> kt::Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "kt", &mut buf);
    fs::write(path, buf).env_context(|| format!("cannot write {}", path.display()))
}
