//! Bearer tokens: where they come from, how they are checked, and when the API may listen
//! without them.

use std::net::SocketAddr;

use chum_core::config::ChumConfig;

/// Shortest token accepted: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;

/// Bearer tokens: (who, token).
pub type Tokens = Vec<(String, String)>;

/// Why the API's tokens or address are refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("entry {0} is not `name:token` (e.g. CHUM_API_TOKENS=\"alice:<32 random chars>,ci:<...>\")")]
    NotAPair(usize),
    #[error("entry {entry}: the name {name:?} must be letters, digits, '-', '_' or '.'")]
    BadName { entry: usize, name: String },
    #[error(
        "entry {entry} ({name}): the token is {len} characters; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 24`)"
    )]
    Short { entry: usize, name: String, len: usize },
    #[error("the name {0} appears twice")]
    Twice(String),
    /// Which variable held the bad list.
    #[error("{variable}: {source}")]
    InVariable {
        variable: String,
        #[source]
        source: Box<TokenError>,
    },
    #[error(
        "[api] bind = \"{bind}\" is reachable from other machines, and no API tokens are configured; set {tokens_env}=\"<name>:<token>\" or bind to 127.0.0.1"
    )]
    Exposed { bind: SocketAddr, tokens_env: String },
}

/// Parses `name:token,name2:token2`. Every token must be at least 16 characters and every name
/// unique, so the audit log can say who did what.
pub fn parse_tokens(raw: &str) -> Result<Tokens, TokenError> {
    let mut tokens: Tokens = Vec::new();
    for (i, pair) in raw.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let Some((name, token)) = pair.split_once(':') else {
            return Err(TokenError::NotAPair(i + 1));
        };
        let (name, token) = (name.trim(), token.trim());
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(TokenError::BadName {
                entry: i + 1,
                name: name.to_string(),
            });
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(TokenError::Short {
                entry: i + 1,
                name: name.to_string(),
                len: token.len(),
            });
        }
        if tokens.iter().any(|(n, _)| n == name) {
            return Err(TokenError::Twice(name.to_string()));
        }
        tokens.push((name.to_string(), token.to_string()));
    }
    Ok(tokens)
}

/// The tokens configured in the environment variable `[api] tokens_env`.
pub fn tokens_from_env(config: &ChumConfig) -> Result<Tokens, TokenError> {
    match std::env::var(&config.api.tokens_env) {
        Ok(raw) => parse_tokens(&raw).map_err(|e| TokenError::InVariable {
            variable: config.api.tokens_env.clone(),
            source: Box::new(e),
        }),
        Err(_) => Ok(Vec::new()),
    }
}

/// A non-loopback address without tokens would expose the API to the network unauthenticated.
pub fn check_bind(bind: SocketAddr, tokens: &Tokens, tokens_env: &str) -> Result<(), TokenError> {
    if !bind.ip().is_loopback() && tokens.is_empty() {
        return Err(TokenError::Exposed {
            bind,
            tokens_env: tokens_env.to_string(),
        });
    }
    Ok(())
}
