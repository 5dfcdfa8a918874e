//! The process's stop signals: Ctrl-C (SIGINT) or SIGTERM, which is what service managers
//! (systemd, Docker, Kubernetes) send. Both binaries stop gracefully on either. Install the
//! handlers before starting anything, so a SIGTERM that arrives during start-up is not fatal.

/// Installed stop-signal handlers.
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers (from here on SIGTERM no longer kills the process).
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// Returns the name of the first stop signal received.
    pub async fn recv(&mut self) -> std::io::Result<&'static str> {
        #[cfg(unix)]
        {
            tokio::select! {
                received = tokio::signal::ctrl_c() => received.map(|_| "SIGINT"),
                _ = self.term.recv() => Ok("SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.map(|_| "Ctrl-C")
        }
    }
}

/// Installs the handlers and waits for the first stop signal; returns its name.
pub async fn signal() -> std::io::Result<&'static str> {
    StopSignals::install()?.recv().await
}
