//! Pure validation of a `ModelDeployment` spec, beyond what the OpenAPI schema can express
//! (Kubernetes 1.20 has no CEL rules). Each error names what to fix.
use thiserror::Error;

use crate::crd::{ModelDeployment, ModelFormat};

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
        "spec.model.version {0:?} must contain a letter or digit; use e.g. \"1\" or \"2024-06-01\""
    )]
    InvalidVersion(String),
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
#[derive(Debug, Clone, PartialEq, Eq)]
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

    let version_slug = version_slug(&model.version);
    if version_slug.is_empty() {
        return Err(ValidationError::InvalidVersion(model.version.clone()));
    }
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

    Ok(ValidModel {
        served_name: md.served_name(),
        instance,
        namespace,
        version: model.version.clone(),
        version_slug,
        deployment_name,
        format: model.format,
        source,
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
            if !is_dns_label(claim) {
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

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(yaml: &str) -> ModelDeployment {
        serde_yaml::from_str(yaml).expect("fixture parses")
    }

    fn with_model(model: &str) -> ModelDeployment {
        md(&format!(
            "apiVersion: sconce.dev/v1alpha1\nkind: ModelDeployment\n\
             metadata: {{name: mnist, namespace: ml}}\nspec:\n  model: {model}\n"
        ))
    }

    #[test]
    fn valid_file_model() {
        let m = validate(&with_model(
            "{version: '1.2', uri: 'file:///models/mnist/', format: sequential}",
        ))
        .expect("valid");
        assert_eq!(m.deployment_name, "mnist-1-2");
        assert_eq!(m.served_name, "mnist");
        assert_eq!(m.namespace, "ml");
        assert_eq!(
            m.source,
            ModelSource::HostPath {
                path: "/models/mnist".into()
            }
        );
    }

    #[test]
    fn pvc_and_download_sources() {
        let m = validate(&with_model(
            "{name: digits, version: v2, uri: 'pvc://models/digits/v2', format: sequential}",
        ))
        .expect("valid");
        assert_eq!(m.served_name, "digits");
        assert_eq!(
            m.source,
            ModelSource::Pvc {
                claim: "models".into(),
                sub_path: "digits/v2".into()
            }
        );
        let sha = "A".repeat(64);
        let m = validate(&with_model(&format!(
            "{{version: '3', uri: 's3://bucket/minilm', format: bert, sha256: {sha}}}"
        )))
        .expect("valid");
        assert_eq!(
            m.source,
            ModelSource::Download {
                uri: "s3://bucket/minilm".into(),
                sha256: Some("a".repeat(64))
            }
        );
    }

    #[test]
    fn version_slugs() {
        assert_eq!(version_slug("1.0.0"), "1-0-0");
        assert_eq!(version_slug("V2__beta"), "v2-beta");
        assert_eq!(version_slug("--x--"), "x");
        assert_eq!(version_slug("..."), "");
    }

    #[test]
    fn rejects_bad_inputs_with_reasons() {
        let cases = [
            (
                "{version: '...', uri: 'file:///m', format: sequential}",
                "InvalidVersion",
            ),
            (
                "{version: '1', uri: 'ftp://host/m', format: sequential}",
                "UnsupportedUriScheme",
            ),
            (
                "{version: '1', uri: '/models/m', format: sequential}",
                "UnsupportedUriScheme",
            ),
            (
                "{version: '1', uri: 'file://relative/m', format: sequential}",
                "MalformedUri",
            ),
            (
                "{version: '1', uri: 'file:///a/../etc', format: sequential}",
                "MalformedUri",
            ),
            (
                "{version: '1', uri: 'pvc://Bad_Claim/m', format: sequential}",
                "MalformedUri",
            ),
            (
                "{version: '1', uri: 'https:///m', format: sequential}",
                "MalformedUri",
            ),
            (
                "{version: '1', uri: 'https://h/model.h5', format: sequential}",
                "FormatMismatch",
            ),
            (
                "{version: '1', uri: 'file:///m/model.onnx', format: bert}",
                "FormatMismatch",
            ),
            (
                "{version: '1', uri: 'file:///m', format: sequential, sha256: 'ab'}",
                "Sha256NotApplicable",
            ),
        ];
        for (model, reason) in cases {
            let err = validate(&with_model(model)).expect_err(model);
            assert_eq!(err.reason(), reason, "{model}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn rejects_names_that_would_break_pod_names() {
        let mut m = with_model(
            "{version: 'a-very-long-version-label-2024', uri: 'file:///m', format: sequential}",
        );
        m.metadata.name = Some("a-rather-long-model-deployment".into());
        let err = validate(&m).expect_err("too long");
        assert_eq!(err.reason(), "NameTooLong");
        assert!(err.to_string().contains("at most 47"), "{err}");
    }
}
