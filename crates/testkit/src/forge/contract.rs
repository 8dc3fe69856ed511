//! GitHub's published contract, as `scripts/setup.sh` installs it (npm `@octokit/openapi`,
//! `@octokit/openapi-webhooks`, pinned): which operation a request is, whether its query and body
//! are what the description allows, whether an answer or a webhook payload matches its schema.
//!
//! The REST description is OpenAPI 3.0 (`nullable: true` instead of a `null` type); it is turned
//! into plain JSON Schema (draft 4, which 3.0's schemas follow) once per test process. The webhook
//! description is OpenAPI 3.1, whose schemas are JSON Schema 2020-12 already.

use std::path::PathBuf;
use std::sync::OnceLock;

use jsonschema::{Draft, Registry, Validator};
use serde_json::{Map, Value, json};

const REST_URI: &str = "https://chum.test/github-rest.json";
const WEBHOOKS_URI: &str = "https://chum.test/github-webhooks.json";

/// Where setup put the descriptions.
pub fn contracts_dir() -> PathBuf {
    crate::workspace_root().join(".tools/forge-contracts/node_modules/@octokit")
}

/// Whether the descriptions are installed. Without them the forge tests skip, unless
/// `CHUM_REQUIRE_FORGE_CONTRACTS=1` (CI) makes that a failure.
pub fn contracts_installed() -> bool {
    let there = contracts_dir().join("openapi/generated/api.github.com.json").is_file()
        && contracts_dir()
            .join("openapi-webhooks/generated/api.github.com.json")
            .is_file();
    if !there && std::env::var("CHUM_REQUIRE_FORGE_CONTRACTS").is_ok_and(|v| v == "1") {
        panic!(
            "CHUM_REQUIRE_FORGE_CONTRACTS=1 but GitHub's OpenAPI descriptions are not installed: run scripts/setup.sh"
        );
    }
    there
}

/// GitHub's REST description, nullable turned into JSON Schema.
pub struct Contract {
    rest: Value,
    webhooks: Value,
    rest_registry: Registry<'static>,
    webhook_registry: Registry<'static>,
}

/// One operation of the description a request matched.
pub struct Operation<'a> {
    pub id: String,
    pub template: String,
    op: &'a Value,
}

/// The contract, loaded once per test process.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let read = |package: &str| -> Value {
            let path = contracts_dir().join(package).join("generated/api.github.com.json");
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let mut rest = read("openapi");
        nullable_to_json_schema(&mut rest);
        let webhooks = read("openapi-webhooks");
        let rest_registry = Registry::new()
            .draft(Draft::Draft4)
            .add(REST_URI, rest.clone())
            .and_then(|b| b.prepare())
            .expect("GitHub's REST description as a schema registry");
        let webhook_registry = Registry::new()
            .draft(Draft::Draft202012)
            .add(WEBHOOKS_URI, webhooks.clone())
            .and_then(|b| b.prepare())
            .expect("GitHub's webhook description as a schema registry");
        Contract {
            rest,
            webhooks,
            rest_registry,
            webhook_registry,
        }
    })
}

impl Contract {
    /// The operation `method path` is, or why it is none.
    pub fn operation(&self, method: &str, path: &str) -> Result<Operation<'_>, String> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, &String, &Value)> = None;
        for (template, item) in self.rest["paths"].as_object().into_iter().flatten() {
            let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                continue;
            }
            let matches = parts
                .iter()
                .zip(&segments)
                .all(|(p, s)| (p.starts_with('{') && !s.is_empty()) || p == s);
            if !matches {
                continue;
            }
            let literal = parts.iter().filter(|p| !p.starts_with('{')).count();
            if best.is_none_or(|(l, _, _)| literal > l) {
                best = Some((literal, template, item));
            }
        }
        let (_, template, item) = best.ok_or_else(|| format!("{method} {path} is no path of GitHub's REST API"))?;
        let op = item
            .get(method.to_ascii_lowercase())
            .ok_or_else(|| format!("{method} is not an operation of {template}"))?;
        Ok(Operation {
            id: op["operationId"].as_str().unwrap_or_default().to_string(),
            template: template.clone(),
            op,
        })
    }

    /// Whether the request's query and JSON body are what the operation takes.
    pub fn check_request(
        &self,
        op: &Operation<'_>,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<(), String> {
        let params: Vec<Value> = op.op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| self.resolve(p).clone())
            .collect();
        for (name, value) in query {
            let Some(param) = params.iter().find(|p| p["in"] == "query" && p["name"] == name.as_str()) else {
                return Err(format!("{}: the query parameter {name:?} is not one it takes", op.id));
            };
            let typed = match param["schema"]["type"].as_str() {
                Some("integer") => value
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::from(value.clone())),
                Some("boolean") => value
                    .parse::<bool>()
                    .map(Value::from)
                    .unwrap_or(Value::from(value.clone())),
                _ => Value::from(value.clone()),
            };
            self.check_rest(&param["schema"], &typed)
                .map_err(|e| format!("{}: query parameter {name}={value:?}: {e}", op.id))?;
        }
        for param in params.iter().filter(|p| p["in"] == "query" && p["required"] == true) {
            if !query.iter().any(|(n, _)| param["name"] == n.as_str()) {
                return Err(format!(
                    "{}: the required query parameter {} is missing",
                    op.id, param["name"]
                ));
            }
        }
        let wanted = &op.op["requestBody"];
        match (body, wanted.is_null()) {
            (Some(_), true) => Err(format!("{} takes no body", op.id)),
            (None, false) if wanted["required"] == true => Err(format!("{} needs a JSON body", op.id)),
            (Some(body), false) => self
                .check_rest(&wanted["content"]["application/json"]["schema"], body)
                .map_err(|e| format!("{}: request body: {e}", op.id)),
            _ => Ok(()),
        }
    }

    /// Whether an answer with `status` and `body` is one the operation gives.
    pub fn check_response(&self, op: &Operation<'_>, status: u16, body: &Value) -> Result<(), String> {
        let responses = &op.op["responses"];
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .ok_or_else(|| format!("{} never answers HTTP {status}", op.id))?;
        let response = self.resolve(response);
        let schema = &response["content"]["application/json"]["schema"];
        if schema.is_null() {
            return Ok(());
        }
        self.check_rest(schema, body)
            .map_err(|e| format!("{} answer {status}: {e}", op.id))
    }

    /// A worked example the description gives (`components/examples/<name>`), to serve from.
    pub fn example(&self, name: &str) -> Value {
        let value = self.rest["components"]["examples"][name]["value"].clone();
        assert!(!value.is_null(), "GitHub's description has no example {name:?}");
        value
    }

    /// Whether a webhook payload matches the description's schema `name`
    /// (e.g. `webhook-pull-request-closed`).
    pub fn check_webhook(&self, name: &str, payload: &Value) -> Result<(), String> {
        assert!(
            !self.webhooks["components"]["schemas"][name].is_null(),
            "the webhook description has no schema {name:?}"
        );
        let schema = json!({"$ref": format!("{WEBHOOKS_URI}#/components/schemas/{name}")});
        let validator = jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_registry(&self.webhook_registry)
            .build(&schema)
            .map_err(|e| format!("schema {name}: {e}"))?;
        errors(&validator, payload)
    }

    fn check_rest(&self, schema: &Value, value: &Value) -> Result<(), String> {
        // A local `$ref` resolves against the description itself.
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(pointer) if pointer.starts_with('#') => json!({"$ref": format!("{REST_URI}{pointer}")}),
            _ => rebase_refs(schema.clone()),
        };
        let validator = jsonschema::options()
            .with_draft(Draft::Draft4)
            .with_registry(&self.rest_registry)
            .build(&schema)
            .map_err(|e| format!("schema: {e}"))?;
        errors(&validator, value)
    }

    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => self
                .rest
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or(&Value::Null),
            None => value,
        }
    }
}

fn errors(validator: &Validator, value: &Value) -> Result<(), String> {
    let found: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if found.is_empty() {
        Ok(())
    } else {
        Err(found.join("; "))
    }
}

/// `#/components/...` references inside an inline schema, made absolute.
fn rebase_refs(mut value: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref")
                    && r.starts_with('#')
                {
                    *r = format!("{REST_URI}{r}");
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// OpenAPI 3.0's `nullable: true` as JSON Schema: `null` joins the type (and the enum), or the
/// schema becomes "this or null" when it has no type of its own (a `$ref`, an `allOf`).
fn nullable_to_json_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.values_mut().for_each(nullable_to_json_schema);
            if map.remove("nullable") != Some(Value::Bool(true)) {
                return;
            }
            if let Some(Value::Array(options)) = map.get_mut("enum")
                && !options.contains(&Value::Null)
            {
                options.push(Value::Null);
            }
            match map.get("type").cloned() {
                Some(Value::String(t)) => {
                    map.insert("type".into(), json!([t, "null"]));
                }
                _ => {
                    let inner = std::mem::take(map);
                    let mut wrapped = Map::new();
                    wrapped.insert("anyOf".into(), json!([Value::Object(inner), {"type": "null"}]));
                    *map = wrapped;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}
