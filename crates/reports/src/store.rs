//! Where report files are kept: S3-compatible object storage or Azure Blob storage
//! when one is configured, a folder of the local filesystem otherwise, all through
//! `object_store`. Keys are `reports/{report_id}.{ext}`.
//!
//! Settings (environment):
//! - `SHOPFLOOR_REPORTS_S3_URL`: the S3 endpoint (e.g. `https://s3.eu-central-1.amazonaws.com`,
//!   or `http://127.0.0.1:9000` for a local server); when set, S3 is used;
//! - `SHOPFLOOR_REPORTS_S3_BUCKET`, `SHOPFLOOR_REPORTS_S3_REGION` (default `us-east-1`),
//!   `SHOPFLOOR_REPORTS_S3_ACCESS_KEY_ID`, `SHOPFLOOR_REPORTS_S3_SECRET_ACCESS_KEY`;
//! - `SHOPFLOOR_REPORTS_AZURE_ACCOUNT`: the storage account; when set, Azure Blob is used
//!   (it may not be set with `SHOPFLOOR_REPORTS_S3_URL`);
//! - `SHOPFLOOR_REPORTS_AZURE_CONTAINER`, `SHOPFLOOR_REPORTS_AZURE_ACCESS_KEY` (the
//!   account's shared key, base64);
//! - `SHOPFLOOR_REPORTS_AZURE_URL`: the blob endpoint (default
//!   `https://{account}.blob.core.windows.net`; for Azurite
//!   `http://127.0.0.1:10000/devstoreaccount1`);
//! - `SHOPFLOOR_REPORTS_DIR`: the folder when neither is configured (default `./reports`).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
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

/// An Azure Blob container, with the account's shared key.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub account: String,
    pub container: String,
    pub access_key: SecretString,
    /// The blob endpoint; `None` for `https://{account}.blob.core.windows.net`.
    pub endpoint: Option<String>,
}

/// Where reports are stored.
#[derive(Debug, Clone)]
pub enum StorageSettings {
    S3(S3Settings),
    Azure(AzureSettings),
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
        if let Some(account) = var("SHOPFLOOR_REPORTS_AZURE_ACCOUNT") {
            if var("SHOPFLOOR_REPORTS_S3_URL").is_some() {
                return Err(ReportError::Settings(
                    "set SHOPFLOOR_REPORTS_S3_URL or SHOPFLOOR_REPORTS_AZURE_ACCOUNT, not both"
                        .into(),
                ));
            }
            let need = |k: &str| {
                var(k).ok_or_else(|| {
                    ReportError::Settings(format!(
                        "{k} must be set with SHOPFLOOR_REPORTS_AZURE_ACCOUNT"
                    ))
                })
            };
            return Ok(Self::Azure(AzureSettings {
                account,
                container: need("SHOPFLOOR_REPORTS_AZURE_CONTAINER")?,
                access_key: SecretString::from(need("SHOPFLOOR_REPORTS_AZURE_ACCESS_KEY")?),
                endpoint: var("SHOPFLOOR_REPORTS_AZURE_URL"),
            }));
        }
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
            StorageSettings::Azure(a) => {
                let mut builder = MicrosoftAzureBuilder::new()
                    .with_account(&a.account)
                    .with_container_name(&a.container)
                    .with_access_key(a.access_key.expose_secret());
                if let Some(endpoint) = &a.endpoint {
                    builder = builder
                        .with_endpoint(endpoint.clone())
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                let place = a
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| format!("https://{}.blob.core.windows.net", a.account));
                Ok(Self {
                    inner: Arc::new(builder.build()?),
                    describe: format!("azure {place} container {}", a.container),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<StorageSettings, ReportError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        StorageSettings::from_lookup(&|k| map.get(k).cloned())
    }

    #[test]
    fn azure_is_chosen_by_its_account_and_needs_a_container_and_a_key() {
        let azure = [
            ("SHOPFLOOR_REPORTS_AZURE_ACCOUNT", "plant"),
            ("SHOPFLOOR_REPORTS_AZURE_CONTAINER", "reports"),
            ("SHOPFLOOR_REPORTS_AZURE_ACCESS_KEY", "a2V5"),
        ];
        match settings(&azure).unwrap() {
            StorageSettings::Azure(a) => {
                assert_eq!(
                    (a.account.as_str(), a.container.as_str()),
                    ("plant", "reports")
                );
                assert_eq!(a.endpoint, None);
            }
            other => panic!("{other:?}"),
        }
        let err = settings(&azure[..2]).unwrap_err().to_string();
        assert!(err.contains("SHOPFLOOR_REPORTS_AZURE_ACCESS_KEY"), "{err}");
        let mut both = azure.to_vec();
        both.push(("SHOPFLOOR_REPORTS_S3_URL", "http://127.0.0.1:9000"));
        assert!(settings(&both).is_err());
        assert!(matches!(
            settings(&[]).unwrap(),
            StorageSettings::Filesystem(_)
        ));
    }
}
