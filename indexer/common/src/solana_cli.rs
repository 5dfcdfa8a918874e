//! `--url` and `--keypair` as the `solana` command reads them, so the operator and wallet
//! commands work with the setup their users already have: an explicit flag first (a URL or a
//! moniker: `localhost`, `devnet`, `testnet`, `mainnet-beta`, or their first letters), then
//! the Solana CLI's config file (`~/.config/solana/cli/config.yml`), then its defaults.
use anyhow::Context;
use solana_cli_config::{Config, ConfigInput};
use solana_sdk::signature::{read_keypair_file, Keypair};
use std::path::{Path, PathBuf};

/// The cluster and the signer of one command.
#[derive(Debug, Clone, clap::Args)]
pub struct SolanaArgs {
    /// JSON-RPC URL or moniker (`localhost`, `devnet`, `testnet`, `mainnet-beta`, or `l`, `d`,
    /// `t`, `m`). Default: the RPC the gateway publishes (wallet commands), else the Solana
    /// CLI's `json_rpc_url`.
    #[arg(long, short = 'u', env = "SOLANA_URL")]
    pub url: Option<String>,
    /// Keypair file (a JSON array of 64 bytes, as `solana-keygen` writes). Default: the Solana
    /// CLI's `keypair_path` (`~/.config/solana/id.json`).
    #[arg(long, short = 'k', env = "SOLANA_KEYPAIR", alias = "wallet")]
    pub keypair: Option<PathBuf>,
    /// The Solana CLI config file to take defaults from.
    #[arg(long = "solana-config", short = 'C', value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

impl SolanaArgs {
    /// The Solana CLI's config: the given file, else the default one if it exists, else the
    /// CLI's defaults (localhost, `~/.config/solana/id.json`).
    fn cli_config(&self) -> anyhow::Result<Config> {
        match &self.config_file {
            Some(file) => Config::load(&file.to_string_lossy())
                .with_context(|| format!("Solana CLI config {}", file.display())),
            None => Ok(solana_cli_config::CONFIG_FILE
                .as_ref()
                .filter(|file| Path::new(file).exists())
                .and_then(|file| Config::load(file).ok())
                .unwrap_or_default()),
        }
    }

    /// The JSON-RPC URL: `--url`, else `published` (what a gateway says its cluster is), else
    /// the Solana CLI's config.
    pub fn rpc_url(&self, published: Option<&str>) -> anyhow::Result<String> {
        let configured = self.cli_config()?.json_rpc_url;
        let fallback = published.unwrap_or(&configured);
        let (_, url) = ConfigInput::compute_json_rpc_url_setting(
            self.url.as_deref().unwrap_or_default(),
            fallback,
        );
        Ok(url)
    }

    /// The keypair file this command signs with.
    pub fn keypair_path(&self) -> anyhow::Result<PathBuf> {
        Ok(match &self.keypair {
            Some(path) => path.clone(),
            None => PathBuf::from(self.cli_config()?.keypair_path),
        })
    }

    /// The signer, read from [`SolanaArgs::keypair_path`].
    pub fn keypair(&self) -> anyhow::Result<Keypair> {
        read_keypair(&self.keypair_path()?)
    }
}

/// Reads a keypair file, naming the file when it cannot.
pub fn read_keypair(path: &Path) -> anyhow::Result<Keypair> {
    read_keypair_file(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the keypair file {}: {e} (make one with `solana-keygen new -o {0}` \
             or `indexer keygen --solana --out {0}`)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(url: Option<&str>, config: &Path) -> SolanaArgs {
        SolanaArgs {
            url: url.map(str::to_owned),
            keypair: None,
            config_file: Some(config.to_owned()),
        }
    }

    #[test]
    fn an_explicit_url_wins_then_the_gateway_then_the_solana_config() {
        let dir = std::env::temp_dir().join(format!("solana-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.yml");
        std::fs::write(
            &file,
            "json_rpc_url: https://api.devnet.solana.com\nwebsocket_url: ''\n\
             keypair_path: /keys/me.json\naddress_labels: {}\ncommitment: confirmed\n",
        )
        .unwrap();
        let from_config = args(None, &file);
        assert_eq!(
            from_config.rpc_url(None).unwrap(),
            "https://api.devnet.solana.com"
        );
        assert_eq!(
            from_config.keypair_path().unwrap(),
            PathBuf::from("/keys/me.json")
        );
        assert_eq!(
            from_config.rpc_url(Some("http://127.0.0.1:8899")).unwrap(),
            "http://127.0.0.1:8899"
        );
        assert_eq!(
            args(Some("localhost"), &file)
                .rpc_url(Some("http://10.0.0.1:8899"))
                .unwrap(),
            "http://localhost:8899"
        );
        assert_eq!(
            args(Some("m"), &file).rpc_url(None).unwrap(),
            "https://api.mainnet-beta.solana.com"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_keypair_file_names_the_file_and_how_to_make_one() {
        let error = read_keypair(Path::new("/nonexistent/id.json"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("/nonexistent/id.json"), "{error}");
        assert!(error.contains("solana-keygen new"), "{error}");
    }
}
