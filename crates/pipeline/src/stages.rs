//! The catalogue of stages: every implementation of every box, with its keys, their types,
//! defaults and meaning (`stagewise stages`, `cargo xtask stages`).
//!
//! Nothing here is written by hand. The catalogue is read from the JSON Schema that `schemars`
//! derives from the very serde definitions the config parser uses (the `*Config` enums, tagged by
//! `kind`), doc comments included, so a new kind, key or default shows up here the moment the
//! parser accepts it, and a test checks that every default listed is the one the parser fills in.

use crate::config::Config;
use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt::Write as _;

/// One table of the config file: a box (`[forward]`) or a run setting (`[train]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Section {
    /// The table's name, `forward`.
    pub name: String,
    /// What the table decides, from the config's doc comment (`vectors -> logits.`).
    pub summary: String,
    /// The `kind` used when the table or its `kind` is left out; `None` for plain tables.
    pub default_kind: Option<String>,
    /// The implementations to choose from (one unnamed entry for a table without `kind`).
    pub kinds: Vec<Kind>,
}

/// One implementation of a box, as chosen by `kind = "..."`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Kind {
    /// The `kind` value; `None` for a table without kinds.
    pub name: Option<String>,
    /// What it is, from the variant's doc comment.
    pub summary: String,
    /// Its keys, `kind` excluded, in declaration order.
    pub keys: Vec<Key>,
}

/// One key of a table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Key {
    /// The key as written in TOML.
    pub name: String,
    /// Its type in words: `integer >= 0`, `number`, `boolean`, `string`, `"a" | "b"`, `... or none`.
    #[serde(rename = "type")]
    pub ty: String,
    /// The value the parser fills in when the key is left out; `None` when there is no value
    /// (an optional setting, unset by default) or the key is required.
    pub default: Option<Value>,
    /// Whether the key must be given.
    pub required: bool,
    /// What it means, from the field's doc comment.
    pub summary: String,
}

/// The whole catalogue, in the config file's table order.
pub fn catalogue() -> Vec<Section> {
    let schema = schemars::schema_for!(Config);
    let root = schema.as_value();
    let defs = root.get("$defs").and_then(Value::as_object).cloned().unwrap_or_default();
    let Some(props) = root.get("properties").and_then(Value::as_object) else { return Vec::new() };
    props
        .iter()
        .map(|(name, prop)| {
            let summary = summary_of(prop.get("description"));
            let tag = format!("`[{name}]`");
            let summary = summary.strip_prefix(&tag).unwrap_or(&summary);
            let summary = summary.trim_start_matches(':').trim().to_owned();
            let target = resolve(prop, &defs);
            let default_kind =
                prop.get("default").and_then(|d| d.get("kind")).and_then(Value::as_str).map(str::to_owned);
            let kinds = match target.get("oneOf").and_then(Value::as_array) {
                Some(variants) => variants.iter().map(|v| kind_of(v, &defs)).collect(),
                None => {
                    let mut plain = kind_of(target, &defs);
                    // A plain table's defaults sit on the table as a whole.
                    if let Some(Value::Object(whole)) = prop.get("default") {
                        for key in &mut plain.keys {
                            if key.default.is_none() {
                                key.default = whole.get(&key.name).cloned().filter(|v| !v.is_null());
                            }
                        }
                    }
                    vec![plain]
                }
            };
            Section { name: name.clone(), summary, default_kind, kinds }
        })
        .collect()
}

/// Follows a `$ref` into the schema's definitions.
fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs.get(name))
        .unwrap_or(schema)
}

fn kind_of(variant: &Value, defs: &Map<String, Value>) -> Kind {
    let variant = resolve(variant, defs);
    let required: Vec<&str> = variant
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut name = None;
    let mut keys = Vec::new();
    if let Some(props) = variant.get("properties").and_then(Value::as_object) {
        for (key, schema) in props {
            if key == "kind" {
                name = schema.get("const").and_then(Value::as_str).map(str::to_owned);
                continue;
            }
            keys.push(Key {
                name: key.clone(),
                ty: type_of(schema, defs),
                default: schema.get("default").cloned().filter(|v| !v.is_null()),
                required: required.contains(&key.as_str()),
                summary: summary_of(
                    schema.get("description").or_else(|| resolve(schema, defs).get("description")),
                ),
            });
        }
    }
    Kind { name, summary: summary_of(variant.get("description")), keys }
}

/// A key's type in words.
fn type_of(schema: &Value, defs: &Map<String, Value>) -> String {
    let schema = resolve(schema, defs);
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return options.iter().map(Value::to_string).collect::<Vec<_>>().join(" | ");
    }
    if let Some(options) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array) {
        let words: Vec<String> = options
            .iter()
            .map(|o| match resolve(o, defs).get("const") {
                Some(c) => c.to_string(),
                None => type_of(o, defs),
            })
            .collect();
        return words.join(" | ");
    }
    let mut types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let optional = types.contains(&"null");
    types.retain(|t| *t != "null");
    let unsigned = schema.get("minimum").and_then(Value::as_f64) == Some(0.0);
    let words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "integer" if unsigned => "integer >= 0".to_owned(),
            other => other.to_owned(),
        })
        .collect();
    let mut text = if words.is_empty() { "any".to_owned() } else { words.join(" | ") };
    if optional {
        text.push_str(" or none");
    }
    text
}

/// The first paragraph of a doc comment as one line of plain text: rustdoc's link brackets and
/// code ticks are dropped.
fn summary_of(description: Option<&Value>) -> String {
    let text = description.and_then(Value::as_str).unwrap_or("");
    let first = text.split("\n\n").next().unwrap_or("");
    let line = first.split_whitespace().collect::<Vec<_>>().join(" ");
    line.replace("[`", "`").replace("`]", "`")
}

/// The catalogue as the text `stagewise stages` prints: one block per table, one line per kind,
/// one line per key with its type, default and meaning.
pub fn render(sections: &[Section]) -> String {
    let mut out = String::new();
    for section in sections {
        let _ = writeln!(out, "[{}]  {}", section.name, section.summary);
        for kind in &section.kinds {
            if let Some(name) = &kind.name {
                let default = if section.default_kind.as_deref() == Some(name) { " (default)" } else { "" };
                let _ = writeln!(out, "  kind = {:<16} {}{default}", format!("\"{name}\""), kind.summary);
            }
            let indent = if kind.name.is_some() { "      " } else { "    " };
            for key in &kind.keys {
                let default = match (&key.default, key.required) {
                    (Some(v), _) => format!("= {}", toml_value(v)),
                    (None, true) => "required".to_owned(),
                    (None, false) => "unset".to_owned(),
                };
                let _ =
                    writeln!(out, "{indent}{:<16} {:<22} {:<12} {}", key.name, key.ty, default, key.summary);
            }
        }
        out.push('\n');
    }
    out
}

/// A default as it would be written in the TOML file.
fn toml_value(value: &Value) -> String {
    match value {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x == x.trunc() && x.abs() < 1e15 {
                format!("{x:.1}")
            } else if x != 0.0 && x.abs() < 1e-3 {
                format!("{x:e}")
            } else {
                format!("{x}")
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section<'a>(all: &'a [Section], name: &str) -> &'a Section {
        all.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no [{name}] in the catalogue"))
    }

    #[test]
    fn every_table_of_the_config_is_listed_in_file_order() {
        let names: Vec<String> = catalogue().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "data",
                "train",
                "tokenizer",
                "vectorizer",
                "embedding",
                "forward",
                "loss",
                "backward",
                "optimizer",
                "schedule",
                "generate"
            ]
        );
    }

    /// The catalogue cannot drift from the parser: for every kind it lists, a table naming only
    /// that kind parses, the parser fills in exactly the listed defaults, and every key the parsed
    /// table serialises is a listed key.
    #[test]
    fn every_listed_default_is_what_the_parser_fills_in() {
        let all = catalogue();
        // Kinds that cannot be built without a setting (a file to load, or a size to train):
        // given here, and left out of the default checks.
        let needs = |section: &str, kind: Option<&str>| match (section, kind) {
            ("tokenizer", Some("bpe")) => Some(("vocab_size", "vocab_size = 300")),
            ("tokenizer", Some("hf")) => Some(("path", "path = \"tokenizer.json\"")),
            _ => None,
        };
        for section in &all {
            for kind in &section.kinds {
                let mut text = format!("[{}]\n", section.name);
                if let Some(name) = &kind.name {
                    let _ = writeln!(text, "kind = \"{name}\"");
                }
                let given = needs(&section.name, kind.name.as_deref());
                if let Some((_, line)) = given {
                    let _ = writeln!(text, "{line}");
                }
                let given = given.map(|(key, _)| key);
                let config = Config::from_toml(&text, "catalogue")
                    .unwrap_or_else(|e| panic!("[{}] {:?}: {e}", section.name, kind.name));
                let whole = serde_json::to_value(&config).expect("config serialises");
                let table = whole[&section.name].as_object().expect("a table").clone();
                for (key, value) in &table {
                    if Some(key.as_str()) == given {
                        continue;
                    }
                    if key == "kind" {
                        assert_eq!(Some(value.as_str().unwrap_or("")), kind.name.as_deref());
                        continue;
                    }
                    let listed = kind.keys.iter().find(|k| &k.name == key);
                    let listed = listed.unwrap_or_else(|| panic!("[{}] {key} is not listed", section.name));
                    assert_eq!(listed.default.as_ref(), Some(value), "[{}] {key}", section.name);
                }
                for key in &kind.keys {
                    if key.default.is_some() {
                        assert!(
                            table.contains_key(&key.name),
                            "[{}] {} listed, not parsed",
                            section.name,
                            key.name
                        );
                    }
                    let needed = Some(key.name.as_str()) == given;
                    assert!(!key.required || needed, "[{}] {} needs no value", section.name, key.name);
                    assert!(!key.summary.is_empty(), "[{}] {} has a doc comment", section.name, key.name);
                }
                assert!(
                    kind.name.is_none() || !kind.summary.is_empty(),
                    "[{}] {:?} has a doc comment",
                    section.name,
                    kind.name
                );
            }
        }
    }

    #[test]
    fn the_default_kind_is_the_seed_configuration_s() {
        let all = catalogue();
        let seed = serde_json::to_value(Config::default()).expect("config serialises");
        for section in all.iter().filter(|s| s.default_kind.is_some()) {
            assert_eq!(
                seed[&section.name]["kind"].as_str(),
                section.default_kind.as_deref(),
                "{}",
                section.name
            );
            assert!(section.kinds.iter().any(|k| k.name == section.default_kind), "{}", section.name);
        }
    }

    #[test]
    fn the_update_box_lists_its_kinds_keys_types_and_defaults() {
        let all = catalogue();
        let optimizer = section(&all, "optimizer");
        let names: Vec<_> = optimizer.kinds.iter().filter_map(|k| k.name.as_deref()).collect();
        assert_eq!(names, ["adam", "adamw", "sgd"]);
        let adamw = &optimizer.kinds[1];
        let decay_all = adamw.keys.iter().find(|k| k.name == "decay_all").expect("decay_all");
        assert_eq!((decay_all.ty.as_str(), decay_all.default.clone()), ("boolean", Some(Value::Bool(true))));
        let loss = section(&all, "loss");
        let ignore = loss.kinds[0].keys.iter().find(|k| k.name == "ignore_index").expect("ignore_index");
        assert_eq!((ignore.ty.as_str(), &ignore.default), ("integer >= 0 or none", &None));
        let text = render(&all);
        assert!(text.contains("[optimizer]"), "{text}");
        assert!(text.contains("kind = \"adam\""), "{text}");
        assert!(text.lines().any(|l| l.contains("decay_all") && l.contains("= true")), "{text}");
    }
}
