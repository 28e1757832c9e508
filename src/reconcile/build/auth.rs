//! `spec.auth`: the API key Secret as a read-only file for the server's `--api-key-file`. The key
//! only ever travels as a volume the kubelet fills: never in env, args, logs or events, and the
//! operator itself never reads the Secret (it has no RBAC for Secrets).
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    KeyToPath, PodSecurityContext, SecretVolumeSource, Volume, VolumeMount,
};

use crate::crd::AuthSpec;

const VOLUME: &str = "api-key";
const MOUNT_PATH: &str = "/etc/sconce/auth";
const FILE: &str = "api-key";
/// The server image's user and group (`USER 65532:65532`).
const SERVER_GROUP: i64 = 65532;

/// Where the server finds the key.
pub fn api_key_path() -> String {
    format!("{MOUNT_PATH}/{FILE}")
}

/// Mount `auth`'s Secret key into the server container and pass `--api-key-file`. The file is
/// readable by the server's group only (mode 0440, group set through `fsGroup`).
pub fn mount_api_key(deployment: &mut Deployment, auth: Option<&AuthSpec>) {
    let Some(auth) = auth else { return };
    let Some(pod) = deployment.spec.template.spec.as_mut() else {
        return;
    };
    let secret = &auth.api_key_secret;
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.name.clone()),
            items: Some(vec![KeyToPath {
                key: secret.key_or_default().to_string(),
                path: FILE.into(),
                ..Default::default()
            }]),
            default_mode: Some(0o440),
            optional: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    });
    pod.security_context
        .get_or_insert_with(PodSecurityContext::default)
        .fs_group = Some(SERVER_GROUP);
    for container in pod.containers.iter_mut().filter(|c| c.name == "server") {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: VOLUME.into(),
                mount_path: MOUNT_PATH.into(),
                read_only: Some(true),
                ..Default::default()
            });
        container
            .args
            .get_or_insert_with(Vec::new)
            .extend(["--api-key-file".to_string(), api_key_path()]);
    }
}
