//! Where the lake's table files live: a local directory, or an S3 bucket and prefix
//! (`[lake] warehouse = "s3://bucket/prefix"`, ADR 0014).
//!
//! [`S3Settings::resolve`] merges the `lake.s3_*` keys with the usual AWS variables
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`; a config key wins over its variable) and checks them without any network,
//! so `strata check` validates an S3 lake offline. Opening the bucket is strata-table's job.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LakeConfig;
use strata_core::error::{Error, Result};

/// `lake.s3_path_style`: how requests name the bucket.
///
/// Written as `"auto"` (the default), `true` (path style, `endpoint/bucket/key`) or `false`
/// (virtual-hosted, `bucket.endpoint/key`). `"auto"` does what the AWS SDKs do: path style for
/// an endpoint given as an IP address or `localhost` (a bucket cannot be put in front of an IP
/// address), virtual-hosted otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathStyle {
    #[default]
    Auto,
    Path,
    VirtualHosted,
}

impl Serialize for PathStyle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            PathStyle::Auto => s.serialize_str("auto"),
            PathStyle::Path => s.serialize_bool(true),
            PathStyle::VirtualHosted => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for PathStyle {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Flag(bool),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Flag(true) => Ok(PathStyle::Path),
            Repr::Flag(false) => Ok(PathStyle::VirtualHosted),
            Repr::Text(t) if t.eq_ignore_ascii_case("auto") => Ok(PathStyle::Auto),
            Repr::Text(t) if t.eq_ignore_ascii_case("true") => Ok(PathStyle::Path),
            Repr::Text(t) if t.eq_ignore_ascii_case("false") => Ok(PathStyle::VirtualHosted),
            Repr::Text(t) => Err(serde::de::Error::custom(format!(
                "s3_path_style must be \"auto\", true or false, not {t:?}"
            ))),
        }
    }
}

/// The smallest part S3 accepts in a multipart upload (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Everything needed to reach the lake's bucket, resolved from config and environment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `None`: AWS itself (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// `endpoint/bucket/key` instead of `bucket.endpoint/key`.
    pub path_style: bool,
    /// Plain http to an endpoint that is not on loopback (`lake.s3_allow_http`).
    pub allow_http: bool,
    /// Files up to this size are one PUT; larger ones are multipart uploads of parts this big.
    pub part_size: u64,
    /// Retries of one failed request (with exponential backoff)...
    pub max_retries: u32,
    /// ... for at most this long after the first attempt.
    pub retry_timeout: Duration,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret or the session token.
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .field("allow_http", &self.allow_http)
            .field("part_size", &self.part_size)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .finish_non_exhaustive()
    }
}

/// True when `warehouse` names an object store rather than a local directory.
pub fn is_remote(warehouse: &str) -> bool {
    warehouse.contains("://")
}

impl S3Settings {
    /// `s3://bucket[/prefix]` (`s3a://` too) merged with `env` (a lookup such as
    /// `|k| std::env::var(k).ok()`). Errors say which key to fix.
    pub fn resolve(lake: &LakeConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let warehouse = lake.warehouse.to_string_lossy();
        let (bucket, prefix) = parse_warehouse(&warehouse)?;
        let pick = |key: &str, var: &str| -> Option<String> {
            let v = key.trim();
            if !v.is_empty() {
                return Some(v.to_string());
            }
            env(var)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoint = pick(&lake.s3_endpoint, "AWS_ENDPOINT_URL")
            .or_else(|| env("AWS_ENDPOINT_URL_S3").filter(|v| !v.trim().is_empty()))
            .map(|e| e.trim_end_matches('/').to_string());
        let region = pick(&lake.s3_region, "AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION").filter(|v| !v.trim().is_empty()))
            .unwrap_or_else(|| "us-east-1".to_string());
        let access_key_id = pick(&lake.s3_access_key_id, "AWS_ACCESS_KEY_ID");
        let secret_access_key = pick(&lake.s3_secret_access_key, "AWS_SECRET_ACCESS_KEY");
        let session_token = pick(&lake.s3_session_token, "AWS_SESSION_TOKEN");
        if access_key_id.is_some() != secret_access_key.is_some() {
            return Err(Error::user(
                "S3 credentials are half set: give both lake.s3_access_key_id and \
                 lake.s3_secret_access_key (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), \
                 or neither to use the instance or web-identity credentials",
            ));
        }
        if session_token.is_some() && access_key_id.is_none() {
            return Err(Error::user(
                "a session token (lake.s3_session_token / AWS_SESSION_TOKEN) needs an access key \
                 and secret too",
            ));
        }
        if let Some(endpoint) = &endpoint {
            check_endpoint(endpoint, lake.s3_allow_http)?;
        }
        let path_style = resolve_path_style(lake.s3_path_style, endpoint.as_deref())?;
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::user(format!(
                "lake.s3_region {region:?} is not a region name"
            )));
        }
        if lake.s3_part_size < MIN_PART_SIZE || lake.s3_part_size > 5 * 1024 * 1024 * 1024 {
            return Err(Error::user(
                "lake.s3_part_size must be between 5 MiB (S3's smallest part) and 5 GiB",
            ));
        }
        if lake.s3_retry_timeout.is_zero() {
            return Err(Error::user("lake.s3_retry_timeout must be positive"));
        }
        Ok(S3Settings {
            bucket,
            prefix,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            path_style,
            allow_http: lake.s3_allow_http,
            part_size: lake.s3_part_size,
            max_retries: lake.s3_max_retries,
            retry_timeout: lake.s3_retry_timeout,
        })
    }

    /// `s3://bucket/prefix`: the warehouse location table locations start with.
    pub fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// The endpoint for messages: the configured one, or AWS's for the region.
    pub fn endpoint_display(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region))
    }
}

fn parse_warehouse(warehouse: &str) -> Result<(String, String)> {
    let rest = warehouse
        .strip_prefix("s3://")
        .or_else(|| warehouse.strip_prefix("s3a://"))
        .ok_or_else(|| {
            Error::user(format!(
                "lake.warehouse {warehouse:?}: only local directories and s3://bucket/prefix \
                 are supported"
            ))
        })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    // S3's bucket naming rules: 3-63 of lowercase letters, digits, '.', '-'.
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    if !valid {
        return Err(Error::user(format!(
            "lake.warehouse {warehouse:?}: {bucket:?} is not a valid bucket name (3-63 lowercase \
             letters, digits, '.' and '-')"
        )));
    }
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty()
        && prefix
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(Error::user(format!(
            "lake.warehouse {warehouse:?}: the prefix has an empty, '.' or '..' segment"
        )));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

/// `auto` → path style for IP and `localhost` endpoints; `false` with an IP endpoint cannot
/// work (object_store would even panic on the `bucket.1.2.3.4` host), so it is refused here.
fn resolve_path_style(style: PathStyle, endpoint: Option<&str>) -> Result<bool> {
    let host = endpoint
        .and_then(|e| endpoint_parts(e).ok())
        .map(|(_, h)| h);
    let ip = host.is_some_and(|h| h.parse::<IpAddr>().is_ok());
    let localhost = host.is_some_and(|h| h.eq_ignore_ascii_case("localhost"));
    match style {
        PathStyle::Auto => Ok(ip || localhost),
        PathStyle::Path => Ok(true),
        PathStyle::VirtualHosted if ip => Err(Error::user(format!(
            "lake.s3_path_style = false cannot work with the S3 endpoint {:?}: virtual-hosted \
             requests put the bucket in the host name, and an IP address cannot carry one. \
             Remove the key (or set it to \"auto\"): path style is then used for IP and \
             localhost endpoints; or set it to true",
            endpoint.unwrap_or_default()
        ))),
        PathStyle::VirtualHosted => Ok(false),
    }
}

/// `(scheme, host)` of `scheme://host[:port][/…]` (an IPv6 host without its brackets).
fn endpoint_parts(endpoint: &str) -> Result<(&str, &str)> {
    let (scheme, rest) = endpoint.split_once("://").ok_or_else(|| {
        Error::user(format!(
            "S3 endpoint {endpoint:?} is not a URL (expected https://host[:port])"
        ))
    })?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(Error::user(format!(
            "S3 endpoint {endpoint:?} needs a host (and no user info)"
        )));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    Ok((scheme, host))
}

/// `https://host[:port]`, or `http://` to a loopback host (or anywhere with `allow_http`).
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<()> {
    let (scheme, host) = endpoint_parts(endpoint)?;
    match scheme {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(host) => Ok(()),
        "http" => Err(Error::user(format!(
            "S3 endpoint {endpoint:?} is plain http to a host that is not loopback: credentials \
             and data would cross the network unencrypted. Use https, or set \
             lake.s3_allow_http = true if that network is trusted"
        ))),
        other => Err(Error::user(format!(
            "S3 endpoint {endpoint:?}: scheme {other:?} is not http or https"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;

    fn lake(warehouse: &str) -> LakeConfig {
        LakeConfig {
            warehouse: PathBuf::from(warehouse),
            ..LakeConfig::default()
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn bucket_and_prefix() {
        let s = S3Settings::resolve(&lake("s3://my-lake/prod/strata/"), &no_env).unwrap();
        assert_eq!(s.bucket, "my-lake");
        assert_eq!(s.prefix, "prod/strata");
        assert_eq!(s.location(), "s3://my-lake/prod/strata");
        assert_eq!(s.region, "us-east-1");
        assert_eq!(s.endpoint, None);
        assert_eq!(s.endpoint_display(), "https://s3.us-east-1.amazonaws.com");
        let s = S3Settings::resolve(&lake("s3://my-lake"), &no_env).unwrap();
        assert_eq!(s.location(), "s3://my-lake");
        for bad in [
            "s3://",
            "s3://UPPER/x",
            "s3://ab",
            "gs://bucket/x",
            "s3://bkt//x",
        ] {
            let err = S3Settings::resolve(&lake(bad), &no_env).unwrap_err();
            assert!(err.to_string().contains("lake.warehouse"), "{bad}: {err}");
        }
    }

    #[test]
    fn env_vars_are_picked_up_and_config_wins() {
        let vars: HashMap<&str, &str> = [
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:15000/"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "envsecret"),
            ("AWS_SESSION_TOKEN", "envtoken"),
        ]
        .into();
        let env = |k: &str| vars.get(k).map(|v| v.to_string());
        let s = S3Settings::resolve(&lake("s3://bkt/p"), &env).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:15000"));
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(s.access_key_id.as_deref(), Some("AKIAENV"));
        assert_eq!(s.secret_access_key.as_deref(), Some("envsecret"));
        assert_eq!(s.session_token.as_deref(), Some("envtoken"));
        assert!(!format!("{s:?}").contains("envsecret"));

        let mut cfg = lake("s3://bkt/p");
        cfg.s3_region = "ap-south-1".into();
        cfg.s3_access_key_id = "AKIACFG".into();
        cfg.s3_secret_access_key = "cfgsecret".into();
        cfg.s3_endpoint = "https://s3.example.com".into();
        let s = S3Settings::resolve(&cfg, &env).unwrap();
        assert_eq!(s.region, "ap-south-1");
        assert_eq!(s.access_key_id.as_deref(), Some("AKIACFG"));
        assert_eq!(s.secret_access_key.as_deref(), Some("cfgsecret"));
        assert_eq!(s.endpoint.as_deref(), Some("https://s3.example.com"));

        let default_region = |k: &str| (k == "AWS_DEFAULT_REGION").then(|| "sa-east-1".into());
        let s = S3Settings::resolve(&lake("s3://bkt"), &default_region).unwrap();
        assert_eq!(s.region, "sa-east-1");
    }

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:15000",
            "http://localhost:9000",
            "http://[::1]:9000",
            "http://127.3.2.1",
            "https://minio.internal:9000",
        ] {
            let mut cfg = lake("s3://bkt");
            cfg.s3_endpoint = ok.into();
            S3Settings::resolve(&cfg, &no_env).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let mut cfg = lake("s3://bkt");
        cfg.s3_endpoint = "http://10.0.0.5:9000".into();
        let err = S3Settings::resolve(&cfg, &no_env).unwrap_err().to_string();
        assert!(
            err.contains("not loopback") && err.contains("s3_allow_http"),
            "{err}"
        );
        // The same refusal when the endpoint comes from AWS_ENDPOINT_URL.
        let env = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| "http://minio.lan:9000".into());
        let err = S3Settings::resolve(&lake("s3://bkt"), &env).unwrap_err();
        assert!(err.to_string().contains("minio.lan"), "{err}");
        cfg.s3_allow_http = true;
        S3Settings::resolve(&cfg, &no_env).unwrap();
        for bad in [
            "127.0.0.1:9000",
            "ftp://127.0.0.1",
            "http://",
            "http://u:p@127.0.0.1",
        ] {
            let mut cfg = lake("s3://bkt");
            cfg.s3_endpoint = bad.into();
            assert!(S3Settings::resolve(&cfg, &no_env).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_style_is_automatic_for_ip_and_localhost_endpoints() {
        let resolve = |endpoint: &str, style: PathStyle| {
            let mut cfg = lake("s3://bkt");
            cfg.s3_endpoint = endpoint.into();
            cfg.s3_path_style = style;
            S3Settings::resolve(&cfg, &no_env)
        };
        for (endpoint, want) in [
            ("http://127.0.0.1:9000", true),
            ("http://[::1]:9000", true),
            ("https://10.1.2.3", true),
            ("http://localhost:9000", true),
            ("https://minio.internal:9000", false),
            ("https://s3.eu-west-1.amazonaws.com", false),
        ] {
            let s = resolve(endpoint, PathStyle::Auto).unwrap();
            assert_eq!(s.path_style, want, "{endpoint}");
            assert!(resolve(endpoint, PathStyle::Path).unwrap().path_style);
        }
        // AWS itself (no endpoint): virtual-hosted unless asked.
        assert!(
            !S3Settings::resolve(&lake("s3://bkt"), &no_env)
                .unwrap()
                .path_style
        );
        // The case: the endpoint from AWS_ENDPOINT_URL, the key left at its default.
        let env = |k: &str| (k == "AWS_ENDPOINT_URL").then(|| "http://127.0.0.1:9000".into());
        assert!(
            S3Settings::resolve(&lake("s3://bkt"), &env)
                .unwrap()
                .path_style
        );
        let mut cfg = lake("s3://bkt");
        cfg.s3_path_style = PathStyle::VirtualHosted;
        let err = S3Settings::resolve(&cfg, &env).unwrap_err().to_string();
        assert!(
            err.contains("s3_path_style") && err.contains("127.0.0.1"),
            "{err}"
        );
        // An explicit false is fine with a name (and with localhost, which may resolve).
        assert!(
            !resolve("https://minio.lan", PathStyle::VirtualHosted)
                .unwrap()
                .path_style
        );
        assert!(
            !resolve("http://localhost:9000", PathStyle::VirtualHosted)
                .unwrap()
                .path_style
        );
    }

    #[test]
    fn path_style_reads_auto_true_and_false() {
        #[derive(Deserialize, Serialize, PartialEq, Debug)]
        struct T {
            s: PathStyle,
        }
        for (text, want) in [
            ("s = \"auto\"", PathStyle::Auto),
            ("s = true", PathStyle::Path),
            ("s = false", PathStyle::VirtualHosted),
        ] {
            let t: T = toml::from_str(text).unwrap();
            assert_eq!(t.s, want, "{text}");
            assert_eq!(toml::to_string(&t).unwrap().trim(), text);
        }
        assert!(toml::from_str::<T>("s = \"maybe\"").is_err());
        assert!(toml::from_str::<T>("s = 1").is_err());
    }

    #[test]
    fn credentials_come_in_pairs() {
        let mut cfg = lake("s3://bkt");
        cfg.s3_access_key_id = "AKIA".into();
        let err = S3Settings::resolve(&cfg, &no_env).unwrap_err();
        assert!(err.to_string().contains("half set"), "{err}");
        let mut cfg = lake("s3://bkt");
        cfg.s3_session_token = "tok".into();
        assert!(S3Settings::resolve(&cfg, &no_env).is_err());
        // Neither: the instance / web-identity chain is used at open.
        let s = S3Settings::resolve(&lake("s3://bkt"), &no_env).unwrap();
        assert_eq!(s.access_key_id, None);
    }

    #[test]
    fn part_size_and_retry_bounds() {
        let mut cfg = lake("s3://bkt");
        cfg.s3_part_size = 1024 * 1024;
        assert!(S3Settings::resolve(&cfg, &no_env).is_err());
        let mut cfg = lake("s3://bkt");
        cfg.s3_retry_timeout = Duration::ZERO;
        assert!(S3Settings::resolve(&cfg, &no_env).is_err());
    }
}
