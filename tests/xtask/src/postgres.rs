//! The Postgres the tests create their databases on: the server at `TEST_POSTGRES_URL` (default
//! 127.0.0.1:5432) when one answers there; otherwise a private cluster this run starts on a free
//! port (trust authentication, no fsync: its databases live for one test) and stops after.
use crate::shell::{apt, as_root, run};
use std::{
    net::{TcpListener, TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// Where tests look when `TEST_POSTGRES_URL` is not set (see `ledger::testing`).
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A cluster this run started.
pub struct PrivatePostgres {
    /// Its admin URL, for the tests.
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
}

/// The admin URL the tests are to use, and the private cluster behind it if one was started.
pub fn ensure() -> Result<(String, Option<PrivatePostgres>), String> {
    let url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
    if answers(&url) {
        return Ok((url, None));
    }
    eprintln!("xtask: no Postgres answers at {url}; starting a private one");
    let bin = match server_binaries() {
        Some(bin) => bin,
        None => {
            apt(&["postgresql"])?;
            server_binaries().ok_or("postgresql is installed but initdb is not found")?
        }
    };
    let home = std::env::temp_dir().join("llm-gateway-postgres");
    let data = home.join("data");
    std::fs::create_dir_all(&home).map_err(|e| format!("{}: {e}", home.display()))?;
    if as_root() {
        // The server refuses to run as root: the cluster belongs to the `postgres` user.
        run(Command::new("chown").args(["-R", "postgres:"]).arg(&home))?;
    }
    if !data.join("PG_VERSION").exists() {
        run(tool(&bin, "initdb")
            .args([
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--no-sync",
                "-D",
            ])
            .arg(&data))?;
    }
    // A cluster left running by an interrupted run is stopped first (it may hold another port).
    let _ = tool(&bin, "pg_ctl")
        .args(["stop", "-m", "immediate", "-D"])
        .arg(&data)
        .output();
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=300",
        home.display()
    );
    run(tool(&bin, "pg_ctl")
        .args(["start", "--wait", "-D"])
        .arg(&data)
        .args(["-l"])
        .arg(home.join("server.log"))
        .args(["-o", &options]))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    eprintln!(
        "xtask: private Postgres at {url} (data in {})",
        data.display()
    );
    let private = PrivatePostgres {
        url: url.clone(),
        bin,
        data,
    };
    Ok((url, Some(private)))
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = tool(&self.bin, "pg_ctl")
            .args(["stop", "-m", "fast", "-D"])
            .arg(&self.data)
            .output();
    }
}

/// Whether something accepts connections at the URL's host and port.
fn answers(url: &str) -> bool {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = after_scheme.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = match host_port.contains(':') {
        true => host_port.to_owned(),
        false => format!("{host_port}:5432"),
    };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(Path::file_name)
            .and_then(|v| v.to_str()?.parse::<u32>().ok())
    });
    versions.pop()
}

/// `bin/name`, run as the `postgres` user when this process is root.
fn tool(bin: &Path, name: &str) -> Command {
    let program = bin.join(name);
    match as_root() {
        true => {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        }
        false => Command::new(program),
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
