//! Configuration loading (`config::Config::parse`): TOML text through the schema and every
//! validation rule, with relative paths resolved against `tests/fixtures` (so that seeds
//! naming fixture files validate fully). Inputs that could name a device, FIFO or proc file
//! (which validation would read) are skipped: the config file is trusted, a fuzzer's
//! `token_file = "/dev/zero"` is not a finding.
#![no_main]

use jwt_revoker::config::{Config, Overrides};
use jwt_revoker_fuzz::fixture::fixtures_dir;
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Substrings of paths that validation must not open (a `\u` escape could spell them).
const SKIPPED: [&str; 7] = ["dev", "proc", "sys", "tmp", "run", "\\u", "\\U"];

fuzz_target!(|data: &[u8]| {
    static BASE: OnceLock<std::path::PathBuf> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if SKIPPED.iter().any(|s| text.contains(s)) {
        return;
    }
    let base = BASE.get_or_init(fixtures_dir);
    if let Ok(config) = Config::parse(text, Path::new("fuzz.toml"), base, &Overrides::default()) {
        assert!(!config.issuers.is_empty(), "a config without issuers");
        assert!(config.leeway <= Duration::from_secs(300), "leeway over 5m");
        assert!(
            (256..=65536).contains(&config.max_token_bytes),
            "max_token_bytes out of range"
        );
        assert!(
            !config.max_token_lifetime.is_zero(),
            "zero max_token_lifetime"
        );
    }
});
