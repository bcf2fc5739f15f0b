//! The source tree's shape, checked: the kernel wall names no policy module, top-level modules
//! import each other without a circle, and no source file outgrows what one module should own.
//!
//! Imports are read from the source text (`crate::module` paths, grouped `use crate::{…}`
//! included), which is how the modules name each other in this crate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file may be longer than this only if its opening comment says why, in a paragraph
/// that begins "Why this file is long:".
const LINES_MAX: usize = 400;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The top-level module a file belongs to (`sys` for `src/sys/driver.rs`, `proxy` for
/// `src/proxy.rs`); `None` for the crate root and the binary.
fn module_of(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules a file's text names through `crate::`.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::b, c};`: every top-level name in the group.
            let end = group.find("};").unwrap_or(group.len());
            let mut depth = 0;
            let mut item = String::new();
            for ch in group[..end].chars() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        found.insert(head(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            found.insert(head(&item));
        } else {
            found.insert(head(rest));
        }
    }
    found.retain(|m| !m.is_empty() && m != "self");
    found
}

fn head(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(imports(&text).into_iter().filter(|m| *m != module));
    }
    graph
}

#[test]
fn the_kernel_wall_names_no_other_module() {
    let graph = graph();
    let sys = &graph["sys"];
    assert!(
        sys.is_empty(),
        "src/sys/ must know only the kernel, but it names {sys:?}"
    );
}

#[test]
fn modules_import_each_other_without_a_circle() {
    let graph = graph();
    // Depth-first search with colours: grey on the current path, black when finished.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) {
        match state.get(node) {
            Some(true) => return,
            Some(false) => {
                let start = path.iter().position(|n| *n == node).unwrap();
                panic!("import circle: {} -> {node}", path[start..].join(" -> "));
            }
            None => {}
        }
        state.insert(node, false);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, state, path);
        }
        path.pop();
        state.insert(node, true);
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        visit(node, &graph, &mut state, &mut Vec::new());
    }
    // The checker itself must see imports, or the test could not fail.
    assert!(graph["worker"].contains("session") && graph["proxy"].contains("worker"));
}

#[test]
fn no_source_file_outgrows_one_module() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let lines = text.lines().count();
            let explained = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .any(|l| l.contains("Why this file is long:"));
            (lines > LINES_MAX && !explained).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split by what they own: {long:?}");
}

#[test]
fn the_import_reader_sees_grouped_and_nested_paths() {
    let text = "use crate::{a::b, c::{d, e}};\nuse crate::f::G;\n// crate::comment\nlet x = crate::h::i();";
    let found: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(found, ["a", "c", "f", "h"]);
}

/// Whether `text`'s code (comments aside) names the `io_uring` crate: a path through it or an
/// `extern crate`. Words that only contain it (`kernel.io_uring_disabled`) do not count.
fn names_io_uring(text: &str) -> bool {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .any(|line| {
            line.match_indices("io_uring").any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = &line[at + "io_uring".len()..];
                let word_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
                word_start
                    && (after.starts_with("::") || line[..at].trim_end().ends_with("extern crate"))
            })
        })
}

#[test]
fn only_the_kernel_wall_names_io_uring() {
    let mut files = Vec::new();
    sources(&src(), &mut files);
    let sys = src().join("sys");
    let leaks: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&sys))
        .filter(|f| names_io_uring(&std::fs::read_to_string(f).unwrap()))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        leaks.is_empty(),
        "only src/sys/ may speak io_uring; the rest goes through sys::driver: {leaks:?}"
    );
    // The reader itself must see a use of the crate, or the test could not fail.
    let driver = std::fs::read_to_string(sys.join("uring/mod.rs")).unwrap();
    assert!(names_io_uring(&driver));
}

#[test]
fn the_io_uring_reader_tells_the_crate_from_words_that_contain_it() {
    assert!(names_io_uring("use io_uring::cqueue;"));
    assert!(names_io_uring("fn f(e: &io_uring::cqueue::Entry) {}"));
    assert!(names_io_uring("extern crate io_uring;"));
    assert!(!names_io_uring("// io_uring::cqueue in a comment"));
    assert!(!names_io_uring("let v = host.io_uring_disabled;"));
    assert!(!names_io_uring("\"kernel.io_uring_disabled\""));
    assert!(!names_io_uring("use my_io_uring::x;"));
}
