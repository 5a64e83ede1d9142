//! Reading OTLP/JSON as `/api/traces` and the test collector show it:
//! the spans of a document, and their attributes by key.

use serde_json::Value;
use std::collections::BTreeMap;

/// Every span of an `ExportTraceServiceRequest`-shaped document, flattened.
pub fn spans(doc: &Value) -> Vec<Value> {
    let mut all = Vec::new();
    for rs in doc["resourceSpans"].as_array().into_iter().flatten() {
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            all.extend(ss["spans"].as_array().into_iter().flatten().cloned());
        }
    }
    all
}

pub fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].as_array()?.iter().find(|kv| kv["key"] == key).map(|kv| &kv["value"])
}

pub fn string_attr<'a>(span: &'a Value, key: &str) -> Option<&'a str> {
    attr(span, key)?["stringValue"].as_str()
}

/// OTLP/JSON writes int64 as a string; a number is accepted as well.
pub fn int_attr(span: &Value, key: &str) -> Option<i64> {
    match &attr(span, key)?["intValue"] {
        Value::String(s) => s.parse().ok(),
        v => v.as_i64(),
    }
}

/// An attribute list as key → value text, whatever JSON shape the value has.
pub fn attributes(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            let v = &kv["value"];
            let text = ["stringValue", "intValue", "boolValue", "doubleValue"]
                .iter()
                .find_map(|k| v.get(*k))
                .map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                .unwrap_or_default();
            (kv["key"].as_str().unwrap_or_default().to_string(), text)
        })
        .collect()
}
