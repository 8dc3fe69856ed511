//! Compiles the wire contract in `proto/chum/v1` with pure-Rust tools (protox + prost-build), so
//! building CHUM never needs a system `protoc`. Every message gets serde derives (JSON is the
//! payload format on the wire) and every enum-typed field is (de)serialized as its lower-case name.

use std::path::PathBuf;

use prost_build::Config;
use prost_types::field_descriptor_proto::{Label, Type};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let files = [
        "chum/v1/shark.proto",
        "chum/v1/activities.proto",
        "chum/v1/learner.proto",
        "chum/v1/dispatcher.proto",
        "chum/v1/groom.proto",
        "chum/v1/coordinator.proto",
        "chum/v1/forge.proto",
        "chum/v1/notify.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }

    let fds = protox::compile(files, [&proto_root])?;

    let mut config = Config::new();
    config.message_attribute(
        ".chum.v1",
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
    );
    // An enum held as itself (not as a message field's `i32`) is written with the same short
    // lower-case name: `GateName::PlanValidation` is "plan_validation".
    config.enum_attribute(
        ".chum.v1",
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"snake_case\")]",
    );
    for file in &fds.file {
        let package = file.package();
        for message in &file.message_type {
            for field in &message.field {
                if field.r#type() == Type::Enum {
                    // ".chum.v1.Phase" -> module `phase` in crate::proto::enum_json; a repeated
                    // field (a `Vec<i32>`) goes through its `repeated` submodule.
                    let enum_name = field.type_name().rsplit('.').next().unwrap_or_default();
                    let mut module = snake_case(enum_name);
                    if field.label() == Label::Repeated {
                        module.push_str("::repeated");
                    }
                    config.field_attribute(
                        format!(".{package}.{}.{}", message.name(), field.name()),
                        format!("#[serde(with = \"crate::proto::enum_json::{module}\")]"),
                    );
                }
            }
        }
    }
    config.compile_fds(fds)?;
    Ok(())
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
