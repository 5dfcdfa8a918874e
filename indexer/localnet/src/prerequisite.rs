//! What a test needs from outside Rust (a mint binary, a Python package, Node packages,
//! Chromium, Postgres). Under the README's test command (`cargo xtask test`, which installs
//! all of them) or in CI, a missing one fails the test with the command that installs it;
//! under a bare `cargo test` the test says it is skipped and why, and passes.

/// Set by `cargo xtask test`: every prerequisite was installed, so none may be missing.
pub const ALL_TESTS: &str = "LLM_GATEWAY_ALL_TESTS";

/// Whether a missing prerequisite must fail the test rather than skip it.
pub fn required() -> bool {
    std::env::var_os(ALL_TESTS).is_some() || std::env::var_os("CI").is_some()
}

/// Reports that `what` is missing, with the command that `install`s it: panics when
/// [`required`], otherwise prints "skipped" for a test that then returns.
pub fn missing(what: &str, install: &str) {
    if required() {
        panic!("{what} is missing; install it with: {install} (`cargo xtask test` does)");
    }
    eprintln!("skipped: {what} is missing; install it with: {install} (or run `cargo xtask test`)");
}
