//! Where report files are kept: S3-compatible object storage when it is
//! configured, a folder of the local filesystem otherwise, both through
//! `object_store`. Keys are `reports/{report_id}.{ext}`.
//!
//! Settings (environment):
//! - `SHOPFLOOR_REPORTS_S3_URL`: the S3 endpoint (e.g. `https://s3.eu-central-1.amazonaws.com`,
//!   or `http://127.0.0.1:9000` for a local server); when set, S3 is used;
//! - `SHOPFLOOR_REPORTS_S3_BUCKET`, `SHOPFLOOR_REPORTS_S3_REGION` (default `us-east-1`),
//!   `SHOPFLOOR_REPORTS_S3_ACCESS_KEY_ID`, `SHOPFLOOR_REPORTS_S3_SECRET_ACCESS_KEY`;
//! - `SHOPFLOOR_REPORTS_DIR`: the folder when S3 is not configured (default `./reports`).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use secrecy::{ExposeSecret, SecretString};

use crate::error::ReportError;

/// An S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

/// Where reports are stored.
#[derive(Debug, Clone)]
pub enum StorageSettings {
    S3(S3Settings),
    Filesystem(PathBuf),
}

impl StorageSettings {
    /// The settings from the environment (see the module docs).
    pub fn from_env() -> Result<Self, ReportError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// The settings through `lookup` (a test passes a map).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ReportError> {
        let var = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        match var("SHOPFLOOR_REPORTS_S3_URL") {
            Some(endpoint) => {
                let need = |k: &str| {
                    var(k).ok_or_else(|| {
                        ReportError::Settings(format!(
                            "{k} must be set with SHOPFLOOR_REPORTS_S3_URL"
                        ))
                    })
                };
                Ok(Self::S3(S3Settings {
                    endpoint,
                    bucket: need("SHOPFLOOR_REPORTS_S3_BUCKET")?,
                    region: var("SHOPFLOOR_REPORTS_S3_REGION")
                        .unwrap_or_else(|| "us-east-1".into()),
                    access_key_id: need("SHOPFLOOR_REPORTS_S3_ACCESS_KEY_ID")?,
                    secret_access_key: SecretString::from(need(
                        "SHOPFLOOR_REPORTS_S3_SECRET_ACCESS_KEY",
                    )?),
                }))
            }
            None => Ok(Self::Filesystem(
                var("SHOPFLOOR_REPORTS_DIR")
                    .map_or_else(|| PathBuf::from("reports"), PathBuf::from),
            )),
        }
    }
}

/// The report files.
#[derive(Debug, Clone)]
pub struct ReportStore {
    inner: Arc<dyn ObjectStore>,
    describe: String,
}

impl ReportStore {
    /// Opens the storage (a missing folder is created).
    pub fn open(settings: &StorageSettings) -> Result<Self, ReportError> {
        match settings {
            StorageSettings::S3(s) => {
                let store = AmazonS3Builder::new()
                    .with_endpoint(&s.endpoint)
                    .with_allow_http(s.endpoint.starts_with("http://"))
                    .with_bucket_name(&s.bucket)
                    .with_region(&s.region)
                    .with_access_key_id(&s.access_key_id)
                    .with_secret_access_key(s.secret_access_key.expose_secret())
                    .build()?;
                Ok(Self {
                    inner: Arc::new(store),
                    describe: format!("s3 {} bucket {}", s.endpoint, s.bucket),
                })
            }
            StorageSettings::Filesystem(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    ReportError::Settings(format!("cannot create {}: {e}", dir.display()))
                })?;
                Ok(Self {
                    inner: Arc::new(LocalFileSystem::new_with_prefix(dir)?),
                    describe: format!("folder {}", dir.display()),
                })
            }
        }
    }

    /// Where the files go, for the logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Stores a file under `key`.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ReportError> {
        self.inner
            .put(&Path::from(key), PutPayload::from(Bytes::from(bytes)))
            .await?;
        Ok(())
    }

    /// The file under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, ReportError> {
        Ok(self.inner.get(&Path::from(key)).await?.bytes().await?)
    }
}
