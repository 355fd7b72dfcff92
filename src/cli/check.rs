//! `pollerd check`: every problem in the settings and instance files, compiler style.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{self, Diagnostic, Environment, SecretSources, Settings};

pub fn run(config_path: Option<&Path>, files: &[PathBuf]) -> ExitCode {
    let env = Environment::from_process();
    let settings = match Settings::load(config_path, &env) {
        Ok(s) => s,
        Err(d) => {
            println!("{d}");
            return ExitCode::FAILURE;
        }
    };
    let files = if files.is_empty() {
        match config::list_instance_files(&settings.instances_dir) {
            Ok(f) => f,
            Err(e) => {
                let d = Diagnostic::error(
                    &settings.instances_dir,
                    None,
                    format!("cannot read the instances directory: {e}"),
                );
                println!("{d}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        files.to_vec()
    };
    let sources = SecretSources {
        credentials_dir: env.credentials_directory.clone(),
        unverified_credentials_ok: env.credentials_directory.is_none(),
    };
    let set = config::load_instances(&files, &sources);
    let (mut errors, mut warnings) = (0, 0);
    for d in set.diagnostics() {
        println!("{d}");
        if d.is_error() {
            errors += 1;
        } else {
            warnings += 1;
        }
    }
    // The environment pollerd runs in (under systemd, the unit's `Environment=`): deliveries
    // connect directly where a proxy variable cannot be followed, which a check should say.
    for problem in crate::delivery::ProxySettings::from_env().problems() {
        println!("environment: warning: {problem}");
    }
    let valid = set.specs().count();
    println!(
        "checked {} instance file(s): {valid} valid, {errors} error(s), {warnings} warning(s)",
        files.len()
    );
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
