//! The production binaries (`cargo build --release --no-default-features -p proxy -p indexer`)
//! carry production code only: no local validator, in-process bank, relay builder or echo
//! model. Checked on the resolved dependency graph, so a dependency added carelessly fails here.
use std::process::Command;

/// Crates that only the sandbox and the tests may link.
const TEST_MACHINERY: &[&str] = &[
    "localnet",
    "solana-program-test",
    "solana-banks-client",
    "solana-banks-server",
    "solana-runtime",
    "surfpool-core",
    "litesvm",
    "nostr-relay-builder",
    "nostr-lmdb",
];

/// The crates `package` links when built with `features` (`None`: defaults off; `Some("")`:
/// the defaults).
fn linked_crates(package: &str, features: Option<&str>) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["tree", "--offline", "--edges", "normal", "--prefix", "none"])
        .args(["--package", package]);
    match features {
        None => command.arg("--no-default-features"),
        Some(features) => command.args(["--features", features]),
    };
    let output = command.output().expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut crates: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

#[test]
fn production_binaries_link_no_test_machinery() {
    for package in ["proxy", "indexer"] {
        let production = linked_crates(package, None);
        let found: Vec<&String> = production
            .iter()
            .filter(|name| TEST_MACHINERY.contains(&name.as_str()))
            .collect();
        assert!(
            found.is_empty(),
            "the production {package} links test machinery: {found:?}"
        );
    }
    // The check looks at the right graph: the sandbox builds do link the validator.
    for (package, features) in [("indexer", Some("sandbox")), ("sandbox", Some(""))] {
        let sandbox = linked_crates(package, features);
        for machinery in ["localnet", "surfpool-core", "nostr-relay-builder"] {
            assert!(
                sandbox.iter().any(|name| name == machinery),
                "the sandbox build of {package} should link {machinery}"
            );
        }
    }
}

/// The gateway stands on the ledger, the shared crate and the program's SDK: it never links the
/// indexer (whose watchers and controller it does not run), with or without default features.
#[test]
fn the_gateway_does_not_link_the_indexer() {
    for features in [None, Some("")] {
        let gateway = linked_crates("proxy", features);
        assert!(
            !gateway.iter().any(|name| name == "indexer"),
            "proxy links the indexer: {gateway:?}"
        );
        for needed in ["ledger", "common", "balance-payment"] {
            assert!(
                gateway.iter().any(|name| name == needed),
                "proxy should link {needed}"
            );
        }
    }
}
