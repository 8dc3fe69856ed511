//! Bearer tokens: where they come from, how they are checked, and when the API may listen
//! without them.

use std::net::SocketAddr;

use chum_core::config::ChumConfig;

/// Shortest token accepted: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;

/// What a token may do. `read` views everything; `control` also decides at the gates, pauses,
/// creates and retires. A token without a role is `control` (tokens written before roles could
/// do everything, and still can).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Control,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Control => "control",
        }
    }
}

/// One configured token: who it is, the secret, and what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub token: String,
    pub role: Role,
}

impl ApiToken {
    pub fn new(name: &str, token: &str, role: Role) -> ApiToken {
        ApiToken {
            name: name.to_string(),
            token: token.to_string(),
            role,
        }
    }

    pub fn control(name: &str, token: &str) -> ApiToken {
        ApiToken::new(name, token, Role::Control)
    }

    pub fn read(name: &str, token: &str) -> ApiToken {
        ApiToken::new(name, token, Role::Read)
    }
}

/// Never prints the secret (a token must not reach a log).
impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiToken({}, {}, <secret>)", self.name, self.role.name())
    }
}

/// Who sent a request, by the token it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub fn may_control(&self) -> bool {
        self.role == Role::Control
    }
}

/// The configured tokens.
pub type Tokens = Vec<ApiToken>;

/// Why the API's tokens or address are refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "entry {0} is not `name:token` or `name:token:role` (e.g. CHUM_API_TOKENS=\"alice:<32 random chars>:control,viewer:<...>:read\")"
    )]
    NotAPair(usize),
    #[error("entry {entry} ({name}): the role {role:?} is neither `read` nor `control`")]
    BadRole { entry: usize, name: String, role: String },
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

/// Parses `name:token[:role],name2:token2[:role]` (role `read` or `control`, default `control`).
/// Every token must be at least 16 characters and every name unique, so the audit log can say
/// who did what.
pub fn parse_tokens(raw: &str) -> Result<Tokens, TokenError> {
    let mut tokens: Tokens = Vec::new();
    for (i, entry) in raw.split(',').map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let (name, token, role) = match parts.as_slice() {
            [name, token] => (*name, *token, Role::Control),
            [name, token, "read"] => (*name, *token, Role::Read),
            [name, token, "control"] => (*name, *token, Role::Control),
            [name, _, role] => {
                return Err(TokenError::BadRole {
                    entry: i + 1,
                    name: name.to_string(),
                    role: role.to_string(),
                });
            }
            _ => return Err(TokenError::NotAPair(i + 1)),
        };
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
        if tokens.iter().any(|t| t.name == name) {
            return Err(TokenError::Twice(name.to_string()));
        }
        tokens.push(ApiToken::new(name, token, role));
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
