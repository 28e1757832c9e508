//! The images hack/images.sh builds here and the Dockerfiles users build with Docker elsewhere
//! describe the same image: user, entrypoint, environment, ports, and the binary where the
//! entrypoint expects it; the base is distroless-like (passwd with nonroot 65532, CA bundle,
//! no shell). Reads the docker-archive tarballs from $SCONCE_IMAGES (~/.cache/sconce/images).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn images_dir() -> PathBuf {
    std::env::var_os("SCONCE_IMAGES").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/sconce/images"),
        PathBuf::from,
    )
}

/// One member of a tar archive (`tar -xOf`).
fn tar_member(archive: &Path, member: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(member)
        .output()
        .expect("tar runs");
    assert!(
        out.status.success(),
        "{} has no {member}",
        archive.display()
    );
    out.stdout
}

fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(archive)
        .output()
        .expect("tar");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

/// What a Dockerfile's last stage declares, read independently of hack/lib/image_archive.py.
#[derive(Debug, Default)]
struct Declared {
    user: String,
    env: BTreeMap<String, String>,
    ports: Vec<String>,
    entrypoint: Vec<String>,
    copies: Vec<String>,
}

fn declared(dockerfile: &Path) -> Declared {
    let text = std::fs::read_to_string(dockerfile).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let stage = joined.rsplit("\nFROM ").next().expect("a FROM");
    let mut d = Declared::default();
    for line in stage.lines().map(str::trim) {
        let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
        match keyword {
            "USER" => d.user = rest.trim().into(),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV K=V");
                    d.env.insert(k.into(), v.into());
                }
            }
            "EXPOSE" => d
                .ports
                .extend(rest.split_whitespace().map(|p| format!("{p}/tcp"))),
            "ENTRYPOINT" => d.entrypoint = serde_json::from_str(rest).expect("JSON entrypoint"),
            "COPY" => d
                .copies
                .push(rest.split_whitespace().last().expect("dest").into()),
            _ => {}
        }
    }
    d
}

fn check(dockerfile: &str, archive: &str, tag: &str) {
    let root = sconce_devtools::testing::workspace_root();
    let archive = images_dir().join(archive);
    let want = declared(&root.join(dockerfile));
    let manifest: serde_json::Value =
        serde_json::from_slice(&tar_member(&archive, "manifest.json")).expect("manifest");
    assert_eq!(manifest[0]["RepoTags"][0], tag);
    let config_name = manifest[0]["Config"].as_str().expect("config name");
    let config: serde_json::Value =
        serde_json::from_slice(&tar_member(&archive, config_name)).expect("config");
    let got = &config["config"];
    assert_eq!(got["User"], want.user.as_str(), "{dockerfile}: USER");
    assert_eq!(
        got["Entrypoint"],
        serde_json::json!(want.entrypoint),
        "{dockerfile}: ENTRYPOINT"
    );
    let env: Vec<&str> = got["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for (k, v) in &want.env {
        assert!(
            env.contains(&format!("{k}={v}").as_str()),
            "{dockerfile}: ENV {k}={v} not in {env:?}"
        );
    }
    let ports: Vec<&String> = got["ExposedPorts"]
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(
        ports,
        want.ports.iter().collect::<Vec<_>>(),
        "{dockerfile}: EXPOSE"
    );
    assert!(
        want.user.starts_with("65532"),
        "{dockerfile}: not the nonroot user"
    );

    // The layers: the binary where COPY puts it, and a distroless-like base.
    let work = tempfile::tempdir().expect("tempdir");
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l.as_str().map(String::from))
        .collect();
    let mut files = Vec::new();
    for layer in &layers {
        let path = work.path().join("layer.tar");
        std::fs::write(&path, tar_member(&archive, layer)).expect("layer");
        files.extend(tar_list(&path));
    }
    for dest in &want.copies {
        assert!(
            files.iter().any(|f| f == dest.trim_start_matches('/')),
            "{dockerfile}: {dest} missing"
        );
    }
    assert_eq!(
        want.entrypoint.first(),
        want.copies.first(),
        "the entrypoint is the copied binary"
    );
    for needed in [
        "etc/passwd",
        "etc/ssl/certs/ca-certificates.crt",
        "usr/share/zoneinfo/UTC",
        "tmp/",
    ] {
        assert!(
            files.iter().any(|f| f == needed),
            "{dockerfile}: base lacks {needed}"
        );
    }
    for absent in [
        "bin/sh",
        "usr/bin/sh",
        "bin/bash",
        "usr/bin/apt",
        "usr/bin/dpkg",
    ] {
        assert!(
            !files.iter().any(|f| f == absent),
            "{dockerfile}: base has {absent}"
        );
    }
    let base = images_dir().join("layers");
    let passwd_layer = std::fs::read_dir(&base)
        .expect("layers dir")
        .flatten()
        .next()
        .expect("base layer")
        .path();
    let passwd = String::from_utf8(tar_member(&passwd_layer, "./etc/passwd")).expect("passwd");
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    let size = std::fs::metadata(&archive).map(|m| m.len()).unwrap_or(0);
    println!("{tag}: {:.1} MB", size as f64 / 1e6);
}

#[test]
fn the_server_image_is_what_server_dockerfile_describes() {
    check(
        "server/Dockerfile",
        "sconce-server.tar",
        "localhost/sconce-server:dev",
    );
}

#[test]
fn the_operator_image_is_what_the_dockerfile_describes() {
    check("Dockerfile", "sconce.tar", "localhost/sconce:dev");
}
