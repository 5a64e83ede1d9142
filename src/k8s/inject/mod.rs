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
mod model;
pub mod patch;
pub mod pod;
pub mod workload;

pub use model::{Injected, Injector, Refusal, SkipReason, Target};

use annotations::Options;
use serde_json::Value;

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
