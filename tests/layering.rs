//! The shape of `src/`: imports go one way.
//!
//! Every top-level module has a rank; a module may use only modules of a
//! lower rank (vocabulary at the bottom, the stages above it in the order
//! a request meets them, the wiring at the top). Within the crate, no two
//! files may reach each other through their imports: the file graph has
//! no cycle. Both are read from the source with `syn`, following `use`
//! trees and qualified paths (`crate::`, `super::`, `self::`, child
//! modules); test-only code (`#[cfg(test)]`) is left out.
//!
//! When a module moves or a new one appears, this table changes with it,
//! and ARCHITECTURE.md with the table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use syn::visit::Visit;

/// Top-level modules from the bottom up. A module may import those of a
/// lower rank only; modules of equal rank stand beside each other and may
/// not import each other.
const RANKS: &[(&str, u32)] = &[
    // The ground floor: shared words, the span and its context, config.
    ("vocab", 0),
    ("trace", 1),
    ("config", 2),
    ("drain", 2),
    // Giving the allocator's free memory back: process-wide, path-blind.
    ("memory", 2),
    // The one way sidetrace serves its own HTTP (admin, webhook).
    ("web", 2),
    // The web UI's embedded files: a router that knows nothing of spans.
    ("ui", 2),
    // Beside the path: injection into Kubernetes reads only the ground floor.
    ("k8s", 3),
    // What finished requests feed; the readers of what stages publish.
    ("metrics", 3),
    ("export", 4),
    ("access_log", 4),
    // The request path, from its last stage up to its first.
    ("record", 5),
    ("dial", 5),
    ("http", 6),
    ("listen", 7),
    // Wiring and front doors.
    ("workers", 8),
    ("admin", 8),
    // `sidetrace collector`: receivers, store, query API; it forwards through
    // `export` and serves through `web`. Only `main.rs` uses it.
    ("collector", 8),
    // The crate root (`Sidecar`) wires everything.
    ("crate", 9),
    // The demo runs sidecars.
    ("demo", 10),
];

/// One source file: its module path and what it refers to.
struct File {
    path: PathBuf,
    module: Vec<String>,
    /// Child modules it declares (`mod x;`), which bare paths may name.
    children: BTreeSet<String>,
    refs: Vec<Vec<String>>,
}

fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    let mut m = vec!["crate".to_string()];
    m.extend(parts);
    m
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") && p.file_name().is_some_and(|n| n != "main.rs") {
            out.push(p);
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.meta.require_list().is_ok_and(|l| l.tokens.to_string().contains("test")))
}

/// Collects `use` trees and paths, skipping test-only items.
#[derive(Default)]
struct Refs {
    paths: Vec<Vec<String>>,
    children: BTreeSet<String>,
}

impl Refs {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut full = prefix.clone();
                if n.ident != "self" {
                    full.push(n.ident.to_string());
                }
                self.paths.push(full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                full.push(r.ident.to_string());
                self.paths.push(full);
            }
            syn::UseTree::Glob(_) => self.paths.push(prefix.clone()),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t)),
        }
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if is_test_only(attrs) {
            return;
        }
        match item {
            syn::Item::Use(u) => self.use_tree(&mut Vec::new(), &u.tree),
            syn::Item::Mod(m) if m.content.is_none() => {
                self.children.insert(m.ident.to_string());
            }
            _ => syn::visit::visit_item(self, item),
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.paths.push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }
}

fn read_files(src: &Path) -> Vec<File> {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let mut refs = Refs::default();
            refs.visit_file(&ast);
            File { module: module_of(src, &path), path, children: refs.children, refs: refs.paths }
        })
        .collect()
}

/// The module a path names, made absolute (`crate::...`), or `None` for
/// paths outside the crate. A lone name is a local item or variable, not
/// a module, and is left out.
fn absolute(file: &File, path: &[String]) -> Option<Vec<String>> {
    if path.len() < 2 {
        return None;
    }
    let mut module = file.module.clone();
    let mut rest = path;
    match path[0].as_str() {
        "crate" => {
            module = vec!["crate".to_string()];
            rest = &path[1..];
        }
        "self" => rest = &path[1..],
        "super" => {
            while rest.first().is_some_and(|s| s == "super") {
                module.pop();
                rest = &rest[1..];
            }
        }
        child if file.children.contains(child) => {}
        _ => return None,
    }
    module.extend(rest.iter().cloned());
    Some(module)
}

/// The file that defines the longest known module prefix of `module`.
fn resolve<'a>(modules: &'a BTreeMap<Vec<String>, usize>, module: &[String]) -> Option<&'a usize> {
    (1..=module.len()).rev().find_map(|n| modules.get(&module[..n]))
}

fn rank(top: &str) -> u32 {
    RANKS
        .iter()
        .find(|(m, _)| *m == top)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| panic!("src/{top} has no rank in tests/layering.rs RANKS: give it one"))
}

/// `crate::a::b` → `a`; the root itself → `crate`.
fn top(module: &[String]) -> &str {
    module.get(1).map_or("crate", String::as_str)
}

/// Edges between files, each with the path that makes it.
fn edges(files: &[File]) -> BTreeMap<(usize, usize), String> {
    let modules: BTreeMap<Vec<String>, usize> = files.iter().enumerate().map(|(i, f)| (f.module.clone(), i)).collect();
    let mut out = BTreeMap::new();
    for (i, f) in files.iter().enumerate() {
        for p in &f.refs {
            let Some(abs) = absolute(f, p) else { continue };
            let Some(&j) = resolve(&modules, &abs) else { continue };
            if i != j {
                out.entry((i, j)).or_insert_with(|| abs.join("::"));
            }
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn modules_import_only_what_lies_below_them() {
    let files = read_files(&src());
    let mut wrong = Vec::new();
    for ((i, j), via) in edges(&files) {
        let (a, b) = (top(&files[i].module), top(&files[j].module));
        if a != b && rank(a) <= rank(b) {
            wrong.push(format!("{} uses {via} ({a} may not import {b})", files[i].path.display()));
        }
    }
    assert!(wrong.is_empty(), "imports that go up or sideways:\n  {}", wrong.join("\n  "));
}

#[test]
fn no_two_files_import_each_other() {
    let files = read_files(&src());
    let edges = edges(&files);
    let mut next: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(i, j) in edges.keys() {
        next.entry(i).or_default().push(j);
    }
    let cycles = strongly_connected(files.len(), &next);
    let shown: Vec<String> = cycles
        .iter()
        .map(|c| {
            let mut names: Vec<String> = c.iter().map(|&i| files[i].path.display().to_string()).collect();
            names.sort();
            let via: Vec<String> = edges
                .iter()
                .filter(|((a, b), _)| c.contains(a) && c.contains(b))
                .map(|((a, _), p)| format!("{} uses {p}", files[*a].path.display()))
                .collect();
            format!("{}\n      {}", names.join(" <-> "), via.join("\n      "))
        })
        .collect();
    assert!(shown.is_empty(), "files that reach each other through imports:\n  {}", shown.join("\n  "));
}

/// Tarjan's algorithm: the components with more than one file.
fn strongly_connected(n: usize, next: &BTreeMap<usize, Vec<usize>>) -> Vec<Vec<usize>> {
    struct State<'a> {
        next: &'a BTreeMap<usize, Vec<usize>>,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        counter: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        s.index[v] = Some(s.counter);
        s.low[v] = s.counter;
        s.counter += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in s.next.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on_stack[w] => s.low[v] = s.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        next,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        counter: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_checker_sees_what_it_checks() {
    // The rules are only as good as the reading: a few known facts of the
    // tree must show up, or the checker has gone blind.
    let files = read_files(&src());
    let edges = edges(&files);
    let has =
        |from: &str, to: &str| edges.keys().any(|&(i, j)| files[i].path.ends_with(from) && files[j].path.ends_with(to));
    assert!(has("http/record_layer.rs", "record/mod.rs"));
    assert!(has("listen/mod.rs", "http/mod.rs"));
    assert!(has("export/otlp_wire.rs", "trace/semconv.rs"));
    assert!(has("lib.rs", "workers.rs"));
}
