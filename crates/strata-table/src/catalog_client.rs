//! The other direction: an Iceberg REST catalog *client* (`[catalog] kind = "rest"`), so the
//! lake's tables can live in an external catalog — another `strata serve`'s `/iceberg`, or
//! Polaris, Lakekeeper, Nessie, Gravitino — that Spark, Trino and pyiceberg share.
//!
//! It implements iceberg's `Catalog` trait, so everything that reads through the catalog
//! (`strata sql`, DataFusion's provider, the sink's position lookups) is unchanged. Strata's
//! own writers never hand a catalog a finished metadata file: [`RestCatalog::commit`] sends the
//! updates the metadata builder recorded, with requirements that make the commit a
//! compare-and-swap on what the writer read (ADR 0018). A commit whose answer is lost (timeout,
//! 5xx: the spec says its state is unknown) is settled by reloading the table and looking for
//! the snapshot it added, so a retry never commits the same data twice.
//!
//! Table files are read and written with the lake's own `FileIO` (local or S3 from `[lake]`);
//! storage credentials a catalog vends in `config` are not used.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use iceberg::io::FileIO;
use iceberg::spec::{TableMetadata, UnboundPartitionSpec};
use iceberg::table::Table;
use iceberg::Runtime;
use iceberg::{
    Catalog, ErrorKind, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent,
    TableRequirement, TableUpdate,
};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{json, Value};

/// A connected REST catalog: base URL (with the server's `prefix`), token and the lake's
/// `FileIO`.
pub struct RestCatalog {
    http: reqwest::Client,
    /// `<uri>/v1/` or `<uri>/v1/<prefix>/`, ending in `/`.
    base: Url,
    /// As configured, for error messages.
    uri: String,
    token: Option<String>,
    file_io: FileIO,
    runtime: Runtime,
}

impl std::fmt::Debug for RestCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCatalog")
            .field("base", &self.base.as_str())
            .finish()
    }
}

/// What a commit sends: requirements that hold for the metadata the writer started from, and
/// the updates that turn it into the writer's next metadata.
pub struct RestCommit {
    pub requirements: Vec<TableRequirement>,
    pub updates: Vec<TableUpdate>,
}

impl RestCommit {
    /// The requirements that make `updates` a compare-and-swap on `base`, the metadata they were
    /// built from: the same table (uuid) always; for snapshot changes, `main` still where it
    /// was; for schema changes, the same current schema and last column id; for partition
    /// changes, the same default spec and last partition id. Property-only changes are
    /// last-writer-wins, as in every Iceberg catalog.
    pub fn new(base: &TableMetadata, updates: Vec<TableUpdate>) -> RestCommit {
        let mut requirements = vec![TableRequirement::UuidMatch { uuid: base.uuid() }];
        let touches = |f: fn(&TableUpdate) -> bool| updates.iter().any(f);
        if touches(|u| {
            matches!(
                u,
                TableUpdate::AddSnapshot { .. }
                    | TableUpdate::SetSnapshotRef { .. }
                    | TableUpdate::RemoveSnapshots { .. }
                    | TableUpdate::RemoveSnapshotRef { .. }
            )
        }) {
            requirements.push(TableRequirement::RefSnapshotIdMatch {
                r#ref: iceberg::spec::MAIN_BRANCH.to_string(),
                snapshot_id: base.current_snapshot().map(|s| s.snapshot_id()),
            });
        }
        if touches(|u| {
            matches!(
                u,
                TableUpdate::AddSchema { .. } | TableUpdate::SetCurrentSchema { .. }
            )
        }) {
            requirements.push(TableRequirement::CurrentSchemaIdMatch {
                current_schema_id: base.current_schema_id(),
            });
            requirements.push(TableRequirement::LastAssignedFieldIdMatch {
                last_assigned_field_id: base.last_column_id(),
            });
        }
        if touches(|u| {
            matches!(
                u,
                TableUpdate::AddSpec { .. } | TableUpdate::SetDefaultSpec { .. }
            )
        }) {
            requirements.push(TableRequirement::DefaultSpecIdMatch {
                default_spec_id: base.default_partition_spec_id(),
            });
            requirements.push(TableRequirement::LastAssignedPartitionIdMatch {
                last_assigned_partition_id: base.last_partition_id(),
            });
        }
        RestCommit {
            requirements,
            updates,
        }
    }

    /// The snapshot this commit adds, if any: how a commit with a lost answer is recognised.
    fn added_snapshot(&self) -> Option<i64> {
        self.updates.iter().find_map(|u| match u {
            TableUpdate::AddSnapshot { snapshot } => Some(snapshot.snapshot_id()),
            _ => None,
        })
    }
}

/// A commit that failed with an unknown outcome is settled by this many reloads at most.
const SETTLE_ATTEMPTS: u32 = 5;

impl RestCatalog {
    /// Connects: `GET <uri>/v1/config` (with `?warehouse=`), whose `prefix` (defaults, then
    /// overrides) goes into every later path. An unreachable or refusing catalog fails here
    /// with the URI and the reason.
    pub async fn connect(
        config: &crate::config::CatalogConfig,
        file_io: FileIO,
    ) -> iceberg::Result<RestCatalog> {
        let uri = config.uri.trim().trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10).min(config.timeout))
            .build()
            .map_err(|e| unexpected(format!("building the REST catalog client: {e}")))?;
        let token = Some(config.token.trim().to_string()).filter(|t| !t.is_empty());
        let v1 = Url::parse(&format!("{uri}/v1/"))
            .map_err(|e| unexpected(format!("catalog.uri {uri:?}: {e}")))?;
        let mut catalog = RestCatalog {
            http,
            base: v1.clone(),
            uri: uri.clone(),
            token,
            file_io,
            runtime: Runtime::try_current()?,
        };
        let mut url = catalog.url(&["config"]);
        if !config.warehouse.trim().is_empty() {
            url.query_pairs_mut()
                .append_pair("warehouse", config.warehouse.trim());
        }
        let body = catalog
            .call(Method::GET, url, None, "reading the catalog config")
            .await?;
        let answer: ConfigAnswer = parse(&body, "the catalog config")?;
        let prefix = answer
            .overrides
            .get("prefix")
            .or_else(|| answer.defaults.get("prefix"))
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty());
        if let Some(prefix) = prefix {
            let mut base = v1;
            base.path_segments_mut()
                .map_err(|_| unexpected(format!("catalog.uri {uri:?} cannot take a path")))?
                .pop_if_empty()
                .extend(prefix.split('/'))
                .push("");
            catalog.base = base;
        }
        tracing::info!(uri = %uri, base = %catalog.base, "connected to the REST catalog");
        Ok(catalog)
    }

    /// `base` + path segments, each percent-encoded (a namespace's levels joined by `%1F`).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn namespace_url(&self, ns: &NamespaceIdent, rest: &[&str]) -> Url {
        let ns = ns.join(&NS_SEP.to_string());
        let mut segments = vec!["namespaces", ns.as_str()];
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    fn table_url(&self, ident: &TableIdent) -> Url {
        self.namespace_url(ident.namespace(), &["tables", ident.name()])
    }

    /// One request; a 2xx body, or the catalog's `ErrorModel` as an iceberg error whose kind
    /// says what it was (missing table or namespace, already exists, commit conflict). Network
    /// errors and 5xx are retryable.
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        what: &str,
    ) -> iceberg::Result<bytes::Bytes> {
        let (status, bytes) = self.send(method, url, body, what).await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(self.failure(status, &bytes, what))
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        what: &str,
    ) -> iceberg::Result<(StatusCode, bytes::Bytes)> {
        let mut req = self.http.request(method, url);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|e| {
            unexpected(format!(
                "{what}: REST catalog {} unreachable: {}",
                self.uri,
                error_chain(&e)
            ))
            .with_retryable(true)
        })?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| {
            unexpected(format!(
                "{what}: reading the answer of REST catalog {}: {}",
                self.uri,
                error_chain(&e)
            ))
            .with_retryable(true)
        })?;
        Ok((status, bytes))
    }

    /// Whether a HEAD answers 2xx (true) or 404 (false).
    async fn exists(&self, url: Url, what: &str) -> iceberg::Result<bool> {
        let (status, bytes) = self.send(Method::HEAD, url, None, what).await?;
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(self.failure(s, &bytes, what)),
        }
    }

    fn failure(&self, status: StatusCode, body: &[u8], what: &str) -> iceberg::Error {
        let model: Option<ErrorAnswer> = serde_json::from_slice(body).ok();
        let (kind_name, message) = match &model {
            Some(m) => (m.error.r#type.as_str(), m.error.message.clone()),
            None => (
                "",
                String::from_utf8_lossy(body).chars().take(300).collect(),
            ),
        };
        let kind = match (status.as_u16(), kind_name) {
            (_, "NoSuchTableException") => ErrorKind::TableNotFound,
            (_, "NoSuchNamespaceException") => ErrorKind::NamespaceNotFound,
            (409, "CommitFailedException") => ErrorKind::CatalogCommitConflicts,
            (409, "AlreadyExistsException") if what.contains("namespace") => {
                ErrorKind::NamespaceAlreadyExists
            }
            (409, "AlreadyExistsException") => ErrorKind::TableAlreadyExists,
            (406, _) => ErrorKind::FeatureUnsupported,
            // Refused credentials: retrying will not help (Unexpected would be retried).
            (401, _) | (403, _) => ErrorKind::PreconditionFailed,
            (s, _) if (400..500).contains(&s) && s != 429 => ErrorKind::DataInvalid,
            _ => ErrorKind::Unexpected,
        };
        let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        iceberg::Error::new(
            kind,
            format!(
                "{what}: REST catalog {} answered {status}{}: {message}",
                self.uri,
                if kind_name.is_empty() {
                    String::new()
                } else {
                    format!(" {kind_name}")
                }
            ),
        )
        .with_retryable(retryable)
    }

    /// Pages through a list endpoint (`pageToken` / `next-page-token`), collecting `field`.
    async fn list_pages(&self, url: Url, field: &str, what: &str) -> iceberg::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut page = url.clone();
            if let Some(t) = &token {
                page.query_pairs_mut().append_pair("pageToken", t);
            }
            let body = self.call(Method::GET, page, None, what).await?;
            let answer: Value = parse(&body, what)?;
            if let Some(list) = answer.get(field).and_then(Value::as_array) {
                items.extend(list.iter().cloned());
            }
            match answer.get("next-page-token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => {
                    token = Some(t.to_string())
                }
                _ => return Ok(items),
            }
        }
    }

    /// A `LoadTableResult` (or commit answer) as a table on the lake's `FileIO`.
    fn table(&self, ident: &TableIdent, body: &[u8], what: &str) -> iceberg::Result<Table> {
        let answer: TableAnswer = parse(body, what)?;
        let mut builder = Table::builder()
            .file_io(self.file_io.clone())
            .identifier(ident.clone())
            .metadata(answer.metadata)
            .runtime(self.runtime.clone());
        if let Some(location) = answer.metadata_location {
            builder = builder.metadata_location(location);
        }
        builder.build()
    }

    /// Commits `commit` to `ident` (`POST .../tables/{table}`). A conflict (409) is
    /// `CatalogCommitConflicts`. When the answer is lost (network error, 5xx), the table is
    /// reloaded: if the snapshot the commit adds is there it did commit, if `main` still points
    /// where the writer read it did not and is sent again; anything else is a conflict.
    pub async fn commit(&self, ident: &TableIdent, commit: RestCommit) -> iceberg::Result<Table> {
        let what = format!("committing {ident}");
        let body = json!({
            "identifier": ident_json(ident),
            "requirements": commit.requirements,
            "updates": commit.updates,
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .send(
                    Method::POST,
                    self.table_url(ident),
                    Some(body.clone()),
                    &what,
                )
                .await;
            let error = match sent {
                Ok((status, bytes)) if status.is_success() => {
                    return self.table(ident, &bytes, &what)
                }
                Ok((status, bytes)) => self.failure(status, &bytes, &what),
                Err(e) => e,
            };
            if !error.retryable() || attempt > SETTLE_ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(table = %ident, attempt, error = %error, "REST commit outcome unknown, checking the table");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            let table = match self.load_table(ident).await {
                Ok(t) => t,
                Err(e) if e.retryable() => continue,
                Err(e) => return Err(e),
            };
            if let Some(id) = commit.added_snapshot() {
                if table.metadata().snapshot_by_id(id).is_some() {
                    tracing::info!(table = %ident, snapshot = id, "REST commit had landed");
                    return Ok(table);
                }
            }
            let unmoved = commit
                .requirements
                .iter()
                .all(|r| r.check(Some(table.metadata())).is_ok());
            if !unmoved {
                return Err(iceberg::Error::new(
                    ErrorKind::CatalogCommitConflicts,
                    format!("{what}: the table moved while the outcome was unknown"),
                ));
            }
        }
    }
}

#[async_trait]
impl Catalog for RestCatalog {
    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> iceberg::Result<Vec<NamespaceIdent>> {
        let mut url = self.url(&["namespaces"]);
        if let Some(parent) = parent {
            url.query_pairs_mut()
                .append_pair("parent", &parent.join(&NS_SEP.to_string()));
        }
        let items = self
            .list_pages(url, "namespaces", "listing namespaces")
            .await?;
        items
            .into_iter()
            .map(|v| {
                let levels: Vec<String> = serde_json::from_value(v)
                    .map_err(|e| unexpected(format!("listing namespaces: {e}")))?;
                NamespaceIdent::from_vec(levels)
            })
            .collect()
    }

    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<Namespace> {
        let what = format!("creating namespace {namespace}");
        let body = json!({ "namespace": namespace.as_ref(), "properties": properties });
        let answer = self
            .call(Method::POST, self.url(&["namespaces"]), Some(body), &what)
            .await?;
        let answer: NamespaceAnswer = parse(&answer, &what)?;
        Ok(Namespace::with_properties(
            namespace.clone(),
            answer.properties.unwrap_or(properties),
        ))
    }

    async fn get_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<Namespace> {
        let what = format!("loading namespace {namespace}");
        let answer = self
            .call(Method::GET, self.namespace_url(namespace, &[]), None, &what)
            .await?;
        let answer: NamespaceAnswer = parse(&answer, &what)?;
        Ok(Namespace::with_properties(
            namespace.clone(),
            answer.properties.unwrap_or_default(),
        ))
    }

    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> iceberg::Result<bool> {
        let what = format!("checking namespace {namespace}");
        self.exists(self.namespace_url(namespace, &[]), &what).await
    }

    /// Makes the namespace's properties exactly `properties` (the trait's contract): the
    /// others are removed.
    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> iceberg::Result<()> {
        let current = self.get_namespace(namespace).await?;
        let removals: Vec<&String> = current
            .properties()
            .keys()
            .filter(|k| !properties.contains_key(*k))
            .collect();
        let what = format!("updating namespace {namespace}");
        let body = json!({ "removals": removals, "updates": properties });
        self.call(
            Method::POST,
            self.namespace_url(namespace, &["properties"]),
            Some(body),
            &what,
        )
        .await?;
        Ok(())
    }

    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> iceberg::Result<()> {
        let what = format!("dropping namespace {namespace}");
        self.call(
            Method::DELETE,
            self.namespace_url(namespace, &[]),
            None,
            &what,
        )
        .await?;
        Ok(())
    }

    async fn list_tables(&self, namespace: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        let what = format!("listing the tables of namespace {namespace}");
        let items = self
            .list_pages(
                self.namespace_url(namespace, &["tables"]),
                "identifiers",
                &what,
            )
            .await?;
        items
            .into_iter()
            .map(|v| {
                let id: IdentAnswer =
                    serde_json::from_value(v).map_err(|e| unexpected(format!("{what}: {e}")))?;
                Ok(TableIdent::new(
                    NamespaceIdent::from_vec(id.namespace)?,
                    id.name,
                ))
            })
            .collect()
    }

    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> iceberg::Result<Table> {
        let ident = TableIdent::new(namespace.clone(), creation.name.clone());
        let what = format!("creating table {ident}");
        let mut body = json!({
            "name": creation.name,
            "schema": creation.schema,
            "properties": creation.properties,
            "stage-create": false,
        });
        if let Some(location) = &creation.location {
            body["location"] = json!(location);
        }
        if let Some(spec) = &creation.partition_spec {
            body["partition-spec"] = spec_json(spec)?;
        }
        if let Some(order) = &creation.sort_order {
            body["write-order"] =
                serde_json::to_value(order).map_err(|e| unexpected(format!("{what}: {e}")))?;
        }
        let answer = self
            .call(
                Method::POST,
                self.namespace_url(namespace, &["tables"]),
                Some(body),
                &what,
            )
            .await?;
        self.table(&ident, &answer, &what)
    }

    async fn load_table(&self, table: &TableIdent) -> iceberg::Result<Table> {
        let what = format!("loading {table}");
        let answer = self
            .call(Method::GET, self.table_url(table), None, &what)
            .await?;
        self.table(table, &answer, &what)
    }

    async fn drop_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        let what = format!("dropping {table}");
        let mut url = self.table_url(table);
        url.query_pairs_mut().append_pair("purgeRequested", "false");
        self.call(Method::DELETE, url, None, &what).await?;
        Ok(())
    }

    /// Asks the catalog to drop the table and delete its files (`purgeRequested=true`): the
    /// catalog owns the files it registered.
    async fn purge_table(&self, table: &TableIdent) -> iceberg::Result<()> {
        let what = format!("purging {table}");
        let mut url = self.table_url(table);
        url.query_pairs_mut().append_pair("purgeRequested", "true");
        self.call(Method::DELETE, url, None, &what).await?;
        Ok(())
    }

    async fn table_exists(&self, table: &TableIdent) -> iceberg::Result<bool> {
        let what = format!("checking {table}");
        self.exists(self.table_url(table), &what).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> iceberg::Result<()> {
        let what = format!("renaming {src} to {dest}");
        let body = json!({ "source": ident_json(src), "destination": ident_json(dest) });
        self.call(
            Method::POST,
            self.url(&["tables", "rename"]),
            Some(body),
            &what,
        )
        .await?;
        Ok(())
    }

    async fn register_table(
        &self,
        table: &TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<Table> {
        let what = format!("registering {table}");
        let body = json!({ "name": table.name(), "metadata-location": metadata_location });
        let answer = self
            .call(
                Method::POST,
                self.namespace_url(table.namespace(), &["register"]),
                Some(body),
                &what,
            )
            .await?;
        self.table(table, &answer, &what)
    }

    /// A commit made with iceberg's `Transaction` (requirements and updates as it built them).
    async fn update_table(&self, mut commit: TableCommit) -> iceberg::Result<Table> {
        let ident = commit.identifier().clone();
        let commit = RestCommit {
            requirements: commit.take_requirements(),
            updates: commit.take_updates(),
        };
        self.commit(&ident, commit).await
    }
}

/// A partition spec as the REST spec's `PartitionSpec` (`spec-id` optional, fields with
/// `source-id`, `field-id`, `name`, `transform`).
fn spec_json(spec: &UnboundPartitionSpec) -> iceberg::Result<Value> {
    serde_json::to_value(spec).map_err(|e| unexpected(format!("partition spec: {e}")))
}

#[derive(Deserialize)]
struct ConfigAnswer {
    #[serde(default)]
    defaults: HashMap<String, String>,
    #[serde(default)]
    overrides: HashMap<String, String>,
}

#[derive(Deserialize)]
struct NamespaceAnswer {
    #[serde(default)]
    properties: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct IdentAnswer {
    namespace: Vec<String>,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct TableAnswer {
    #[serde(default)]
    metadata_location: Option<String>,
    metadata: TableMetadata,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    r#type: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> iceberg::Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        unexpected(format!(
            "{what}: the REST catalog's answer is not what the spec says: {e}"
        ))
    })
}

fn unexpected(message: String) -> iceberg::Error {
    iceberg::Error::new(ErrorKind::Unexpected, message)
}

/// An error with its causes ("connection refused" is usually two levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `%1F` (unit separator) between levels of a namespace in paths and `parent=` (the REST
/// spec's encoding, shared with the server in `strata-rest`).
pub const NS_SEP: char = '\u{1f}';

/// `{"namespace": [...], "name": "..."}`
pub fn ident_json(ident: &TableIdent) -> serde_json::Value {
    serde_json::json!({
        "namespace": ident.namespace().as_ref(),
        "name": ident.name(),
    })
}
