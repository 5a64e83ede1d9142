//! Manifests in and out: a stream of YAML documents (or JSON objects)
//! becomes a list of Kubernetes objects, each checked to be one, and the
//! objects are written back as YAML. What is injected into them is
//! `k8s::inject`'s business.
//!
//! YAML goes through serde_norway, the maintained fork of the archived
//! serde_yaml (same libyaml-based parser, YAML 1.2 core schema: `yes` and
//! `on` stay strings, as Kubernetes' own decoder reads them). Objects are
//! held as `serde_json::Value`, whose maps keep keys sorted, so output is
//! deterministic (like `kubectl get -o yaml`); comments do not survive.

use serde::Deserialize;
use serde_json::Value;

/// A document's position in the input, and its kind/name once known, for
/// error lines: `document 2 (Deployment/web)`, `document 1 (List), item 3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub index: usize,
    pub item: Option<usize>,
    pub what: Option<String>,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "document {}", self.index)?;
        if let Some(i) = self.item {
            write!(f, " (List), item {i}")?;
        }
        if let Some(w) = &self.what {
            write!(f, " ({w})")?;
        }
        Ok(())
    }
}

impl Place {
    pub fn of(index: usize, item: Option<usize>, object: &Value) -> Place {
        let kind = object.get("kind").and_then(Value::as_str);
        let name = object.pointer("/metadata/name").and_then(Value::as_str);
        let what = match (kind, name) {
            (Some(k), Some(n)) => Some(format!("{k}/{n}")),
            (Some(k), None) => Some(k.to_string()),
            _ => None,
        };
        Place { index, item, what }
    }
}

/// Input that is not a stream of Kubernetes objects.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{place}: {reason}")]
pub struct BadDocument {
    pub place: Place,
    pub reason: String,
}

/// Splits the input into objects (1-based document numbers). Empty
/// documents (a lone `---`, only comments) are skipped as kubectl skips
/// them. A stream that starts with `{` is read as concatenated JSON.
pub fn parse(input: &str) -> Result<Vec<(usize, Value)>, BadDocument> {
    let values = if input.trim_start().starts_with('{') { json_stream(input)? } else { yaml_stream(input)? };
    let mut out = Vec::new();
    for (index, value) in values.into_iter().enumerate().map(|(i, v)| (i + 1, v)) {
        if value.is_null() {
            continue;
        }
        check_object(&value, &Place::of(index, None, &value))?;
        if is_list(&value) {
            let items = value.get("items").and_then(Value::as_array);
            let items = items.ok_or_else(|| bad(index, None, &value, "a List needs an items array".into()))?;
            for (i, item) in items.iter().enumerate() {
                check_object(item, &Place::of(index, Some(i + 1), item))?;
            }
        }
        out.push((index, value));
    }
    Ok(out)
}

/// `kind: List` (what `kubectl get -o yaml` prints), or a typed list such
/// as `PodList` that holds its items.
pub fn is_list(v: &Value) -> bool {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    kind == "List" || (kind.ends_with("List") && v.get("items").is_some_and(Value::is_array))
}

fn bad(index: usize, item: Option<usize>, v: &Value, reason: String) -> BadDocument {
    BadDocument { place: Place::of(index, item, v), reason }
}

fn yaml_stream(input: &str) -> Result<Vec<Value>, BadDocument> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(input).enumerate() {
        let place = Place { index: i + 1, item: None, what: None };
        let value = Value::deserialize(doc).map_err(|e| BadDocument { place, reason: format!("not YAML: {e}") })?;
        out.push(value);
    }
    Ok(out)
}

fn json_stream(input: &str) -> Result<Vec<Value>, BadDocument> {
    let mut out = Vec::new();
    for value in serde_json::Deserializer::from_str(input).into_iter::<Value>() {
        let place = Place { index: out.len() + 1, item: None, what: None };
        out.push(value.map_err(|e| BadDocument { place, reason: format!("not JSON: {e}") })?);
    }
    Ok(out)
}

/// A Kubernetes object is a map with string `apiVersion`, `kind` and, if
/// present, a map `metadata` with a string `name`.
fn check_object(v: &Value, place: &Place) -> Result<(), BadDocument> {
    let fail = |reason: &str| Err(BadDocument { place: place.clone(), reason: reason.to_string() });
    let Some(map) = v.as_object() else {
        return fail("not a Kubernetes object (expected a mapping with apiVersion and kind)");
    };
    for key in ["apiVersion", "kind"] {
        match map.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => return fail(&format!("not a Kubernetes object ({key} is not a string)")),
            None => return fail(&format!("not a Kubernetes object (no {key})")),
        }
    }
    match map.get("metadata") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) if m.get("name").is_none_or(Value::is_string) => Ok(()),
        Some(_) => fail("metadata is not a mapping with a string name"),
    }
}

/// The objects as one YAML stream, `---` between documents.
pub fn to_yaml(objects: &[Value]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_norway::to_string(o)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_streams() {
        let docs = parse("---\napiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n# only a comment\n---\napiVersion: v1\nkind: Service\n").unwrap();
        assert_eq!(docs.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 3]);
        let docs = parse(r#"{"apiVersion":"v1","kind":"Pod"} {"apiVersion":"v1","kind":"Service"}"#).unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn errors_name_the_document() {
        let e = parse("apiVersion: v1\nkind: Pod\n---\n- a\n- b\n").unwrap_err();
        assert_eq!(e.place.index, 2);
        let e = parse("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n- 3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "document 1 (List), item 2: not a Kubernetes object (expected a mapping with apiVersion and kind)"
        );
        let e = parse("kind: Pod\nmetadata: {name: x}\n").unwrap_err();
        assert_eq!(e.to_string(), "document 1 (Pod/x): not a Kubernetes object (no apiVersion)");
        let e = parse("a: [unclosed\n").unwrap_err();
        assert!(e.reason.starts_with("not YAML"), "{e}");
    }
}
