//! Bearer tokens: where they come from, how they are checked, and when the API may listen
//! without them.

use std::net::SocketAddr;

use chum_core::config::ChumConfig;

/// Shortest token accepted: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;

/// Bearer tokens: (who, token).
pub type Tokens = Vec<(String, String)>;

/// Parses `name:token,name2:token2`. Every token must be at least 16 characters and every name
/// unique, so the audit log can say who did what.
pub fn parse_tokens(raw: &str) -> Result<Tokens, String> {
    let mut tokens: Tokens = Vec::new();
    for (i, pair) in raw.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let Some((name, token)) = pair.split_once(':') else {
            return Err(format!(
                "entry {} is not `name:token` (e.g. CHUM_API_TOKENS=\"alice:<32 random chars>,ci:<...>\")",
                i + 1
            ));
        };
        let (name, token) = (name.trim(), token.trim());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "entry {}: the name {name:?} must be letters, digits, '-', '_' or '.'",
                i + 1
            ));
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "entry {} ({name}): the token is {} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 24`)",
                i + 1,
                token.len()
            ));
        }
        if tokens.iter().any(|(n, _)| n == name) {
            return Err(format!("the name {name} appears twice"));
        }
        tokens.push((name.to_string(), token.to_string()));
    }
    Ok(tokens)
}

/// The tokens configured in the environment variable `[api] tokens_env`.
pub fn tokens_from_env(config: &ChumConfig) -> Result<Tokens, String> {
    match std::env::var(&config.api.tokens_env) {
        Ok(raw) => parse_tokens(&raw).map_err(|e| format!("{}: {e}", config.api.tokens_env)),
        Err(_) => Ok(Vec::new()),
    }
}

/// A non-loopback address without tokens would expose the API to the network unauthenticated.
pub fn check_bind(bind: SocketAddr, tokens: &Tokens, tokens_env: &str) -> Result<(), String> {
    if !bind.ip().is_loopback() && tokens.is_empty() {
        return Err(format!(
            "[api] bind = \"{bind}\" is reachable from other machines, and no API tokens are configured; \
             set {tokens_env}=\"<name>:<token>\" or bind to 127.0.0.1"
        ));
    }
    Ok(())
}
