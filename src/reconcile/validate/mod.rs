//! Pure validation of a `ModelDeployment` spec, beyond what the OpenAPI schema can express
//! (Kubernetes 1.20 has no CEL rules). Each error names what to fix.
pub mod duration;
mod k8s_rules;
pub mod rollout;
mod runtime;
pub mod scaling;

use thiserror::Error;

use crate::crd::{ModelDeployment, ModelFormat};
pub use k8s_rules::{dns1035_label, dns1123_label};
pub use runtime::check_resources;

/// Longest Deployment name we create: leaves room for the ReplicaSet hash and pod suffix so pod
/// names stay valid DNS labels.
const MAX_DEPLOYMENT_NAME: usize = 47;

/// File extensions of single-file model artefacts that are not a Sconce model directory.
const SINGLE_FILE_EXTENSIONS: &[&str] = &[
    ".h5",
    ".keras",
    ".onnx",
    ".pt",
    ".pth",
    ".pkl",
    ".joblib",
    ".pb",
    ".safetensors",
    ".bin",
    ".json",
];

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    #[error(
        "spec.model.version {0:?} must be lower-case letters, digits, '.', '-' or '_', starting \
         and ending with a letter or digit, e.g. \"1\", \"1.2.0\" or \"2024-06-01\""
    )]
    InvalidVersion(String),
    #[error(
        "metadata.name {name:?} cannot name the model's Service: {why}; \
         recreate the ModelDeployment under a name like \"digits\" or \"mnist-v2\""
    )]
    InvalidName { name: String, why: String },
    /// A field Kubernetes itself would refuse in the serving pods' Deployment.
    #[error("{field} {value:?} is invalid: {why}")]
    Field {
        reason: &'static str,
        field: String,
        value: String,
        why: String,
    },
    #[error(
        "the Deployment name {name:?} (<metadata.name>-<version>) is {len} characters; \
         shorten metadata.name or spec.model.version to at most {max} in total"
    )]
    NameTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    #[error(
        "spec.model.uri {0:?} has no supported scheme; use file:///abs/dir, pvc://claim/dir, \
         http(s)://host/dir or s3://bucket/prefix"
    )]
    UnsupportedUriScheme(String),
    #[error("spec.model.uri {uri:?} is malformed: {why}")]
    MalformedUri { uri: String, why: &'static str },
    #[error(
        "spec.model.format is {format} but spec.model.uri {uri:?} names a single {ext} file; \
         point the uri at the model directory ({expected})"
    )]
    FormatMismatch {
        format: &'static str,
        uri: String,
        ext: &'static str,
        expected: &'static str,
    },
    #[error(
        "spec.model.sha256 is only checked for downloaded models (http, https, s3); \
         remove it for {0} URIs"
    )]
    Sha256NotApplicable(&'static str),
}

impl ValidationError {
    /// CamelCase reason for the `Degraded` condition and the Warning event.
    pub fn reason(&self) -> &'static str {
        match self {
            ValidationError::InvalidVersion(_) => "InvalidVersion",
            ValidationError::InvalidName { .. } => "InvalidName",
            ValidationError::Field { reason, .. } => reason,
            ValidationError::NameTooLong { .. } => "NameTooLong",
            ValidationError::UnsupportedUriScheme(_) => "UnsupportedUriScheme",
            ValidationError::MalformedUri { .. } => "MalformedUri",
            ValidationError::FormatMismatch { .. } => "FormatMismatch",
            ValidationError::Sha256NotApplicable(_) => "Sha256NotApplicable",
        }
    }
}

/// Where the serving pods find the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A directory on the node, mounted read-only.
    HostPath { path: String },
    /// A directory inside a PersistentVolumeClaim, mounted read-only.
    Pvc { claim: String, sub_path: String },
    /// Downloaded by the server at start-up (http, https, s3).
    Download { uri: String, sha256: Option<String> },
}

/// A spec that passed validation, with derived names.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidModel {
    /// `metadata.name` of the ModelDeployment.
    pub instance: String,
    pub namespace: String,
    pub served_name: String,
    pub version: String,
    /// Version turned into a DNS-label / label-value safe slug.
    pub version_slug: String,
    pub deployment_name: String,
    pub format: ModelFormat,
    pub source: ModelSource,
    /// How a new version reaches users.
    pub rollout: rollout::RolloutPlan,
    /// Autoscaling, with `spec.scaling`.
    pub scaling: Option<scaling::ScalingPlan>,
}

/// The documented (and schema-enforced) version pattern `^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`;
/// checked here too because a CRD installed by an older operator may lack the pattern.
fn is_version_label(version: &str) -> bool {
    let b = version.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter()
            .all(|&c| edge(c) || matches!(c, b'.' | b'_' | b'-'))
}

impl ValidModel {
    /// The same ModelDeployment's names for another `version` (the stable one during a rollout).
    pub fn for_version(&self, version: &str) -> ValidModel {
        let version_slug = version_slug(version);
        ValidModel {
            deployment_name: format!("{}-{version_slug}", self.instance),
            version: version.to_string(),
            version_slug,
            ..self.clone()
        }
    }
}

/// Lower-case, `[a-z0-9-]`, no leading/trailing dash: safe in names and label values.
pub fn version_slug(version: &str) -> String {
    let mapped: String = version
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    let mut slug = String::with_capacity(mapped.len());
    for c in mapped.chars() {
        if c == '-' && slug.ends_with('-') {
            continue;
        }
        slug.push(c);
    }
    slug.trim_matches('-').to_string()
}

pub fn validate(md: &ModelDeployment) -> Result<ValidModel, ValidationError> {
    let instance = md.metadata.name.clone().unwrap_or_default();
    let namespace = md.metadata.namespace.clone().unwrap_or_default();
    let model = &md.spec.model;

    dns1035_label(&instance).map_err(|why| ValidationError::InvalidName {
        name: instance.clone(),
        why,
    })?;
    if !is_version_label(&model.version) {
        return Err(ValidationError::InvalidVersion(model.version.clone()));
    }
    let version_slug = version_slug(&model.version);
    let deployment_name = format!("{instance}-{version_slug}");
    if deployment_name.len() > MAX_DEPLOYMENT_NAME {
        return Err(ValidationError::NameTooLong {
            len: deployment_name.len(),
            name: deployment_name,
            max: MAX_DEPLOYMENT_NAME,
        });
    }

    let source = parse_source(&model.uri, model.sha256.as_deref())?;
    check_format_matches(model.format, &model.uri)?;
    if let Some(runtime) = &md.spec.runtime {
        runtime::check(runtime)?;
    }
    let rollout = rollout::plan(&md.spec)?;
    let scaling = md.spec.scaling.as_ref().map(scaling::plan).transpose()?;

    Ok(ValidModel {
        served_name: md.served_name(),
        instance,
        namespace,
        version: model.version.clone(),
        version_slug,
        deployment_name,
        format: model.format,
        source,
        rollout,
        scaling,
    })
}

fn parse_source(uri: &str, sha256: Option<&str>) -> Result<ModelSource, ValidationError> {
    let malformed = |why| ValidationError::MalformedUri {
        uri: uri.to_string(),
        why,
    };
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| ValidationError::UnsupportedUriScheme(uri.to_string()))?;
    let local_kind = match scheme {
        "file" => Some("file"),
        "pvc" => Some("pvc"),
        _ => None,
    };
    if let (Some(kind), Some(_)) = (local_kind, sha256) {
        return Err(ValidationError::Sha256NotApplicable(kind));
    }
    match scheme {
        "file" => {
            if !rest.starts_with('/') || rest.len() < 2 {
                return Err(malformed(
                    "a file URI needs an absolute path: file:///models/mnist",
                ));
            }
            if rest.split('/').any(|seg| seg == "..") {
                return Err(malformed("the path must not contain '..'"));
            }
            Ok(ModelSource::HostPath {
                path: rest.trim_end_matches('/').to_string(),
            })
        }
        "pvc" => {
            let (claim, sub_path) = rest.split_once('/').unwrap_or((rest, ""));
            if dns1123_label(claim).is_err() {
                return Err(malformed(
                    "the claim name must be a DNS label: pvc://<claim>/<path>",
                ));
            }
            if sub_path.split('/').any(|seg| seg == "..") {
                return Err(malformed("the path must not contain '..'"));
            }
            Ok(ModelSource::Pvc {
                claim: claim.to_string(),
                sub_path: sub_path.trim_matches('/').to_string(),
            })
        }
        "http" | "https" | "s3" => {
            let host = rest.split('/').next().unwrap_or("");
            if host.is_empty() {
                return Err(malformed("missing host or bucket after ://"));
            }
            if rest.chars().any(char::is_whitespace) {
                return Err(malformed("must not contain whitespace"));
            }
            Ok(ModelSource::Download {
                uri: uri.to_string(),
                sha256: sha256.map(str::to_ascii_lowercase),
            })
        }
        _ => Err(ValidationError::UnsupportedUriScheme(uri.to_string())),
    }
}

fn check_format_matches(format: ModelFormat, uri: &str) -> Result<(), ValidationError> {
    let path = uri
        .split(['?', '#'])
        .next()
        .unwrap_or(uri)
        .to_ascii_lowercase();
    let Some(ext) = SINGLE_FILE_EXTENSIONS
        .iter()
        .find(|ext| path.ends_with(*ext))
    else {
        return Ok(());
    };
    let expected = match format {
        ModelFormat::Sequential => {
            "config.json + model.safetensors; convert Keras files with `sconce-train import-keras`"
        }
        ModelFormat::Bert => "a sentence-transformers directory with tokenizer.json",
        ModelFormat::Gguf => "a .gguf file (or a directory holding one)",
    };
    Err(ValidationError::FormatMismatch {
        format: format.as_str(),
        uri: uri.to_string(),
        ext,
        expected,
    })
}

#[cfg(test)]
mod tests;
