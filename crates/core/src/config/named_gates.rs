//! Validation of `[[projects.<name>.gate]]`: a project's own gates (a type checker, a proof
//! script), each a command run on the work like the definition of done, placed anywhere in the
//! project's `gates = [...]` beside the built-in review, semgrep and dod.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::validate::Validator;
use super::{ConfigError, is_simple_name};
use crate::egress::AllowList;
use crate::proto::{EnumName, GateFailure, GateName, GateWhen, NamedGate};

/// A named gate's command may run this long when its config does not say.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(600);

/// Names a named gate cannot take: the gates and steps CHUM has already.
const RESERVED: [&str; 9] = [
    "review",
    "semgrep",
    "dod",
    "plan_validation",
    "human",
    "execute",
    "land",
    "pull_request",
    "result",
];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawNamedGate {
    pub name: Option<String>,
    pub command: Option<String>,
    pub timeout: Option<String>,
    pub when: Option<String>,
    pub fail: Option<String>,
    pub sandbox: RawGateSandbox,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawGateSandbox {
    pub allow_hosts: Vec<String>,
}

/// One of a project's own gates.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedGateConfig {
    pub name: String,
    /// Run with `sh -c` in the work's worktree, sandboxed like the definition of done.
    pub command: String,
    pub timeout: Duration,
    pub when: GateWhen,
    pub fail: GateFailure,
    /// Hosts the command may reach (none by default); the sandbox itself is the project's.
    pub allow_hosts: AllowList,
}

impl NamedGateConfig {
    /// What the workflow needs to know of it (its command stays in the config: the activity reads
    /// it, so no command line is written into a history).
    pub fn to_proto(&self) -> NamedGate {
        NamedGate {
            name: self.name.clone(),
            timeout_secs: self.timeout.as_secs().max(1),
            when: self.when as i32,
            fail: self.fail as i32,
        }
    }
}

impl Validator {
    /// The project's named gates and its gate order. Without `gates`, the default order with the
    /// named gates after it, as defined; with `gates`, every named gate must be placed in it.
    pub(super) fn named_gates(
        &self,
        project: &str,
        raw: Vec<RawNamedGate>,
        order: Option<Vec<String>>,
    ) -> Result<(Vec<GateName>, Vec<NamedGateConfig>), ConfigError> {
        let key = |k: &str| format!("projects.{project}.{k}");
        let mut defined: Vec<NamedGateConfig> = Vec::new();
        for (i, gate) in raw.into_iter().enumerate() {
            let at = |k: &str| format!("projects.{project}.gate[{i}].{k}");
            let name = gate
                .name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| self.invalid(at("name"), "is required: the gate's name, e.g. \"typecheck\""))?;
            if !is_simple_name(&name) {
                return Err(self.invalid(at("name"), "gate names may only use letters, digits, '-' and '_'"));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(self.invalid(
                    at("name"),
                    format!("{name:?} is one of CHUM's own gates or steps; give the gate another name"),
                ));
            }
            if defined.iter().any(|g| g.name == name) {
                return Err(self.invalid(at("name"), format!("{name:?} is defined twice")));
            }
            let command = gate.command.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                self.invalid(
                    at("command"),
                    "is required: the command to run in the work's worktree, e.g. \"mypy src\"",
                )
            })?;
            let timeout = self.duration(&at("timeout"), gate.timeout.as_deref(), DEFAULT_GATE_TIMEOUT)?;
            let when = match gate.when.as_deref().unwrap_or("every_attempt") {
                "every_attempt" => GateWhen::EveryAttempt,
                "before_integration" => GateWhen::BeforeIntegration,
                other => {
                    return Err(self.invalid(
                        at("when"),
                        format!("{other:?} is not one of \"every_attempt\", \"before_integration\""),
                    ));
                }
            };
            let fail = match gate.fail.as_deref().unwrap_or("redo") {
                "redo" => GateFailure::Redo,
                "block" => GateFailure::Block,
                other => {
                    return Err(self.invalid(at("fail"), format!("{other:?} is not one of \"redo\", \"block\"")));
                }
            };
            let allow_hosts = self.allow_hosts(&at("sandbox.allow_hosts"), &gate.sandbox.allow_hosts)?;
            defined.push(NamedGateConfig {
                name,
                command,
                timeout,
                when,
                fail,
                allow_hosts,
            });
        }
        let Some(names) = order else {
            let mut gates = GateName::DEFAULT_ORDER.to_vec();
            gates.extend(defined.iter().map(|_| GateName::Named));
            return Ok((gates, defined));
        };
        let mut gates = Vec::new();
        let mut placed: Vec<NamedGateConfig> = Vec::new();
        for name in names {
            let listed_twice = || self.invalid(key("gates"), format!("{name:?} is listed twice"));
            if let Some(gate) = GateName::parse_check(&name) {
                if gates.contains(&gate) {
                    return Err(listed_twice());
                }
                gates.push(gate);
            } else if let Some(named) = defined.iter().find(|g| g.name == name) {
                if placed.iter().any(|g| g.name == name) {
                    return Err(listed_twice());
                }
                gates.push(GateName::Named);
                placed.push(named.clone());
            } else {
                let mut known: Vec<String> = GateName::CHECKS.iter().map(|g| format!("{:?}", g.name())).collect();
                known.extend(defined.iter().map(|g| format!("{:?}", g.name)));
                return Err(self.invalid(
                    key("gates"),
                    format!(
                        "{name:?} is not a gate; gates are {} (define your own with [[projects.{project}.gate]])",
                        known.join(", ")
                    ),
                ));
            }
        }
        if let Some(missing) = defined.iter().find(|g| !placed.iter().any(|p| p.name == g.name)) {
            return Err(self.invalid(
                key("gates"),
                format!(
                    "the gate {:?} is defined but not placed; add it to gates = [...] where it should run",
                    missing.name
                ),
            ));
        }
        Ok((gates, placed))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::ChumConfig;

    const PROJECT: &str = r#"
        [temporal]
        address = "http://127.0.0.1:7233"
        [projects.demo]
        repo = "../demo"
        dod = ["python3 -m unittest"]
        [providers.scripted]
        command = ["chum-scripted-agent"]
        [providers.other]
        command = ["other-agent"]
        [tiers]
        fast = ["scripted"]
        review = ["other"]
        [roles]
        planner = "fast"
        executor = "fast"
        reviewer = "review"
    "#;

    const TYPECHECK: &str = r#"
        [[projects.demo.gate]]
        name = "typecheck"
        command = "mypy --strict src"
        timeout = "2m"
        [[projects.demo.gate]]
        name = "proof"
        command = "./prove.sh"
        when = "before_integration"
        fail = "block"
        sandbox = { allow_hosts = ["pypi.org"] }
    "#;

    fn load(gates: &str, extra: &str) -> Result<ChumConfig, ConfigError> {
        let text = PROJECT.replace("dod = [", &format!("{gates}\n        dod = [")) + extra;
        ChumConfig::from_toml(&text, Path::new("/etc/chum/chum.toml"), Vec::new())
    }

    fn expect_invalid(gates: &str, extra: &str, key: &str, reason_part: &str) {
        let err = load(gates, extra).expect_err("config should be rejected");
        let msg = err.to_string();
        assert_eq!(err.key(), Some(key), "{msg}");
        assert!(msg.contains(reason_part), "{msg}");
    }

    #[test]
    fn named_gates_are_placed_where_gates_lists_them() {
        let c = load(
            r#"gates = ["semgrep", "typecheck", "review", "dod", "proof"]"#,
            TYPECHECK,
        )
        .unwrap();
        let demo = c.project("demo").unwrap();
        assert_eq!(
            demo.gates,
            [
                GateName::Semgrep,
                GateName::Named,
                GateName::Review,
                GateName::Dod,
                GateName::Named
            ]
        );
        let [typecheck, proof] = demo.named_gates.as_slice() else {
            panic!("two named gates, got {:?}", demo.named_gates);
        };
        assert_eq!(typecheck.name, "typecheck");
        assert_eq!(typecheck.command, "mypy --strict src");
        assert_eq!(typecheck.timeout, Duration::from_secs(120));
        assert_eq!(
            (typecheck.when, typecheck.fail),
            (GateWhen::EveryAttempt, GateFailure::Redo)
        );
        assert!(!typecheck.allow_hosts.allows_any() && typecheck.allow_hosts.rules().is_empty());
        assert_eq!(proof.when, GateWhen::BeforeIntegration);
        assert_eq!(proof.fail, GateFailure::Block);
        assert_eq!(proof.timeout, DEFAULT_GATE_TIMEOUT);
        assert_eq!(proof.allow_hosts.rules().len(), 1);
        // The workflow learns the gate, never its command line.
        let wire = proof.to_proto();
        assert_eq!((wire.name.as_str(), wire.timeout_secs), ("proof", 600));
        assert_eq!(wire.fail(), GateFailure::Block);
    }

    #[test]
    fn without_an_order_named_gates_follow_the_default_ones() {
        let c = load("", TYPECHECK).unwrap();
        let demo = c.project("demo").unwrap();
        let mut expected = GateName::DEFAULT_ORDER.to_vec();
        expected.extend([GateName::Named, GateName::Named]);
        assert_eq!(demo.gates, expected);
        let names: Vec<&str> = demo.named_gates.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["typecheck", "proof"]);
    }

    #[test]
    fn bad_named_gates_are_refused_with_their_key() {
        let order = r#"gates = ["typecheck", "proof"]"#;
        expect_invalid(
            order,
            &TYPECHECK.replace("\"./prove.sh\"", "\" \""),
            "projects.demo.gate[1].command",
            "is required",
        );
        expect_invalid(
            order,
            &TYPECHECK.replace("\"typecheck\"", "\"dod\""),
            "projects.demo.gate[0].name",
            "CHUM's own gates",
        );
        expect_invalid(
            order,
            &TYPECHECK.replace("\"typecheck\"", "\"type check\""),
            "projects.demo.gate[0].name",
            "letters, digits",
        );
        expect_invalid(
            order,
            &TYPECHECK.replace("\"proof\"", "\"typecheck\""),
            "projects.demo.gate[1].name",
            "defined twice",
        );
        expect_invalid(
            order,
            &TYPECHECK.replace("\"before_integration\"", "\"sometimes\""),
            "projects.demo.gate[1].when",
            "\"every_attempt\"",
        );
        expect_invalid(
            order,
            &TYPECHECK.replace("\"block\"", "\"ignore\""),
            "projects.demo.gate[1].fail",
            "\"redo\", \"block\"",
        );
        expect_invalid(
            order,
            &TYPECHECK.replace("\"2m\"", "\"soon\""),
            "projects.demo.gate[0].timeout",
            "not a duration",
        );
        expect_invalid(
            r#"gates = ["typecheck"]"#,
            TYPECHECK,
            "projects.demo.gates",
            "\"proof\" is defined but not placed",
        );
        expect_invalid(
            r#"gates = ["typecheck", "proof", "proof"]"#,
            TYPECHECK,
            "projects.demo.gates",
            "listed twice",
        );
        expect_invalid(
            r#"gates = ["lint"]"#,
            TYPECHECK,
            "projects.demo.gates",
            "\"typecheck\", \"proof\"",
        );
        expect_invalid(
            order,
            &TYPECHECK.replace("timeout = \"2m\"", "timeout = \"2m\"\n        retries = 2"),
            "projects.demo.gate.0.retries",
            "unknown key",
        );
    }
}
