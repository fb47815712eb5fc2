//! The registry over HTTP, in the shape of Confluent Schema Registry's REST API (JSON schemas
//! only), mounted by `strata serve` under [`PREFIX`]: a Confluent client's URL is
//! `http://HOST:PORT/registry`.
//!
//! | call | answer |
//! |---|---|
//! | `GET /subjects` | `["Post Clicked", …]` |
//! | `GET /subjects/{s}/versions` | `[1, 2]` |
//! | `POST /subjects/{s}/versions` `{"schema": "<json text>", "schemaType": "JSON"}` | `{"id": n}` (409 when incompatible) |
//! | `POST /subjects/{s}` `{"schema": …}` | the version holding that schema, or 40403 |
//! | `GET /subjects/{s}/versions/{v\|latest}` | `{"subject", "version", "id", "schema", "schemaType"}` |
//! | `GET /subjects/{s}/versions/{v\|latest}/schema` | the schema itself |
//! | `GET /schemas/ids/{id}` | `{"schema", "schemaType"}` |
//! | `GET /schemas/types` | `["JSON"]` |
//! | `POST /compatibility/subjects/{s}/versions[/{v\|latest}]` | `{"is_compatible": bool, "messages": […]}` |
//! | `GET\|PUT /config`, `GET\|PUT /config/{s}` | `{"compatibilityLevel": "BACKWARD"}`; PUT takes `{"compatibility": "FULL"}` |
//!
//! Errors are Confluent's bodies: `{"error_code": 42201, "message": "…"}`.
//!
//! Auth: the bearer tokens of `<data>/catalog_tokens.json` (`strata tokens create`), as
//! `Authorization: Bearer <token>` or as the password of HTTP Basic (what Confluent clients
//! send with `basic.auth.user.info`). Reading (GET, and the compatibility test) needs
//! `catalog:read`, `serve` or `admin`; registering a version and setting a level need `admin`.
//! Every call, refused ones included, is handed to the [`AccessHook`] (`serve` writes it to
//! `audit.access_log`).

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use serde_json::{json, Value};
use strata_core::tokens::{Scope, Tokens};

use crate::compat::Compatibility;
use crate::error::Error;
use crate::registry::{Registry, VersionRef};

/// Where `strata serve` mounts the registry.
pub const PREFIX: &str = "/registry";

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// One call as the access log records it.
#[derive(Debug, Clone)]
pub struct Access {
    /// The token's name (None: no valid token).
    pub actor: Option<String>,
    /// The token's role.
    pub role: Option<String>,
    /// `GET /registry/subjects`, …
    pub action: String,
    /// The subject the call named, when one.
    pub object: Option<String>,
    /// Whether the call changes the registry (register, set a level).
    pub write: bool,
    pub status: u16,
}

/// Receives every call (the access log); must not block.
pub type AccessHook = Arc<dyn Fn(Access) + Send + Sync>;

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    tokens_path: Arc<PathBuf>,
    access: Option<AccessHook>,
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.fault() != strata_core::error::Fault::User {
            tracing::error!(error = %self, "schema registry request failed");
        }
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = reply(
            status,
            json!({"error_code": self.error_code(), "message": self.public_message()}),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type Answer = Result<Response, Error>;

/// The routes, to be nested under [`PREFIX`]; `access` receives every call.
pub fn router(registry: Arc<Registry>, tokens_path: PathBuf, access: Option<AccessHook>) -> Router {
    let state = HttpState {
        registry,
        tokens_path: Arc::new(tokens_path),
        access,
    };
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(list_versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(get_version_schema))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/types", get(|| async { reply(StatusCode::OK, json!(["JSON"])) }))
        .route("/compatibility/subjects/{subject}/versions", post(test_latest))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(test_version))
        .route("/config", get(get_global).put(put_global))
        .route("/config/{subject}", get(get_subject_config).put(put_subject_config))
        .fallback(|| async {
            reply(
                StatusCode::NOT_FOUND,
                json!({"error_code": 404, "message": "no such schema registry endpoint (see docs/schemas.md)"}),
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

/// The token of `Authorization: Bearer <t>` or the password (else the user) of Basic.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_string()).filter(|t| !t.is_empty());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let token = if password.is_empty() { user } else { password };
        return Some(token.to_string()).filter(|t| !t.is_empty());
    }
    None
}

/// The subject a path names (`/subjects/{s}/…`, `/config/{s}`,
/// `/compatibility/subjects/{s}/…`), still URL-encoded.
fn path_subject(path: &str) -> Option<String> {
    let rest = path
        .strip_prefix("/compatibility/subjects/")
        .or_else(|| path.strip_prefix("/subjects/"))
        .or_else(|| path.strip_prefix("/config/"))?;
    let s = rest.split('/').next()?;
    (!s.is_empty()).then(|| percent_decode(s))
}

/// `Post%20Clicked` → `Post Clicked` (invalid escapes are kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_paths() {
        assert_eq!(
            path_subject("/subjects/Post%20Clicked/versions").as_deref(),
            Some("Post Clicked")
        );
        assert_eq!(
            path_subject("/config/identify").as_deref(),
            Some("identify")
        );
        assert_eq!(
            path_subject("/compatibility/subjects/a%2Fb/versions/latest").as_deref(),
            Some("a/b")
        );
        assert_eq!(path_subject("/subjects"), None);
        assert_eq!(path_subject("/config"), None);
        assert_eq!(percent_decode("100%"), "100%");
    }
}

async fn authorize(State(state): State<HttpState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let action = format!("{} {PREFIX}{path}", req.method());
    let write = !(req.method() == Method::GET
        || req.method() == Method::HEAD
        || path.starts_with("/compatibility/")
        || (req.method() == Method::POST
            && path.starts_with("/subjects/")
            && !path.ends_with("/versions")));
    let mut who: (Option<String>, Option<String>) = (None, None);
    let response = check_and_run(&state, req, next, !write, &mut who).await;
    if let Some(hook) = &state.access {
        hook(Access {
            actor: who.0,
            role: who.1,
            action,
            object: path_subject(&path),
            write,
            status: response.status().as_u16(),
        });
    }
    response
}

async fn check_and_run(
    state: &HttpState,
    req: Request,
    next: Next,
    reading: bool,
    who: &mut (Option<String>, Option<String>),
) -> Response {
    let Some(token) = presented(req.headers()) else {
        return Error::Unauthorized(
            "missing token: send Authorization: Bearer <token>, or the token as the HTTP Basic password (strata tokens create NAME --scope admin)"
                .to_string(),
        )
        .into_response();
    };
    let tokens = match Tokens::load(&state.tokens_path) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "schema registry: reading the token file failed");
            return Error::io(
                "reading the token file",
                std::io::Error::other(e.to_string()),
            )
            .into_response();
        }
    };
    let token = match tokens.verify(&token, chrono::Utc::now()) {
        Ok(t) => t.clone(),
        Err(refused) => return Error::Unauthorized(refused.to_string()).into_response(),
    };
    *who = (Some(token.name.clone()), token.role.clone());
    let allowed = if reading {
        token.has(Scope::CatalogRead) || token.has(Scope::Serve)
    } else {
        token.has(Scope::Admin)
    };
    if !allowed {
        let needed = if reading {
            "catalog:read, serve or admin"
        } else {
            "admin"
        };
        return Error::Forbidden(format!(
            "token {:?} may not {} schemas: that needs the {needed} scope (it has: {})",
            token.name,
            if reading {
                "read"
            } else {
                "register or configure"
            },
            token
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .into_response();
    }
    next.run(req).await
}

/// The schema text of a registration body: `schema` as a string (Confluent) or an object.
fn schema_text(body: &Bytes) -> Result<String, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the body must be JSON: {e}")))?;
    if let Some(t) = v.get("schemaType").and_then(Value::as_str) {
        if !t.eq_ignore_ascii_case("JSON") {
            return Err(Error::InvalidSchema(format!(
                "schemaType {t:?} is not supported: this registry keeps JSON schemas only"
            )));
        }
    }
    if v.get("references")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
    {
        return Err(Error::InvalidSchema(
            "schema references are not supported: put shared parts in $defs".to_string(),
        ));
    }
    match v.get("schema") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(obj @ (Value::Object(_) | Value::Bool(_))) => Ok(obj.to_string()),
        _ => Err(Error::BadRequest(
            "the body must be {\"schema\": \"<schema as JSON text>\", \"schemaType\": \"JSON\"}"
                .to_string(),
        )),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io("schema registry task", std::io::Error::other(e.to_string())))?
}

async fn list_subjects(State(s): State<HttpState>) -> Answer {
    Ok(reply(StatusCode::OK, json!(s.registry.subjects())))
}

async fn list_versions(State(s): State<HttpState>, Path(subject): Path<String>) -> Answer {
    Ok(reply(StatusCode::OK, json!(s.registry.versions(&subject)?)))
}

async fn register(State(s): State<HttpState>, Path(subject): Path<String>, body: Bytes) -> Answer {
    let text = schema_text(&body)?;
    let registry = s.registry.clone();
    let r = blocking(move || registry.register(&subject, &text)).await?;
    Ok(reply(StatusCode::OK, json!({"id": r.id})))
}

async fn lookup(State(s): State<HttpState>, Path(subject): Path<String>, body: Bytes) -> Answer {
    let text = schema_text(&body)?;
    let schema = crate::Schema::parse(&text).map_err(|p| Error::InvalidSchema(p.join("; ")))?;
    let versions = s.registry.versions(&subject)?;
    for v in versions.into_iter().rev() {
        let info = s.registry.version(&subject, VersionRef::Number(v))?;
        if info.schema == schema.canonical {
            return Ok(version_body(info));
        }
    }
    Err(Error::NotRegistered(subject))
}

fn version_body(info: crate::registry::VersionInfo) -> Response {
    reply(
        StatusCode::OK,
        json!({
            "subject": info.subject,
            "version": info.version,
            "id": info.id,
            "schemaType": "JSON",
            "schema": info.schema,
        }),
    )
}

async fn get_version(
    State(s): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    let which: VersionRef = version.parse()?;
    Ok(version_body(s.registry.version(&subject, which)?))
}

async fn get_version_schema(
    State(s): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
) -> Answer {
    let which: VersionRef = version.parse()?;
    let info = s.registry.version(&subject, which)?;
    let v: Value = serde_json::from_str(&info.schema)
        .map_err(|e| Error::Corrupt(format!("stored schema is not JSON: {e}")))?;
    Ok(reply(StatusCode::OK, v))
}

async fn schema_by_id(State(s): State<HttpState>, Path(id): Path<String>) -> Answer {
    let id: u64 = id
        .parse()
        .map_err(|_| Error::BadRequest(format!("schema id {id:?} is not a number")))?;
    let schema = s.registry.schema_by_id(id)?;
    Ok(reply(
        StatusCode::OK,
        json!({"schema": schema, "schemaType": "JSON"}),
    ))
}

async fn test(s: &HttpState, subject: &str, which: VersionRef, body: &Bytes) -> Answer {
    let text = schema_text(body)?;
    let messages = s.registry.test_compatibility(subject, which, &text)?;
    Ok(reply(
        StatusCode::OK,
        json!({"is_compatible": messages.is_empty(), "messages": messages}),
    ))
}

async fn test_latest(
    State(s): State<HttpState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    test(&s, &subject, VersionRef::Latest, &body).await
}

async fn test_version(
    State(s): State<HttpState>,
    Path((subject, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let which: VersionRef = version.parse()?;
    test(&s, &subject, which, &body).await
}

fn level_of(body: &Bytes) -> Result<Compatibility, Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the body must be JSON: {e}")))?;
    let text = v
        .get("compatibility")
        .or_else(|| v.get("compatibilityLevel"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::InvalidCompatibility(
                "the body must be {\"compatibility\": \"BACKWARD\"} (NONE, BACKWARD, FORWARD, FULL, or *_TRANSITIVE)"
                    .to_string(),
            )
        })?;
    text.parse().map_err(Error::InvalidCompatibility)
}

async fn get_global(State(s): State<HttpState>) -> Answer {
    Ok(reply(
        StatusCode::OK,
        json!({"compatibilityLevel": s.registry.global_compatibility().as_str()}),
    ))
}

async fn put_global(State(s): State<HttpState>, body: Bytes) -> Answer {
    let level = level_of(&body)?;
    let registry = s.registry.clone();
    blocking(move || registry.set_compatibility(None, level)).await?;
    Ok(reply(
        StatusCode::OK,
        json!({"compatibility": level.as_str()}),
    ))
}

#[derive(serde::Deserialize)]
struct ConfigQuery {
    #[serde(rename = "defaultToGlobal", default)]
    default_to_global: bool,
}

async fn get_subject_config(
    State(s): State<HttpState>,
    Path(subject): Path<String>,
    Query(q): Query<ConfigQuery>,
) -> Answer {
    let level = match s.registry.subject_compatibility(&subject) {
        Some(l) => l,
        None if q.default_to_global => s.registry.compatibility(&subject),
        None => return Err(Error::SubjectConfigNotFound(subject)),
    };
    Ok(reply(
        StatusCode::OK,
        json!({"compatibilityLevel": level.as_str()}),
    ))
}

async fn put_subject_config(
    State(s): State<HttpState>,
    Path(subject): Path<String>,
    body: Bytes,
) -> Answer {
    let level = level_of(&body)?;
    let registry = s.registry.clone();
    blocking(move || registry.set_compatibility(Some(&subject), level)).await?;
    Ok(reply(
        StatusCode::OK,
        json!({"compatibility": level.as_str()}),
    ))
}
