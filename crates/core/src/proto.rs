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

enum_names!(
    Phase => "PHASE_",
    Outcome => "OUTCOME_",
    GateName => "GATE_NAME_",
    SelectMode => "SELECT_MODE_",
    BeadStatus => "BEAD_STATUS_",
    GroomKind => "GROOM_KIND_",
    UpdateMode => "UPDATE_MODE_",
    LeaseMode => "LEASE_MODE_",
    PullRequestState => "PULL_REQUEST_STATE_",
    GateWhen => "GATE_WHEN_",
    GateFailure => "GATE_FAILURE_",
);

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
                    NameOrNumber::deserialize(d)?.value::<D::Error>()
                }

                #[derive(Deserialize)]
                #[serde(untagged)]
                enum NameOrNumber {
                    Name(String),
                    Number(i32),
                }

                impl NameOrNumber {
                    fn value<E: Error>(self) -> Result<i32, E> {
                        match self {
                            NameOrNumber::Number(n) => Ok(n),
                            // Fields that were strings before they were enums kept "" for
                            // "none"; it reads as the unspecified value.
                            NameOrNumber::Name(name) if name.is_empty() => Ok(0),
                            NameOrNumber::Name(name) => $ty::from_name(&name)
                                .map(|v| v as i32)
                                .ok_or_else(|| E::custom(format!("unknown {} {name:?}", stringify!($module)))),
                        }
                    }
                }

                /// The same for a repeated field (a list of names).
                pub mod repeated {
                    use serde::ser::SerializeSeq;
                    use serde::{Deserialize, Deserializer, Serializer};

                    pub fn serialize<S: Serializer>(values: &[i32], s: S) -> Result<S::Ok, S::Error> {
                        let mut seq = s.serialize_seq(Some(values.len()))?;
                        for value in values {
                            seq.serialize_element(&Named(*value))?;
                        }
                        seq.end()
                    }

                    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
                        Vec::<super::NameOrNumber>::deserialize(d)?
                            .into_iter()
                            .map(super::NameOrNumber::value::<D::Error>)
                            .collect()
                    }

                    struct Named(i32);

                    impl serde::Serialize for Named {
                        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                            super::serialize(&self.0, s)
                        }
                    }
                }
            }
        };
    }
    adapter!(phase, Phase);
    adapter!(outcome, Outcome);
    adapter!(gate_name, GateName);
    adapter!(select_mode, SelectMode);
    adapter!(bead_status, BeadStatus);
    adapter!(groom_kind, GroomKind);
    adapter!(update_mode, UpdateMode);
    adapter!(lease_mode, LeaseMode);
    adapter!(pull_request_state, PullRequestState);
    adapter!(gate_when, GateWhen);
    adapter!(gate_failure, GateFailure);
}

impl GateName {
    /// The checks a project can order (`gates = [...]`).
    pub const CHECKS: [GateName; 3] = [GateName::Review, GateName::Semgrep, GateName::Dod];
    /// A project's order when its config does not say: the free, deterministic check first, so a
    /// mistake a learned rule catches in a second does not cost a model review first.
    pub const DEFAULT_ORDER: [GateName; 3] = [GateName::Semgrep, GateName::Review, GateName::Dod];
    /// The order of runs whose load answered none (recorded before projects had `gates`): their
    /// histories replay with it, whatever the default is now.
    pub const ORDER_BEFORE_PROJECT_GATES: [GateName; 3] = [GateName::Review, GateName::Semgrep, GateName::Dod];

    /// A check's name as a config writes it; `None` for anything else (the Shark's own steps,
    /// which are not configurable, included).
    pub fn parse_check(name: &str) -> Option<GateName> {
        GateName::CHECKS.into_iter().find(|g| g.name() == name)
    }
}

impl GateResult {
    /// The gate's name as people read it: a named gate's own name ("typecheck"), else the
    /// built-in gate's ("semgrep").
    pub fn label(&self) -> String {
        if self.gate() == GateName::Named && !self.name.is_empty() {
            self.name.clone()
        } else {
            self.gate().name()
        }
    }
}

impl BeadStatus {
    /// The status a backlog wrote, typed; one this list does not know is `Unspecified`.
    pub fn of(text: &str) -> BeadStatus {
        BeadStatus::from_name(text.trim()).unwrap_or_default()
    }
}

impl Bead {
    /// [`BeadStatus::of`] its status.
    pub fn state(&self) -> BeadStatus {
        BeadStatus::of(&self.status)
    }
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
    fn an_enum_held_as_itself_is_written_with_its_wire_name() {
        fn same<T: EnumName + serde::Serialize>(values: impl IntoIterator<Item = T>) {
            for v in values {
                assert_eq!(serde_json::to_value(&v).unwrap(), v.name());
            }
        }
        same([GateName::PlanValidation, GateName::Human, GateName::Dod]);
        same([SelectMode::First, SelectMode::Best]);
        same([BeadStatus::InProgress, BeadStatus::Tombstone]);
        same([GroomKind::Tactical, GroomKind::Strategic]);
        same([Phase::AwaitingApproval, Phase::Dod]);
        same([Outcome::IntegrationFailed]);
        assert_eq!(BeadStatus::of("in_progress"), BeadStatus::InProgress);
        assert_eq!(BeadStatus::of("hooked"), BeadStatus::Unspecified);
        assert_eq!(GateName::parse_check("dod"), Some(GateName::Dod));
        assert_eq!(GateName::parse_check("human"), None, "not a check a project orders");
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
