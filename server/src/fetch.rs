//! `--model-uri`: fetch a model directory into the cache dir, checking `model.safetensors`
//! against `--model-sha256`.
//!
//! The URI names the model *directory*: `file:///models/mlp`, `https://host/models/mlp` or
//! `s3://bucket/models/mlp`.
//! The files the format needs are fetched from below it (`<uri>/config.json`, ...). For `gguf`
//! the URI may also name the `.gguf` file itself; a directory URI then means `<uri>/model.gguf`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::cli::Format;

/// Files of a format: (relative path, required).
fn files(format: Format) -> &'static [(&'static str, bool)] {
    match format {
        Format::Sequential => &[("config.json", true), ("model.safetensors", true)],
        Format::Bert => &[
            ("config.json", true),
            ("model.safetensors", true),
            ("tokenizer.json", true),
            ("1_Pooling/config.json", true),
            ("modules.json", false),
            ("sentence_bert_config.json", false),
        ],
        Format::Gguf => &[("model.gguf", true)],
    }
}

/// The file `--model-sha256` is checked against.
fn weights_file(format: Format) -> &'static str {
    match format {
        Format::Gguf => "model.gguf",
        Format::Sequential | Format::Bert => "model.safetensors",
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of a file, hex.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Fetches the model at `uri` into `cache_dir` and returns the local directory.
pub async fn fetch(
    uri: &str,
    format: Format,
    cache_dir: &Path,
    expected_sha256: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let expected = expected_sha256.map(|s| s.trim().to_ascii_lowercase());
    if let Some(e) = &expected
        && (e.len() != 64 || !e.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        bail!("--model-sha256 must be 64 hex digits");
    }
    let key = hex(&Sha256::digest(uri.as_bytes()));
    let dest = cache_dir.join(&key[..16]);
    let marker = dest.join(".complete");
    let weights = dest.join(weights_file(format));
    if marker.exists() {
        match &expected {
            Some(e) if !verify(&weights, e).await? => {
                tracing::warn!(dir = %dest.display(), "cached model does not match the sha256; fetching again");
            }
            _ => {
                tracing::info!(dir = %dest.display(), "using cached model");
                return Ok(dest);
            }
        }
    }
    tokio::fs::create_dir_all(&dest)
        .await
        .with_context(|| format!("creating {}", dest.display()))?;
    let _ = tokio::fs::remove_file(&marker).await;
    let base = uri.trim_end_matches('/');
    // A `gguf` URI naming the file itself: it is the one file, whatever its name.
    let whole = format == Format::Gguf && base.to_ascii_lowercase().ends_with(".gguf");
    let (base, leaf) = match base.rsplit_once('/') {
        Some((dir, file)) if whole => (dir, Some(file)),
        _ => (base, None),
    };
    let client = reqwest::Client::new();
    let s3 = match base.strip_prefix("s3://") {
        Some(rest) => {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .with_context(|| format!("configuring S3 for {uri}"))?;
            Some((store, prefix.trim_matches('/').to_string()))
        }
        None => None,
    };
    for (rel, required) in files(format) {
        let target = dest.join(rel);
        let rel: &str = leaf.unwrap_or(rel);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let part = target.with_extension("part");
        let found = if let Some(path) = base.strip_prefix("file://") {
            copy_file(&Path::new(path).join(rel), &part).await?
        } else if base.starts_with("http://") || base.starts_with("https://") {
            download(&client, &format!("{base}/{rel}"), &part).await?
        } else if let Some((store, prefix)) = &s3 {
            let key = if prefix.is_empty() {
                rel.to_string()
            } else {
                format!("{prefix}/{rel}")
            };
            download_s3(store, &format!("{base}/{rel}"), &key, &part).await?
        } else {
            bail!("unsupported model URI {uri:?}: use file://, http(s):// or s3://");
        };
        if found {
            tokio::fs::rename(&part, &target).await?;
        } else if *required {
            bail!("{base}/{rel} not found");
        }
    }
    if let Some(e) = &expected
        && !verify(&weights, e).await?
    {
        let _ = tokio::fs::remove_file(&weights).await;
        bail!(
            "sha256 mismatch for {uri} ({}): expected {e}; refusing to start",
            weights_file(format)
        );
    }
    tokio::fs::write(&marker, b"").await?;
    tracing::info!(uri, dir = %dest.display(), "model fetched");
    Ok(dest)
}

async fn verify(path: &Path, expected: &str) -> anyhow::Result<bool> {
    let p = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&p)).await??;
    if actual != expected {
        tracing::error!(file = %path.display(), expected, actual, "sha256 mismatch");
    }
    Ok(actual == expected)
}

async fn copy_file(src: &Path, dst: &Path) -> anyhow::Result<bool> {
    if !src.exists() {
        return Ok(false);
    }
    let bytes = tokio::fs::copy(src, dst)
        .await
        .with_context(|| format!("copying {}", src.display()))?;
    tracing::info!(src = %src.display(), bytes, "copied");
    Ok(true)
}

async fn download(client: &reqwest::Client, url: &str, dst: &Path) -> anyhow::Result<bool> {
    let mut resp = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(false);
    }
    if !resp.status().is_success() {
        bail!("GET {url}: HTTP {}", resp.status());
    }
    let mut file = tokio::fs::File::create(dst)
        .await
        .with_context(|| format!("creating {}", dst.display()))?;
    let mut progress = Progress::new(url, resp.content_length());
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading {url}"))?
    {
        file.write_all(&chunk).await?;
        progress.advance(chunk.len());
    }
    file.flush().await?;
    progress.finish()?;
    Ok(true)
}

/// `s3://bucket/key` through object_store; credentials, region and endpoint come from the usual
/// `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP` for S3-compatible stores).
async fn download_s3(
    store: &object_store::aws::AmazonS3,
    url: &str,
    key: &str,
    dst: &Path,
) -> anyhow::Result<bool> {
    use futures::StreamExt;
    use object_store::ObjectStore;

    let result = match store.get(&object_store::path::Path::from(key)).await {
        Ok(r) => r,
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("GET {url}")),
    };
    let mut progress = Progress::new(url, Some(result.meta.size));
    let mut stream = result.into_stream();
    let mut file = tokio::fs::File::create(dst)
        .await
        .with_context(|| format!("creating {}", dst.display()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading {url}"))?;
        file.write_all(&chunk).await?;
        progress.advance(chunk.len());
    }
    file.flush().await?;
    progress.finish()?;
    Ok(true)
}

/// Download progress in the log: every 10% (or 16 MiB when the size is unknown).
struct Progress<'a> {
    url: &'a str,
    total: Option<u64>,
    done: u64,
    next: u64,
}

impl<'a> Progress<'a> {
    fn new(url: &'a str, total: Option<u64>) -> Self {
        Progress {
            url,
            total,
            done: 0,
            next: 0,
        }
    }

    fn advance(&mut self, n: usize) {
        self.done += n as u64;
        if self.done < self.next {
            return;
        }
        let url = self.url;
        match self.total {
            Some(t) if t > 0 => {
                let percent = self.done * 100 / t;
                tracing::info!(url, bytes = self.done, total = t, percent, "downloading");
                self.next = self.done + t / 10;
            }
            _ => {
                tracing::info!(url, bytes = self.done, "downloading");
                self.next = self.done + (16 << 20);
            }
        }
    }

    fn finish(&self) -> anyhow::Result<()> {
        if let Some(t) = self.total
            && t != self.done
        {
            bail!("GET {}: got {} of {t} bytes", self.url, self.done);
        }
        tracing::info!(url = self.url, bytes = self.done, "downloaded");
        Ok(())
    }
}
