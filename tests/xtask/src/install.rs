//! Finds, or installs, each thing the tests need from outside Rust: Node.js with the test
//! folders' packages, Debian's Chromium, three Python virtualenvs (the `openai` package;
//! Nutshell's `cashu` wallet; the `x402` client), the `cdk-mintd` Cashu mint, and Postgres.
//! Everything but the Debian packages goes into the tools directory. Every step runs even
//! after one fails, so one run names everything that is missing.
use crate::{
    postgres::{self, PrivatePostgres},
    shell::{apt, on_path, run},
};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The cdk-mintd release the Cashu tests run against.
const CDK_MINTD: &str = "cdk-mintd@0.18.3";

/// The Node folders whose packages the tests use.
const NODE_FOLDERS: &[&str] = &["tests/wallet", "tests/web", "tests/idl", "tests/x402"];

/// Debian's Chromium, which the wallet page's test drives.
const CHROMIUM: &str = "/usr/bin/chromium";

/// What the tests are to be run with.
pub struct Installed {
    /// Put first on `PATH` (the `openai` virtualenv, so `python3` has the package).
    pub path_first: Vec<PathBuf>,
    /// Told to the tests: where the mint, the Nutshell Python and Postgres are.
    pub env: Vec<(&'static str, String)>,
    /// A Postgres this run started; stopped when dropped.
    pub postgres: Option<PrivatePostgres>,
}

/// Installs what is missing; `Err` lists every step that failed and why.
pub fn everything(root: &Path, tools: &Path) -> Result<Installed, String> {
    let mut failures = Vec::new();
    let mut step = |name: &str, outcome: Result<(), String>| match outcome {
        Ok(()) => eprintln!("xtask: {name}: ready"),
        Err(why) => failures.push(format!("{name}: {why}")),
    };
    step("Node.js and npm", node());
    for folder in NODE_FOLDERS {
        step(folder, node_packages(&root.join(folder)));
    }
    step("Chromium", chromium());
    let openai = tools.join("openai-venv");
    step(
        "the `openai` Python package",
        virtualenv(&openai, &root.join("tests/openai/requirements.txt")),
    );
    let cashu = tools.join("cashu-venv");
    step(
        "Nutshell (the `cashu` Python wallet)",
        virtualenv(&cashu, &root.join("tests/cashu/requirements.txt")),
    );
    let x402 = tools.join("x402-venv");
    step(
        "the `x402` Python package",
        virtualenv(&x402, &root.join("tests/x402/requirements.txt")),
    );
    let mintd = tools.join("bin/cdk-mintd");
    step("cdk-mintd", cdk_mintd(tools, &mintd));
    let postgres = match postgres::ensure() {
        Ok(found) => {
            step("Postgres", Ok(()));
            Some(found)
        }
        Err(why) => {
            step("Postgres", Err(why));
            None
        }
    };
    match (failures.is_empty(), postgres) {
        (true, Some((url, private))) => Ok(Installed {
            path_first: vec![openai.join("bin")],
            env: vec![
                ("CDK_MINTD", mintd.display().to_string()),
                (
                    "CASHU_PYTHON",
                    cashu.join("bin/python").display().to_string(),
                ),
                ("X402_PYTHON", x402.join("bin/python").display().to_string()),
                ("TEST_POSTGRES_URL", url),
            ],
            postgres: private,
        }),
        _ => Err(format!(
            "cannot run every test; missing:\n  - {}",
            failures.join("\n  - ")
        )),
    }
}

fn node() -> Result<(), String> {
    if on_path("node") && on_path("npm") {
        return Ok(());
    }
    apt(&["nodejs", "npm"])
}

/// `npm ci` in `folder` unless its `node_modules` was installed from the same lock file.
fn node_packages(folder: &Path) -> Result<(), String> {
    let lock = folder.join("package-lock.json");
    let stamp = folder.join("node_modules/.xtask-package-lock.json");
    if same_file_contents(&lock, &stamp) {
        return Ok(());
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(folder))?;
    std::fs::copy(&lock, &stamp)
        .map(|_| ())
        .map_err(|e| format!("writing {}: {e}", stamp.display()))
}

fn chromium() -> Result<(), String> {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    apt(&["chromium"])
}

/// A virtualenv at `venv` with `requirements` installed, rebuilt when they change.
fn virtualenv(venv: &Path, requirements: &Path) -> Result<(), String> {
    let stamp = venv.join("requirements.txt");
    if same_file_contents(requirements, &stamp) && venv.join("bin/python").exists() {
        return Ok(());
    }
    if !on_path("python3") {
        apt(&["python3", "python3-venv"])?;
    }
    let _ = std::fs::remove_dir_all(venv);
    let create = || run(Command::new("python3").args(["-m", "venv"]).arg(venv));
    if create().is_err() {
        // Debian's python3 leaves `venv` out until python3-venv is installed.
        let _ = std::fs::remove_dir_all(venv);
        apt(&["python3-venv"])?;
        create()?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "-r"])
        .arg(requirements))?;
    std::fs::copy(requirements, &stamp)
        .map(|_| ())
        .map_err(|e| format!("writing {}: {e}", stamp.display()))
}

/// `cdk-mintd` with the fake Lightning backend, built into `tools/bin`.
fn cdk_mintd(tools: &Path, binary: &Path) -> Result<(), String> {
    if binary.exists() {
        return Ok(());
    }
    if !on_path("protoc") {
        apt(&["protobuf-compiler"])?;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("xtask: building {CDK_MINTD} (about ten minutes, once)");
    run(Command::new(cargo)
        .args(["install", "--locked", "--quiet", CDK_MINTD])
        .args([
            "--no-default-features",
            "--features",
            "fakewallet,sqlite",
            "--root",
        ])
        .arg(tools))
}

fn same_file_contents(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(a), Ok(b)) if a == b)
}
