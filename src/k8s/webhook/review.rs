//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out, with no
//! I/O: the server hands the body here and sends back what it returns.
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
struct Review {
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
    object: Option<Value>,
}

#[derive(Deserialize)]
struct Gvk {
    #[serde(default)]
    group: String,
    kind: String,
}

/// Answers one review body.
pub fn answer(body: &[u8], injector: &Injector) -> Result<Value, ReviewError> {
    let review: Review = serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(e.to_string()))?;
    if review.api_version != "admission.k8s.io/v1" || review.kind != "AdmissionReview" {
        return Err(ReviewError::NotAReview(review.api_version, review.kind));
    }
    let request = review.request.ok_or(ReviewError::NoRequest)?;
    if request.get("uid").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(ReviewError::NoUid);
    }
    let request: Request = serde_json::from_value(request).map_err(|e| ReviewError::BadRequest(e.to_string()))?;
    let response = |extra: Value| {
        let mut r = json!({"uid": request.uid, "allowed": true});
        if let (Some(r), Value::Object(extra)) = (r.as_object_mut(), extra) {
            r.extend(extra);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": r})
    };
    // The MutatingWebhookConfiguration sends pod CREATEs only; anything
    // else is let through as it is.
    if !request.kind.group.is_empty() || request.kind.kind != "Pod" || request.operation != "CREATE" {
        return Ok(response(json!({})));
    }
    let pod = request.object.as_ref().ok_or_else(|| ReviewError::NoObject("Pod CREATE".into()))?;
    // The review carries no Namespace object, and the webhook holds no API
    // client: namespace-wide options come from the webhook's own flags (the
    // chart's values) and its namespaceSelector, not namespace annotations.
    match inject_template(pod, &Target::default(), injector) {
        Ok(Injected { template, notes }) => {
            let ops = patch::diff(pod, &template);
            let patch = base64::engine::general_purpose::STANDARD.encode(Value::Array(ops).to_string());
            let mut extra = json!({"patchType": "JSONPatch", "patch": patch});
            if !notes.is_empty() {
                extra["warnings"] = json!(notes.iter().map(|n| format!("sidetrace: {n}")).collect::<Vec<_>>());
            }
            Ok(response(extra))
        }
        Err(refusal) => {
            let why = match refusal {
                Refusal::Skipped(reason) => format!("sidetrace: not injected: {reason}"),
                Refusal::Malformed(reason) => format!("sidetrace: not injected: not a pod it can read: {reason}"),
            };
            Ok(response(json!({"warnings": [why]})))
        }
    }
}
