//! The core's shape, checked from its source: no module imports one that imports it back
//! (issue 9: modules depend one way, see docs/architecture.md), and no thread-local state drives
//! the broker's effects (the read batch is a value its owner ends).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, by module path (`broker::publish`; `""` for lib.rs).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).expect("under src").with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            (parts.join("::"), path)
        })
        .collect()
}

/// The source without its `#[cfg(test)] mod tests` (tests may reach anywhere).
fn product_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("readable");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The modules `name` imports with `use crate::…`, `use super::…` or `use self::…`.
fn imports(name: &str, source: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let here: Vec<&str> = if name.is_empty() { Vec::new() } else { name.split("::").collect() };
    let is_dir_module = known.get(name).is_some_and(|p| p.ends_with("mod.rs") || p.ends_with("lib.rs"));
    let mut found = BTreeSet::new();
    for statement in source.split(';') {
        let Some(at) = statement.find("use ") else { continue };
        let path = statement[at + 4..].split_whitespace().collect::<String>();
        let (base, rest) = path.split_once("::").unwrap_or((path.as_str(), ""));
        let mut prefix: Vec<String> = match base {
            "crate" => Vec::new(),
            // `super` of a file module is its parent; of a directory module (mod.rs), its parent too.
            "super" => here[..here.len().saturating_sub(1)].iter().map(|s| s.to_string()).collect(),
            "self" if is_dir_module => here.iter().map(|s| s.to_string()).collect(),
            "self" => here[..here.len().saturating_sub(1)].iter().map(|s| s.to_string()).collect(),
            _ => continue,
        };
        let (head, group) = match rest.find('{') {
            Some(brace) => (&rest[..brace], Some(rest[brace + 1..].trim_end_matches('}'))),
            None => (rest, None),
        };
        prefix.extend(head.split("::").filter(|s| !s.is_empty()).map(str::to_owned));
        let mut candidates = vec![prefix.clone()];
        for item in group.into_iter().flat_map(|g| g.split(',')) {
            let mut full = prefix.clone();
            full.extend(item.split("::").filter(|s| !s.is_empty()).map(str::to_owned));
            candidates.push(full);
        }
        for full in candidates {
            // The longest prefix that is a module is what this statement depends on.
            if let Some(module) =
                (1..=full.len()).rev().map(|n| full[..n].join("::")).find(|m| known.contains_key(m) && m != name)
            {
                found.insert(module);
            }
        }
    }
    found
}

/// A cycle in `graph`, if any.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).expect("on the stack");
                    return Some(stack[from..].iter().cloned().chain([next.clone()]).collect());
                }
                Some(_) => {}
                None => {
                    if let Some(found) = visit(next, graph, state, stack) {
                        return Some(found);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            if let Some(found) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn no_module_of_the_core_imports_one_that_imports_it_back() {
    let modules = modules();
    assert!(modules.contains_key("broker::publish"), "the walk found the modules: {:?}", modules.keys());
    let files: BTreeMap<String, BTreeSet<String>> =
        modules.iter().map(|(name, path)| (name.clone(), imports(name, &product_source(path), &modules))).collect();
    assert!(files["broker::publish"].contains("route::read_batch"), "imports are read: {:?}", files["broker::publish"]);
    // A directory module's own file may re-export its children; that is not a cycle between
    // modules, so edges from a module to its own children are left out.
    let without_children: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .map(|(name, deps)| {
            let inside = |d: &String| !name.is_empty() && d.starts_with(&format!("{name}::"));
            (name.clone(), deps.iter().filter(|d| !inside(d)).cloned().collect())
        })
        .collect();
    if let Some(found) = cycle(&without_children) {
        panic!("files import each other: {}", found.join(" -> "));
    }
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, deps) in &without_children {
        let from = name.split("::").next().unwrap_or_default();
        for dep in deps {
            let to = dep.split("::").next().unwrap_or_default();
            if !from.is_empty() && from != to {
                top.entry(from.to_owned()).or_default().insert(to.to_owned());
            }
        }
    }
    if let Some(found) = cycle(&top) {
        panic!("top-level modules import each other: {}", found.join(" -> "));
    }
}

#[test]
fn no_thread_local_state_drives_broker_effects() {
    // The one thread-local is the index of a thread's counter shard: it spreads cache lines,
    // it does nothing.
    let allowed = ["stats"];
    for (name, path) in modules() {
        if name.ends_with("tests") {
            continue; // test modules' helpers
        }
        if product_source(&path).contains("thread_local!") {
            assert!(allowed.contains(&name.as_str()), "{name} uses thread_local!");
        }
    }
}
