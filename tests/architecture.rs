//! The layout of `src/` keeps its one-way data flow (README, "Development"): `config` imports
//! nothing downstream, the leaf parsers both sides share import none of the pipeline, and no
//! files import each other in a circle.
//!
//! Read from the source itself: every `use` declaration (groups expanded) and every `crate::`,
//! `super::`, `self::` or child-module path in code, with comments and string literals skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The modules downstream of `config` in the data flow.
const DOWNSTREAM: [&str; 5] = ["delivery", "element", "poller", "store", "supervisor"];

/// Pure parsers that `config` validates with and the downstream modules use.
const LEAF_MODULES: [&str; 7] = [
    "callback",
    "signing",
    "hubs",
    "ceql",
    "dates",
    "template",
    "tls_roots",
];

/// File cycles that exist today and are allowed until they are taken apart. A cycle found must
/// lie within one of these; any other cycle fails.
const KNOWN_CYCLES: [(&[&str], &str); 0] = [];

/// Far more files than `src/` will hold: the walk stops there rather than follow a link loop.
const MAX_SOURCE_FILES: usize = 2_000;

/// A module path below the crate root: `["config", "source"]` for src/config/source.rs.
type ModPath = Vec<String>;

fn shown(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// One file of the library, its comments and literals blanked (byte offsets kept).
struct SourceFile {
    path: PathBuf,
    text: String,
    code: String,
}

/// One path a file names that leads into the crate.
#[derive(Debug)]
struct Reference {
    /// Absolute, from the crate root.
    target: ModPath,
    line: usize,
}

/// An identifier, `::` or a single punctuation character, with its byte offset.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

// ---- reading the source ----

/// Every library file by module path; `src/bin/` and `src/main.rs` are other crates.
fn library_files() -> BTreeMap<ModPath, SourceFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable") {
            let path = entry.expect("src/ entry").path();
            let rel = path.strip_prefix(&src).expect("under src/").to_path_buf();
            if rel.starts_with("bin") || rel == Path::new("main.rs") {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source is UTF-8");
                let code = blank_comments_and_literals(&text);
                files.insert(module_of(&rel), SourceFile { path, text, code });
            }
            assert!(
                files.len() <= MAX_SOURCE_FILES,
                "more than {MAX_SOURCE_FILES} .rs files under src/: a link loop?"
            );
        }
    }
    assert!(files.len() > 20, "found only {} files in src/", files.len());
    files
}

/// `config/source.rs` → `config::source`; `config/mod.rs` → `config`; `lib.rs` → the root.
fn module_of(rel: &Path) -> ModPath {
    let mut parts: ModPath = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        parts.pop();
    }
    parts
}

/// The text with comments, string, byte-string, raw-string and char literals replaced by spaces
/// (newlines kept), so that only code remains and offsets still match the file.
fn blank_comments_and_literals(text: &str) -> String {
    let mut out = text.as_bytes().to_vec();
    let mut i = 0;
    while i < text.len() {
        let end = literal_or_comment_end(text, i);
        if end > i {
            for b in &mut out[i..end] {
                if *b != b'\n' {
                    *b = b' ';
                }
            }
            i = end;
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("whole characters were replaced, by ASCII")
}

/// Where the comment or literal starting at byte `i` ends, or `i` when none starts there.
fn literal_or_comment_end(text: &str, i: usize) -> usize {
    let bytes = text.as_bytes();
    let rest = &bytes[i..];
    if rest.starts_with(b"//") {
        return find(bytes, i, b"\n").unwrap_or(bytes.len());
    }
    if rest.starts_with(b"/*") {
        return block_comment_end(bytes, i);
    }
    let after_ident = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
    if let Some(end) = raw_string_end(bytes, i).filter(|_| !after_ident) {
        return end;
    }
    match rest[0] {
        b'"' => quoted_end(bytes, i, b'"'),
        b'\'' if rest.get(1) == Some(&b'\\') => quoted_end(bytes, i, b'\''),
        // `'x'` is a char literal; `'a` (a lifetime or label) does not close.
        b'\'' => match text[i + 1..].chars().next() {
            Some(c) if text[i + 1 + c.len_utf8()..].starts_with('\'') => i + c.len_utf8() + 2,
            _ => i,
        },
        _ => i,
    }
}

/// The end of `r"…"`, `r#"…"#`, `br"…"` … starting at `i`, if one starts there.
fn raw_string_end(bytes: &[u8], i: usize) -> Option<usize> {
    let rest = &bytes[i..];
    let prefix = if rest.starts_with(b"br") {
        2
    } else if rest.starts_with(b"r") {
        1
    } else {
        return None;
    };
    let hashes = rest[prefix..].iter().take_while(|&&b| b == b'#').count();
    if rest.get(prefix + hashes) != Some(&b'"') {
        return None;
    }
    let close: Vec<u8> = std::iter::once(b'"')
        .chain(std::iter::repeat_n(b'#', hashes))
        .collect();
    let body = i + prefix + hashes + 1;
    Some(find(bytes, body, &close).map_or(bytes.len(), |n| n + close.len()))
}

fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut j = start;
    while j < bytes.len() {
        if bytes[j..].starts_with(b"/*") {
            depth += 1;
            j += 2;
        } else if bytes[j..].starts_with(b"*/") {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    bytes.len()
}

/// The end of a `"…"` or `'…'` literal starting at `start`, escapes skipped.
fn quoted_end(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut j = start + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b if b == quote => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|n| from + n)
}

fn tokens(code: &str) -> Vec<(usize, Token)> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_alphabetic() || b == b'_' {
            let len = bytes[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            out.push((i, Token::Ident(code[i..i + len].to_string())));
            i += len;
        } else if bytes[i..].starts_with(b"::") {
            out.push((i, Token::PathSep));
            i += 2;
        } else if b.is_ascii_whitespace() || !b.is_ascii() {
            i += 1;
        } else {
            out.push((i, Token::Punct(char::from(b))));
            i += 1;
        }
    }
    out
}

fn is_ident(token: Option<&(usize, Token)>, name: &str) -> bool {
    matches!(token, Some((_, Token::Ident(n))) if n == name)
}

/// The paths one `use` tree names, groups expanded (`a::{b, c::d}` → `a::b`, `a::c::d`); `*`
/// and `self` leave the path at the module they follow.
fn expand_use_tree(tokens: &[(usize, Token)], prefix: &[String], out: &mut Vec<ModPath>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].1 {
            Token::Ident(name) if name == "as" => i += 1,
            // `{self, …}` names the module the group follows.
            Token::Ident(name) if name == "self" && !path.is_empty() => {}
            Token::Ident(name) => path.push(name.clone()),
            Token::PathSep | Token::Punct('*') => {}
            Token::Punct('{') => {
                let close = matching_brace(tokens, i);
                for item in split_top_level_commas(&tokens[i + 1..close]) {
                    expand_use_tree(item, &path, out);
                }
                return;
            }
            Token::Punct(_) => {}
        }
        i += 1;
    }
    out.push(path);
}

fn matching_brace(tokens: &[(usize, Token)], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, (_, token)) in tokens.iter().enumerate().skip(open) {
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

fn split_top_level_commas(tokens: &[(usize, Token)]) -> Vec<&[(usize, Token)]> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (j, (_, token)) in tokens.iter().enumerate() {
        match token {
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => depth = depth.saturating_sub(1),
            Token::Punct(',') if depth == 0 => {
                items.push(&tokens[start..j]);
                start = j + 1;
            }
            _ => {}
        }
    }
    items.push(&tokens[start..]);
    items.retain(|item| !item.is_empty());
    items
}

/// A path as written, and where it starts.
struct WrittenPath {
    offset: usize,
    segments: ModPath,
}

/// Every path in `code`: each `use` declaration's, and each `a::b…` outside them.
fn written_paths(code: &str) -> Vec<WrittenPath> {
    let tokens = tokens(code);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if is_ident(tokens.get(i), "use") {
            let end = tokens[i..]
                .iter()
                .position(|(_, t)| *t == Token::Punct(';'))
                .map_or(tokens.len(), |n| i + n);
            let mut expanded = Vec::new();
            expand_use_tree(&tokens[i + 1..end], &[], &mut expanded);
            paths.extend(expanded.into_iter().map(|segments| WrittenPath {
                offset: tokens[i].0,
                segments,
            }));
            i = end;
            continue;
        }
        let starts_path = matches!(tokens[i].1, Token::Ident(_))
            && tokens.get(i + 1).is_some_and(|(_, t)| *t == Token::PathSep)
            && (i == 0 || tokens[i - 1].1 != Token::PathSep);
        if starts_path {
            let mut segments = Vec::new();
            let mut j = i;
            while let Some((_, Token::Ident(name))) = tokens.get(j) {
                segments.push(name.clone());
                if tokens.get(j + 1).is_some_and(|(_, t)| *t == Token::PathSep) {
                    j += 2;
                } else {
                    break;
                }
            }
            paths.push(WrittenPath {
                offset: tokens[i].0,
                segments,
            });
            i = j;
        }
        i += 1;
    }
    paths
}

/// The inline `mod name { … }` blocks of `code`: a path inside one is relative to it.
fn inline_modules(code: &str) -> Vec<(Range<usize>, String)> {
    let tokens = tokens(code);
    let mut blocks = Vec::new();
    for i in 0..tokens.len() {
        if let (true, Some((_, Token::Ident(name))), Some((_, Token::Punct('{')))) = (
            is_ident(tokens.get(i), "mod"),
            tokens.get(i + 1),
            tokens.get(i + 2),
        ) {
            let close = matching_brace(&tokens, i + 2);
            let end = tokens.get(close).map_or(code.len(), |(o, _)| *o);
            blocks.push((tokens[i + 2].0..end, name.clone()));
        }
    }
    blocks
}

/// Where a written path leads from `module` (with `inline` the inline modules around it), made
/// absolute; `None` for paths into other crates, `Self`, local items.
fn resolve(
    module: &[String],
    inline: &[String],
    segments: &[String],
    files: &BTreeSet<ModPath>,
) -> Option<ModPath> {
    let mut here: ModPath = module.iter().chain(inline).cloned().collect();
    let (first, rest) = segments.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "super" | "self" => {
            let mut remaining = segments;
            while let Some((step, after)) = remaining.split_first() {
                match step.as_str() {
                    "super" => {
                        here.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                remaining = after;
            }
            here.extend_from_slice(remaining);
            Some(here)
        }
        // A child module named without `self::` (`pub use attempt::Target`).
        _ if files.contains(&[module, std::slice::from_ref(first)].concat()) => {
            Some([module, segments].concat())
        }
        _ => None,
    }
}

/// Every path of `file` into the crate, absolute.
fn references(module: &[String], file: &SourceFile, files: &BTreeSet<ModPath>) -> Vec<Reference> {
    let inline = inline_modules(&file.code);
    written_paths(&file.code)
        .into_iter()
        .filter_map(|written| {
            let around: Vec<String> = inline
                .iter()
                .filter(|(range, _)| range.contains(&written.offset))
                .map(|(_, name)| name.clone())
                .collect();
            let target = resolve(module, &around, &written.segments, files)?;
            let line = file.text[..written.offset].matches('\n').count() + 1;
            Some(Reference { target, line })
        })
        .collect()
}

/// The file a module path lives in: its longest prefix that is a file.
fn file_of<'a>(target: &[String], files: &'a BTreeSet<ModPath>) -> Option<&'a ModPath> {
    (0..=target.len())
        .rev()
        .find_map(|len| files.get(&target[..len]))
}

// ---- the graph ----

/// For each file, the other files it depends on: the files its paths lead into, except itself
/// and its own descendants. A module file assembles its children (declares, re-exports and calls
/// them) and they may use what it defines; what the rule forbids is a file depending, through
/// siblings or ancestors, on a file that depends on it.
fn file_graph(files: &BTreeMap<ModPath, SourceFile>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let names: BTreeSet<ModPath> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(module, file)| {
            let uses = references(module, file, &names)
                .into_iter()
                .filter_map(|r| file_of(&r.target, &names))
                .filter(|to| !to.starts_with(module))
                .cloned()
                .collect();
            (module.clone(), uses)
        })
        .collect()
}

/// The strongly connected components of more than one node (Tarjan).
fn cycles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<BTreeSet<ModPath>> {
    struct Search<'g> {
        graph: &'g BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'g ModPath, (usize, usize)>,
        stack: Vec<&'g ModPath>,
        found: Vec<BTreeSet<ModPath>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, node: &'g ModPath) -> usize {
            let own = self.index.len();
            self.index.insert(node, (own, own));
            self.stack.push(node);
            let mut low = own;
            for next in self.graph.get(node).into_iter().flatten() {
                let next_low = match self.index.get(next) {
                    None => self.visit(next),
                    Some(_) if self.stack.contains(&next) => self.index[next].0,
                    Some(_) => continue,
                };
                low = low.min(next_low);
            }
            self.index.insert(node, (own, low));
            if low == own {
                let at = self
                    .stack
                    .iter()
                    .position(|n| *n == node)
                    .expect("on the stack");
                let component: BTreeSet<ModPath> =
                    self.stack.drain(at..).map(|n| n.to_vec()).collect();
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
            low
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    search.found
}

/// Each reference from files under `from` into modules `forbidden` names, as `file:line: path`.
fn forbidden_references(from: &[&str], forbidden: &[&str]) -> Vec<String> {
    let files = library_files();
    let names: BTreeSet<ModPath> = files.keys().cloned().collect();
    for module in from {
        assert!(
            names.iter().any(|n| n.first().is_some_and(|f| f == module)),
            "no file of module {module} under src/"
        );
    }
    let mut found = Vec::new();
    for (module, file) in &files {
        if !module.first().is_some_and(|f| from.contains(&f.as_str())) {
            continue;
        }
        for reference in references(module, file, &names) {
            if reference
                .target
                .first()
                .is_some_and(|t| forbidden.contains(&t.as_str()))
            {
                found.push(format!(
                    "{}:{}: crate::{}",
                    file.path.display(),
                    reference.line,
                    shown(&reference.target)
                ));
            }
        }
    }
    found
}

// ---- the rules ----

#[test]
fn config_imports_nothing_downstream() {
    let found = forbidden_references(&["config"], &DOWNSTREAM);
    assert!(
        found.is_empty(),
        "config must not import {DOWNSTREAM:?} (move the parser it needs to a leaf module):\n{}",
        found.join("\n")
    );
}

#[test]
fn leaf_parsers_import_no_part_of_the_pipeline() {
    let pipeline: Vec<&str> = std::iter::once("config").chain(DOWNSTREAM).collect();
    let found = forbidden_references(&LEAF_MODULES, &pipeline);
    assert!(
        found.is_empty(),
        "the leaf modules {LEAF_MODULES:?} must not import {pipeline:?}:\n{}",
        found.join("\n")
    );
}

#[test]
fn top_level_modules_import_each_other_in_no_cycle() {
    let files = library_files();
    let names: BTreeSet<ModPath> = files.keys().cloned().collect();
    let mut graph: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &files {
        let Some(top) = module.first() else { continue };
        let node = graph.entry(vec![top.clone()]).or_default();
        for reference in references(module, file, &names) {
            match reference.target.first() {
                Some(to) if to != top && names.contains(&vec![to.clone()]) => {
                    node.insert(vec![to.clone()]);
                }
                _ => {}
            }
        }
    }
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "modules that import each other: {:?}",
        found
            .iter()
            .map(|c| c.iter().map(|m| shown(m)).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
}

#[test]
fn files_import_each_other_in_no_cycle_beyond_the_known_ones() {
    let graph = file_graph(&library_files());
    let known: Vec<BTreeSet<ModPath>> = KNOWN_CYCLES
        .iter()
        .map(|(members, _why)| {
            members
                .iter()
                .map(|m| m.split("::").map(str::to_string).collect())
                .collect()
        })
        .collect();
    let unexpected: Vec<String> = cycles(&graph)
        .into_iter()
        .filter(|cycle| !known.iter().any(|allowed| cycle.is_subset(allowed)))
        .map(|cycle| describe_cycle(&cycle, &graph))
        .collect();
    assert!(
        unexpected.is_empty(),
        "files that import each other (directly or through others):\n{}",
        unexpected.join("\n")
    );
}

fn describe_cycle(
    cycle: &BTreeSet<ModPath>,
    graph: &BTreeMap<ModPath, BTreeSet<ModPath>>,
) -> String {
    cycle
        .iter()
        .map(|from| {
            let within: Vec<String> = graph[from]
                .iter()
                .filter(|to| cycle.contains(*to))
                .map(|to| shown(to))
                .collect();
            format!("  {} -> {}", shown(from), within.join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- the reader itself ----

/// What the rules above rely on: grouped, nested, renamed and public `use`s are expanded,
/// qualified paths in code are seen, comments and literals are not.
#[test]
fn the_reader_sees_every_form_of_import_and_skips_comments_and_literals() {
    let code = blank_comments_and_literals(concat!(
        "use crate::{alpha::One, beta::{two::Two, Three as Drei}};\n",
        "pub(crate) use self::child::Item;\n",
        "use crate::config::{self, Diagnostic};\n",
        "// use crate::delivery::Hidden;\n",
        "/* crate::store::Hidden /* nested */ crate::poller */\n",
        "const A: &str = \"crate::supervisor::Hidden\";\n",
        "const B: &str = r#\"crate::element \"quoted\" \"#;\n",
        "const C: char = '\"'; fn f<'a>(x: &'a str) {}\n",
        "fn g() { crate::gamma::call(); super::super::delta::Type::new(); }\n",
        "mod tests { use super::*; }\n",
    ));
    let paths: Vec<String> = written_paths(&code)
        .into_iter()
        .map(|p| p.segments.join("::"))
        .collect();
    assert_eq!(
        paths,
        [
            "crate::alpha::One",
            "crate::beta::two::Two",
            "crate::beta::Three",
            "self::child::Item",
            "crate::config",
            "crate::config::Diagnostic",
            "crate::gamma::call",
            "super::super::delta::Type::new",
            "super",
        ]
    );
    let inline = inline_modules(&code);
    assert_eq!(inline.len(), 1);
    assert_eq!(inline[0].1, "tests");

    let files: BTreeSet<ModPath> = [
        vec!["config".into()],
        vec!["config".into(), "source".into()],
    ]
    .into_iter()
    .collect();
    let module: ModPath = vec!["config".into(), "source".into()];
    let seg = |p: &str| p.split("::").map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        resolve(&module, &[], &seg("super::diagnostics::Position"), &files),
        Some(seg("config::diagnostics::Position"))
    );
    assert_eq!(
        resolve(&module, &["tests".into()], &seg("super::Document"), &files),
        Some(seg("config::source::Document"))
    );
    assert_eq!(
        resolve(&["config".into()], &[], &seg("source::Document"), &files),
        Some(seg("config::source::Document"))
    );
    assert_eq!(resolve(&module, &[], &seg("std::fmt"), &files), None);
    assert_eq!(
        file_of(&seg("config::source::Document"), &files),
        Some(&seg("config::source"))
    );
}
