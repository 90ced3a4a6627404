//! `jwt-revoker serve`: load the configuration, bind both ports, run until SIGINT/SIGTERM.

use super::telemetry::{self, LogFormat};
use crate::config::{Config, ConfigError, Overrides};
use crate::server::{self, Listeners, ServerError};
use clap::Args;
use std::path::PathBuf;

/// The environment variable holding the admin token (never a flag: `ps` would show it).
pub const ADMIN_TOKEN_ENV: &str = "JWT_REVOKER_ADMIN_TOKEN";

/// Flags of `serve`; each can also come from its `JWT_REVOKER_…` variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML configuration file.
    #[arg(long, env = "JWT_REVOKER_CONFIG")]
    pub config: PathBuf,
    /// Address of the ext_authz Check port (overrides `authz_addr`).
    #[arg(long, env = "JWT_REVOKER_AUTHZ_ADDR")]
    pub authz_addr: Option<String>,
    /// Address of the admin port (overrides `admin_addr`).
    #[arg(long, env = "JWT_REVOKER_ADMIN_ADDR")]
    pub admin_addr: Option<String>,
    /// Address of the Prometheus `/metrics` endpoint (overrides `metrics_addr`).
    #[arg(long, env = "JWT_REVOKER_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Redis URL (overrides `store.url`; empty means the embedded store).
    #[arg(long, env = "JWT_REVOKER_STORE_URL")]
    pub store_url: Option<String>,
    /// Log filter when `RUST_LOG` is unset (overrides `log_level`).
    #[arg(long, env = "JWT_REVOKER_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format.
    #[arg(long, env = "JWT_REVOKER_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// The admin token (only from the environment; overrides `admin.token_file`).
    #[arg(
        long,
        env = "JWT_REVOKER_ADMIN_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
}

/// Why `serve` failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Runs `serve`.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let overrides = Overrides {
        authz_addr: args.authz_addr,
        admin_addr: args.admin_addr,
        metrics_addr: args.metrics_addr,
        store_url: args.store_url,
        log_level: args.log_level,
        // Only from the environment: a flag would show the secret in `ps`.
        admin_token: std::env::var(ADMIN_TOKEN_ENV)
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let config = Config::load(&args.config, &overrides)?;
    telemetry::init(&config.log_level, args.log_format);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %args.config.display(),
        issuers = config.issuers.len(),
        "starting jwt-revoker"
    );
    let listeners = Listeners::bind(&config).await?;
    server::run(config, listeners, server::shutdown_signal()).await?;
    Ok(())
}
