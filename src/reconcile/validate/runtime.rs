//! `spec.runtime`: the pod-level settings the apiserver would refuse in the Deployment, checked
//! first so the condition names the field to fix.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};

use super::ValidationError;
use super::k8s_rules::{dns1123_subdomain, env_var_name, label_value, qualified_name, quantity};
use crate::crd::RuntimeSpec;

fn invalid(reason: &'static str, field: String, value: &str, why: String) -> ValidationError {
    ValidationError::Field {
        reason,
        field,
        value: value.to_string(),
        why,
    }
}

pub fn check(runtime: &RuntimeSpec) -> Result<(), ValidationError> {
    if let Some(image) = &runtime.image
        && (image.trim() != image || image.chars().any(char::is_whitespace))
    {
        return Err(invalid(
            "InvalidImage",
            "spec.runtime.image".into(),
            image,
            "must not contain whitespace".into(),
        ));
    }
    if let Some(sa) = &runtime.service_account_name {
        dns1123_subdomain(sa).map_err(|why| {
            invalid(
                "InvalidServiceAccount",
                "spec.runtime.serviceAccountName".into(),
                sa,
                why,
            )
        })?;
    }
    if let Some(resources) = &runtime.resources {
        check_resources(resources)?;
    }
    check_env(&runtime.env)?;
    check_node_selector(&runtime.node_selector)?;
    check_tolerations(&runtime.tolerations)
}

const STANDARD_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage"];

pub fn check_resources(resources: &ResourceRequirements) -> Result<(), ValidationError> {
    let mut parsed: [BTreeMap<&str, f64>; 2] = Default::default();
    for (i, (kind, list)) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ]
    .into_iter()
    .enumerate()
    {
        for (name, q) in list.iter().flatten() {
            let field = format!("spec.runtime.resources.{kind}.{name}");
            let known = STANDARD_RESOURCES.contains(&name.as_str())
                || name.starts_with("hugepages-")
                || (name.contains('/') && qualified_name(name).is_ok());
            if !known {
                return Err(invalid(
                    "InvalidResources",
                    format!("spec.runtime.resources.{kind}"),
                    name,
                    "a resource name must be cpu, memory, ephemeral-storage, hugepages-<size> or \
                     a domain-qualified extended resource (e.g. nvidia.com/gpu)"
                        .into(),
                ));
            }
            let value = quantity(&q.0)
                .map_err(|why| invalid("InvalidResources", field.clone(), &q.0, why))?;
            if value < 0.0 {
                return Err(invalid(
                    "InvalidResources",
                    field,
                    &q.0,
                    "must be greater than or equal to 0".into(),
                ));
            }
            parsed[i].insert(name.as_str(), value);
        }
    }
    let [requests, limits] = &parsed;
    for (name, request) in requests {
        if let Some(limit) = limits.get(name)
            && request > limit
        {
            return Err(invalid(
                "InvalidResources",
                format!("spec.runtime.resources.requests.{name}"),
                &format!("{request}"),
                format!("must be less than or equal to the {name} limit"),
            ));
        }
    }
    Ok(())
}

fn check_env(env: &[EnvVar]) -> Result<(), ValidationError> {
    for (i, var) in env.iter().enumerate() {
        env_var_name(&var.name).map_err(|why| {
            invalid(
                "InvalidEnv",
                format!("spec.runtime.env[{i}].name"),
                &var.name,
                why,
            )
        })?;
        if let Some(from) = &var.value_from {
            let sources = [
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
            ];
            let why = match (sources.iter().filter(|&&s| s).count(), &var.value) {
                (_, Some(v)) if !v.is_empty() => {
                    Some("may not be specified when `value` is not empty")
                }
                (1, _) => None,
                (0, _) => Some(
                    "must specify one of: configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef",
                ),
                _ => Some("may not have more than one field specified at a time"),
            };
            if let Some(why) = why {
                return Err(invalid(
                    "InvalidEnv",
                    format!("spec.runtime.env[{i}].valueFrom"),
                    &var.name,
                    why.into(),
                ));
            }
        }
    }
    Ok(())
}

fn check_node_selector(selector: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    for (key, value) in selector {
        qualified_name(key).map_err(|why| {
            invalid(
                "InvalidScheduling",
                "spec.runtime.nodeSelector".into(),
                key,
                why,
            )
        })?;
        label_value(value).map_err(|why| {
            invalid(
                "InvalidScheduling",
                format!("spec.runtime.nodeSelector.{key}"),
                value,
                why,
            )
        })?;
    }
    Ok(())
}

fn check_tolerations(tolerations: &[Toleration]) -> Result<(), ValidationError> {
    for (i, t) in tolerations.iter().enumerate() {
        let field = |f: &str| format!("spec.runtime.tolerations[{i}].{f}");
        let key = t.key.as_deref().unwrap_or("");
        if !key.is_empty() {
            qualified_name(key)
                .map_err(|why| invalid("InvalidScheduling", field("key"), key, why))?;
        }
        let operator = t.operator.as_deref().unwrap_or("Equal");
        let value = t.value.as_deref().unwrap_or("");
        match operator {
            "Equal" => {
                if key.is_empty() {
                    return Err(invalid(
                        "InvalidScheduling",
                        field("operator"),
                        operator,
                        "operator must be Exists when `key` is empty".into(),
                    ));
                }
                label_value(value)
                    .map_err(|why| invalid("InvalidScheduling", field("value"), value, why))?;
            }
            "Exists" if !value.is_empty() => {
                return Err(invalid(
                    "InvalidScheduling",
                    field("value"),
                    value,
                    "value must be empty when `operator` is 'Exists'".into(),
                ));
            }
            "Exists" => {}
            other => {
                return Err(invalid(
                    "InvalidScheduling",
                    field("operator"),
                    other,
                    "supported values: \"Equal\", \"Exists\"".into(),
                ));
            }
        }
        let effect = t.effect.as_deref().unwrap_or("");
        if !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return Err(invalid(
                "InvalidScheduling",
                field("effect"),
                effect,
                "supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into(),
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            return Err(invalid(
                "InvalidScheduling",
                field("effect"),
                effect,
                "must be 'NoExecute' when `tolerationSeconds` is set".into(),
            ));
        }
    }
    Ok(())
}
