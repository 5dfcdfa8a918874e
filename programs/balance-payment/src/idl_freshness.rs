//! Fails when the committed IDL (`idl/balance_payment.json`) no longer matches the program.
//!
//! Anchor prints the IDL in pieces from generated tests (`__anchor_private_print_idl_*`).
//! This test runs those tests in a child process of its own binary, assembles the pieces the
//! way `anchor idl build` does, and compares. `UPDATE_IDL=1` rewrites the committed file.
use anchor_lang::idl::{serde_json, types::Idl};
use serde_json::Value;
use std::{collections::BTreeMap, path::PathBuf, process::Command};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/idl/balance_payment.json");

#[test]
fn committed_idl_matches_the_program() {
    let fresh = build_idl();
    let fresh_json = serde_json::to_string_pretty(&fresh).expect("serialise IDL") + "\n";
    if std::env::var_os("UPDATE_IDL").is_some() {
        std::fs::write(COMMITTED, &fresh_json).expect("write IDL");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    let committed: Value = serde_json::from_str(&committed).unwrap_or(Value::Null);
    let fresh: Value = serde_json::from_str(&fresh_json).expect("IDL JSON");
    assert!(
        committed == fresh,
        "{COMMITTED} is stale; regenerate it with \
         `UPDATE_IDL=1 cargo test -p balance-payment --features idl-build --lib idl`"
    );
}

/// Runs the generated print tests and assembles their output into one IDL.
fn build_idl() -> Idl {
    let exe: PathBuf = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([
            "__anchor_private_print_idl",
            "--show-output",
            "--quiet",
            "--test-threads=1",
        ])
        .output()
        .expect("run IDL print tests");
    assert!(output.status.success(), "IDL print tests failed");
    let stdout = String::from_utf8_lossy(&output.stdout);

    let mut sections: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut current: Option<(&str, Vec<&str>)> = None;
    for line in stdout.lines() {
        match (&mut current, line.strip_prefix("--- IDL begin ")) {
            (None, Some(rest)) => current = Some((rest.trim_end_matches(" ---"), Vec::new())),
            (Some((kind, lines)), _) if line == format!("--- IDL end {kind} ---") => {
                sections.entry(kind).or_default().push(lines.join("\n"));
                current = None;
            }
            (Some((_, lines)), _) => lines.push(line),
            (None, None) => {}
        }
    }
    let one = |kind: &str| -> Value {
        let text = sections
            .get(kind)
            .and_then(|s| s.first())
            .unwrap_or_else(|| panic!("no IDL {kind}"));
        serde_json::from_str(text).expect("IDL section JSON")
    };
    let all = |kind: &str| -> Vec<Value> {
        sections
            .get(kind)
            .map(|texts| {
                texts
                    .iter()
                    .map(|t| serde_json::from_str(t).expect("IDL section JSON"))
                    .collect()
            })
            .unwrap_or_default()
    };

    let mut idl = one("program");
    let mut types: BTreeMap<String, Value> = BTreeMap::new();
    let mut events = Vec::new();
    for printed in all("event") {
        events.push(printed["event"].clone());
        for ty in printed["types"].as_array().into_iter().flatten() {
            types.insert(
                ty["name"].as_str().unwrap_or_default().to_owned(),
                ty.clone(),
            );
        }
    }
    for ty in idl["types"].as_array().into_iter().flatten() {
        types.insert(
            ty["name"].as_str().unwrap_or_default().to_owned(),
            ty.clone(),
        );
    }
    idl["address"] = one("address");
    idl["constants"] = Value::Array(all("const"));
    idl["events"] = Value::Array(events);
    idl["errors"] = one("errors");
    idl["types"] = Value::Array(types.into_values().collect());
    shorten_module_paths(&mut idl);

    let mut idl: Idl = serde_json::from_value(idl).expect("IDL shape");
    idl.accounts.sort_by(|a, b| a.name.cmp(&b.name));
    idl.constants.sort_by(|a, b| a.name.cmp(&b.name));
    idl.events.sort_by(|a, b| a.name.cmp(&b.name));
    idl.instructions.sort_by(|a, b| a.name.cmp(&b.name));
    idl.types.sort_by(|a, b| a.name.cmp(&b.name));
    idl
}

/// `crate::module::Type` becomes `Type` wherever no other path ends in the same name, as
/// `anchor idl build` does.
fn shorten_module_paths(idl: &mut Value) {
    fn collect(value: &Value, paths: &mut BTreeMap<String, String>) {
        match value {
            Value::String(s) if is_path(s) => {
                paths.insert(s.clone(), s.rsplit("::").next().unwrap_or(s).to_owned());
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, paths)),
            Value::Object(map) => map.values().for_each(|v| collect(v, paths)),
            _ => {}
        }
    }
    fn replace(value: &mut Value, short: &BTreeMap<String, String>) {
        match value {
            Value::String(s) => {
                if let Some(name) = short.get(s.as_str()) {
                    *s = name.clone();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| replace(v, short)),
            Value::Object(map) => map.values_mut().for_each(|v| replace(v, short)),
            _ => {}
        }
    }
    fn is_path(s: &str) -> bool {
        s.contains("::")
            && s.split("::")
                .all(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || c == '_'))
    }
    let mut paths = BTreeMap::new();
    collect(idl, &mut paths);
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for name in paths.values() {
        *by_name.entry(name.clone()).or_default() += 1;
    }
    paths.retain(|_, name| by_name[name.as_str()] == 1);
    replace(idl, &paths);
}
