//! What a million tokens cost, per model: a pinned table of the vendors' list prices, overridable
//! per provider (`[providers.<name>] price = { input_usd_per_mtok = ..., output_usd_per_mtok = ... }`),
//! so a provider whose CLI reports tokens but no dollars (Codex) still counts against the USD
//! budgets. Such costs are marked computed; `chum usage` says how many.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::validate::Validator;

/// A price as the file writes it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RawPrice {
    pub input_usd_per_mtok: Option<f64>,
    pub output_usd_per_mtok: Option<f64>,
}

/// USD per million input and output tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TokenPrice {
    pub input_usd_per_mtok: f64,
    pub output_usd_per_mtok: f64,
}

impl TokenPrice {
    /// What `input` and `output` tokens cost at this price.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_usd_per_mtok + output as f64 * self.output_usd_per_mtok) / 1_000_000.0
    }
}

/// When the table's figures were read from the vendors' published price lists (OpenAI's and
/// Anthropic's API pricing pages, Google's Gemini API pricing): override a price in the
/// configuration when it changes.
pub const PRICE_TABLE_AS_OF: &str = "2025-11";

/// List prices, USD per million tokens (input, output), by model name. A dated or versioned name
/// takes the price of the longest entry it starts with (`gpt-5-2025-08-07` is `gpt-5`,
/// `claude-sonnet-4-5` is `claude-sonnet-4`); a router's `vendor/` prefix is ignored.
const PRICE_TABLE: &[(&str, f64, f64)] = &[
    ("gpt-5", 1.25, 10.0),
    ("gpt-5-codex", 1.25, 10.0),
    ("gpt-5-mini", 0.25, 2.0),
    ("gpt-5-nano", 0.05, 0.40),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4o", 2.50, 10.0),
    ("gpt-4o-mini", 0.15, 0.60),
    ("o3", 2.0, 8.0),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
    ("codex-mini-latest", 1.50, 6.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-3-7-sonnet", 3.0, 15.0),
    ("claude-3-5-sonnet", 3.0, 15.0),
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-3-5-haiku", 0.80, 4.0),
    ("gemini-2.5-pro", 1.25, 10.0),
    ("gemini-2.5-flash", 0.30, 2.50),
];

/// The table's price for `model`, if it has one.
pub fn table_price(model: &str) -> Option<TokenPrice> {
    let model = model.trim().to_ascii_lowercase();
    let model = model.rsplit('/').next().unwrap_or_default();
    PRICE_TABLE
        .iter()
        .filter(|(name, _, _)| {
            model == *name
                || model
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(['-', '@', ':']))
        })
        .max_by_key(|(name, _, _)| name.len())
        .map(|&(_, input, output)| TokenPrice {
            input_usd_per_mtok: input,
            output_usd_per_mtok: output,
        })
}

impl Validator {
    /// A provider's price: the one it writes (both figures, each a non-negative amount), else the
    /// table's for its model, else none.
    pub(super) fn price(
        &self,
        key: &str,
        raw: Option<RawPrice>,
        model: &str,
    ) -> Result<Option<TokenPrice>, ConfigError> {
        let Some(raw) = raw else {
            return Ok(table_price(model));
        };
        let figure = |name: &str, value: Option<f64>| match value {
            Some(v) if v.is_finite() && v >= 0.0 => Ok(v),
            Some(v) => Err(self.invalid(format!("{key}.{name}"), format!("{v} is not an amount of USD"))),
            None => Err(self.invalid(
                format!("{key}.{name}"),
                "is required: a price names both input_usd_per_mtok and output_usd_per_mtok",
            )),
        };
        Ok(Some(TokenPrice {
            input_usd_per_mtok: figure("input_usd_per_mtok", raw.input_usd_per_mtok)?,
            output_usd_per_mtok: figure("output_usd_per_mtok", raw.output_usd_per_mtok)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_takes_the_price_of_its_longest_table_name() {
        let price = |m: &str| table_price(m).map(|p| (p.input_usd_per_mtok, p.output_usd_per_mtok));
        assert_eq!(price("gpt-5"), Some((1.25, 10.0)));
        assert_eq!(price("gpt-5-mini-2025-08-07"), Some((0.25, 2.0)));
        assert_eq!(price("openai/gpt-5-codex"), Some((1.25, 10.0)));
        assert_eq!(price("claude-sonnet-4-5-20250929"), Some((3.0, 15.0)));
        assert_eq!(price("Claude-Opus-4-1"), Some((15.0, 75.0)));
        assert_eq!(price("o3-mini"), Some((1.10, 4.40)));
        assert_eq!(price("gpt-50"), None, "a name is matched at a boundary");
        assert_eq!(price("scripted-main"), None);
        assert_eq!(price(""), None);
    }

    #[test]
    fn a_cost_is_tokens_times_price() {
        let p = TokenPrice {
            input_usd_per_mtok: 1.25,
            output_usd_per_mtok: 10.0,
        };
        assert!((p.cost(1_200, 150) - 0.003).abs() < 1e-12);
        assert_eq!(p.cost(0, 0), 0.0);
    }
}
