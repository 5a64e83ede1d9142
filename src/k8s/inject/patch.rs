//! The RFC 6902 JSONPatch that turns the pod the API server sent into the
//! injected one: what the webhook answers. Objects are compared key by key
//! (so an annotation becomes one `add` at `/metadata/annotations/<key>`);
//! arrays and scalars that differ are replaced whole — the container lists
//! change at their front, and replacing the list is one operation that
//! cannot misplace an index.

use serde_json::{Value, json};

/// The operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    walk(&mut String::new(), from, to, &mut ops);
    ops
}

fn walk(path: &mut String, from: &Value, to: &Value, ops: &mut Vec<Value>) {
    if from == to {
        return;
    }
    let (Value::Object(a), Value::Object(b)) = (from, to) else {
        ops.push(json!({"op": "replace", "path": path.clone(), "value": to}));
        return;
    };
    let base = path.len();
    for (key, old) in a {
        push_token(path, key);
        match b.get(key) {
            None => ops.push(json!({"op": "remove", "path": path.clone()})),
            Some(new) => walk(path, old, new, ops),
        }
        path.truncate(base);
    }
    for (key, new) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
        push_token(path, key);
        ops.push(json!({"op": "add", "path": path.clone(), "value": new}));
        path.truncate(base);
    }
}

/// RFC 6901 §3: `~` is written `~0` and `/` is written `~1`, so the
/// annotation `sidetrace.io/injected` is the token `sidetrace.io~1injected`.
fn push_token(path: &mut String, key: &str) {
    path.push('/');
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_shapes() {
        let from = json!({"metadata": {"annotations": {"a~b": "1"}}, "spec": {"containers": [1], "gone": true}});
        let to = json!({
            "metadata": {"annotations": {"a~b": "2", "sidetrace.io/injected": "true"}, "labels": {"x": "y"}},
            "spec": {"containers": [0, 1]},
        });
        let ops = diff(&from, &to);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "/metadata/annotations/a~0b", "value": "2"}),
                json!({"op": "add", "path": "/metadata/annotations/sidetrace.io~1injected", "value": "true"}),
                json!({"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}),
                json!({"op": "replace", "path": "/spec/containers", "value": [0, 1]}),
                json!({"op": "remove", "path": "/spec/gone"}),
            ]
        );
        assert!(diff(&to, &to).is_empty());
    }
}
