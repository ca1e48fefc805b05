//! The check that no two modules import each other, directly or through others: within each
//! Rust crate of the workspace (edges are `crate::` and `super::` paths outside
//! `#[cfg(test)]` code) and among the web UI's TypeScript modules (relative `import` and
//! `export ... from`, type-only imports included). A cycle means neither module can be
//! understood, tested or moved without the other; the fix is to move what both need
//! into a module of its own.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};
use syn::visit::Visit;

/// Module graph: module name -> the modules it imports from.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Fails with every cycle found, one per line, e.g. `kiln-store: index -> rollup -> index`.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let mut found = Vec::new();
    for (name, graph) in rust_graphs(root)?.into_iter().chain(ts_graph(root)?) {
        for cycle in cycles(&graph) {
            found.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    if !found.is_empty() {
        bail!(
            "import cycles (move what both sides use into a module of its own):\n  {}",
            found.join("\n  ")
        );
    }
    Ok(())
}

/// One graph per crate root (`<dir>/src/lib.rs`, `<dir>/src/main.rs`) of the workspace's
/// top-level package folders.
fn rust_graphs(root: &Path) -> anyhow::Result<Vec<(String, Graph)>> {
    let mut graphs = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .with_context(|| format!("cannot list {}", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("Cargo.toml").is_file() && p.join("src").is_dir())
        .filter(|p| !p.ends_with("third_party"))
        .collect();
    dirs.sort();
    for dir in dirs {
        let pkg = dir.file_name().unwrap_or_default().to_string_lossy();
        for root_file in ["lib.rs", "main.rs"] {
            let file = dir.join("src").join(root_file);
            if file.is_file() {
                let name = format!("{pkg} ({root_file})");
                graphs.push((name, rust_graph(&file)?));
            }
        }
    }
    Ok(graphs)
}

/// A module of a crate: its path (`["agent", "window"]`, empty for the root) and its file.
struct RustModule {
    path: Vec<String>,
    file: PathBuf,
    /// Whether its child modules live in the file's own folder (`lib.rs`, `mod.rs`).
    owns_dir: bool,
}

/// The module graph of the crate whose root is `root_file`: the modules reachable by
/// `mod name;` declarations (test-only ones excluded), each with the modules its paths name.
fn rust_graph(root_file: &Path) -> anyhow::Result<Graph> {
    let mut modules = Vec::new();
    let mut queue = VecDeque::from([RustModule {
        path: Vec::new(),
        file: root_file.to_path_buf(),
        owns_dir: true,
    }]);
    let mut parsed = Vec::new();
    while let Some(m) = queue.pop_front() {
        let text = std::fs::read_to_string(&m.file)
            .with_context(|| format!("cannot read {}", m.file.display()))?;
        let ast =
            syn::parse_file(&text).with_context(|| format!("cannot parse {}", m.file.display()))?;
        let dir = if m.owns_dir {
            m.file.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            m.file.with_extension("")
        };
        for item in &ast.items {
            let syn::Item::Mod(decl) = item else { continue };
            if decl.content.is_some() || is_test_only(&decl.attrs) {
                continue;
            }
            let name = decl.ident.to_string();
            let mut path = m.path.clone();
            path.push(name.clone());
            let (file, owns_dir) = match path_attr(&decl.attrs) {
                Some(p) => (dir.join(p), true),
                None if dir.join(format!("{name}.rs")).is_file() => {
                    (dir.join(format!("{name}.rs")), false)
                }
                None => (dir.join(&name).join("mod.rs"), true),
            };
            queue.push_back(RustModule {
                path,
                file,
                owns_dir,
            });
        }
        parsed.push((m.path.clone(), ast));
        modules.push(m.path);
    }
    let known: BTreeSet<Vec<String>> = modules.into_iter().collect();
    let mut graph = Graph::new();
    for (path, ast) in parsed {
        let mut paths = PathCollector::default();
        paths.visit_file(&ast);
        let from = module_name(&path);
        let edges = graph.entry(from.clone()).or_default();
        for p in paths.found {
            if let Some(target) = resolve(&path, &p, &known) {
                let to = module_name(&target);
                if to != from {
                    edges.insert(to);
                }
            }
        }
    }
    Ok(graph)
}

fn module_name(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

/// The module a `crate::`/`super::` path names: its longest prefix that is a module.
fn resolve(
    from: &[String],
    segments: &[String],
    known: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let (mut base, rest) = match segments.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &segments[1..]),
        Some("super") => {
            let mut base = from.to_vec();
            let mut rest = segments;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop()?;
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None,
    };
    let mut best = base.clone();
    for s in rest {
        base.push(s.clone());
        if known.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.parse_args::<syn::Meta>()
                .is_ok_and(|m| m.path().is_ident("test"))
    })
}

fn path_attr(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// Every `crate::...` and `super::...` path of a file (in `use` trees, types, expressions),
/// skipping items marked `#[cfg(test)]`.
#[derive(Default)]
struct PathCollector {
    found: Vec<Vec<String>>,
}

impl PathCollector {
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
                self.found.push(full);
            }
            syn::UseTree::Rename(r) => {
                let mut full = prefix.clone();
                if r.ident != "self" {
                    full.push(r.ident.to_string());
                }
                self.found.push(full);
            }
            syn::UseTree::Glob(_) => self.found.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = match item {
            syn::Item::Fn(i) => &i.attrs,
            syn::Item::Mod(i) => &i.attrs,
            syn::Item::Use(i) => &i.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Const(i) => &i.attrs,
            syn::Item::Static(i) => &i.attrs,
            syn::Item::Struct(i) => &i.attrs,
            syn::Item::Enum(i) => &i.attrs,
            syn::Item::Trait(i) => &i.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(
            segments.first().map(String::as_str),
            Some("crate" | "super")
        ) {
            self.found.push(segments);
        }
        syn::visit::visit_path(self, path);
    }
}

/// The web UI's module graph (`ui/src`), keyed by path relative to `ui/src`.
fn ts_graph(root: &Path) -> anyhow::Result<Option<(String, Graph)>> {
    let src = root.join("ui/src");
    if !src.is_dir() {
        return Ok(None);
    }
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "ts") {
                files.push(p);
            }
        }
    }
    let name = |p: &Path| p.strip_prefix(&src).unwrap_or(p).display().to_string();
    let mut graph = Graph::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        let edges = graph.entry(name(f)).or_default();
        for spec in relative_imports(&text) {
            if let Some(target) = resolve_ts(f.parent().unwrap_or(&src), &spec) {
                edges.insert(name(&target));
            }
        }
    }
    Ok(Some(("ui".into(), graph)))
}

/// The relative module specifiers of `import ... from './x'`, `export ... from './x'`,
/// `import './x'` and `import('./x')`. Line by line, a quote counts only right after `from`
/// or `import`, so apostrophes in comments do not pair up with quotes of real imports.
fn relative_imports(text: &str) -> Vec<String> {
    let mut specs = Vec::new();
    for line in text.lines() {
        for (at, q) in line.match_indices(['\'', '"']) {
            let before = line[..at].trim_end();
            let before = before
                .strip_suffix('(')
                .map(str::trim_end)
                .unwrap_or(before);
            let keyword = ["from", "import"].into_iter().any(|k| {
                before.strip_suffix(k).is_some_and(|rest| {
                    !rest.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$')
                })
            });
            let rest = &line[at + 1..];
            if let (true, Some(len)) = (keyword, rest.find(q)) {
                if rest.starts_with('.') {
                    specs.push(rest[..len].to_string());
                }
            }
        }
    }
    specs
}

fn resolve_ts(dir: &Path, spec: &str) -> Option<PathBuf> {
    let mut p = PathBuf::new();
    for c in dir.join(spec).components() {
        match c {
            Component::ParentDir => {
                p.pop();
            }
            Component::CurDir => {}
            c => p.push(c),
        }
    }
    let s = p.to_string_lossy();
    let stem = s.strip_suffix(".js").unwrap_or(&s);
    [
        format!("{stem}.ts"),
        stem.to_string(),
        format!("{stem}/index.ts"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|c| c.is_file() && c.extension().is_some_and(|x| x == "ts"))
}

/// One shortest cycle per strongly connected component of more than one module.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        if done.contains(start) {
            continue;
        }
        if let Some(cycle) = shortest_cycle(graph, start) {
            done.extend(cycle.iter().cloned());
            out.push(cycle);
        }
    }
    out
}

/// The shortest path from `start` back to itself, if any (breadth-first).
fn shortest_cycle(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                let mut path = vec![start.to_string(), node.to_string()];
                let mut at = node;
                while at != start {
                    at = prev[at];
                    path.push(at.to_string());
                }
                path.reverse();
                return Some(path);
            }
            if !prev.contains_key(next.as_str()) {
                prev.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    #[test]
    fn the_workspace_has_no_import_cycles() {
        check(&crate::root()).unwrap();
    }

    #[test]
    fn finds_a_rust_cycle_through_crate_and_super_paths() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("lib.rs", "mod a; mod b; mod c;"),
                ("a.rs", "use crate::b::{self, X};"),
                ("b/mod.rs", "mod inner; pub struct X;"),
                ("b/inner.rs", "fn f() -> super::super::c::Y { todo!() }"),
                ("c.rs", "pub struct Y; fn g() { crate::a::h(); }"),
            ],
        );
        let g = rust_graph(&dir.path().join("lib.rs")).unwrap();
        assert_eq!(g["a"], BTreeSet::from(["b".to_string()]));
        assert_eq!(g["b::inner"], BTreeSet::from(["c".to_string()]));
        // a -> b only; no cycle yet: b itself does not import c.
        assert!(cycles(&g).is_empty(), "{:?}", cycles(&g));

        write(
            dir.path(),
            &[("b/mod.rs", "mod inner; pub use crate::c::Y as X;")],
        );
        let g = rust_graph(&dir.path().join("lib.rs")).unwrap();
        assert_eq!(cycles(&g), vec![vec!["a", "b", "c", "a"]]);
    }

    #[test]
    fn test_only_code_and_doc_links_are_not_imports() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("lib.rs", "mod a; mod b; #[cfg(test)] mod tests;"),
                (
                    "a.rs",
                    "/// See [`crate::b`].\npub fn f() { crate::b::g() }",
                ),
                (
                    "b.rs",
                    "pub fn g() {}\n#[cfg(test)]\nmod t { use crate::a::f; }",
                ),
                ("tests.rs", "use crate::a::f;"),
            ],
        );
        let g = rust_graph(&dir.path().join("lib.rs")).unwrap();
        assert!(cycles(&g).is_empty(), "{g:?}");
        assert!(!g.contains_key("tests"));
    }

    #[test]
    fn finds_a_typescript_cycle_through_type_imports() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "ui/src/ui/debug.ts",
                    "// the graph's nodes\nimport type { Graph } from './flamegraph'; // it's typed",
                ),
                (
                    "ui/src/ui/flamegraph.ts",
                    "import {\n  x,\n} from \"../lib/x\";\nexport { y } from './debug';",
                ),
                ("ui/src/lib/x.ts", "export const x = import('../ui/lazy.js');"),
                ("ui/src/ui/lazy.ts", ""),
            ],
        );
        let (_, g) = ts_graph(dir.path()).unwrap().unwrap();
        assert_eq!(
            g["ui/flamegraph.ts"],
            BTreeSet::from(["lib/x.ts".to_string(), "ui/debug.ts".to_string()])
        );
        assert_eq!(g["lib/x.ts"], BTreeSet::from(["ui/lazy.ts".to_string()]));
        assert_eq!(
            cycles(&g),
            vec![vec!["ui/debug.ts", "ui/flamegraph.ts", "ui/debug.ts"]]
        );
        let err = format!("{:#}", check(dir.path()).unwrap_err());
        assert!(
            err.contains("ui: ui/debug.ts -> ui/flamegraph.ts -> ui/debug.ts"),
            "{err}"
        );
    }
}
