//! Where each kind keeps its pod template, and the injection of one object
//! of any kind: a Pod is its own template; the workloads hold theirs under
//! `spec.template` (a CronJob one level deeper). Other kinds pass through.
//! `List` objects are unpacked by `k8s::documents`.

use super::{Injected, Injector, Refusal, Target, inject_template};
use serde_json::Value;
use std::collections::BTreeMap;

/// The path from the object to its pod template, for the kinds that have
/// one. The API group is checked too: a custom resource may reuse a kind's
/// name.
pub fn template_path(api_version: &str, kind: &str) -> Option<&'static [&'static str]> {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match (group, kind) {
        ("", "Pod") => Some(&[]),
        ("", "ReplicationController") => Some(&["spec", "template"]),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => Some(&["spec", "template"]),
        ("batch", "Job") => Some(&["spec", "template"]),
        ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// What became of one object.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Its template was injected; the object now holds the new one.
    Injected { notes: Vec<String> },
    /// Not a kind with a pod template: left as it is, silently.
    PassedThrough,
}

/// Injects the object's pod template in place. `namespaces` holds the
/// annotations of the Namespace objects known to the caller, by name.
pub fn inject_object(
    object: &mut Value,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    injector: &Injector,
) -> Result<Outcome, Refusal> {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(path) = template_path(api_version, kind) else { return Ok(Outcome::PassedThrough) };
    let name = object.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string);
    // An object without a namespace goes wherever kubectl's context says:
    // no Namespace document can be assumed to be it.
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str);
    let target = Target {
        workload: if path.is_empty() { None } else { name.as_deref().map(|n| (kind, n)) },
        namespace_annotations: namespace.and_then(|n| namespaces.get(n)),
    };
    let mut slot = &*object;
    for key in path {
        slot = slot.get(key).ok_or_else(|| Refusal::Malformed(format!("{} is missing", path.join("."))))?;
    }
    let Injected { template, notes } = inject_template(slot, &target, injector)?;
    let mut slot = object;
    for key in path {
        slot = &mut slot[*key];
    }
    *slot = template;
    Ok(Outcome::Injected { notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_groups() {
        assert_eq!(template_path("v1", "Pod"), Some(&[][..]));
        assert_eq!(template_path("apps/v1", "Deployment"), Some(&["spec", "template"][..]));
        assert_eq!(template_path("batch/v1", "CronJob").map(<[_]>::len), Some(4));
        assert_eq!(template_path("v1", "Service"), None);
        assert_eq!(template_path("example.com/v1", "Deployment"), None);
    }
}
