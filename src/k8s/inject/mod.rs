//! The one injection function both front doors call: a pod template in,
//! the injected template (or the reason it is left alone) out.
//!
//! - `annotations`: `sidetrace.io/*` → typed `Options` (pod over namespace
//!   over the injector's flags);
//! - `pod`: what is added to the template, and the checks that skip it;
//! - `workload`: where each kind keeps its pod template (`sidetrace inject`);
//! - `patch`: the RFC 6902 JSONPatch from the old pod to the new one (the
//!   webhook).
//!
//! Reading files and documents is `k8s::documents`; the AdmissionReview is
//! `k8s::webhook`.

pub mod annotations;
pub mod patch;
pub mod pod;
pub mod workload;

use annotations::{AnnotationError, Options};
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

/// Injects the sidecar into one pod template (a Pod object, or a
/// workload's `spec.template`): the function `sidetrace inject` and the
/// webhook share, so that both give the same pod.
pub fn inject_template(template: &Value, target: &Target, injector: &Injector) -> Result<Injected, Refusal> {
    let view = pod::PodView::parse(template)?;
    view.check_injectable()?;
    let namespace = match target.namespace_annotations {
        Some(a) => Options::parse(a).map_err(SkipReason::from)?,
        None => Options::default(),
    };
    let own = Options::parse(&view.annotations).map_err(SkipReason::from)?;
    let options = own.over(namespace.over(injector.defaults.clone()));
    if options.inject == Some(annotations::Switch::Disabled) {
        return Err(SkipReason::Disabled.into());
    }
    pod::add_sidecar(template, &view, &options, target, injector)
}
