//! The lake on S3: iceberg's [`Storage`] over `object_store`'s S3 client (ADR 0014).
//!
//! Every table file (metadata JSON, manifest lists, manifests, Parquet data and delete files)
//! goes through iceberg's `FileIO`, and the catalog's `FileIO` is built from
//! [`S3StorageFactory`] when `lake.warehouse` is `s3://…`. `object_store` signs the requests,
//! retries failed ones with exponential backoff (`lake.s3_max_retries` within
//! `lake.s3_retry_timeout`) and uploads files larger than `lake.s3_part_size` as multipart
//! uploads. [`S3Storage::list`] serves orphan removal, which iceberg's `Storage` cannot list.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use crate::config::s3::S3Settings;
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

/// One object of a listing.
#[derive(Clone, Debug)]
pub struct ListedObject {
    /// `s3://bucket/key`
    pub location: String,
    pub size: u64,
    pub last_modified: std::time::SystemTime,
}

/// iceberg `Storage` for one bucket. Serialized (iceberg's `typetag` requirement) as its
/// settings; the client is rebuilt from them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "S3Settings", into = "S3Settings")]
pub struct S3Storage {
    settings: S3Settings,
    store: Arc<AmazonS3>,
}

impl From<S3Storage> for S3Settings {
    fn from(s: S3Storage) -> Self {
        s.settings
    }
}

impl TryFrom<S3Settings> for S3Storage {
    type Error = iceberg::Error;
    fn try_from(settings: S3Settings) -> iceberg::Result<Self> {
        S3Storage::new(settings)
    }
}

impl S3Storage {
    /// Builds the client (no request is made).
    pub fn new(settings: S3Settings) -> iceberg::Result<Self> {
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: settings.max_retries as usize,
            retry_timeout: settings.retry_timeout,
        };
        let store = build_store(&settings, retry)?;
        Ok(S3Storage {
            settings,
            store: Arc::new(store),
        })
    }

    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// Checks that the bucket answers and the credentials may list it, with few retries, so a
    /// wrong endpoint or bucket fails `strata serve` at start with a message naming them.
    pub async fn probe(&self) -> iceberg::Result<()> {
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
        };
        let quick = build_store(&self.settings, retry)?;
        let prefix = (!self.settings.prefix.is_empty())
            .then(|| ObjPath::parse(&self.settings.prefix))
            .transpose()
            .map_err(|e| self.err("parsing the prefix of", &self.settings.location(), e.into()))?;
        quick
            .list_with_delimiter(prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| {
                iceberg::Error::new(
                    iceberg::ErrorKind::Unexpected,
                    format!(
                        "S3 bucket {} at {} is not reachable or not readable with these \
                         credentials: {e}",
                        self.settings.bucket,
                        self.settings.endpoint_display()
                    ),
                )
                .with_retryable(true)
            })
    }

    /// Every object under `prefix` (an `s3://bucket/…` location).
    pub async fn list(&self, prefix: &str) -> iceberg::Result<Vec<ListedObject>> {
        let key = self.key(prefix)?;
        let bucket = &self.settings.bucket;
        self.store
            .list(Some(&key))
            .map_ok(|meta| ListedObject {
                location: format!("s3://{bucket}/{}", meta.location),
                size: meta.size,
                last_modified: meta.last_modified.into(),
            })
            .try_collect()
            .await
            .map_err(|e| self.err("listing", prefix, e))
    }

    /// The object key of `s3://bucket/key` (or `s3a://`); another bucket is an error.
    fn key(&self, path: &str) -> iceberg::Result<ObjPath> {
        let rest = path
            .strip_prefix("s3://")
            .or_else(|| path.strip_prefix("s3a://"))
            .ok_or_else(|| {
                iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    format!("{path} is not an s3:// location but the lake is on S3"),
                )
            })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket != self.settings.bucket {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!(
                    "{path} is outside the lake's bucket {}",
                    self.settings.bucket
                ),
            ));
        }
        ObjPath::parse(key).map_err(|e| {
            iceberg::Error::new(
                iceberg::ErrorKind::DataInvalid,
                format!("{path} is not a valid object key: {e}"),
            )
        })
    }

    fn err(&self, op: &str, path: &str, e: object_store::Error) -> iceberg::Error {
        let not_found = matches!(e, object_store::Error::NotFound { .. });
        let kind = if not_found {
            iceberg::ErrorKind::DataInvalid
        } else {
            iceberg::ErrorKind::Unexpected
        };
        iceberg::Error::new(
            kind,
            format!(
                "S3 {op} {path} (endpoint {}): {e}",
                self.settings.endpoint_display()
            ),
        )
        .with_retryable(!not_found)
    }
}

fn build_store(settings: &S3Settings, retry: RetryConfig) -> iceberg::Result<AmazonS3> {
    // `from_env` brings the credential chain AWS deployments rely on (web identity, ECS,
    // instance metadata); everything Strata resolved itself is set explicitly on top.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_retry(retry)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(120)),
        );
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_allow_http(endpoint.starts_with("http://"));
        if settings.path_style {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        } else {
            // Virtual-hosted with a custom endpoint: object_store wants the bucket in the host.
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
            // `bucket.127.0.0.1` is no host name (object_store panics on it when it builds a
            // request). `S3Settings::resolve` refuses this already; settings deserialized
            // from elsewhere are checked here too.
            if is_ip_host(host) {
                return Err(iceberg::Error::new(
                    iceberg::ErrorKind::DataInvalid,
                    format!(
                        "S3 endpoint {endpoint} is an IP address: virtual-hosted requests cannot \
                         name the bucket {} in it; use path-style requests \
                         (lake.s3_path_style = true or \"auto\")",
                        settings.bucket
                    ),
                ));
            }
            builder = builder
                .with_endpoint(format!("{scheme}://{}.{host}", settings.bucket))
                .with_virtual_hosted_style_request(true);
        }
    } else {
        builder = builder.with_virtual_hosted_style_request(!settings.path_style);
    }
    if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
        if let Some(token) = &settings.session_token {
            builder = builder.with_token(token);
        }
    }
    builder.build().map_err(|e| {
        iceberg::Error::new(
            iceberg::ErrorKind::DataInvalid,
            format!(
                "configuring S3 for bucket {} at {}: {e}",
                settings.bucket,
                settings.endpoint_display()
            ),
        )
    })
}

/// Whether `host[:port][/…]` names its host by an IPv4 or IPv6 address.
fn is_ip_host(authority: &str) -> bool {
    let authority = authority.split('/').next().unwrap_or("");
    if let Some(v6) = authority.strip_prefix('[') {
        return v6
            .split(']')
            .next()
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok());
    }
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    host.parse::<std::net::IpAddr>().is_ok()
}

#[async_trait]
#[typetag::serde]
impl Storage for S3Storage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        match self.store.head(&self.key(path)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("checking", path, e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let meta = self
            .store
            .head(&self.key(path)?)
            .await
            .map_err(|e| self.err("reading metadata of", path, e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let got = self
            .store
            .get(&self.key(path)?)
            .await
            .map_err(|e| self.err("reading", path, e))?;
        got.bytes().await.map_err(|e| self.err("reading", path, e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        Ok(Box::new(S3FileRead {
            storage: self.clone(),
            key: self.key(path)?,
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let mut writer = self.writer(path).await?;
        writer.write(bs).await?;
        writer.close().await
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let key = self.key(path)?;
        let capacity = usize::try_from(self.settings.part_size).unwrap_or(usize::MAX);
        let store: Arc<dyn ObjectStore> = self.store.clone();
        Ok(Box::new(S3FileWrite {
            storage: self.clone(),
            path: path.to_string(),
            inner: Some(BufWriter::with_capacity(store, key, capacity)),
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        match self.store.delete(&self.key(path)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", path, e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let objects = self.list(&prefix).await?;
        let paths = futures::stream::iter(objects.into_iter().map(|o| o.location)).boxed();
        self.delete_stream(paths).await
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let keys: Vec<String> = paths.collect().await;
        let mut locations = Vec::with_capacity(keys.len());
        for p in &keys {
            locations.push(Ok(self.key(p)?));
        }
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(locations).boxed());
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("deleting", "files", e)),
            }
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Ranged GETs.
#[derive(Debug)]
struct S3FileRead {
    storage: S3Storage,
    key: ObjPath,
    path: String,
}

#[async_trait]
impl FileRead for S3FileRead {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        self.storage
            .store
            .get_range(&self.key, range)
            .await
            .map_err(|e| self.storage.err("reading", &self.path, e))
    }
}

/// One PUT when the file stays under `part_size`, else a multipart upload.
struct S3FileWrite {
    storage: S3Storage,
    path: String,
    inner: Option<BufWriter>,
}

impl S3FileWrite {
    fn closed(&self) -> iceberg::Error {
        iceberg::Error::new(
            iceberg::ErrorKind::Unexpected,
            format!("{} was already closed", self.path),
        )
    }
}

#[async_trait]
impl FileWrite for S3FileWrite {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        let Some(writer) = self.inner.as_mut() else {
            return Err(self.closed());
        };
        if let Err(e) = writer.put(bs).await {
            let _ = writer.abort().await;
            self.inner = None;
            return Err(self.storage.err("writing", &self.path, e));
        }
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let Some(mut writer) = self.inner.take() else {
            return Err(self.closed());
        };
        // A failed completion aborts the upload itself (object_store's `WriteMultipart`); a
        // part that failed past its retries can leave an incomplete upload, which a bucket
        // lifecycle rule (AbortIncompleteMultipartUpload) cleans up.
        if let Err(e) = writer.shutdown().await {
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                format!(
                    "S3 writing {} (endpoint {}): {e}",
                    self.path,
                    self.storage.settings.endpoint_display()
                ),
            )
            .with_retryable(true));
        }
        Ok(())
    }
}

/// The catalog's storage factory for an S3 lake: every `FileIO` it builds talks to the same
/// bucket with the same settings (table properties do not change them).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct S3StorageFactory {
    storage: S3Storage,
}

impl S3StorageFactory {
    pub fn new(storage: S3Storage) -> Self {
        S3StorageFactory { storage }
    }
}

#[typetag::serde]
impl StorageFactory for S3StorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.storage.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str, path_style: bool) -> S3Settings {
        S3Settings {
            bucket: "bkt".into(),
            prefix: "lake".into(),
            endpoint: Some(endpoint.into()),
            region: "us-east-1".into(),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            session_token: None,
            path_style,
            allow_http: false,
            part_size: crate::config::s3::MIN_PART_SIZE,
            max_retries: 0,
            retry_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn virtual_hosted_style_with_an_ip_endpoint_is_an_error_not_a_panic() {
        for endpoint in [
            "http://127.0.0.1:9000",
            "http://[::1]:9000",
            "https://10.0.0.5",
        ] {
            let err = S3Storage::new(settings(endpoint, false)).unwrap_err();
            assert!(err.to_string().contains("path-style"), "{endpoint}: {err}");
            S3Storage::new(settings(endpoint, true)).unwrap();
        }
        S3Storage::new(settings("https://minio.example.com", false)).unwrap();
    }
}
