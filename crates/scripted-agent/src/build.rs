//! How a test writes a scenario: `Step::executor().attempt(2).write("calc.py", code)`, collected
//! into a `Scenario` and written with `to_toml`. Each method sets the key of the same name in the
//! file format (see `scenario.rs`); what a step may combine is checked when the agent loads it.

use crate::scenario::{Edit, FailSpec, Flood, Scenario, Step, ToolCall, Usage};

impl Scenario {
    pub fn new(steps: Vec<Step>) -> Scenario {
        Scenario {
            usage: Usage::default(),
            steps,
        }
    }

    /// The scenario file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a scenario is plain data and always serializes")
    }
}

impl Step {
    /// A step for calls in `role` (CHUM_ROLE), whatever the bead, attempt or provider.
    pub fn for_role(role: &str) -> Step {
        Step {
            role: Some(role.to_string()),
            ..Step::default()
        }
    }

    pub fn planner() -> Step {
        Step::for_role("planner")
    }

    pub fn executor() -> Step {
        Step::for_role("executor")
    }

    pub fn reviewer() -> Step {
        Step::for_role("reviewer")
    }

    pub fn learner() -> Step {
        Step::for_role("learner")
    }

    pub fn groomer() -> Step {
        Step::for_role("groomer")
    }

    /// Only for this bead (CHUM_BEAD_ID).
    pub fn bead(mut self, bead: &str) -> Step {
        self.bead = Some(bead.to_string());
        self
    }

    /// Only for this attempt (CHUM_ATTEMPT; a planner's round).
    pub fn attempt(mut self, attempt: u32) -> Step {
        self.attempt = Some(attempt);
        self
    }

    /// Only for this redo within the attempt (CHUM_HANDOFF).
    pub fn handoff(mut self, handoff: u32) -> Step {
        self.handoff = Some(handoff);
        self
    }

    /// Only for this provider (its name in chum.toml).
    pub fn provider(mut self, provider: &str) -> Step {
        self.provider = Some(provider.to_string());
        self
    }

    /// Only for this Monte Carlo candidate.
    pub fn candidate(mut self, candidate: u32) -> Step {
        self.candidate = Some(candidate);
        self
    }

    /// Only for prompts containing `needle` (may be given several times: all must match).
    pub fn prompt_contains(mut self, needle: &str) -> Step {
        self.prompt_contains.push(needle.to_string());
        self
    }

    /// Fails the call (exit 4) when the prompt lacks `needle`.
    pub fn expect_prompt_contains(mut self, needle: &str) -> Step {
        self.expect_prompt_contains.push(needle.to_string());
        self
    }

    pub fn sleep_ms(mut self, ms: u64) -> Step {
        self.sleep_ms = ms;
        self
    }

    /// Answers `text` (`{added_line:N}` quotes the diff in the prompt).
    pub fn answer(mut self, text: impl Into<String>) -> Step {
        self.answer = Some(text.into());
        self
    }

    /// Answers `text` and reports it as an error, like a CLI that is not logged in.
    pub fn error_answer(self, text: impl Into<String>) -> Step {
        let mut step = self.answer(text);
        step.is_error = true;
        step
    }

    /// Writes the whole file `path` before answering.
    pub fn write(mut self, path: &str, content: &str) -> Step {
        self.edits.push(Edit {
            path: path.to_string(),
            write: Some(content.to_string()),
            ..Edit::default()
        });
        self
    }

    /// Replaces the first `find` in `path` with `replace` before answering.
    pub fn replace(mut self, path: &str, find: &str, replace: &str) -> Step {
        self.edits.push(Edit {
            path: path.to_string(),
            find: Some(find.to_string()),
            replace: Some(replace.to_string()),
            ..Edit::default()
        });
        self
    }

    /// Deletes `path` before answering.
    pub fn delete(mut self, path: &str) -> Step {
        self.edits.push(Edit {
            path: path.to_string(),
            delete: true,
            ..Edit::default()
        });
        self
    }

    /// Exits with `exit_code` and `stderr`, without an answer.
    pub fn fail(mut self, exit_code: u8, stderr: &str) -> Step {
        self.fail = Some(FailSpec {
            exit_code,
            stderr: stderr.to_string(),
        });
        self
    }

    /// Never answers (and holds a child process).
    pub fn hang(mut self) -> Step {
        self.hang = true;
        self
    }

    /// Prints `text` instead of the JSON contract.
    pub fn garbage(mut self, text: &str) -> Step {
        self.garbage = Some(text.to_string());
        self
    }

    /// Reports this usage instead of the scenario's.
    pub fn usage(mut self, usage: Usage) -> Step {
        self.usage = Some(usage);
        self
    }

    /// Runs `command` with `sh -c` before the action, like an agent's shell tool.
    pub fn shell(mut self, command: &str) -> Step {
        self.shell = Some(command.to_string());
        self
    }

    /// Writes `bytes` of output on `stream` ("stdout" or "stderr") before the action.
    pub fn flood(mut self, bytes: u64, stream: &str) -> Step {
        self.flood = Some(Flood {
            bytes,
            stream: stream.to_string(),
        });
        self
    }

    /// Model server only: calls the tool `name` with `input` before the edits.
    pub fn tool_call(mut self, name: &str, input: serde_json::Value) -> Step {
        self.tool_calls.push(ToolCall {
            name: name.to_string(),
            input,
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_written_with_the_builders_reads_back_as_written() {
        let scenario = Scenario {
            usage: Usage {
                input_tokens: 10,
                output_tokens: 2,
                cost_usd: 0.5,
            },
            steps: vec![
                Step::planner().attempt(2).answer("'''{\"summary\": \"x\"}'''\n"),
                Step::executor()
                    .bead("tk-1")
                    .handoff(1)
                    .prompt_contains("multiply")
                    .sleep_ms(5)
                    .answer("done")
                    .write("a.py", "print('a')\n")
                    .replace("b.py", "x", "y")
                    .delete("c.py")
                    .usage(Usage::default()),
                Step::reviewer().provider("p").candidate(2).fail(3, "crash"),
                Step::learner().hang(),
                Step::groomer().garbage("not json").shell("true").flood(10, "stderr"),
                Step::executor()
                    .tool_call("mcp__everything__echo", serde_json::json!({"message": "hi"}))
                    .answer("{tool_results}"),
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.toml");
        std::fs::write(&path, scenario.to_toml()).unwrap();
        let back = Scenario::load(&path).unwrap_or_else(|e| panic!("{e:#}\n{}", scenario.to_toml()));
        assert_eq!(format!("{:?}", back.steps), format!("{:?}", scenario.steps));
        assert_eq!(back.usage.cost_usd, 0.5);
    }
}
