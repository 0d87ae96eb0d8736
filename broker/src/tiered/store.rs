//! Opening the object store named by `remote.log.storage.url`.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::config::broker::RemoteSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("remote.log.storage.url={url}: {reason}")]
    Url { url: String, reason: String },
    #[error("remote storage at {url}: {source}")]
    Build {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("reading S3 credentials file {path}: {reason}")]
    Credentials { path: String, reason: String },
}

/// An opened store, the key prefix inside it, and a description for logs (no secrets).
#[derive(Debug, Clone)]
pub struct OpenedStore {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    pub description: String,
}

/// Timeouts short enough that an unreachable store shows up as failed uploads within
/// seconds, not minutes; the tier manager's own backoff does the long-term retrying.
fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120))
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    }
}

pub fn open(settings: &RemoteSettings) -> Result<OpenedStore, StoreError> {
    let url = settings.url.trim();
    let bad = |reason: &str| StoreError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let build_err = |source| StoreError::Build {
        url: url.to_string(),
        source,
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s, r),
        None => ("file", url),
    };
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p.trim_matches('/')),
        None => (rest, ""),
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => {
            if bucket.is_empty() {
                return Err(bad("no bucket: expected s3://bucket/prefix"));
            }
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(client_options())
                .with_retry(retry_config())
                .with_virtual_hosted_style_request(!settings.s3_path_style);
            if let Some(endpoint) = &settings.s3_endpoint {
                b = b
                    .with_endpoint(endpoint.trim())
                    .with_allow_http(endpoint.trim().starts_with("http://"));
            } else if std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .is_ok_and(|e| e.starts_with("http://"))
            {
                b = b.with_allow_http(true);
            }
            if let Some(region) = &settings.s3_region {
                b = b.with_region(region.trim());
            } else if std::env::var("AWS_REGION").is_err()
                && let Ok(r) = std::env::var("AWS_DEFAULT_REGION")
            {
                b = b.with_region(r);
            }
            if std::env::var("AWS_ACCESS_KEY_ID").is_err()
                && let Some(c) = shared_credentials(settings.s3_credentials_file.as_deref())?
            {
                b = b
                    .with_access_key_id(c.access_key_id)
                    .with_secret_access_key(c.secret_access_key);
                if let Some(t) = c.session_token {
                    b = b.with_token(t);
                }
            }
            Arc::new(b.build().map_err(build_err)?)
        }
        "gs" => {
            if bucket.is_empty() {
                return Err(bad("no bucket: expected gs://bucket/prefix"));
            }
            Arc::new(
                GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_client_options(client_options())
                    .with_retry(retry_config())
                    .build()
                    .map_err(build_err)?,
            )
        }
        "az" | "azure" | "abfs" | "abfss" => {
            if bucket.is_empty() {
                return Err(bad("no container: expected az://container/prefix"));
            }
            Arc::new(
                MicrosoftAzureBuilder::from_env()
                    .with_container_name(bucket)
                    .with_client_options(client_options())
                    .with_retry(retry_config())
                    .build()
                    .map_err(build_err)?,
            )
        }
        "file" => {
            // file:///abs/path, or a plain (possibly relative) path.
            let dir = PathBuf::from(if url.contains("://") {
                rest.to_string()
            } else {
                url.to_string()
            });
            if dir.as_os_str().is_empty() {
                return Err(bad("empty directory"));
            }
            std::fs::create_dir_all(&dir).map_err(|e| bad(&e.to_string()))?;
            let dir = dir.canonicalize().map_err(|e| bad(&e.to_string()))?;
            let local = LocalFileSystem::new_with_prefix(&dir)
                .map_err(build_err)?
                .with_automatic_cleanup(true);
            return Ok(OpenedStore {
                store: Arc::new(local),
                root: Path::default(),
                description: format!("local directory {}", dir.display()),
            });
        }
        other => {
            return Err(bad(&format!(
                "unknown scheme {other}: use s3://, gs://, az:// or a local directory"
            )));
        }
    };
    Ok(OpenedStore {
        store,
        root: Path::from(prefix),
        description: format!("{scheme}://{bucket}/{prefix}"),
    })
}

#[derive(Debug, PartialEq, Eq)]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// Keys from an AWS shared credentials file, if one is configured or present.
fn shared_credentials(configured: Option<&FsPath>) -> Result<Option<Credentials>, StoreError> {
    let path = match configured {
        Some(p) => p.to_path_buf(),
        None => match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os("HOME") {
                Some(home) => PathBuf::from(home).join(".aws/credentials"),
                None => return Ok(None),
            },
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if configured.is_none() && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None);
        }
        Err(e) => {
            return Err(StoreError::Credentials {
                path: path.display().to_string(),
                reason: e.to_string(),
            });
        }
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    match parse_credentials(&text, &profile) {
        Some(c) => Ok(Some(c)),
        None => Err(StoreError::Credentials {
            path: path.display().to_string(),
            reason: format!(
                "profile [{profile}] with aws_access_key_id and aws_secret_access_key not found"
            ),
        }),
    }
}

fn parse_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => key = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    Some(Credentials {
        access_key_id: key?,
        secret_access_key: secret?,
        session_token: token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_file_profiles() {
        let text = "[default]\naws_access_key_id = AK\naws_secret_access_key=SK\n\n[other]\naws_access_key_id=AK2\naws_secret_access_key=SK2\naws_session_token=T\n";
        assert_eq!(
            parse_credentials(text, "default"),
            Some(Credentials {
                access_key_id: "AK".into(),
                secret_access_key: "SK".into(),
                session_token: None
            })
        );
        assert_eq!(
            parse_credentials(text, "other").unwrap().session_token,
            Some("T".into())
        );
        assert_eq!(parse_credentials(text, "missing"), None);
    }

    fn settings(url: &str) -> RemoteSettings {
        let c =
            crate::config::BrokerConfig::load(&crate::config::ConfigSources::default()).unwrap();
        RemoteSettings {
            url: url.to_string(),
            ..c.remote
        }
    }

    #[test]
    fn urls() {
        let dir = tempfile::tempdir().unwrap();
        let local = open(&settings(&dir.path().join("tier").display().to_string())).unwrap();
        assert!(local.description.starts_with("local directory"));
        assert!(open(&settings("ftp://x/y")).is_err());
        assert!(open(&settings("s3:///prefix")).is_err());
        let mut s3 = settings("s3://bucket/some/prefix/");
        s3.s3_endpoint = Some("http://127.0.0.1:1".into());
        s3.s3_region = Some("us-east-1".into());
        s3.s3_path_style = true;
        let opened = open(&s3).unwrap();
        assert_eq!(opened.root.to_string(), "some/prefix");
    }
}
