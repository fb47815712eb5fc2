//! Saving and loading a model: `twotower.json` (format version, specs, preprocessing, and the
//! size and checksum of the weights) and `twotower.safetensors` (the tensors). Each file is
//! written to a temp name, synced and renamed; the JSON goes last and names the weights it
//! belongs to, so a crash mid-save or a truncated copy is detected at load, never half-used.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::config::TowerSpec;
use crate::error::{Error, Result};
use crate::model::{Layer, Tower, TwoTower};
use crate::prep::NumericPrep;
use crate::rng::fnv1a;

pub const SPEC_FILE: &str = "twotower.json";
pub const WEIGHTS_FILE: &str = "twotower.safetensors";
const FORMAT: &str = "strata-twotower";
/// Bumped on any change to the files' meaning (including the categorical hash).
const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    format: String,
    version: u32,
    temperature: f64,
    user: TowerFile,
    item: TowerFile,
    weights: WeightsRef,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TowerFile {
    spec: TowerSpec,
    prep: NumericPrep,
    /// Layer shapes: `[inputs, outputs]` each.
    layers: Vec<[usize; 2]>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsRef {
    file: String,
    bytes: u64,
    fnv1a64: String,
}

impl TwoTower {
    /// Writes the model into `dir` (created if missing), replacing a previous save atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let mut tensors = HashMap::new();
        for (side, tower) in [("user", &self.user), ("item", &self.item)] {
            for (c, (table, cat)) in tower.tables.iter().zip(&tower.spec.categorical).enumerate() {
                // A feature reading another one's table stores nothing of its own.
                if tower.owners[c] != c {
                    continue;
                }
                tensors.insert(
                    format!("{side}.emb.{c}"),
                    Tensor::from_slice(table, (cat.buckets, cat.dim), &Device::Cpu)?,
                );
            }
            for (l, layer) in tower.layers.iter().enumerate() {
                tensors.insert(
                    format!("{side}.layer.{l}.w"),
                    Tensor::from_slice(&layer.w, (layer.outputs, layer.inputs), &Device::Cpu)?,
                );
                tensors.insert(
                    format!("{side}.layer.{l}.b"),
                    Tensor::from_slice(&layer.b, layer.outputs, &Device::Cpu)?,
                );
            }
        }
        let weights_tmp = dir.join(format!("{WEIGHTS_FILE}.tmp"));
        candle_core::safetensors::save(&tensors, &weights_tmp)?;
        let bytes =
            std::fs::read(&weights_tmp).map_err(|e| Error::io("reading", &weights_tmp, e))?;
        sync_and_rename(&weights_tmp, &dir.join(WEIGHTS_FILE))?;

        let tower_file = |t: &Tower| TowerFile {
            spec: t.spec.clone(),
            prep: t.prep.clone(),
            layers: t.layers.iter().map(|l| [l.inputs, l.outputs]).collect(),
        };
        let spec = SpecFile {
            format: FORMAT.into(),
            version: VERSION,
            temperature: self.temperature,
            user: tower_file(&self.user),
            item: tower_file(&self.item),
            weights: WeightsRef {
                file: WEIGHTS_FILE.into(),
                bytes: bytes.len() as u64,
                fnv1a64: format!("{:016x}", fnv1a(&bytes)),
            },
        };
        let json = serde_json::to_vec_pretty(&spec)
            .map_err(|e| Error::Input(format!("serialising the model spec: {e}")))?;
        let spec_tmp = dir.join(format!("{SPEC_FILE}.tmp"));
        File::create(&spec_tmp)
            .and_then(|mut f| f.write_all(&json))
            .map_err(|e| Error::io("writing", &spec_tmp, e))?;
        sync_and_rename(&spec_tmp, &dir.join(SPEC_FILE))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("syncing", dir, e))
    }

    /// Reads a model saved by `save`. A truncated, corrupted or mismatched file is an
    /// `Error::Artifact` naming the file and the problem.
    pub fn load(dir: &Path) -> Result<TwoTower> {
        let spec_path = dir.join(SPEC_FILE);
        let raw = std::fs::read(&spec_path).map_err(|e| Error::io("reading", &spec_path, e))?;
        let bad = |path: &PathBuf, reason: String| Error::Artifact {
            path: path.clone(),
            reason,
        };
        let spec: SpecFile = serde_json::from_slice(&raw).map_err(|e| {
            bad(
                &spec_path,
                format!("not a two-tower spec (truncated?): {e}"),
            )
        })?;
        if spec.format != FORMAT || spec.version != VERSION {
            return Err(bad(
                &spec_path,
                format!(
                    "format {:?} version {}, this build reads {FORMAT:?} version {VERSION}",
                    spec.format, spec.version
                ),
            ));
        }
        let weights_path = dir.join(&spec.weights.file);
        let bytes =
            std::fs::read(&weights_path).map_err(|e| Error::io("reading", &weights_path, e))?;
        if bytes.len() as u64 != spec.weights.bytes {
            return Err(bad(
                &weights_path,
                format!(
                    "{} bytes, {SPEC_FILE} expects {} (truncated, or from another save)",
                    bytes.len(),
                    spec.weights.bytes
                ),
            ));
        }
        let sum = format!("{:016x}", fnv1a(&bytes));
        if sum != spec.weights.fnv1a64 {
            return Err(bad(
                &weights_path,
                format!(
                    "checksum {sum}, {SPEC_FILE} expects {} (corrupted, or from another save)",
                    spec.weights.fnv1a64
                ),
            ));
        }
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(&weights_path, format!("unreadable tensors: {e}")))?;
        let mut take = |name: String, shape: &[usize]| -> Result<Vec<f32>> {
            let t = tensors
                .remove(&name)
                .ok_or_else(|| bad(&weights_path, format!("tensor {name} is missing")))?;
            if t.dims() != shape {
                return Err(bad(
                    &weights_path,
                    format!("tensor {name} has shape {:?}, expected {shape:?}", t.dims()),
                ));
            }
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(&weights_path, format!("tensor {name}: {e}")))
        };
        let mut towers = Vec::new();
        for (side, file) in [("user", &spec.user), ("item", &spec.item)] {
            let check = |ok: bool, what: &str| {
                if ok {
                    Ok(())
                } else {
                    Err(bad(&spec_path, format!("{side} tower: {what}")))
                }
            };
            check(
                file.prep.mean.len() == file.spec.numeric.len()
                    && file.prep.std.len() == file.spec.numeric.len(),
                "preprocessing does not match the numeric features",
            )?;
            check(!file.layers.is_empty(), "no layers")?;
            let owners = file.spec.table_owners();
            let mut tables = Vec::new();
            for (c, cat) in file.spec.categorical.iter().enumerate() {
                tables.push(if owners[c] == c {
                    take(format!("{side}.emb.{c}"), &[cat.buckets, cat.dim])?
                } else {
                    Vec::new()
                });
            }
            let mut layers = Vec::new();
            let mut width = file.spec.input_width();
            for (l, [inputs, outputs]) in file.layers.iter().copied().enumerate() {
                check(inputs == width, "layer shapes do not chain")?;
                layers.push(Layer {
                    inputs,
                    outputs,
                    w: take(format!("{side}.layer.{l}.w"), &[outputs, inputs])?,
                    b: take(format!("{side}.layer.{l}.b"), &[outputs])?,
                });
                width = outputs;
            }
            towers.push(Tower::new(
                file.spec.clone(),
                file.prep.clone(),
                tables,
                layers,
            ));
        }
        let (Some(item), Some(user)) = (towers.pop(), towers.pop()) else {
            return Err(bad(&spec_path, "missing towers".into()));
        };
        if user.output_width() != item.output_width() {
            return Err(bad(&spec_path, "the towers' output widths differ".into()));
        }
        Ok(TwoTower {
            user,
            item,
            temperature: spec.temperature,
        })
    }
}

fn sync_and_rename(tmp: &Path, dst: &Path) -> Result<()> {
    File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("syncing", tmp, e))?;
    std::fs::rename(tmp, dst).map_err(|e| Error::io("renaming into place", dst, e))
}
