//! Configuration loading both services share: defaults, then a TOML file, then environment
//! variables (nested keys joined by `__`), and the checks on values both sections carry
//! (Nostr keys, the program id). Bad config fails before anything runs.
use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

/// The commitment levels a payment may be read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Commitment {
    Confirmed,
    Finalized,
}

/// `defaults`, then the TOML `file` (if given; it must exist), then environment variables
/// named `{env_prefix}KEY` with nested keys joined by `__`. Shared by the indexer and the proxy.
pub fn load_layered<T: Serialize + DeserializeOwned>(
    defaults: T,
    file: Option<&Path>,
    env_prefix: &str,
) -> Result<T, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::Invalid(format!(
                "{} does not exist",
                file.display()
            )));
        }
        figment = figment.merge(Toml::file(file));
    }
    figment
        .merge(Env::prefixed(env_prefix).split("__"))
        .extract()
        .map_err(|e| ConfigError::Load(Box::new(e)))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Each of `keys` (in the section `field`) is a Nostr public key.
pub fn check_nostr_keys<'a>(
    field: &str,
    keys: impl IntoIterator<Item = &'a String>,
) -> Result<(), ConfigError> {
    match keys
        .into_iter()
        .find(|key| nostr_sdk::PublicKey::parse(key).is_err())
    {
        Some(key) => Err(ConfigError::Invalid(format!(
            "{field}: not a Nostr public key: {key}"
        ))),
        None => Ok(()),
    }
}

/// `chain.program_id` is a Solana address.
pub fn check_program_id(program_id: &str) -> Result<(), ConfigError> {
    match program_id.parse::<solana_sdk::pubkey::Pubkey>() {
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError::Invalid(format!(
            "chain.program_id is not a Solana address: {program_id}"
        ))),
    }
}
