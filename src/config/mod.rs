//! Files → validated specs. Raw documents are parsed first ([`source`]), then validated into
//! typed [`spec`]s; nothing past this module sees how a value was spelled.

mod deleted;
pub mod diagnostics;
mod element;
mod fields;
pub mod headers;
pub mod instance;
mod resource;
pub mod secret;
pub mod settings;
pub mod source;
pub mod spec;
pub mod tls;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use diagnostics::{Diagnostic, Severity};
pub use fields::kind as json_kind;
pub use instance::{LoadedFile, load_instance_file, load_instance_text};
pub use secret::{Secret, SecretSources};
pub use settings::{Environment, LogFormat, PollingSettings, Settings};
pub use spec::*;

/// Whether a file in the instances directory is an instance definition. Editors' and package
/// managers' leftovers (dotfiles, `*~`, `*.swp`, `*.dpkg-*`, `*.rpmnew`) are not.
pub fn is_instance_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && (name.ends_with(".json") || name.ends_with(".toml"))
}

/// The instance files of `dir`, sorted by name (so duplicates resolve the same way every time).
pub fn list_instance_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_instance_file(&path) && !path.is_dir() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Every file's result, after rejecting the second of two files that define the same name.
#[derive(Debug, Default)]
pub struct LoadedSet {
    pub files: Vec<LoadedFile>,
}

impl LoadedSet {
    pub fn specs(&self) -> impl Iterator<Item = &InstanceSpec> {
        self.files.iter().filter_map(|f| f.spec.as_ref())
    }

    pub fn diagnostics(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.diagnostics.iter())
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics().any(Diagnostic::is_error)
    }
}

/// Loads the given files, in order; a name already taken by an earlier file is an error.
pub fn load_instances(files: &[PathBuf], sources: &SecretSources) -> LoadedSet {
    let mut set = LoadedSet::default();
    let mut owners: HashMap<String, PathBuf> = HashMap::new();
    for path in files {
        let mut loaded = load_instance_file(path, sources);
        if let Some(spec) = &loaded.spec {
            if let Some(first) = owners.get(&spec.name) {
                loaded
                    .diagnostics
                    .push(duplicate_name(path, &spec.name, first));
                loaded.spec = None;
            } else {
                owners.insert(spec.name.clone(), path.clone());
            }
        }
        set.files.push(loaded);
    }
    set
}

/// The error for a second file that defines an instance name `first` already took.
pub fn duplicate_name(path: &Path, name: &str, first: &Path) -> Diagnostic {
    Diagnostic::error(
        path,
        name_position(path),
        format!(
            "instance name {name:?} is already defined by {}; this file is ignored",
            first.display()
        ),
    )
}

/// Where `name` stands in a file (the file stem is the name when it has none).
fn name_position(path: &Path) -> Option<diagnostics::Position> {
    let text = std::fs::read_to_string(path).ok()?;
    let doc = source::Document::parse(path, &text, source::Format::of_path(path)).ok()?;
    doc.value.get("name").map(|_| doc.key_position("/name"))
}
