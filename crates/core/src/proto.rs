//! The wire contract, generated from `proto/chum/v1/*.proto` by `build.rs`.
//!
//! JSON is the payload format: field names are the proto names, enums are written as their
//! lower-case names without the type prefix (`Phase::AwaitingApproval` is "awaiting_approval"),
//! and missing fields take their defaults.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

include!(concat!(env!("OUT_DIR"), "/chum.v1.rs"));

/// The short JSON/display name of a proto enum value, e.g. "awaiting_approval".
pub trait EnumName: Sized {
    fn name(&self) -> String;
    fn from_name(name: &str) -> Option<Self>;
}

macro_rules! enum_names {
    ($($ty:ident => $prefix:literal),* $(,)?) => {
        $(
            impl EnumName for $ty {
                fn name(&self) -> String {
                    let full = self.as_str_name();
                    full.strip_prefix($prefix).unwrap_or(full).to_ascii_lowercase()
                }
                fn from_name(name: &str) -> Option<Self> {
                    let upper = name.to_ascii_uppercase();
                    Self::from_str_name(&format!("{}{}", $prefix, upper))
                        .or_else(|| Self::from_str_name(&upper))
                }
            }

            impl std::fmt::Display for $ty {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str(&EnumName::name(self))
                }
            }
        )*
    };
}

enum_names!(Phase => "PHASE_", Outcome => "OUTCOME_");

/// serde adapters for enum-typed fields, which prost stores as `i32`.
pub mod enum_json {
    macro_rules! adapter {
        ($module:ident, $ty:ident) => {
            pub mod $module {
                use crate::proto::{EnumName, $ty};
                use serde::{Deserialize, Deserializer, Serializer, de::Error};

                pub fn serialize<S: Serializer>(value: &i32, s: S) -> Result<S::Ok, S::Error> {
                    match $ty::try_from(*value) {
                        Ok(v) => s.serialize_str(&v.name()),
                        Err(_) => s.serialize_i32(*value),
                    }
                }

                pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
                    #[derive(Deserialize)]
                    #[serde(untagged)]
                    enum NameOrNumber {
                        Name(String),
                        Number(i32),
                    }
                    match NameOrNumber::deserialize(d)? {
                        NameOrNumber::Number(n) => Ok(n),
                        NameOrNumber::Name(name) => $ty::from_name(&name)
                            .map(|v| v as i32)
                            .ok_or_else(|| D::Error::custom(format!("unknown {} {name:?}", stringify!($module)))),
                    }
                }
            }
        };
    }
    adapter!(phase, Phase);
    adapter!(outcome, Outcome);
}

impl AgentUsage {
    pub fn add(&mut self, other: &AgentUsage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_travel_as_short_lowercase_names() {
        let mut status = SharkStatus::default();
        status.set_phase(Phase::AwaitingApproval);
        status.set_outcome(Outcome::GateTimeout);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["phase"], "awaiting_approval");
        assert_eq!(json["outcome"], "gate_timeout");
        let back: SharkStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back.phase(), Phase::AwaitingApproval);
        assert_eq!(back.outcome(), Outcome::GateTimeout);
    }

    #[test]
    fn missing_fields_take_defaults_and_unknown_enum_names_are_errors() {
        let input: SharkInput = serde_json::from_str(r#"{"project": "demo", "bead_id": "tk-1"}"#).unwrap();
        assert_eq!(input.bead_id, "tk-1");
        assert!(input.limits.is_none());
        let err = serde_json::from_str::<PhaseSpan>(r#"{"phase": "sleeping"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown phase \"sleeping\""), "{err}");
    }
}
