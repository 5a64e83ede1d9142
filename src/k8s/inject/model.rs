//! The words of injection: who injects (`Injector`), into what
//! (`Target`), and what comes of it (`Injected`, or a `Refusal`).

use super::annotations::{AnnotationError, Options};
use serde_json::Value;
use std::collections::BTreeMap;

/// The injector's side of the decision: the image and the defaults its
/// flags set (`k8s::defaults::InjectArgs`), below namespace and pod
/// annotations.
#[derive(Clone, Debug)]
pub struct Injector {
    pub image: String,
    pub image_pull_policy: String,
    pub defaults: Options,
}

/// What is known about the pod besides its template.
#[derive(Clone, Debug, Default)]
pub struct Target<'a> {
    /// The workload's kind and name, when the template came from one
    /// (`sidetrace inject` on a Deployment): the last fallback for
    /// `service.name`, and a `k8s.<kind>.name` resource attribute.
    pub workload: Option<(&'a str, &'a str)>,
    /// The annotations of the pod's namespace, when known.
    pub namespace_annotations: Option<&'a BTreeMap<String, String>>,
}

/// The injected template, and what its user must do besides applying it.
#[derive(Clone, Debug, PartialEq)]
pub struct Injected {
    pub template: Value,
    /// E.g. with `ports` interception, the Service must target the
    /// sidecar's port. The CLI prints these on stderr; the webhook returns
    /// them as warnings.
    pub notes: Vec<String>,
}

/// Why a template was left as it was.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A pod that must not be injected; not an error: the object passes
    /// through unchanged and the reason is reported.
    #[error("{0}")]
    Skipped(#[from] SkipReason),
    /// The template is not a pod template (`containers` missing, a label
    /// that is not a string…): bad input, exit code 2 in the CLI; the
    /// webhook still allows it, unchanged, with a warning.
    #[error("not a valid pod template: {0}")]
    Malformed(String),
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SkipReason {
    #[error("hostNetwork pods share the node's network namespace, which sidetrace must not redirect")]
    HostNetwork,
    #[error("already injected")]
    AlreadyInjected,
    #[error("it carries another mesh's sidecar ({0})")]
    OtherMesh(String),
    #[error("sidetrace.io/inject is disabled")]
    Disabled,
    #[error("{0}")]
    InvalidAnnotation(#[from] AnnotationError),
    #[error(
        "ports interception needs the app's port: declare a containerPort on the first container or set sidetrace.io/app-port"
    )]
    NoAppPort,
}
