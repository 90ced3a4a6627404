//! Mints a signed JWT for trying jwt-revoker by hand (a development tool for the demo, not
//! part of the product).
//!
//! ```text
//! cargo run --example mint_token -- --key demo/keys/rsa.pem --alg RS256 --kid demo-rsa-1 \
//!     --iss https://demo.issuer --aud api --sub alice [--ttl 1h] [--jti ID] [--claim k=v]…
//! ```
//!
//! The key is a PKCS#8 PEM private key (RSA for RS*/PS*, EC for ES*, Ed25519 for EdDSA),
//! or the raw secret for HS*. `--claim` values that parse as JSON are used as JSON
//! (`--claim admin=true`, `--claim 'roles=["a","b"]'`), others as strings. The token is
//! printed on stdout.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Mint a signed JWT.
#[derive(Debug, Parser)]
#[command(
    name = "mint_token",
    about = "Mint a signed JWT for trying jwt-revoker"
)]
struct Args {
    /// Private key file (PKCS#8 PEM), or the secret file for HS256/HS384/HS512.
    #[arg(long)]
    key: PathBuf,
    /// Signing algorithm: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    /// HS256, HS384, HS512.
    #[arg(long, default_value = "RS256")]
    alg: String,
    /// The `kid` header (the key's id in the issuer's JWKS).
    #[arg(long)]
    kid: Option<String>,
    /// The `iss` claim.
    #[arg(long)]
    iss: String,
    /// The `aud` claim; repeat for several audiences.
    #[arg(long, required = true)]
    aud: Vec<String>,
    /// The `sub` claim.
    #[arg(long)]
    sub: String,
    /// Lifetime: `exp` = now + TTL (e.g. `30s`, `15m`, `1h`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The `jti` claim (default: 16 random bytes, base64url).
    #[arg(long)]
    jti: Option<String>,
    /// An extra claim `name=value`; repeatable. JSON values are kept as JSON.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match mint(&args) {
        Ok(token) => {
            println!("{token}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mint_token: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn mint(args: &Args) -> Result<String> {
    let alg = Algorithm::from_str(&args.alg)
        .ok()
        .with_context(|| format!("unknown algorithm {:?}", args.alg))?;
    let key_bytes =
        std::fs::read(&args.key).with_context(|| format!("read {}", args.key.display()))?;
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            // A secret file usually ends with a newline that is not part of the secret.
            let end = key_bytes
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map_or(0, |i| i + 1);
            EncodingKey::from_secret(&key_bytes[..end])
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(&key_bytes)?,
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&key_bytes)?,
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&key_bytes)?,
    };

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let jti = match &args.jti {
        Some(jti) => jti.clone(),
        None => {
            let mut bytes = [0u8; 16];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| anyhow::anyhow!("no randomness for the jti"))?;
            URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    let aud = match args.aud.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(args.iss));
    claims.insert("sub".into(), json!(args.sub));
    claims.insert("aud".into(), aud);
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now + args.ttl.as_secs()));
    claims.insert("jti".into(), json!(jti));
    for claim in &args.claims {
        let Some((name, value)) = claim.split_once('=') else {
            bail!("--claim {claim:?} is not NAME=VALUE");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        claims.insert(name.to_owned(), value);
    }

    let mut header = Header::new(alg);
    header.kid = args.kid.clone();
    Ok(jsonwebtoken::encode(&header, &Value::Object(claims), &key)?)
}
