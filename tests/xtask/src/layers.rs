//! Modules depend downward only: within each crate, no file's imports lead back to itself.
//! `cargo xtask layers` prints each crate's import circles (none, when the code is in order);
//! a unit test keeps it so.
//!
//! A module's dependencies are the paths its code names through `crate::`, `super::` or
//! `self::`, and its non-`pub` `use` of its own submodules. A `pub use` is the module's facade
//! (what it offers), not something its code relies on, so it is not counted; nor are test
//! modules.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// Every crate's `src` folder, relative to the workspace root.
pub const CRATES: &[&str] = &[
    "programs/balance-payment/src",
    "indexer/ledger/src",
    "indexer/common/src",
    "indexer/localnet/src",
    "indexer/src",
    "proxy/src",
    "proxy/sandbox/src",
    "tests/xtask/src",
];

type Module = Vec<String>;

/// The import circles of the crate whose sources are in `src`, each as its modules' names.
pub fn circles(src: &Path) -> Vec<Vec<String>> {
    let modules = modules(src);
    let graph: BTreeMap<&Module, BTreeSet<Module>> = modules
        .iter()
        .map(|(module, file)| {
            let code = code_of(&std::fs::read_to_string(file).unwrap_or_default());
            (module, dependencies(module, file, &code, &modules))
        })
        .collect();
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    for start in graph.keys() {
        if seen.contains(*start) {
            continue;
        }
        let group: BTreeSet<&Module> = graph
            .keys()
            .copied()
            .filter(|other| reaches(&graph, start, other) && reaches(&graph, other, start))
            .collect();
        seen.extend(group.iter().map(|m| (*m).clone()));
        if group.len() > 1 {
            found.push(group.iter().map(|m| name(m)).collect());
        }
    }
    found
}

/// Prints each crate's circles; `Err` when there is one.
pub fn report(root: &Path) -> Result<(), String> {
    let mut any = false;
    for krate in CRATES {
        for circle in circles(&root.join(krate)) {
            any = true;
            println!("{krate}: {}", circle.join(" ↔ "));
        }
    }
    match any {
        true => Err("modules import each other in a circle (above)".into()),
        false => Ok(()),
    }
}

/// Whether `to` can be reached from `from` by following imports (at least one).
fn reaches(graph: &BTreeMap<&Module, BTreeSet<Module>>, from: &Module, to: &Module) -> bool {
    let (mut stack, mut seen) = (vec![from.clone()], BTreeSet::new());
    while let Some(module) = stack.pop() {
        for next in graph.get(&module).into_iter().flatten() {
            if next == to {
                return true;
            }
            if seen.insert(next.clone()) {
                stack.push(next.clone());
            }
        }
    }
    false
}

fn name(module: &Module) -> String {
    match module.is_empty() {
        true => "lib".into(),
        false => module.join("::"),
    }
}

/// Each module of the crate and its file (`bin/` left out: binaries are not imported).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    folders.push(path);
                }
                continue;
            }
            let Ok(relative) = path
                .with_extension("")
                .strip_prefix(src)
                .map(Path::to_path_buf)
            else {
                continue;
            };
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("lib" | "main" | "mod")
            ) {
                module.pop();
            }
            found.insert(module, path);
        }
    }
    found
}

/// The file's code without its test module and line comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `module` (in `file`) names.
fn dependencies(
    module: &Module,
    file: &Path,
    code: &str,
    modules: &BTreeMap<Module, PathBuf>,
) -> BTreeSet<Module> {
    let is_folder = file
        .file_stem()
        .is_some_and(|stem| matches!(stem.to_str(), Some("lib" | "main" | "mod")));
    let mut paths = private_uses(code);
    paths.extend(inline_paths(code));
    let mut found = BTreeSet::new();
    for path in paths {
        let segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
        let supers = segments.iter().take_while(|s| **s == "super").count();
        let (mut target, rest): (Module, &[&str]) = match segments.first().copied() {
            Some("crate") => (vec![], &segments[1..]),
            Some("self") => (module.clone(), &segments[1..]),
            Some("super") if supers <= module.len() => (
                module[..module.len() - supers].to_vec(),
                &segments[supers..],
            ),
            Some(first) if is_folder && modules.contains_key(&child(module, first)) => {
                (module.clone(), &segments[..])
            }
            _ => continue,
        };
        for segment in rest {
            let next = child(&target, segment);
            if !modules.contains_key(&next) {
                break;
            }
            target = next;
        }
        if &target != module && modules.contains_key(&target) {
            found.insert(target);
        }
    }
    found
}

fn child(module: &Module, name: &str) -> Module {
    let mut child = module.clone();
    child.push(name.to_owned());
    child
}

/// The paths of every `use` not preceded by `pub`, its braces expanded.
fn private_uses(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        let before = rest[..at].trim_end();
        let after = &rest[at + 3..];
        let Some(end) = after.find(';') else { break };
        let restricted = before.ends_with(')')
            && before
                .rfind('(')
                .is_some_and(|open| before[..open].ends_with("pub"));
        if !(before.ends_with("pub") || restricted) {
            let tree = after[..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            expand(&tree, &mut paths);
        }
        rest = &after[end..];
    }
    paths
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (an `as` rename dropped).
fn expand(tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        out.push(path.split_whitespace().collect());
        return;
    };
    let prefix: String = tree[..open].split_whitespace().collect();
    // A `use` read out of a string literal may have no closing brace after its opening one.
    let close = tree.rfind('}').filter(|close| *close > open);
    let inner = &tree[open + 1..close.unwrap_or(tree.len())];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices().chain([(inner.len(), ',')]) {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                let part = inner[start..i].trim();
                start = i + 1;
                if part.is_empty() {
                    continue;
                }
                let mut expanded = Vec::new();
                expand(part, &mut expanded);
                out.extend(expanded.into_iter().map(|p| match p.as_str() {
                    "self" => prefix.trim_end_matches(':').to_owned(),
                    _ => format!("{prefix}{p}"),
                }));
            }
            _ => {}
        }
    }
}

/// Paths written in the code that start with `crate::` or `super::`.
fn inline_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for start in ["crate::", "super::"] {
        let mut rest = code;
        while let Some(at) = find_word(rest, start.trim_end_matches(':')) {
            let path: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if path.starts_with(start) {
                paths.push(path.clone());
            }
            rest = &rest[at + path.len().max(1)..];
        }
    }
    paths
}

/// Where `word` next stands as a word of its own.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(found) = text[from..].find(word) {
        let at = from + found;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crate_has_an_import_circle() {
        let root = crate::workspace();
        for krate in CRATES {
            assert!(root.join(krate).is_dir(), "{krate} is not a folder");
            assert_eq!(
                circles(&root.join(krate)),
                Vec::<Vec<String>>::new(),
                "{krate}"
            );
        }
    }

    #[test]
    fn a_circle_is_found() {
        let src = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
        std::fs::create_dir_all(src.join("pipeline")).unwrap();
        std::fs::write(
            src.join("lib.rs"),
            "pub mod a;\npub mod b;\npub mod pipeline;\n",
        )
        .unwrap();
        std::fs::write(src.join("a.rs"), "use crate::{b::Thing, pipeline};\n").unwrap();
        std::fs::write(src.join("b.rs"), "pub fn f() { crate::a::g() }\n").unwrap();
        std::fs::write(src.join("pipeline/mod.rs"), "mod writer;\nuse writer::W;\n").unwrap();
        std::fs::write(src.join("pipeline/writer.rs"), "use super::Types;\n").unwrap();
        let found = circles(&src);
        std::fs::remove_dir_all(&src).unwrap();
        assert_eq!(
            found,
            vec![
                vec!["a".to_owned(), "b".to_owned()],
                vec!["pipeline".to_owned(), "pipeline::writer".to_owned()]
            ]
        );
    }

    #[test]
    fn a_facade_and_tests_are_not_dependencies() {
        let src = std::env::temp_dir().join(format!("layers-facade-{}", std::process::id()));
        std::fs::create_dir_all(src.join("auth")).unwrap();
        std::fs::write(src.join("lib.rs"), "pub mod auth;\n").unwrap();
        std::fs::write(
            src.join("auth/mod.rs"),
            "pub mod sig;\npub use sig::verify;\n",
        )
        .unwrap();
        std::fs::write(
            src.join("auth/sig.rs"),
            "pub fn verify() {}\n#[cfg(test)]\nmod tests {\n    use crate::auth::verify;\n}\n",
        )
        .unwrap();
        let found = circles(&src);
        std::fs::remove_dir_all(&src).unwrap();
        assert!(found.is_empty(), "{found:?}");
    }
}
