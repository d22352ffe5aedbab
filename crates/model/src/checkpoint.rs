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
//! Writes go to a temporary sibling folder that is swapped into place, so a reader never
//! sees half a model, and only a model folder is ever replaced ([`MODEL_FOLDER`]).
//! `model.json` lists the size and CRC-32 of every other file; loading checks them, derives
//! the dimension and vocabulary sizes from the tensors and vocabularies, and refuses a
//! `model.json` whose sizes disagree. A missing or damaged `history.json` (curves only)
//! gives a warning, not an error.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use twotower_data::Vocabulary;

use crate::config::TrainConfig;
use crate::embedding::Embedding;
use crate::towers::{Catalogue, IdTower, SeenItems, TwoTowerModel};
use crate::trainer::EpochStats;
use crate::{ModelError, Result};
use twotower_index::store::FileEntry;

/// What a model folder is, for the `--out` rule: `model.json` saying format
/// `twotower-model`, the files below, and an optional approximate index in `index/`.
pub const MODEL_FOLDER: twotower_folder::Kind = twotower_folder::Kind {
    what: "a model folder",
    manifest: "model.json",
    format: FORMAT,
    files: &[
        "weights.safetensors",
        "vocab/users.txt",
        "vocab/candidates.txt",
        "items.tsv",
        "seen.safetensors",
        "history.json",
    ],
    subfolders: &[(INDEX_DIR, &twotower_index::store::FOLDER)],
};

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

/// `model.json` as stored: the card, plus the size and CRC-32 of every other file of the
/// folder, checked on load (folders written before the list existed load unchecked).
#[derive(Serialize)]
pub(crate) struct StoredCard<'a, C: Serialize> {
    #[serde(flatten)]
    pub(crate) card: &'a C,
    pub(crate) files: &'a BTreeMap<String, FileEntry>,
}

/// The file list of a stored `model.json`.
#[derive(Deserialize)]
pub(crate) struct FileList {
    #[serde(default)]
    pub(crate) files: BTreeMap<String, FileEntry>,
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
    /// Problems found on load that do not make the model wrong (a damaged `history.json`).
    pub warnings: Vec<String>,
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `bytes` to `dir/name` and records its size and checksum in `files`.
pub(crate) fn write_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    files: &mut BTreeMap<String, FileEntry>,
) -> Result<()> {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).map_err(|e| ModelError::io(&path, e))?;
    f.write_all(bytes).map_err(|e| ModelError::io(&path, e))?;
    f.sync_all().map_err(|e| ModelError::io(&path, e))?;
    files.insert(
        name.to_string(),
        FileEntry {
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        },
    );
    Ok(())
}

pub(crate) fn safetensors_bytes(
    tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>,
) -> Result<Vec<u8>> {
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

/// A saved model of either format that can have an approximate index in its folder's
/// [`INDEX_DIR`]: what it needs to provide are its candidate vectors and a sample of its
/// own queries; loading, checking and building the index are shared.
pub trait IndexedModel {
    /// The candidate vectors of every catalogue row, as an exact index.
    fn candidate_vectors_index(&self) -> Result<twotower_index::BruteForceIndex>;

    /// Query vectors of up to `n` of the model's users, sampled with `seed`.
    fn own_queries(&self, n: usize, seed: u64) -> Result<Vec<f32>>;

    /// The approximate index stored in model folder `dir`, if one was built, checked
    /// against the model's candidate vectors (same rows, dimension and vectors).
    fn load_index(&self, dir: &Path) -> Result<Option<twotower_index::AnnIndex>> {
        let at = dir.join(INDEX_DIR);
        if !at.join(twotower_index::store::MANIFEST).exists() {
            return Ok(None);
        }
        let index = twotower_index::AnnIndex::load(&at)?;
        let exact = self.candidate_vectors_index()?;
        if index.len() == exact.len()
            && index.dim() == exact.dim()
            && !index.holds_vectors(exact.vectors())
        {
            return Err(ModelError::bad(
                &at,
                "this approximate index was built from other vectors than this model's \
                 (copied from another model, or the model was retrained); rebuild it with \
                 `twotower index build --model`",
            ));
        }
        if index.len() != exact.len() || index.dim() != exact.dim() {
            return Err(ModelError::bad(
                &at,
                format!(
                    "index of {} vectors of dimension {} does not fit this model ({} movies, \
                     dimension {}); rebuild it with `twotower index build --model`",
                    index.len(),
                    index.dim(),
                    exact.len(),
                    exact.dim()
                ),
            ));
        }
        Ok(Some(index))
    }

    /// Builds the approximate index of the candidate vectors into model folder `dir` (its
    /// [`INDEX_DIR`], replaced atomically). A tuned setting without tuning queries is tuned
    /// on the model's own queries: 1,000 of its users sampled with the build seed.
    /// `progress` hears each stage.
    fn build_index(
        &self,
        dir: &Path,
        opts: twotower_index::BuildOptions,
        setting: twotower_index::Setting,
        progress: &mut dyn FnMut(&str),
    ) -> Result<twotower_index::build::Built> {
        use twotower_index::Setting;
        let setting = match setting {
            Setting::Tuned {
                target_recall,
                queries: None,
            } => Setting::Tuned {
                target_recall,
                queries: Some(self.own_queries(1000, opts.seed)?),
            },
            given => given,
        };
        let exact = self.candidate_vectors_index()?;
        let kind = twotower_index::build::Kind::Approximate(opts, setting);
        Ok(twotower_index::build::build_folder(
            exact.vectors().to_vec(),
            exact.dim(),
            &dir.join(INDEX_DIR),
            kind,
            progress,
        )?)
    }

    /// [`IndexedModel::load_index`] where the index is required: its absence is an error
    /// saying how to build one.
    fn require_index(&self, dir: &Path) -> Result<twotower_index::AnnIndex> {
        self.load_index(dir)?.ok_or_else(|| {
            ModelError::bad(
                dir,
                format!(
                    "no approximate index: build one with `twotower index build --model {}`",
                    dir.display()
                ),
            )
        })
    }
}

impl IndexedModel for SavedModel {
    fn candidate_vectors_index(&self) -> Result<twotower_index::BruteForceIndex> {
        Ok(self.model.candidate_index())
    }

    fn own_queries(&self, n: usize, seed: u64) -> Result<Vec<f32>> {
        Ok(self.model.sample_queries(n, seed))
    }
}

impl SavedModel {
    /// Checks that `dir` may be replaced by a model folder (it is one, is empty or does not
    /// exist), so a command can refuse a bad `--out` before training.
    pub fn check_destination(dir: &Path) -> Result<()> {
        twotower_folder::check_replaceable(dir, &MODEL_FOLDER).map_err(ModelError::Folder)
    }

    /// Writes the folder atomically (a temporary sibling swapped with `dir`), refusing to
    /// replace a `dir` that is not a model folder.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let m = &self.model;
        if let Some(bad) = m
            .query
            .embedding()
            .data
            .iter()
            .chain(&m.candidate.embedding().data)
            .find(|v| !v.is_finite())
        {
            return Err(ModelError::Config(format!(
                "the model's weights hold {bad}: a diverged model is never saved"
            )));
        }
        twotower_folder::replace(
            dir,
            &MODEL_FOLDER,
            |tmp| self.write_into(tmp),
            ModelError::Folder,
        )
    }

    fn write_into(&self, tmp: &Path) -> Result<()> {
        let m = &self.model;
        let vocab = tmp.join("vocab");
        std::fs::create_dir_all(&vocab).map_err(|e| ModelError::io(&vocab, e))?;
        let json = |v: &dyn erased::Json| v.to_json();
        let mut files = BTreeMap::new();
        write_file(
            tmp,
            "history.json",
            json(&self.history).as_bytes(),
            &mut files,
        )?;
        let users = m.query.vocab.to_text()?;
        write_file(tmp, "vocab/users.txt", users.as_bytes(), &mut files)?;
        let candidates = m.candidate.vocab.to_text()?;
        write_file(
            tmp,
            "vocab/candidates.txt",
            candidates.as_bytes(),
            &mut files,
        )?;
        let items = items_tsv(&m.catalogue)?;
        write_file(tmp, "items.tsv", items.as_bytes(), &mut files)?;
        let d = m.dim();
        let weights = safetensors_bytes(vec![
            (
                "query_tower.embedding",
                Dtype::F32,
                vec![m.query.embedding().rows, d],
                f32_bytes(&m.query.embedding().data),
            ),
            (
                "candidate_tower.embedding",
                Dtype::F32,
                vec![m.candidate.embedding().rows, d],
                f32_bytes(&m.candidate.embedding().data),
            ),
        ])?;
        write_file(tmp, "weights.safetensors", &weights, &mut files)?;
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
        write_file(tmp, "seen.safetensors", &seen, &mut files)?;
        write_card(tmp, &self.card, &files)
    }

    /// Reads and validates a model folder.
    pub fn load(dir: &Path) -> Result<Self> {
        let Opened {
            card,
            listed,
            history,
            warnings,
        } = open_card::<ModelCard>(dir, FORMAT_VERSION)?;
        let files = Files {
            dir,
            listed: &listed.files,
        };
        let users = files.vocab("vocab/users.txt")?;
        let items = files.vocab("vocab/candidates.txt")?;
        let wpath = dir.join("weights.safetensors");
        let wbytes = files.read("weights.safetensors")?;
        let w = SafeTensors::deserialize(&wbytes)
            .map_err(|e| ModelError::bad(&wpath, e.to_string()))?;
        let query = read_f32(&w, &wpath, "query_tower.embedding", users.len())?;
        let cand = read_f32(&w, &wpath, "candidate_tower.embedding", items.len())?;
        let d = cand.dim;
        let card_path = dir.join("model.json");
        let sizes = [
            ("query_tower.embedding columns", query.dim, d),
            ("embedding_dim", card.embedding_dim, d),
            ("config.embedding_dim", card.config.embedding_dim, d),
            ("query_vocab_size", card.query_vocab_size, users.len()),
            (
                "candidate_vocab_size",
                card.candidate_vocab_size,
                items.len(),
            ),
        ];
        for (what, stored, actual) in sizes {
            if stored != actual {
                return Err(ModelError::bad(
                    &card_path,
                    format!(
                        "{what} is {stored}, but the folder's tensors and vocabularies give \
                         {actual} (was model.json edited?)"
                    ),
                ));
            }
        }
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
        let spath = dir.join("seen.safetensors");
        let sbytes = files.read("seen.safetensors")?;
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
            IdTower::from_table(users, query)?,
            IdTower::from_table(items, cand)?,
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
            warnings,
        })
    }
}

/// The key of `model.json` that holds the CRC-32 of the rest of its own text.
const MANIFEST_CRC: &str = "manifest_crc32";

/// The first line of a `model.json` that carries its own checksum, up to the number.
fn manifest_head() -> String {
    format!("{{\n  \"{MANIFEST_CRC}\": ")
}

/// Writes `model.json`: `card`, the size and checksum of every other file, and — as its
/// first field — the CRC-32 of the rest of its text, byte for byte, so that any change to
/// a value (a vocabulary entry, a word of the tower spec, a file's checksum) is caught
/// whatever the JSON parser makes of it. Written last, its presence marks the folder whole.
pub(crate) fn write_card<C: Serialize>(
    tmp: &Path,
    card: &C,
    files: &BTreeMap<String, FileEntry>,
) -> Result<()> {
    let body = erased::Json::to_json(&StoredCard { card, files });
    write_file(
        tmp,
        "model.json",
        stamped(&body).as_bytes(),
        &mut BTreeMap::new(),
    )
}

/// `body` (pretty JSON of an object, so starting with "{\n") with the CRC-32 of its text
/// as its first field: what [`check_manifest`] reads back.
fn stamped(body: &str) -> String {
    let rest = body.strip_prefix("{\n").unwrap_or(body);
    let crc = crc32fast::hash(body.as_bytes());
    format!("{}{crc},\n{rest}", manifest_head())
}

/// Checks the text of `model.json` (at `path`) against the checksum it carries as its
/// first field: an error when they differ or the field is malformed, or when there is
/// none and `required`; else a warning (a format 1 folder written before manifests
/// carried one: its card holds sizes only, each checked against the checksummed files).
fn check_manifest(path: &Path, bytes: &[u8], required: bool) -> Result<Option<String>> {
    let Some(rest) = bytes.strip_prefix(manifest_head().as_bytes()) else {
        if required {
            return Err(ModelError::bad(
                path,
                format!(
                    "it does not start with the checksum of its own content ({MANIFEST_CRC}): \
                     edited since it was saved, or written by a twotower before model \
                     folders carried one; its tower spec and vocabularies cannot be \
                     verified (retrain to write the folder again)"
                ),
            ));
        }
        return Ok(Some(format!(
            "{}: carries no checksum of its own content (written by an earlier twotower); \
             save the model again to bind it",
            path.display()
        )));
    };
    let malformed = || ModelError::bad(path, format!("its {MANIFEST_CRC} field is malformed"));
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let recorded: u32 = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or_else(malformed)?;
    let body = rest[digits..].strip_prefix(b",\n").ok_or_else(malformed)?;
    let content = [b"{\n".as_slice(), body].concat();
    if crc32fast::hash(&content) != recorded {
        return Err(ModelError::bad(
            path,
            "its content does not match the checksum it carries: model.json was edited or \
             damaged since it was saved (its spec, vocabularies or file list may be wrong)",
        ));
    }
    Ok(None)
}

/// Gives the edited `model.json` at `path` the checksum of its new content: for tests of
/// the checks behind the manifest's (sizes against files), which an edit alone never
/// reaches.
#[cfg(test)]
pub(crate) fn restamp_manifest(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let body = match text.strip_prefix(&manifest_head()) {
        Some(rest) => format!("{{\n{}", rest.split_once(",\n").unwrap().1),
        None => text,
    };
    std::fs::write(path, stamped(&body)).unwrap();
}

/// A folder's `model.json`, read once: its card, the files it lists, and the training
/// curves (a damaged `history.json` is a warning, not an error).
pub(crate) struct Opened<C> {
    pub(crate) card: C,
    pub(crate) listed: FileList,
    pub(crate) history: Vec<EpochStats>,
    pub(crate) warnings: Vec<String>,
}

/// The format version `dir/model.json` declares (`None` when it cannot be read: the
/// readers then say why).
pub(crate) fn declared_version(dir: &Path) -> Option<u64> {
    recover_missing(dir);
    let stored: serde_json::Value = read_json(&dir.join("model.json")).ok()?;
    stored.get("format_version")?.as_u64()
}

/// Puts a missing model folder `dir` back when a replacement killed between its two
/// renames (file systems without the atomic exchange) left the old one beside it.
fn recover_missing(dir: &Path) {
    if !dir.exists() {
        twotower_folder::recover(dir, &MODEL_FOLDER);
    }
}

/// Opens the model folder `dir` as format `version`: another format or version is refused
/// before its fields are read (a card of another version has other fields).
pub(crate) fn open_card<C: serde::de::DeserializeOwned>(
    dir: &Path,
    version: u32,
) -> Result<Opened<C>> {
    let card_path = dir.join("model.json");
    recover_missing(dir);
    if !card_path.is_file() {
        return Err(ModelError::bad(
            dir,
            "not a model folder (no model.json); train one with `twotower train --out DIR`",
        ));
    }
    let bytes = std::fs::read(&card_path).map_err(|e| ModelError::io(&card_path, e))?;
    let stored: serde_json::Value = parse_json(&card_path, &bytes)?;
    let format = stored.get("format").and_then(|v| v.as_str()).unwrap_or("?");
    let found = stored.get("format_version").and_then(|v| v.as_u64());
    if format != FORMAT || found != Some(version as u64) {
        let what = match found {
            Some(2) if format == FORMAT => " (a feature model, which this reader does not read)",
            Some(1) if format == FORMAT => " (an id model, which this reader does not read)",
            _ => "",
        };
        return Err(ModelError::bad(
            &card_path,
            format!(
                "format {format:?} version {} is not {FORMAT:?} version {version}{what}",
                found.map_or("?".into(), |v| v.to_string())
            ),
        ));
    }
    let mut warnings = Vec::new();
    warnings.extend(check_manifest(&card_path, &bytes, version > 1)?);
    let card: C = parse_value(&card_path, stored.clone())?;
    let listed: FileList = parse_value(&card_path, stored)?;
    // Folders of format 1 written before the list existed load unchecked; every folder
    // of a later format was written with it, so one without it was edited.
    if listed.files.is_empty() && version > 1 {
        return Err(ModelError::bad(
            &card_path,
            "the table of files (`files`, each file's size and checksum) is missing: \
             model.json was edited, and the folder's files cannot be verified",
        ));
    }
    let history = match (Files {
        dir,
        listed: &listed.files,
    })
    .read("history.json")
    .and_then(|b| parse_json(&dir.join("history.json"), &b))
    {
        Ok(h) => h,
        Err(e) => {
            warnings.push(format!("training curves unavailable: {e}"));
            Vec::new()
        }
    };
    Ok(Opened {
        card,
        listed,
        history,
        warnings,
    })
}

/// The files of a model folder, read and checked against the sizes and checksums that
/// `model.json` lists.
pub(crate) struct Files<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) listed: &'a BTreeMap<String, FileEntry>,
}

impl Files<'_> {
    pub(crate) fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| ModelError::io(&path, e))?;
        let Some(entry) = self.listed.get(name) else {
            if self.listed.is_empty() {
                return Ok(bytes); // written before model.json listed checksums
            }
            return Err(ModelError::bad(
                self.dir.join("model.json"),
                format!("{name} is not listed among the folder's files"),
            ));
        };
        if bytes.len() as u64 != entry.bytes {
            return Err(ModelError::bad(
                &path,
                format!(
                    "file holds {} bytes, model.json lists {} (truncated or replaced?)",
                    bytes.len(),
                    entry.bytes
                ),
            ));
        }
        if crc32fast::hash(&bytes) != entry.crc32 {
            return Err(ModelError::bad(
                &path,
                "checksum mismatch with the one model.json records: the file (or model.json) \
                 was altered or damaged since it was saved",
            ));
        }
        Ok(bytes)
    }

    fn vocab(&self, name: &str) -> Result<Vocabulary> {
        let path = self.dir.join(name);
        let bytes = self.read(name)?;
        let text = String::from_utf8(bytes)
            .map_err(|e| ModelError::bad(&path, format!("not UTF-8 text: {e}")))?;
        Ok(Vocabulary::parse(&path, &text)?)
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ModelError::bad(path, format!("line {}: {e}", e.line())))
}

pub(crate) fn parse_value<T: serde::de::DeserializeOwned>(
    path: &Path,
    v: serde_json::Value,
) -> Result<T> {
    serde_json::from_value(v).map_err(|e| ModelError::bad(path, e.to_string()))
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    parse_json(path, &bytes)
}

pub(crate) fn read_tensor<'a>(
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

pub(crate) fn f32_from(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect()
}

/// A 2-D F32 tensor of `rows` rows: its width is the model's dimension, derived here
/// rather than trusted from `model.json`.
fn read_f32(st: &SafeTensors, path: &Path, name: &str, rows: usize) -> Result<Embedding> {
    let t = st
        .tensor(name)
        .map_err(|e| ModelError::bad(path, format!("tensor {name}: {e}")))?;
    let shape = t.shape();
    if t.dtype() != Dtype::F32 || shape.len() != 2 || shape[0] != rows || shape[1] == 0 {
        return Err(ModelError::bad(
            path,
            format!(
                "tensor {name} is {:?} {:?}, expected F32 [{rows}, dimension] ({rows} = the \
                 vocabulary's size)",
                t.dtype(),
                shape
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
        rows,
        dim: shape[1],
        data,
    })
}

/// The catalogue as `items.tsv`: a header, then id, title, genres (`|`-separated) and
/// release date, tab-separated.
pub(crate) fn items_tsv(c: &Catalogue) -> Result<String> {
    let mut items = String::from("id\ttitle\tgenres\trelease_date\n");
    for i in 0..c.len() {
        let fields = [&c.ids[i], &c.titles[i], &c.release_dates[i]];
        if let Some(f) = fields
            .into_iter()
            .chain(&c.genres[i])
            .find(|f| f.contains(['\t', '\n', '\r']))
        {
            return Err(ModelError::Config(format!(
                "item {} holds a tab or line break in {}, which items.tsv cannot store",
                twotower_data::shown(&c.ids[i]),
                twotower_data::shown(f)
            )));
        }
        items.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            c.ids[i],
            c.titles[i],
            c.genres[i].join("|"),
            c.release_dates[i]
        ));
    }
    Ok(items)
}

pub(crate) fn read_items(path: &Path, bytes: &[u8]) -> Result<Catalogue> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| ModelError::bad(path, format!("not UTF-8: {e}")))?;
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
pub(crate) mod erased {
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
            warnings: vec![],
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
        assert_eq!(l.model.query.embedding(), s.model.query.embedding());
        assert_eq!(l.model.candidate.embedding(), s.model.candidate.embedding());
        assert_eq!(l.model.catalogue, s.model.catalogue);
        assert_eq!(l.model.seen, s.model.seen);
        assert_eq!(l.model.row_keys, vec![1, 2, 2]);
        let q = s.model.query_vectors(&["42".into()]);
        assert_eq!(
            s.model.candidate_index().scores(&q).unwrap(),
            l.model.candidate_index().scores(&q).unwrap()
        );
        // This process's temporary siblings are named `.<folder>.tmp-…`.
        let own = format!(".{}.", d.file_name().unwrap().to_string_lossy());
        let leftovers: Vec<_> = std::fs::read_dir(d.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&own))
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
        // An edit is caught by the manifest's own checksum ...
        let e = SavedModel::load(&d).unwrap_err().to_string();
        assert!(e.contains("model.json") && e.contains("edited"), "{e}");
        // ... and, with the checksum forged, by the sizes behind it.
        restamp_manifest(&card);
        let e = SavedModel::load(&d).unwrap_err().to_string();
        assert!(
            e.contains("model.json") && e.contains("embedding_dim is 5") && e.contains("give 4"),
            "{e}"
        );
        std::fs::write(&card, "{ not json").unwrap();
        let e = SavedModel::load(&d).unwrap_err().to_string();
        assert!(e.contains("model.json") && e.contains("line 1"), "{e}");
        let e = SavedModel::load(&d.join("nope")).unwrap_err().to_string();
        assert!(e.contains("not a model folder"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn every_file_is_checksummed_and_sizes_are_cross_checked() {
        let s = saved();
        let d = dir("sums");
        s.save(&d).unwrap();
        let card = std::fs::read_to_string(d.join("model.json")).unwrap();
        // Flipped bytes in any listed file are caught, even where the format still parses.
        for name in [
            "weights.safetensors",
            "items.tsv",
            "vocab/users.txt",
            "seen.safetensors",
        ] {
            let p = d.join(name);
            let good = std::fs::read(&p).unwrap();
            let mut bad = good.clone();
            let at = bad.len() - 2;
            bad[at] ^= 0x55;
            std::fs::write(&p, &bad).unwrap();
            let e = SavedModel::load(&d).unwrap_err().to_string();
            assert!(
                e.contains(name) && e.contains("checksum mismatch"),
                "{name}: {e}"
            );
            std::fs::write(&p, &good).unwrap();
        }
        // Every stored size is checked against what the files hold.
        for (from, to) in [
            ("\"query_vocab_size\": 4", "\"query_vocab_size\": 5"),
            ("\"candidate_vocab_size\": 3", "\"candidate_vocab_size\": 9"),
            (
                "\"embedding_dim\": 4,\n    \"epochs",
                "\"embedding_dim\": 8,\n    \"epochs",
            ),
        ] {
            assert!(card.contains(from), "{from} not in {card}");
            std::fs::write(d.join("model.json"), card.replacen(from, to, 1)).unwrap();
            restamp_manifest(&d.join("model.json"));
            let e = SavedModel::load(&d).unwrap_err().to_string();
            assert!(
                e.contains("model.json") && e.contains("was model.json edited"),
                "{e}"
            );
        }
        std::fs::write(d.join("model.json"), &card).unwrap();
        // A damaged history only costs the curves.
        std::fs::write(d.join("history.json"), "garbage").unwrap();
        let l = SavedModel::load(&d).unwrap();
        assert!(l.history.is_empty());
        assert!(l.warnings[0].contains("history.json"), "{:?}", l.warnings);
        std::fs::remove_file(d.join("history.json")).unwrap();
        let l = SavedModel::load(&d).unwrap();
        assert!(l.warnings[0].contains("history.json"), "{:?}", l.warnings);
        assert_eq!(l.model.candidate.embedding(), s.model.candidate.embedding());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn save_refuses_foreign_folders_and_diverged_weights() {
        let mut s = saved();
        let d = dir("foreign");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("thesis.txt"), "years of work").unwrap();
        let e = s.save(&d).unwrap_err().to_string();
        assert!(e.contains("refusing") && e.contains("thesis.txt"), "{e}");
        assert!(d.join("thesis.txt").exists() && d.join("sub").exists());
        let d2 = dir("nan");
        s.model.candidate.embedding_mut().data[0] = f32::NAN;
        let e = s.save(&d2).unwrap_err().to_string();
        assert!(e.contains("diverged"), "{e}");
        assert!(!d2.exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
