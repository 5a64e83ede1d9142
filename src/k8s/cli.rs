//! `sidetrace inject`: manifests in (a file or stdin, YAML or JSON, any
//! number of documents), the same manifests out on stdout with every pod
//! template injected, like `linkerd inject` and `istioctl kube-inject`.
//!
//! Nothing is written unless every document could be read and every pod
//! template is a pod template: bad input is one line on stderr naming the
//! document, and exit code 2. Each object left alone (hostNetwork,
//! disabled, …) gets one line on stderr with the reason; it still appears
//! on stdout, unchanged.

use super::defaults::InjectArgs;
use super::documents::{self, BadDocument, Place};
use super::inject::Refusal;
use super::inject::workload::{Outcome, inject_object};
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Args, Debug, Clone)]
pub struct InjectCommand {
    /// Manifests to inject: a file, or - for stdin. YAML (any number of
    /// documents) or JSON; Pod, Deployment, StatefulSet, DaemonSet,
    /// ReplicaSet, ReplicationController, Job, CronJob and List objects are
    /// injected, every other kind passes through unchanged.
    #[arg(short = 'f', long = "filename", default_value = "-", value_name = "FILE")]
    pub file: String,

    #[command(flatten)]
    pub defaults: InjectArgs,
}

/// The `inject` boundary's failures, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("cannot read {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{0}")]
    BadDocument(#[from] BadDocument),
    #[error("{0}")]
    Defaults(String),
    #[error("cannot write the output: {0}")]
    Write(String),
}

impl InjectError {
    pub fn exit_code(&self) -> u8 {
        match self {
            InjectError::Read { .. } | InjectError::BadDocument(_) | InjectError::Defaults(_) => 2,
            InjectError::Write(_) => 1,
        }
    }
}

/// The injected manifests as YAML, and one line per object for stderr.
#[derive(Debug, PartialEq)]
pub struct Report {
    pub yaml: String,
    pub lines: Vec<String>,
}

pub fn run(cmd: &InjectCommand) -> ExitCode {
    match read(&cmd.file).and_then(|input| inject_str(&input, &cmd.defaults)) {
        Ok(report) => {
            for line in &report.lines {
                eprintln!("{line}");
            }
            let mut out = std::io::stdout().lock();
            match out.write_all(report.yaml.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sidetrace inject: {}", InjectError::Write(e.to_string()));
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("sidetrace inject: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn read(file: &str) -> Result<String, InjectError> {
    let mut input = String::new();
    let result = if file == "-" {
        std::io::stdin().read_to_string(&mut input).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut input)).map(|_| ())
    };
    result.map(|()| input).map_err(|source| InjectError::Read { file: file.to_string(), source })
}

/// The whole command without its I/O.
pub fn inject_str(input: &str, defaults: &InjectArgs) -> Result<Report, InjectError> {
    let injector = defaults.injector().map_err(InjectError::Defaults)?;
    let mut docs = documents::parse(input)?;
    // Namespace objects in the same input lend their sidetrace.io/*
    // annotations to the objects in them, as the cluster's would.
    let mut namespaces = BTreeMap::new();
    for (_, d) in &docs {
        let items =
            if documents::is_list(d) { d["items"].as_array().cloned().unwrap_or_default() } else { vec![d.clone()] };
        for o in items.iter().filter(|o| o.get("kind").and_then(Value::as_str) == Some("Namespace")) {
            if let (Some(name), Some(a)) =
                (o.pointer("/metadata/name").and_then(Value::as_str), o.pointer("/metadata/annotations"))
            {
                let a: BTreeMap<String, String> = serde_json::from_value(a.clone()).unwrap_or_default();
                namespaces.insert(name.to_string(), a);
            }
        }
    }
    let mut lines = Vec::new();
    for (index, doc) in &mut docs {
        if documents::is_list(doc) {
            if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
                for (i, item) in items.iter_mut().enumerate() {
                    one(item, Place::of(*index, Some(i + 1), item), &namespaces, &injector, &mut lines)?;
                }
            }
        } else {
            let place = Place::of(*index, None, doc);
            one(doc, place, &namespaces, &injector, &mut lines)?;
        }
    }
    let objects: Vec<Value> = docs.into_iter().map(|(_, v)| v).collect();
    let yaml = documents::to_yaml(&objects).map_err(|e| InjectError::Write(e.to_string()))?;
    Ok(Report { yaml, lines })
}

fn one(
    object: &mut Value,
    place: Place,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    injector: &super::inject::Injector,
    lines: &mut Vec<String>,
) -> Result<(), InjectError> {
    match inject_object(object, namespaces, injector) {
        Ok(Outcome::Injected { notes }) => {
            lines.push(format!("{place}: injected"));
            lines.extend(notes.into_iter().map(|n| format!("{place}: {n}")));
            Ok(())
        }
        Ok(Outcome::PassedThrough) => Ok(()),
        Err(Refusal::Skipped(reason)) => {
            lines.push(format!("{place}: skipped: {reason}"));
            Ok(())
        }
        Err(Refusal::Malformed(reason)) => {
            Err(BadDocument { place, reason: format!("not a valid pod template: {reason}") }.into())
        }
    }
}
