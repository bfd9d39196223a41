//! Every reference in the repository resolves inside it.
//!
//! Walks the repository (skipping `target`, `.git` and `fuzz/target`) and reads every
//! `.rs`, `.md`, `.toml`, `.yaml`, `.yml` and `.sh` file (plus `.ci/run`). It fails, listing
//! `file:line`, on:
//!
//! - a citation of `COMPATIBILITY.md#anchor` or `DECISIONS.md#anchor` whose anchor is not a
//!   heading (GitHub-style slug) or an explicit `<a id="...">` of that file;
//! - a decision token (`D` and one or two digits, as a whole word) with no record in
//!   `docs/DECISIONS.md` (outside that file);
//! - a reference to a document that is not in the repository: a numbered section of the
//!   upstream specification, or upstream's design and build notes (outside
//!   `docs/COMPATIBILITY.md` and `docs/DECISIONS.md`);
//! - a relative markdown link in a `.md` file to a file that does not exist, or to an
//!   anchor that file does not have.
//!
//! Pure string scanning, no network. The scanner itself is tested on planted input (which
//! is why this file is not scanned).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The documents whose anchors are cited from everywhere.
const CITED_DOCS: [&str; 2] = ["docs/COMPATIBILITY.md", "docs/DECISIONS.md"];

/// File extensions that are scanned.
const EXTENSIONS: [&str; 6] = ["rs", "md", "toml", "yaml", "yml", "sh"];

/// Directories (relative to the root) never entered.
const SKIPPED_DIRS: [&str; 3] = ["target", ".git", "fuzz/target"];

/// Names of documents that live only outside the repository.
const OUTSIDE_DOCUMENTS: [&str; 2] = ["DESIGN.md", "BUILD-NOTES"];

/// This file: its planted bad references are not scanned.
const THIS_FILE: &str = "tests/tests/doc_references.rs";

/// GitHub's anchor for a heading text: lower case, spaces to `-`, punctuation other than
/// `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a markdown text defines: heading slugs (numbered `-1`, `-2` when repeated,
/// as GitHub does) and explicit `<a id="...">` / `<a name="...">`. Lines inside code
/// fences are not headings.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut fence = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            fence = !fence;
            continue;
        }
        if fence {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('#') {
            let text = rest.trim_start_matches('#');
            if text.starts_with(' ') {
                let base = slug(text);
                let n = seen.entry(base.clone()).or_insert(0);
                out.insert(if *n == 0 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                });
                *n += 1;
            }
        }
        for key in ["<a id=\"", "<a name=\""] {
            let mut from = 0;
            while let Some(at) = line[from..].find(key) {
                let start = from + at + key.len();
                if let Some(len) = line[start..].find('"') {
                    out.insert(line[start..start + len].to_owned());
                }
                from = start;
            }
        }
    }
    out
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The anchor characters at the start of `s`.
fn anchor_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Decision numbers used as whole-word tokens `D<n>` in `line`.
fn decision_tokens(line: &str) -> Vec<u32> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    for (i, _) in line.match_indices('D') {
        if i > 0 && is_word_char(bytes[i - 1] as char) {
            continue;
        }
        let digits: String = line[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.is_empty() || digits.len() > 2 {
            continue;
        }
        let after = line[i + 1 + digits.len()..].chars().next();
        if after.is_some_and(is_word_char) {
            continue;
        }
        if let Ok(n) = digits.parse() {
            out.push(n);
        }
    }
    out
}

/// True when `line` cites a numbered section of the upstream specification
/// (`spec 8.7`, `spec section 19`, any case).
fn cites_spec_section(line: &str) -> bool {
    let lower = line.to_lowercase();
    let bytes = lower.as_bytes();
    lower.match_indices("spec").any(|(i, _)| {
        if i > 0 && is_word_char(bytes[i - 1] as char) {
            return false;
        }
        let mut rest = lower[i + 4..].trim_start();
        let section = rest.starts_with("section");
        if section {
            rest = rest["section".len()..].trim_start_matches('s').trim_start();
        }
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let dotted = rest[digits..].starts_with('.')
            && rest[digits + 1..].starts_with(|c: char| c.is_ascii_digit());
        digits > 0 && (section || dotted)
    })
}

/// The targets of markdown links `](target)` on a line, outside inline code.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_code = false;
    let mut i = 0;
    let bytes = line.as_bytes();
    while i < bytes.len() {
        match bytes[i] {
            b'`' => in_code = !in_code,
            b']' if !in_code && bytes.get(i + 1) == Some(&b'(') => {
                if let Some(len) = line[i + 2..].find(')') {
                    let target = line[i + 2..i + 2 + len].split_whitespace().next();
                    out.extend(target);
                    i += 2 + len;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Checks `files` (path relative to the root, content). `exists` tells whether a relative
/// path names a file or directory of the repository. Returns one message per problem.
fn check(files: &[(String, String)], exists: &dyn Fn(&Path) -> bool) -> Vec<String> {
    let contents: BTreeMap<&str, &str> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let md_anchors: BTreeMap<&str, BTreeSet<String>> = files
        .iter()
        .filter(|(p, _)| p.ends_with(".md"))
        .map(|(p, c)| (p.as_str(), anchors(c)))
        .collect();
    let empty = BTreeSet::new();
    let cited: Vec<(&str, &BTreeSet<String>)> = CITED_DOCS
        .iter()
        .map(|doc| {
            let name = doc.rsplit('/').next().unwrap_or(doc);
            (name, md_anchors.get(doc).unwrap_or(&empty))
        })
        .collect();
    let decisions: BTreeSet<u32> = md_anchors
        .get("docs/DECISIONS.md")
        .unwrap_or(&empty)
        .iter()
        .filter_map(|a| a.strip_prefix('d')?.parse().ok())
        .collect();

    let mut problems = Vec::new();
    for (path, content) in files {
        let is_cited_doc = CITED_DOCS.contains(&path.as_str());
        let is_md = path.ends_with(".md");
        let mut fence = false;
        for (n, line) in content.lines().enumerate() {
            let at = format!("{path}:{}", n + 1);
            // (a) citations of the two documents' anchors.
            for (name, set) in &cited {
                let needle = format!("{name}#");
                for (i, _) in line.match_indices(&needle) {
                    let anchor = anchor_at(&line[i + needle.len()..]);
                    if !set.contains(anchor) {
                        problems.push(format!(
                            "{at}: `{name}#{anchor}` is not an anchor of {name}"
                        ));
                    }
                }
            }
            // (b) decision tokens without a record.
            if path != "docs/DECISIONS.md" {
                for d in decision_tokens(line) {
                    if !decisions.contains(&d) {
                        problems.push(format!(
                            "{at}: decision D{d} has no record in docs/DECISIONS.md"
                        ));
                    }
                }
            }
            // (c) documents that are not in the repository.
            if !is_cited_doc {
                if cites_spec_section(line) {
                    problems.push(format!(
                        "{at}: cites a section of the upstream specification; cite docs/COMPATIBILITY.md#<anchor>"
                    ));
                }
                for doc in OUTSIDE_DOCUMENTS {
                    if line.contains(doc) {
                        problems.push(format!(
                            "{at}: refers to {doc}, which is not in the repository"
                        ));
                    }
                }
            }
            // (d) relative markdown links.
            if is_md {
                if line.trim_start().starts_with("```") {
                    fence = !fence;
                    continue;
                }
                if fence {
                    continue;
                }
                for target in link_targets(line) {
                    if target.contains("://") || target.starts_with("mailto:") {
                        continue;
                    }
                    let (file, anchor) = match target.split_once('#') {
                        Some((f, a)) => (f, Some(a)),
                        None => (target, None),
                    };
                    let resolved = if file.is_empty() {
                        PathBuf::from(path)
                    } else {
                        normalise(&Path::new(path).parent().unwrap_or(Path::new("")).join(file))
                    };
                    if !exists(&resolved) {
                        problems.push(format!("{at}: link to `{target}`: no such file"));
                        continue;
                    }
                    let key = resolved.to_string_lossy().into_owned();
                    if let (Some(anchor), Some(_)) = (anchor, contents.get(key.as_str())) {
                        let set = md_anchors.get(key.as_str()).unwrap_or(&empty);
                        if key.ends_with(".md") && !set.contains(anchor) {
                            problems.push(format!("{at}: link to `{target}`: no such anchor"));
                        }
                    }
                }
            }
        }
    }
    problems
}

/// `a/b/../c` -> `a/c`, dropping `.`; a path leaving the root keeps its `..`.
fn normalise(path: &Path) -> PathBuf {
    let mut out: Vec<String> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                if out.last().is_some_and(|p| p != "..") {
                    out.pop();
                } else {
                    out.push("..".into());
                }
            }
            other => out.push(other.as_os_str().to_string_lossy().into_owned()),
        }
    }
    out.iter().collect()
}

/// Every scanned file under `root`, as (path relative to `root` with `/`, content).
fn repository_files(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&rel.as_str()) {
                    dirs.push(path);
                }
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !(EXTENSIONS.contains(&ext) || rel == ".ci/run") || rel == THIS_FILE {
                continue;
            }
            // Non-UTF-8 files (none today) are not documentation.
            if let Ok(content) = std::fs::read_to_string(&path) {
                out.push((rel, content));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_reference_resolves_inside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
        .to_path_buf();
    let files = repository_files(&root);
    assert!(
        files.iter().any(|(p, _)| p == "docs/COMPATIBILITY.md")
            && files.iter().any(|(p, _)| p == "docs/DECISIONS.md"),
        "docs/COMPATIBILITY.md and docs/DECISIONS.md must exist"
    );
    let problems = check(&files, &|p: &Path| root.join(p).exists());
    assert!(
        problems.is_empty(),
        "{} unresolved reference(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_check_reports_each_kind_of_bad_reference() {
    let files = vec![
        (
            "docs/COMPATIBILITY.md".to_owned(),
            "# Compatibility\n\n## Deploy\n\n### Processing pools: acquire\n\n```\n# not a heading\n```\n\nSee [D1](DECISIONS.md#d1) and [gone](DECISIONS.md#d9).\n".to_owned(),
        ),
        (
            "docs/DECISIONS.md".to_owned(),
            "# Decisions\n\n<a id=\"d1\"></a>\n## D1: Enum spelling\n\nSee [Deploy](COMPATIBILITY.md#deploy).\n".to_owned(),
        ),
        (
            "src/lib.rs".to_owned(),
            [
                "//! Fine: docs/COMPATIBILITY.md#deploy step 8b, docs/COMPATIBILITY.md#processing-pools-acquire, D1 (docs/DECISIONS.md#d1).",
                "//! Bad anchor: docs/COMPATIBILITY.md#teardown, docs/DECISIONS.md#d2.",
                "//! Bad decision: D7. Not decisions: D1x, xD7, D123, MD5.",
                "//! Outside: spec 8.7 step 8b, Spec section 4.2, see DESIGN.md and BUILD-NOTES.",
                "//! Not the spec: spec 8 in words, the pod spec.",
            ]
            .join("\n"),
        ),
        (
            "README.md".to_owned(),
            "[ok](docs/DECISIONS.md#d1) [missing](docs/NOPE.md) [anchor](docs/COMPATIBILITY.md#nope) [web](https://example.com/x.md) `[code](nowhere.md)`\n".to_owned(),
        ),
    ];
    let known: BTreeSet<PathBuf> = files.iter().map(|(p, _)| PathBuf::from(p)).collect();
    let problems = check(&files, &|p: &Path| known.contains(p));
    let text = problems.join("\n");
    let expect = [
        "docs/COMPATIBILITY.md:11: `DECISIONS.md#d9` is not an anchor",
        "docs/COMPATIBILITY.md:11: link to `DECISIONS.md#d9`: no such anchor",
        "src/lib.rs:2: `COMPATIBILITY.md#teardown` is not an anchor",
        "src/lib.rs:2: `DECISIONS.md#d2` is not an anchor",
        "src/lib.rs:3: decision D7 has no record",
        "src/lib.rs:4: cites a section of the upstream specification",
        "src/lib.rs:4: refers to DESIGN.md",
        "src/lib.rs:4: refers to BUILD-NOTES",
        "README.md:1: link to `docs/NOPE.md`: no such file",
        "README.md:1: link to `docs/COMPATIBILITY.md#nope`: no such anchor",
    ];
    for e in expect {
        assert!(text.contains(e), "expected `{e}` in:\n{text}");
    }
    // Nothing else: the fine references, the non-decisions, `spec 8` in words, the code
    // span and the web link pass. (`#nope` is reported twice: as a citation and a link.)
    assert_eq!(problems.len(), expect.len() + 1, "{text}");
    assert!(
        text.contains("README.md:1: `COMPATIBILITY.md#nope` is not an anchor"),
        "{text}"
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(slug("Deploy"), "deploy");
    assert_eq!(
        slug("Processing pools: acquire"),
        "processing-pools-acquire"
    );
    assert_eq!(
        slug("D7: Validate before tearing anything down"),
        "d7-validate-before-tearing-anything-down"
    );
    assert_eq!(slug("Should-restart rule"), "should-restart-rule");
    let a = anchors("## Status\n\n## Status\n\n<a id=\"d7\"></a>\n");
    assert_eq!(
        a,
        ["d7", "status", "status-1"]
            .map(String::from)
            .into_iter()
            .collect()
    );
}
