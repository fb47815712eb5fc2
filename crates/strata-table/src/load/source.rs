//! Where a load's files come from: local files and directories, and `s3://bucket/prefix`
//! listings. Each path or URL is expanded to its files in a fixed order (see [`expand`]); a
//! file's bytes are fetched when it is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use iceberg::io::Storage;

use super::FileFormat;
use crate::config::s3::S3Settings;
use crate::config::LakeConfig;
use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::s3::S3Storage;

/// One file of a load.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// The path or `s3://` URL, as messages show it.
    pub location: String,
    pub format: FileFormat,
    /// The file is gzip-compressed (`.csv.gz`, `.json.gz`).
    pub gzip: bool,
    place: Place,
}

#[derive(Clone, Debug)]
enum Place {
    Local(PathBuf),
    S3(Arc<S3Storage>),
}

/// A file's content for the (blocking) readers: the local file, or an object's bytes.
pub(super) enum Content {
    File(PathBuf),
    Bytes(Bytes),
}

impl SourceFile {
    /// The file's content: a local file is opened by the reader; an S3 object is fetched whole.
    pub(super) async fn content(&self) -> Result<Content> {
        match &self.place {
            Place::Local(path) => Ok(Content::File(path.clone())),
            Place::S3(storage) => storage
                .read(&self.location)
                .await
                .map(Content::Bytes)
                .map_err(|e| Error::iceberg(format!("reading {}", self.location), e)),
        }
    }
}

/// The S3 settings for source URLs: `[lake]`'s `s3_*` keys and the `AWS_*` variables when the
/// caller has the config, else the lake's own S3 settings, else the `AWS_*` variables alone.
#[derive(Clone, Debug, Default)]
pub struct SourceS3 {
    pub lake_config: Option<LakeConfig>,
}

impl SourceS3 {
    fn settings(&self, lake: &Lake, bucket: &str) -> Result<S3Settings> {
        let from_config = |config: &LakeConfig| {
            let config = LakeConfig {
                warehouse: PathBuf::from(format!("s3://{bucket}")),
                ..config.clone()
            };
            S3Settings::resolve(&config, &|k| std::env::var(k).ok())
                .map_err(|e| Error::Invalid(format!("S3 settings for s3://{bucket}: {e}")))
        };
        match (&self.lake_config, lake.s3()) {
            (Some(config), _) => from_config(config),
            (None, Some(s3)) => Ok(S3Settings {
                bucket: bucket.to_string(),
                prefix: String::new(),
                ..s3.settings().clone()
            }),
            (None, None) => from_config(&LakeConfig::default()),
        }
    }
}

/// Every file the given paths and URLs name, in load order: the arguments in the order given;
/// within a directory or prefix, DMS full-load files (`LOAD…`) first, then by path. Hidden
/// entries (`.…`, `_…`, e.g. `_SUCCESS`) are skipped. In a directory, a file counts when its
/// extension says a known format (or any file, with `format` given); a file named on its
/// own needs a known extension or `format`.
pub async fn expand(
    lake: &Lake,
    s3: &SourceS3,
    sources: &[String],
    format: Option<FileFormat>,
) -> Result<Vec<SourceFile>> {
    if sources.is_empty() {
        return Err(Error::Invalid(
            "name at least one file, directory or s3:// prefix to load".to_string(),
        ));
    }
    let mut out = Vec::new();
    for source in sources {
        let found = if let Some(rest) = source
            .strip_prefix("s3://")
            .or_else(|| source.strip_prefix("s3a://"))
        {
            expand_s3(lake, s3, source, rest, format).await?
        } else if source.contains("://") {
            return Err(Error::Invalid(format!(
                "{source}: only local paths and s3://bucket/prefix can be loaded"
            )));
        } else {
            expand_local(Path::new(source), format)?
        };
        out.extend(found);
    }
    Ok(out)
}

/// A file's format (the given one, else its extension's) and whether it is gzip-compressed
/// (`.gz` after the format's extension).
fn file_format(location: &str, given: Option<FileFormat>) -> Option<(FileFormat, bool)> {
    let lower = location.to_ascii_lowercase();
    let (base, gzip) = match lower.strip_suffix(".gz") {
        Some(base) => (base, true),
        None => (lower.as_str(), false),
    };
    given
        .or_else(|| FileFormat::from_name(base))
        .map(|f| (f, gzip))
}

fn hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// The order files of one directory or prefix load in.
fn load_order(a: &str, b: &str) -> std::cmp::Ordering {
    let full_load = |p: &str| {
        p.rsplit('/')
            .next()
            .is_some_and(|name| name.starts_with("LOAD"))
    };
    (!full_load(a), a).cmp(&(!full_load(b), b))
}

fn expand_local(path: &Path, format: Option<FileFormat>) -> Result<Vec<SourceFile>> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::NotFound(format!("{shown}: no such file or directory"))
        }
        _ => Error::io(format!("reading {shown}"), e),
    })?;
    if meta.is_file() {
        let (format, gzip) = file_format(&shown, format).ok_or_else(|| {
            Error::Invalid(format!(
                "{shown}: cannot tell the format from the name; give --format parquet|csv|json \
                 (FORMAT in SQL)"
            ))
        })?;
        return Ok(vec![SourceFile {
            location: shown,
            format,
            gzip,
            place: Place::Local(path.to_path_buf()),
        }]);
    }
    let mut files = Vec::new();
    walk(path, &mut files)?;
    let mut found: Vec<SourceFile> = files
        .into_iter()
        .filter_map(|p| {
            let location = p.display().to_string();
            file_format(&location, format).map(|(format, gzip)| SourceFile {
                location,
                format,
                gzip,
                place: Place::Local(p),
            })
        })
        .collect();
    found.sort_by(|a, b| load_order(&a.location, &b.location));
    if found.is_empty() {
        return Err(Error::NotFound(format!(
            "{shown}: no {} files in this directory",
            format.map_or("parquet, csv or json", FileFormat::name)
        )));
    }
    Ok(found)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        if hidden(&name.to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0) {
            out.push(path);
        }
    }
    Ok(())
}

async fn expand_s3(
    lake: &Lake,
    s3: &SourceS3,
    url: &str,
    rest: &str,
    format: Option<FileFormat>,
) -> Result<Vec<SourceFile>> {
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::Invalid(format!("{url}: no bucket")));
    }
    let settings = s3.settings(lake, bucket)?;
    let storage = Arc::new(
        S3Storage::new(settings)
            .map_err(|e| Error::iceberg(format!("configuring S3 for {url}"), e))?,
    );
    let prefix = key.trim_end_matches('/');
    let listing = storage
        .list(&format!("s3://{bucket}/{prefix}"))
        .await
        .map_err(|e| Error::iceberg(format!("listing {url}"), e))?;
    let objects: Vec<String> = listing
        .into_iter()
        .filter(|o| o.size > 0)
        .map(|o| o.location)
        .filter(|l| {
            let below = l
                .strip_prefix(&format!("s3://{bucket}/"))
                .unwrap_or(l)
                .strip_prefix(prefix)
                .unwrap_or(l);
            !below.split('/').any(hidden)
        })
        .collect();
    let single = !key.ends_with('/') && !prefix.is_empty();
    if objects.is_empty() && single {
        // Not a prefix: one object (`list` only finds what lies below `prefix/`).
        let location = format!("s3://{bucket}/{prefix}");
        let exists = storage
            .exists(&location)
            .await
            .map_err(|e| Error::iceberg(format!("looking up {url}"), e))?;
        if !exists {
            return Err(Error::NotFound(format!("{url}: no such object or prefix")));
        }
        let (format, gzip) = file_format(&location, format).ok_or_else(|| {
            Error::Invalid(format!(
                "{url}: cannot tell the format from the name; give --format parquet|csv|json \
                 (FORMAT in SQL)"
            ))
        })?;
        return Ok(vec![SourceFile {
            location,
            format,
            gzip,
            place: Place::S3(storage),
        }]);
    }
    let mut found: Vec<SourceFile> = objects
        .into_iter()
        .filter_map(|location| {
            file_format(&location, format).map(|(format, gzip)| SourceFile {
                location,
                format,
                gzip,
                place: Place::S3(storage.clone()),
            })
        })
        .collect();
    found.sort_by(|a, b| load_order(&a.location, &b.location));
    if found.is_empty() {
        return Err(Error::NotFound(format!(
            "{url}: no {} objects under this prefix",
            format.map_or("parquet, csv or json", FileFormat::name)
        )));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_load_files_come_first() {
        let mut names = vec![
            "raw/orders/20261207-101500.parquet",
            "raw/orders/LOAD00000002.parquet",
            "raw/orders/20261206-235959.parquet",
            "raw/orders/LOAD00000001.parquet",
        ];
        names.sort_by(|a, b| load_order(a, b));
        assert_eq!(
            names,
            [
                "raw/orders/LOAD00000001.parquet",
                "raw/orders/LOAD00000002.parquet",
                "raw/orders/20261206-235959.parquet",
                "raw/orders/20261207-101500.parquet",
            ]
        );
    }

    #[test]
    fn local_expansion() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("b.csv"), "a\n1\n").unwrap();
        std::fs::write(d.join("sub/a.csv"), "a\n1\n").unwrap();
        std::fs::write(d.join("_SUCCESS"), "x").unwrap();
        std::fs::write(d.join(".b.csv.crc"), "x").unwrap();
        std::fs::write(d.join("notes.txt"), "x").unwrap();
        std::fs::write(d.join("empty.csv"), "").unwrap();
        std::fs::write(d.join("c.JSON.gz"), "x").unwrap();
        let files = expand_local(d, None).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| {
                f.location
                    .strip_prefix(&d.display().to_string())
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["/b.csv", "/c.JSON.gz", "/sub/a.csv"]);
        assert_eq!(
            files.iter().map(|f| (f.format, f.gzip)).collect::<Vec<_>>(),
            [
                (FileFormat::Csv, false),
                (FileFormat::Json, true),
                (FileFormat::Csv, false)
            ]
        );
        // With a format, every visible non-empty file counts.
        assert_eq!(expand_local(d, Some(FileFormat::Csv)).unwrap().len(), 4);
        let err = expand_local(&d.join("missing"), None).unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
        let err = expand_local(&d.join("notes.txt"), None).unwrap_err();
        assert!(err.to_string().contains("--format"), "{err}");
    }
}
