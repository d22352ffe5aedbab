//! The model folder: what `train` writes and `recommend`/`eval`/`serve` read.
//!
//! ```text
//! model/
//!   model.json           format version, config, sizes, dataset fingerprint, metrics
//!   weights.safetensors  query_tower.embedding, candidate_tower.embedding
//!   vocab/users.txt      query vocabulary (one token per line, [UNK] first)
//!   vocab/candidates.txt candidate vocabulary
//!   items.tsv            catalogue: id, title, genres (|-separated), release date
//!   seen.safetensors     each user's training items and ratings (CSR)
//!   history.json         per-epoch loss and metrics
//! ```
//!
//! Writes go to a temporary sibling folder that is renamed into place, so a reader never
//! sees half a model; loads validate every shape against `model.json`.

use std::io::Write;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use twotower_data::Vocabulary;

use crate::config::TrainConfig;
use crate::embedding::Embedding;
use crate::towers::{Catalogue, LookupTower, SeenItems, TwoTowerModel};
use crate::trainer::EpochStats;
use crate::{ModelError, Result};

/// The `format` field of every model.json.
pub const FORMAT: &str = "twotower-model";
/// The model folder layout version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Where the training data came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub split: String,
    /// SHA-256 over the training (user, item) pairs, in order.
    pub fingerprint: String,
    pub train_interactions: usize,
    pub test_interactions: usize,
}

/// `model.json`: everything needed to load and describe the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub format_version: u32,
    pub config: TrainConfig,
    pub embedding_dim: usize,
    pub query_vocab_size: usize,
    pub candidate_vocab_size: usize,
    pub catalogue_rows: usize,
    pub dataset: DatasetInfo,
    pub train_seconds: f64,
    /// Test metrics (model and popularity) as the CLI printed them.
    #[serde(default)]
    pub metrics: serde_json::Value,
}

impl ModelCard {
    /// A card describing `model`.
    pub fn describe(model: &TwoTowerModel, dataset: DatasetInfo, train_seconds: f64) -> Self {
        ModelCard {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            config: model.config.clone(),
            embedding_dim: model.dim(),
            query_vocab_size: model.query.vocab.len(),
            candidate_vocab_size: model.candidate.vocab.len(),
            catalogue_rows: model.catalogue.len(),
            dataset,
            train_seconds,
            metrics: serde_json::Value::Null,
        }
    }
}

/// A model with its card and training history, as stored in a folder.
#[derive(Debug, Clone)]
pub struct SavedModel {
    pub model: TwoTowerModel,
    pub card: ModelCard,
    pub history: Vec<EpochStats>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| ModelError::io(path, e))?;
    f.write_all(bytes).map_err(|e| ModelError::io(path, e))?;
    f.sync_all().map_err(|e| ModelError::io(path, e))
}

fn safetensors_bytes(tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.to_string(), v))
                .map_err(|e| ModelError::Config(format!("tensor {name}: {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| ModelError::Config(e.to_string()))
}

/// Folder of a model folder holding its approximate index (`twotower index build --model`).
pub const INDEX_DIR: &str = "index";

impl SavedModel {
    /// The approximate index stored in model folder `dir`, if one was built, checked
    /// against the model (same catalogue size and dimension).
    pub fn load_index(&self, dir: &Path) -> Result<Option<twotower_index::AnnIndex>> {
        let at = dir.join(INDEX_DIR);
        if !at.join(twotower_index::store::MANIFEST).exists() {
            return Ok(None);
        }
        let index = twotower_index::AnnIndex::load(&at)
            .map_err(|e| ModelError::Config(format!("approximate index: {e}")))?;
        let m = &self.model;
        if index.len() != m.catalogue.len() || index.dim() != m.dim() {
            return Err(ModelError::Config(format!(
                "{}: index of {} vectors of dimension {} does not fit this model ({} movies, \
                 dimension {}); rebuild it with `twotower index build --model`",
                at.display(),
                index.len(),
                index.dim(),
                m.catalogue.len(),
                m.dim()
            )));
        }
        Ok(Some(index))
    }

    /// Writes the folder atomically: a temporary sibling renamed over `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let m = &self.model;
        for (i, t) in m.catalogue.titles.iter().enumerate() {
            if t.contains(['\t', '\n']) || m.catalogue.ids[i].contains(['\t', '\n']) {
                return Err(ModelError::Config(format!(
                    "catalogue row {i} holds a tab or newline, which items.tsv cannot store"
                )));
            }
        }
        twotower_index::store::replace_dir(
            dir,
            |tmp| self.write_into(tmp),
            |p, e| ModelError::io(p, e),
        )
    }

    fn write_into(&self, tmp: &Path) -> Result<()> {
        let m = &self.model;
        let vocab = tmp.join("vocab");
        std::fs::create_dir_all(&vocab).map_err(|e| ModelError::io(&vocab, e))?;
        let json = |v: &dyn erased::Json| v.to_json();
        write_file(&tmp.join("model.json"), json(&self.card).as_bytes())?;
        write_file(&tmp.join("history.json"), json(&self.history).as_bytes())?;
        m.query.vocab.write(&vocab.join("users.txt"))?;
        m.candidate.vocab.write(&vocab.join("candidates.txt"))?;
        let mut items = String::from("id\ttitle\tgenres\trelease_date\n");
        for i in 0..m.catalogue.len() {
            items.push_str(&format!(
                "{}\t{}\t{}\t{}\n",
                m.catalogue.ids[i],
                m.catalogue.titles[i],
                m.catalogue.genres[i].join("|"),
                m.catalogue.release_dates[i]
            ));
        }
        write_file(&tmp.join("items.tsv"), items.as_bytes())?;
        let d = m.dim();
        let weights = safetensors_bytes(vec![
            (
                "query_tower.embedding",
                Dtype::F32,
                vec![m.query.embedding.rows, d],
                f32_bytes(&m.query.embedding.data),
            ),
            (
                "candidate_tower.embedding",
                Dtype::F32,
                vec![m.candidate.embedding.rows, d],
                f32_bytes(&m.candidate.embedding.data),
            ),
        ])?;
        write_file(&tmp.join("weights.safetensors"), &weights)?;
        let seen = safetensors_bytes(vec![
            (
                "offsets",
                Dtype::U64,
                vec![m.seen.offsets.len()],
                m.seen
                    .offsets
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect(),
            ),
            (
                "rows",
                Dtype::U32,
                vec![m.seen.rows.len()],
                m.seen.rows.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            (
                "ratings",
                Dtype::F32,
                vec![m.seen.ratings.len()],
                f32_bytes(&m.seen.ratings),
            ),
        ])?;
        write_file(&tmp.join("seen.safetensors"), &seen)
    }

    /// Reads and validates a model folder.
    pub fn load(dir: &Path) -> Result<Self> {
        if !dir.join("model.json").is_file() {
            return Err(ModelError::bad(
                dir,
                "not a model folder (no model.json); train one with `twotower train --out DIR`",
            ));
        }
        let card: ModelCard = read_json(&dir.join("model.json"))?;
        if card.format != FORMAT || card.format_version != FORMAT_VERSION {
            return Err(ModelError::bad(
                dir.join("model.json"),
                format!(
                    "format {:?} version {} is not {FORMAT:?} version {FORMAT_VERSION}",
                    card.format, card.format_version
                ),
            ));
        }
        let history: Vec<EpochStats> = read_json(&dir.join("history.json"))?;
        let users = Vocabulary::read(&dir.join("vocab/users.txt"))?;
        let items = Vocabulary::read(&dir.join("vocab/candidates.txt"))?;
        let d = card.embedding_dim;
        let wpath = dir.join("weights.safetensors");
        let wbytes = std::fs::read(&wpath).map_err(|e| ModelError::io(&wpath, e))?;
        let w = SafeTensors::deserialize(&wbytes)
            .map_err(|e| ModelError::bad(&wpath, e.to_string()))?;
        let query = read_f32(&w, &wpath, "query_tower.embedding", &[users.len(), d])?;
        let cand = read_f32(&w, &wpath, "candidate_tower.embedding", &[items.len(), d])?;
        let catalogue = read_items(&dir.join("items.tsv"))?;
        if catalogue.len() != card.catalogue_rows {
            return Err(ModelError::bad(
                dir.join("items.tsv"),
                format!(
                    "{} rows, model.json says {}",
                    catalogue.len(),
                    card.catalogue_rows
                ),
            ));
        }
        let spath = dir.join("seen.safetensors");
        let sbytes = std::fs::read(&spath).map_err(|e| ModelError::io(&spath, e))?;
        let s = SafeTensors::deserialize(&sbytes)
            .map_err(|e| ModelError::bad(&spath, e.to_string()))?;
        let offsets: Vec<u64> = read_tensor(&s, &spath, "offsets", Dtype::U64, 8)?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        let rows: Vec<u32> = read_tensor(&s, &spath, "rows", Dtype::U32, 4)?
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let ratings = f32_from(read_tensor(&s, &spath, "ratings", Dtype::F32, 4)?);
        let consistent = (offsets.is_empty() || offsets.len() == users.len() + 1)
            && offsets.windows(2).all(|p| p[0] <= p[1])
            && offsets
                .last()
                .map_or(rows.is_empty(), |&n| n as usize == rows.len())
            && ratings.len() == rows.len()
            && rows.iter().all(|&r| (r as usize) < catalogue.len());
        if !consistent {
            return Err(ModelError::bad(
                &spath,
                "inconsistent offsets, rows or ratings",
            ));
        }
        let model = TwoTowerModel::assemble(
            card.config.clone(),
            LookupTower {
                vocab: users,
                embedding: query,
            },
            LookupTower {
                vocab: items,
                embedding: cand,
            },
            catalogue,
            SeenItems {
                offsets,
                rows,
                ratings,
            },
        )
        .map_err(|e| ModelError::bad(dir, e.to_string()))?;
        Ok(SavedModel {
            model,
            card,
            history,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| ModelError::bad(path, format!("line {}: {e}", e.line())))
}

fn read_tensor<'a>(
    st: &SafeTensors<'a>,
    path: &Path,
    name: &str,
    dtype: Dtype,
    width: usize,
) -> Result<&'a [u8]> {
    let t = st
        .tensor(name)
        .map_err(|e| ModelError::bad(path, format!("tensor {name}: {e}")))?;
    if t.dtype() != dtype || t.shape().len() != 1 || t.data().len() != t.shape()[0] * width {
        return Err(ModelError::bad(
            path,
            format!("tensor {name} should be a 1-D {dtype:?} vector"),
        ));
    }
    Ok(t.data())
}

fn f32_from(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

fn read_f32(st: &SafeTensors, path: &Path, name: &str, shape: &[usize]) -> Result<Embedding> {
    let t = st
        .tensor(name)
        .map_err(|e| ModelError::bad(path, format!("tensor {name}: {e}")))?;
    if t.dtype() != Dtype::F32 || t.shape() != shape {
        return Err(ModelError::bad(
            path,
            format!(
                "tensor {name} is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    let data = f32_from(t.data());
    if data.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::bad(
            path,
            format!("tensor {name} holds NaN or infinite values"),
        ));
    }
    Ok(Embedding {
        rows: shape[0],
        dim: shape[1],
        data,
    })
}

fn read_items(path: &Path) -> Result<Catalogue> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let mut c = Catalogue {
        ids: vec![],
        titles: vec![],
        genres: vec![],
        release_dates: vec![],
    };
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 4 {
            return Err(ModelError::bad(
                path,
                format!(
                    "line {}: expected 4 tab-separated fields, found {}",
                    i + 1,
                    f.len()
                ),
            ));
        }
        c.ids.push(f[0].to_string());
        c.titles.push(f[1].to_string());
        c.genres.push(
            f[2].split('|')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect(),
        );
        c.release_dates.push(f[3].to_string());
    }
    Ok(c)
}

/// Pretty JSON for anything serialisable, behind a trait object so one helper serves all.
mod erased {
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string_pretty(self).expect("plain data serialises") + "\n"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;
    use std::path::PathBuf;

    fn saved() -> SavedModel {
        let mut cfg = TrainConfig::preset("tfrs").unwrap();
        cfg.embedding_dim = 4;
        let users = Vocabulary::from_tokens(["1", "2", "42"]);
        let catalogue = Catalogue {
            ids: vec!["1".into(), "2".into(), "3".into()],
            // Two rows share a title, as in MovieLens; one title is latin-1 non-ASCII.
            titles: vec![
                "Misérables, Les (1995)".into(),
                "Twin".into(),
                "Twin".into(),
            ],
            genres: vec![
                vec!["Drama".into()],
                vec![],
                vec!["Comedy".into(), "War".into()],
            ],
            release_dates: vec!["01-Jan-1995".into(), String::new(), String::new()],
        };
        let mut model = TwoTowerModel::new(cfg, users, catalogue).unwrap();
        model.seen = SeenItems::build(4, vec![(3, 2, 5.0), (1, 0, 3.0), (3, 0, 4.0)]);
        let card = ModelCard::describe(&model, DatasetInfo::default(), 1.5);
        SavedModel {
            model,
            card,
            history: vec![],
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tt-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn save_load_round_trip_gives_identical_scores() {
        let s = saved();
        let d = dir("rt");
        s.save(&d).unwrap();
        // Saving again over an existing folder replaces it whole.
        s.save(&d).unwrap();
        let l = SavedModel::load(&d).unwrap();
        assert_eq!(l.card, s.card);
        assert_eq!(l.model.query.embedding, s.model.query.embedding);
        assert_eq!(l.model.candidate.embedding, s.model.candidate.embedding);
        assert_eq!(l.model.catalogue, s.model.catalogue);
        assert_eq!(l.model.seen, s.model.seen);
        assert_eq!(l.model.row_keys, vec![1, 2, 2]);
        let q = s.model.query_vectors(&["42".into()]);
        assert_eq!(
            s.model.candidate_index().scores(&q).unwrap(),
            l.model.candidate_index().scores(&q).unwrap()
        );
        let leftovers: Vec<_> = std::fs::read_dir(d.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tt-ckpt-rt") && e.path() != d)
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary folders left: {leftovers:?}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damaged_folders_give_clear_errors() {
        let s = saved();
        let d = dir("bad");
        s.save(&d).unwrap();
        let w = d.join("weights.safetensors");
        let bytes = std::fs::read(&w).unwrap();
        std::fs::write(&w, &bytes[..bytes.len() - 7]).unwrap();
        let e = SavedModel::load(&d).unwrap_err().to_string();
        assert!(e.contains("weights.safetensors"), "{e}");
        std::fs::write(&w, bytes).unwrap();
        let card = d.join("model.json");
        let text = std::fs::read_to_string(&card).unwrap();
        std::fs::write(
            &card,
            text.replace("\"embedding_dim\": 4", "\"embedding_dim\": 5"),
        )
        .unwrap();
        let e = SavedModel::load(&d).unwrap_err().to_string();
        assert!(
            e.contains("query_tower.embedding") && e.contains("[4, 5]"),
            "{e}"
        );
        std::fs::write(&card, "{ not json").unwrap();
        let e = SavedModel::load(&d).unwrap_err().to_string();
        assert!(e.contains("model.json") && e.contains("line 1"), "{e}");
        let e = SavedModel::load(&d.join("nope")).unwrap_err().to_string();
        assert!(e.contains("not a model folder"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
