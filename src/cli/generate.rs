//! `pollerd generate` (hidden): shell completions and man pages derived from the clap definition,
//! written at packaging time so they always match the binary they ship with.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;

/// What `pollerd generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Artifact {
    /// `pollerd.1` and one page per visible subcommand (`pollerd-run.1`, …)
    Man,
    /// bash completion, installed as `/usr/share/bash-completion/completions/pollerd`
    Bash,
    /// zsh completion, installed as `_pollerd` in a directory on `$fpath`
    Zsh,
}

/// Why nothing (or not everything) was written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("cannot create the output directory {dir}: {cause}")]
    CreateDir { dir: PathBuf, cause: std::io::Error },
    #[error("cannot write the {what:?} output into {dir}: {cause}")]
    Write {
        what: Artifact,
        dir: PathBuf,
        cause: std::io::Error,
    },
}

/// Writes `what` into `out_dir` (created if missing); returns the files written.
pub fn write(what: Artifact, out_dir: &Path) -> Result<Vec<PathBuf>, GenerateError> {
    std::fs::create_dir_all(out_dir).map_err(|cause| GenerateError::CreateDir {
        dir: out_dir.to_path_buf(),
        cause,
    })?;
    let write_error = |cause| GenerateError::Write {
        what,
        dir: out_dir.to_path_buf(),
        cause,
    };
    let mut command = super::Args::command();
    match what {
        Artifact::Man => {
            let before = man_pages(out_dir).map_err(write_error)?;
            clap_mangen::generate_to(command, out_dir).map_err(write_error)?;
            let after = man_pages(out_dir).map_err(write_error)?;
            Ok(after.into_iter().filter(|p| !before.contains(p)).collect())
        }
        Artifact::Bash | Artifact::Zsh => {
            let shell = if what == Artifact::Bash {
                Shell::Bash
            } else {
                Shell::Zsh
            };
            let path = clap_complete::generate_to(shell, &mut command, "pollerd", out_dir)
                .map_err(write_error)?;
            Ok(vec![path])
        }
    }
}

/// The `*.1` files in `dir`, sorted.
fn man_pages(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

/// The command: prints each file written, one per line.
pub fn run(what: Artifact, out_dir: &Path) -> ExitCode {
    match write(what, out_dir) {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pollerd generate: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_cover_every_visible_subcommand_and_not_the_hidden_one() {
        let dir = tempfile::tempdir().unwrap();
        write(Artifact::Man, dir.path()).unwrap();
        let names: Vec<String> = man_pages(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for page in [
            "pollerd.1",
            "pollerd-run.1",
            "pollerd-check.1",
            "pollerd-status.1",
            "pollerd-dead-letters-replay.1",
        ] {
            assert!(names.contains(&page.to_string()), "{page} in {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
        let main_page = std::fs::read_to_string(dir.path().join("pollerd.1")).unwrap();
        // A man page titled pollerd(1), whose NAME line is the command's about text.
        assert!(main_page.contains("\n.TH pollerd 1 "), "{main_page}");
        assert!(
            main_page.contains("\n.SH NAME\npollerd \\- Polls REST APIs"),
            "{main_page}"
        );
        assert!(main_page.contains("\\-\\-config"), "{main_page}");
    }

    #[test]
    fn completions_name_the_subcommands_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let bash = write(Artifact::Bash, dir.path()).unwrap();
        let zsh = write(Artifact::Zsh, dir.path()).unwrap();
        assert_eq!(bash, vec![dir.path().join("pollerd.bash")]);
        assert_eq!(zsh, vec![dir.path().join("_pollerd")]);
        let bash = std::fs::read_to_string(&bash[0]).unwrap();
        assert!(bash.contains("complete -F _pollerd"), "{bash}");
        let zsh = std::fs::read_to_string(&zsh[0]).unwrap();
        assert!(zsh.starts_with("#compdef pollerd"), "{zsh}");
        for text in [&bash, &zsh] {
            for word in ["dead-letters", "status", "--config"] {
                assert!(text.contains(word), "{word} missing");
            }
        }
    }

    #[test]
    fn an_unwritable_output_directory_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let error = write(Artifact::Man, &file.join("sub")).unwrap_err();
        assert!(error.to_string().contains("not-a-dir/sub"), "{error}");
    }
}
