//! Model folder format 2: a [`FeatureModel`] with its tower spec and every preprocessing
//! state, beside format 1 (id towers, [`crate::SavedModel`]) under the same folder rules.
//!
//! ```text
//! model/
//!   model.json                 format 2: config, the tower spec (TOML text), each feature's
//!                              fitted input (vocabularies, statistics, buckets), sizes,
//!                              dataset, metrics, and every other file's size and CRC-32
//!   weights.safetensors        query.features.0.embedding, query.layers.0.kernel, …,
//!                              candidate.… (every parameter, by name)
//!   items.tsv                  the catalogue and its item features
//!   users.tsv                  the users' features
//!   user_features.tsv          the declared columns of --user-features (when the spec has any)
//!   item_features.tsv          the declared columns of --item-features (likewise)
//!   interactions.safetensors   training interactions (users, rows, times): the histories
//!   history.json               per-epoch loss
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use twotower_data::{Movie, User};

use crate::checkpoint::{
    erased::Json, f32_bytes, f32_from, items_tsv, open_card, read_items, read_tensor,
    safetensors_bytes, write_card, write_file, DatasetInfo, Files, Opened, FORMAT, MODEL_FOLDER,
};
use crate::feature_files::FeatureColumns;
use crate::feature_model::FeatureModel;
use crate::features::{FeatureTower, InputState, Tensors};
use crate::query_data::QueryData;
use crate::spec::{Columns, TowersSpec};
use crate::trainer::EpochStats;
use crate::{ModelError, Result, TrainConfig};

/// The layout version of feature model folders.
pub const FEATURE_FORMAT_VERSION: u32 = 2;

/// Each tower's fitted inputs, one per feature of its spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TowerInputs {
    pub query: Vec<InputState>,
    pub candidate: Vec<InputState>,
}

/// `model.json` of format 2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCard {
    pub format: String,
    pub format_version: u32,
    pub config: TrainConfig,
    /// The tower spec as it was written (TOML).
    pub towers: String,
    pub inputs: TowerInputs,
    pub embedding_dim: usize,
    pub catalogue_rows: usize,
    pub dataset: DatasetInfo,
    pub train_seconds: f64,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

/// A feature model with its card and training curves, as a folder stores it.
#[derive(Debug, Clone)]
pub struct SavedFeatureModel {
    pub model: FeatureModel,
    pub card: FeatureCard,
    pub history: Vec<EpochStats>,
    /// Problems found on load that do not make the model wrong (a damaged `history.json`).
    pub warnings: Vec<String>,
}

impl FeatureCard {
    /// A card describing `model`.
    pub fn describe(model: &FeatureModel, dataset: DatasetInfo, train_seconds: f64) -> Self {
        FeatureCard {
            format: FORMAT.into(),
            format_version: FEATURE_FORMAT_VERSION,
            config: model.config.clone(),
            towers: model.spec.text().to_string(),
            inputs: TowerInputs {
                query: model.query.state(),
                candidate: model.candidate.state(),
            },
            embedding_dim: model.candidate.tower.output_width(),
            catalogue_rows: model.catalogue.len(),
            dataset,
            train_seconds,
            metrics: serde_json::Value::Null,
        }
    }
}

fn users_tsv(users: &[User]) -> Result<String> {
    let mut out = String::from("id\tage\tgender\toccupation\tzip\n");
    for u in users {
        let fields = [&u.gender, &u.occupation, &u.zip];
        if fields.iter().any(|f| f.contains(['\t', '\n', '\r'])) {
            return Err(ModelError::Config(format!(
                "user {} holds a tab or line break, which users.tsv cannot store",
                u.id
            )));
        }
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            u.id, u.age, u.gender, u.occupation, u.zip
        ));
    }
    Ok(out)
}

fn read_users(path: &Path, bytes: &[u8]) -> Result<Vec<User>> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| ModelError::bad(path, format!("not UTF-8: {e}")))?;
    let mut users = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let bad = |m: &str| ModelError::bad(path, format!("line {}: {m}", i + 1));
        if f.len() != 5 {
            return Err(bad("expected 5 tab-separated fields"));
        }
        users.push(User {
            id: f[0].parse().map_err(|_| bad("user id is not a number"))?,
            age: f[1].parse().map_err(|_| bad("age is not a number"))?,
            gender: f[2].into(),
            occupation: f[3].into(),
            zip: f[4].into(),
        });
    }
    Ok(users)
}

fn le<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|b| from(b.try_into().expect("chunks of N bytes")))
        .collect()
}

impl SavedFeatureModel {
    /// Writes the folder atomically, replacing only a model folder.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let m = &self.model;
        if !m.query.tower.is_finite() || !m.candidate.tower.is_finite() {
            return Err(ModelError::Config(
                "the model's weights are not finite: a diverged model is never saved".into(),
            ));
        }
        twotower_folder::replace(
            dir,
            &MODEL_FOLDER,
            |tmp| {
                self.write_into(tmp)?;
                // A folder that would not load back never replaces a working one.
                SavedFeatureModel::load(tmp).map(drop).map_err(|e| {
                    ModelError::Config(format!(
                        "the model folder written would not load back ({e}); {} is left as \
                         it was",
                        dir.display()
                    ))
                })
            },
            ModelError::Folder,
        )
    }

    fn write_into(&self, tmp: &Path) -> Result<()> {
        let m = &self.model;
        let mut files = BTreeMap::new();
        write_file(
            tmp,
            "history.json",
            self.history.to_json().as_bytes(),
            &mut files,
        )?;
        write_file(
            tmp,
            "items.tsv",
            items_tsv(&m.catalogue)?.as_bytes(),
            &mut files,
        )?;
        let (users, train) = m.data.parts();
        write_file(tmp, "users.tsv", users_tsv(&users)?.as_bytes(), &mut files)?;
        for (name, table) in [
            ("user_features.tsv", &m.data.features),
            ("item_features.tsv", &m.item_features),
        ] {
            if !table.columns.is_empty() {
                write_file(tmp, name, table.to_tsv().as_bytes(), &mut files)?;
            }
        }
        let named: Vec<(String, Vec<usize>, Vec<u8>)> =
            [("query", &m.query), ("candidate", &m.candidate)]
                .into_iter()
                .flat_map(|(side, t)| {
                    t.tensors().into_iter().map(move |(name, shape, data)| {
                        (format!("{side}.{name}"), shape, f32_bytes(&data))
                    })
                })
                .collect();
        let weights = safetensors_bytes(
            named
                .iter()
                .map(|(n, shape, data)| (n.as_str(), Dtype::F32, shape.clone(), data.clone()))
                .collect(),
        )?;
        write_file(tmp, "weights.safetensors", &weights, &mut files)?;
        let n = train.len();
        let interactions = safetensors_bytes(vec![
            (
                "users",
                Dtype::U32,
                vec![n],
                train.iter().flat_map(|t| t.0.to_le_bytes()).collect(),
            ),
            (
                "rows",
                Dtype::U32,
                vec![n],
                train.iter().flat_map(|t| t.1.to_le_bytes()).collect(),
            ),
            (
                "times",
                Dtype::I64,
                vec![n],
                train.iter().flat_map(|t| t.2.to_le_bytes()).collect(),
            ),
        ])?;
        write_file(tmp, "interactions.safetensors", &interactions, &mut files)?;
        write_card(tmp, &self.card, &files)
    }

    /// Reads and checks a format 2 folder: checksums, the spec, every input against its
    /// feature, every tensor's shape, the catalogue and the interactions.
    pub fn load(dir: &Path) -> Result<Self> {
        let Opened {
            card,
            listed,
            history,
            warnings,
        } = open_card::<FeatureCard>(dir, FEATURE_FORMAT_VERSION)?;
        let files = Files {
            dir,
            listed: &listed.files,
        };
        let card_path = dir.join("model.json");
        let at = |e: ModelError| ModelError::bad(&card_path, e.to_string());
        let spec = TowersSpec::parse("towers", &card.towers).map_err(at)?;
        spec.check(&spec.with_declared(Columns::movielens_100k()).map_err(at)?)
            .map_err(at)?;
        let catalogue = read_items(&dir.join("items.tsv"), &files.read("items.tsv")?)?;
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
        let movies: Vec<Movie> = (0..catalogue.len())
            .map(|i| {
                Ok(Movie {
                    id: catalogue.ids[i].parse().map_err(|_| {
                        ModelError::bad(
                            dir.join("items.tsv"),
                            format!("line {}: item id is not a number", i + 2),
                        )
                    })?,
                    title: catalogue.titles[i].clone(),
                    release_date: catalogue.release_dates[i].clone(),
                    genres: catalogue.genres[i].clone(),
                })
            })
            .collect::<Result<_>>()?;
        let users = read_users(&dir.join("users.tsv"), &files.read("users.tsv")?)?;
        let mut tables = Vec::new();
        for (user, name) in [(true, "user_features.tsv"), (false, "item_features.tsv")] {
            tables.push(if spec.declared(user).is_empty() {
                FeatureColumns::default()
            } else {
                let bytes = files.read(name)?;
                let path = dir.join(name);
                let text =
                    std::str::from_utf8(&bytes).map_err(|_| ModelError::bad(&path, "not UTF-8"))?;
                FeatureColumns::from_tsv(&spec, user, &path, text)?
            });
        }
        let item_features = tables.pop().unwrap_or_default();
        let user_features = tables.pop().unwrap_or_default();
        let ipath = dir.join("interactions.safetensors");
        let ibytes = files.read("interactions.safetensors")?;
        let st = SafeTensors::deserialize(&ibytes)
            .map_err(|e| ModelError::bad(&ipath, e.to_string()))?;
        let us = le(
            read_tensor(&st, &ipath, "users", Dtype::U32, 4)?,
            u32::from_le_bytes,
        );
        let rows = le(
            read_tensor(&st, &ipath, "rows", Dtype::U32, 4)?,
            u32::from_le_bytes,
        );
        let times = le(
            read_tensor(&st, &ipath, "times", Dtype::I64, 8)?,
            i64::from_le_bytes,
        );
        if us.len() != rows.len()
            || us.len() != times.len()
            || rows.iter().any(|&r| r as usize >= movies.len())
        {
            return Err(ModelError::bad(
                &ipath,
                "users, rows and times differ in length, or a row is outside the catalogue",
            ));
        }
        let train: Vec<(u32, u32, i64)> = us
            .into_iter()
            .zip(rows)
            .zip(times)
            .map(|((u, r), t)| (u, r, t))
            .collect();
        let mut query_data = QueryData::new(&users, &train);
        query_data.features = user_features;
        let wpath = dir.join("weights.safetensors");
        let wbytes = files.read("weights.safetensors")?;
        let w = SafeTensors::deserialize(&wbytes)
            .map_err(|e| ModelError::bad(&wpath, e.to_string()))?;
        let side = |prefix: &str| -> Result<Tensors> {
            let mut out = Tensors::new();
            for (name, t) in w.tensors() {
                if let Some(rest) = name.strip_prefix(prefix) {
                    if t.dtype() != Dtype::F32 {
                        return Err(ModelError::bad(&wpath, format!("tensor {name} is not F32")));
                    }
                    let data = f32_from(t.data());
                    if data.iter().any(|v| !v.is_finite()) {
                        return Err(ModelError::bad(
                            &wpath,
                            format!("tensor {name} holds NaN or infinite values"),
                        ));
                    }
                    out.insert(rest.to_string(), (t.shape().to_vec(), data));
                }
            }
            Ok(out)
        };
        let tower = |prefix: &str, spec: &crate::spec::TowerSpec, inputs: &[InputState]| {
            FeatureTower::restore(spec, inputs.to_vec(), &side(prefix)?)
                .map_err(|e| ModelError::bad(&wpath, e.to_string()))
        };
        let query = tower("query.", &spec.query, &card.inputs.query)?;
        let candidate = tower("candidate.", &spec.candidate, &card.inputs.candidate)?;
        let widths = [query.tower.output_width(), candidate.tower.output_width()];
        if widths != [card.embedding_dim; 2] {
            return Err(ModelError::bad(
                &card_path,
                format!(
                    "embedding_dim is {}, the towers give {widths:?}",
                    card.embedding_dim
                ),
            ));
        }
        let model = FeatureModel::from_parts(
            card.config.clone(),
            spec,
            query,
            candidate,
            movies,
            item_features,
            query_data,
        );
        Ok(SavedFeatureModel {
            model,
            card,
            history,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_data::Query;

    /// `model` saved into a fresh temporary folder and loaded back, with the same query
    /// and candidate vectors: (saved, loaded, folder).
    fn round_trip(
        model: FeatureModel,
        name: &str,
    ) -> (SavedFeatureModel, SavedFeatureModel, std::path::PathBuf) {
        let card = FeatureCard::describe(&model, DatasetInfo::default(), 1.5);
        let saved = SavedFeatureModel {
            model,
            card,
            history: Vec::new(),
            warnings: Vec::new(),
        };
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        saved.save(&dir).unwrap();
        let back = SavedFeatureModel::load(&dir).unwrap();
        let q: Vec<Query> = (1..=9).map(|u| Query::at(u, 1015)).collect();
        assert_eq!(
            back.model.query_vectors(&q).unwrap(),
            saved.model.query_vectors(&q).unwrap()
        );
        assert_eq!(
            back.model.candidate_vectors().unwrap(),
            saved.model.candidate_vectors().unwrap()
        );
        (saved, back, dir)
    }

    #[test]
    fn a_saved_feature_model_loads_with_the_same_vectors_and_refuses_damage() {
        let (model, _) = crate::feature_model::tests::trained();
        let (saved, back, dir) = round_trip(model, "tt-feature-folder");
        assert!(back.warnings.is_empty(), "{:?}", back.warnings);
        assert_eq!(back.card, saved.card);
        assert_eq!(back.model.data.parts(), saved.model.data.parts());
        // A format 1 reader says what it found, and so does this reader of a format 1 card.
        let e = crate::SavedModel::load(&dir).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
        // One flipped byte in the weights: refused by checksum.
        let w = dir.join("weights.safetensors");
        let mut bytes = std::fs::read(&w).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&w, bytes).unwrap();
        let e = SavedFeatureModel::load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("weights.safetensors") && e.contains("checksum"),
            "{e}"
        );
        // Saving again replaces the folder (it is a model folder).
        saved.save(&dir).unwrap();
        SavedFeatureModel::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Random single-bit flips and field edits of `model.json` only ever give the saved
    /// model back (same vectors) or an error naming `model.json`: never another model.
    #[test]
    fn model_json_flips_and_edits_give_the_saved_model_or_an_error() {
        use rand::{Rng, SeedableRng};
        let (model, _) = crate::feature_model::tests::trained();
        let (saved, _, dir) = round_trip(model, "tt-feature-fuzz");
        let card = dir.join("model.json");
        let good = std::fs::read(&card).unwrap();
        let q: Vec<Query> = (1..=9).map(|u| Query::at(u, 1015)).collect();
        let want = (
            saved.model.query_vectors(&q).unwrap(),
            saved.model.candidate_vectors().unwrap(),
        );
        let check = |bytes: &[u8], what: &str| {
            std::fs::write(&card, bytes).unwrap();
            match SavedFeatureModel::load(&dir) {
                Ok(back) => assert_eq!(
                    (
                        back.model.query_vectors(&q).unwrap(),
                        back.model.candidate_vectors().unwrap()
                    ),
                    want,
                    "{what}: loaded a different model"
                ),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.contains("model.json"), "{what}: {e}");
                }
            }
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for i in 0..300 {
            let mut bytes = good.clone();
            let at = rng.gen_range(0..bytes.len());
            bytes[at] ^= 1 << rng.gen_range(0..8);
            check(&bytes, &format!("flip {i} at byte {at}"));
        }
        let text = String::from_utf8(good.clone()).unwrap();
        // The edits the hostile pass made: swapped vocabulary entries, a changed spec, the
        // file table deleted (which used to switch every checksum off).
        let stored: serde_json::Value = serde_json::from_str(&text).unwrap();
        let edits: Vec<(&str, serde_json::Value)> = vec![
            ("vocabulary swap", {
                let mut v = stored.clone();
                let tokens = &mut v["inputs"]["query"][0]["tokens"];
                let (a, b) = (tokens[0].clone(), tokens[1].clone());
                tokens[0] = b;
                tokens[1] = a;
                v
            }),
            ("spec edit", {
                let mut v = stored.clone();
                let spec = v["towers"].as_str().unwrap().replace("dim = 4", "dim = 4 ");
                v["towers"] = spec.into();
                v
            }),
            ("file table deleted", {
                let mut v = stored.clone();
                v.as_object_mut().unwrap().remove("files");
                v
            }),
        ];
        for (what, v) in edits {
            assert_ne!(v, stored, "{what}: the edit changed nothing");
            let bytes = serde_json::to_vec_pretty(&v).unwrap();
            std::fs::write(&card, &bytes).unwrap();
            let e = SavedFeatureModel::load(&dir).unwrap_err().to_string();
            assert!(e.contains("model.json"), "{what}: {e}");
        }
        // The file table deleted *and* the checksum: still refused.
        let mut v = stored.clone();
        let map = v.as_object_mut().unwrap();
        map.remove("files");
        map.remove("manifest_crc32");
        std::fs::write(&card, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        let e = SavedFeatureModel::load(&dir).unwrap_err().to_string();
        assert!(e.contains("model.json"), "{e}");
        // The file as it was loads again.
        std::fs::write(&card, &good).unwrap();
        SavedFeatureModel::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn feature_file_columns_are_saved_and_give_the_same_vectors() {
        use crate::feature_model::tests::{feature_files, FILES_SPEC};
        let spec = TowersSpec::parse("t.toml", FILES_SPEC).unwrap();
        let files = feature_files(&spec);
        let model = crate::feature_model::tests::trained_with(&spec, files);
        let (_, _, dir) = round_trip(model, "tt-feature-files");
        assert!(dir.join("item_features.tsv").exists() && dir.join("user_features.tsv").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
