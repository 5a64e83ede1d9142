//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out, with no
//! I/O: the server hands the body to `read`, looks up the pod's Namespace
//! (`namespaces`), and sends back what `answer` returns.
//!
//! The webhook never blocks a pod: every well-formed review is answered
//! `allowed: true`, with a base64 JSONPatch when the pod was injected and a
//! warning when it was not (Kubernetes shows warnings to kubectl users;
//! keep them short, the API docs ask for under 120 characters where
//! possible). Only a review that is not one gets an error: 400.
//! <https://kubernetes.io/docs/reference/access-authn-authz/extensible-admission-controllers/#response>

use crate::k8s::inject::{Injected, Injector, Refusal, Target, inject_template, patch};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A body that is not an AdmissionReview the webhook can answer: 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {0:?} {1:?}")]
    NotAReview(String, String),
    #[error("the review has no request")]
    NoRequest,
    #[error("request.uid is missing or empty")]
    NoUid,
    #[error("request.object is missing for a {0}")]
    NoObject(String),
    #[error("the request is not what a v1 AdmissionReview holds: {0}")]
    BadRequest(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawReview {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    uid: String,
    kind: Gvk,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    namespace: String,
    object: Option<Value>,
}

#[derive(Deserialize)]
struct Gvk {
    #[serde(default)]
    group: String,
    kind: String,
}

/// A review read from its body: what the answer needs.
#[derive(Debug)]
pub struct Review {
    uid: String,
    /// The request's namespace (the pod's, for a pod CREATE).
    namespace: String,
    /// The pod, for a Pod CREATE; anything else is let through as it is.
    pod: Option<Value>,
}

impl Review {
    /// The namespace whose annotations the injection needs, if any: only
    /// a pod to inject needs them.
    pub fn pod_namespace(&self) -> Option<&str> {
        self.pod.as_ref().and(Some(self.namespace.as_str())).filter(|n| !n.is_empty())
    }
}

/// Reads one review body.
pub fn read(body: &[u8]) -> Result<Review, ReviewError> {
    let review: RawReview = serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(ReviewError::NotAReview(review.api_version, review.kind));
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    if request.get("uid").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ReviewError::NoUid);
    }
    let request: Request = serde_json::from_value(request).map_err(|e| ReviewError::BadRequest(e.to_string()))?;
    // The MutatingWebhookConfiguration sends pod CREATEs only; anything
    // else is let through as it is.
    let pod = if request.kind.group.is_empty() && request.kind.kind == "Pod" && request.operation == "CREATE" {
        Some(request.object.ok_or_else(|| ReviewError::NoObject("Pod CREATE".into()))?)
    } else {
        None
    };
    Ok(Review { uid: request.uid, namespace: request.namespace, pod })
}

/// The answer to a review. `namespace` holds the annotations of the pod's
/// Namespace (`None`: the review names none), or why they could not be
/// read: then the pod is injected with its own annotations and the answer
/// says so in a warning.
pub fn answer(
    review: &Review,
    namespace: Result<Option<&BTreeMap<String, String>>, &str>,
    injector: &Injector,
) -> Value {
    let response = |extra: Value| {
        let mut r = json!({"uid": review.uid, "allowed": true});
        if let (Some(r), Value::Object(extra)) = (r.as_object_mut(), extra) {
            r.extend(extra);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
    };
    let Some(pod) = &review.pod else { return response(json!({})) };
    let mut warnings = Vec::new();
    if let Err(why) = namespace {
        warnings.push(format!(
            "sidetrace: namespace {} annotations not read, only the pod's are used: {why}",
            review.namespace
        ));
    }
    let target = Target { workload: None, namespace_annotations: namespace.ok().flatten() };
    let mut extra = match inject_template(pod, &target, injector) {
        Ok(Injected { template, notes }) => {
            let ops = patch::diff(pod, &template);
            let patch = base64::engine::general_purpose::STANDARD.encode(Value::Array(ops).to_string());
            warnings.extend(notes.iter().map(|n| format!("sidetrace: {n}")));
            json!({"patchType": "JSONPatch", "patch": patch})
        }
        Err(refusal) => {
            warnings.push(match refusal {
                Refusal::Skipped(reason) => format!("sidetrace: not injected: {reason}"),
                Refusal::Malformed(reason) => format!("sidetrace: not injected: not a pod it can read: {reason}"),
            });
            json!({})
        }
    };
    if !warnings.is_empty() {
        extra["warnings"] = json!(warnings);
    }
    response(extra)
}
