//! Running commands, and installing Debian packages, with errors that say what to run by hand.
use std::{process::Command, sync::OnceLock};

/// Runs `command`; `Err` names it and how it ended.
pub fn run(command: &mut Command) -> Result<(), String> {
    let shown = format!("{command:?}");
    match command.status() {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!("`{shown}` failed ({status})")),
        Err(error) => Err(format!("`{shown}` could not start: {error}")),
    }
}

/// Whether `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Whether this process runs as root (installs need no `sudo`; servers must not run as it).
pub fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

/// Installs Debian `packages` (as root, or through `sudo -n`).
pub fn apt(packages: &[&str]) -> Result<(), String> {
    static UPDATED: OnceLock<Result<(), String>> = OnceLock::new();
    let wanted = packages.join(" ");
    let root = as_root();
    let apt_get = || {
        let mut command = match root {
            true => Command::new("apt-get"),
            false => {
                let mut sudo = Command::new("sudo");
                sudo.args(["-n", "apt-get"]);
                sudo
            }
        };
        command.env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    if !root && !on_path("sudo") {
        return Err(format!(
            "needs Debian packages; run: apt-get install -y {wanted}"
        ));
    }
    UPDATED
        .get_or_init(|| run(apt_get().args(["update", "-qq"])))
        .clone()
        .and_then(|()| run(apt_get().args(["install", "-y", "-qq"]).args(packages)))
        .map_err(|why| format!("{why}; run: apt-get install -y {wanted}"))
}
