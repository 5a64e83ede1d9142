//! The webhook's `/mutate`: `k8s::webhook::review::answer` on arbitrary
//! bytes, with the injection it runs. Never panics; a review it answers is
//! an AdmissionReview whose JSONPatch, if any, applies to the pod it came
//! with.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sidetrace::k8s::inject::Injector;
use sidetrace::k8s::inject::annotations::Options;
use sidetrace::k8s::webhook::review;

fuzz_target!(|data: &[u8]| {
    let injector = Injector {
        image: "ghcr.io/example/sidetrace:fuzz".into(),
        image_pull_policy: "IfNotPresent".into(),
        defaults: Options::default(),
    };
    let Ok(answer) = review::answer(data, &injector) else { return };
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["allowed"], true);
    assert!(response["uid"].as_str().is_some_and(|u| !u.is_empty()));
    // What the server sends is `answer.to_string()`: it must read back.
    let sent = answer.to_string();
    assert_eq!(serde_json::from_str::<Value>(&sent).expect("the answer is JSON"), answer);
    let Some(patch) = response.get("patch") else { return };
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD.decode(patch.as_str().expect("patch is a string")).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("the patch is a JSONPatch");
    let request: Value = serde_json::from_slice::<Value>(data).unwrap()["request"].clone();
    let mut pod = request["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap_or_else(|e| panic!("the patch does not apply to the pod: {e}"));
});
