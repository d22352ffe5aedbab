//! From a [`TowerSpec`] and data to a [`Tower`] and its inputs: each feature's
//! preprocessing is fitted on training rows (vocabularies, text vocabularies, standardising
//! statistics, bucket boundaries) and kept beside the tower, and any rows — catalogue items,
//! or queries made of a user, a time and a history — are encoded into the tower's
//! [`FeatureBatch`]es.
//!
//! Rows are read through a function `value(row, key) -> Column`, so the same code serves
//! MovieLens items, users with their interaction's time and history, and generic logs. A
//! [`Key`] is a column of the data by name, or what comes with every interaction: its time
//! and the user's items as a history of the feature's kind.

use rand::Rng;
use twotower_data::Vocabulary;

use crate::nn::{
    Activation, Dense, EmbeddingBag, Encoder, FeatureBatch, IdBatch, Numeric, Pooling, Tower,
};
use crate::preprocess::{Buckets, TextVectorizer};
use crate::spec::{FeatureSpec, HistoryFrom, TowerSpec};
use crate::{ModelError, Result};

/// One value of a row, as a feature reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// An id or a category.
    Str(String),
    /// Several categories (genres).
    Strs(Vec<String>),
    /// Text (a title).
    Text(String),
    /// A number; `None` when the row has none (it gets the training mean).
    Number(Option<f32>),
    /// Catalogue rows, oldest first (a history).
    Items(Vec<u32>),
}

/// What a feature reads of a row: a column of the data by its name, or what a query
/// carries with every interaction (its time, the user's items as a history). Typed, so
/// that a data column can bear any name (a user feature called `timestamp` is that column,
/// not the interaction's time) and a history's sizes reach the value function as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    /// A column of the data: `user_id`, `title`, a `--user-features` column…
    Column(&'a str),
    /// The interaction's time.
    Timestamp,
    /// The user's catalogue rows strictly before the interaction, oldest first.
    Past,
    /// All the user's training rows but the example's own, oldest first.
    Others,
    /// The user's first `last` rows; a training example's `last` drawn from their first
    /// `within` but its own (oldest first).
    First { last: usize, within: usize },
}

/// As errors name a feature: its column, or its kind.
impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Column(c) => f.write_str(c),
            Key::Timestamp => f.write_str("timestamp"),
            Key::Past => f.write_str("history"),
            Key::Others => f.write_str("history of the user's other items"),
            Key::First { last, within } => write!(f, "history of the first {last} of {within}"),
        }
    }
}

/// A feature's fitted preprocessing: how its column becomes encoder inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Through a vocabulary (index 0 for unknown values).
    Lookup { vocab: Vocabulary },
    /// Hashed into `bins` rows.
    Hashed { bins: usize },
    /// Several categories through a vocabulary.
    Multi { vocab: Vocabulary },
    /// Tokens of a text.
    Text { vectorizer: TextVectorizer },
    /// A standardised number, and its bucket when bucketed.
    Number {
        stats: Numeric,
        buckets: Option<Buckets>,
    },
    /// The last `last` catalogue rows of a history; its table has `items` rows.
    History { last: usize, items: usize },
}

/// An error unless a tower of `parameters` (`None`: beyond `usize`) fits
/// [`limits::PARAMETERS`](crate::spec::limits::PARAMETERS) (which bounds training's memory,
/// about 16 bytes a parameter with the optimizer's state and gradients) and its float32
/// tables fit the memory the machine has available.
pub(crate) fn check_parameters(parameters: Option<usize>) -> Result<()> {
    use crate::spec::limits::PARAMETERS;
    let Some(n) = parameters.filter(|&n| n <= PARAMETERS) else {
        return Err(ModelError::Config(format!(
            "the tower would hold {} parameters, over the limit of {PARAMETERS}: use smaller \
             dims, fewer hash_bins or buckets, or smaller layers",
            parameters.map_or("more than 2^64".to_string(), |n| n.to_string())
        )));
    };
    if let Some(available) = available_memory() {
        let needed = (n as u64).saturating_mul(4);
        if needed > available {
            return Err(ModelError::Config(format!(
                "the tower's {n} parameters need {} MiB, more than the {} MiB of memory \
                 available",
                needed >> 20,
                available >> 20
            )));
        }
    }
    Ok(())
}

/// Bytes of memory the system has available (Linux's `MemAvailable`), if known.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A fitted input as a model folder stores it: vocabularies as their tokens in index order
/// (after the out-of-vocabulary token).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InputState {
    Lookup {
        tokens: Vec<String>,
    },
    Hashed {
        bins: usize,
    },
    Multi {
        tokens: Vec<String>,
    },
    Text {
        tokens: Vec<String>,
    },
    Number {
        stats: Numeric,
        buckets: Option<Buckets>,
    },
    History {
        last: usize,
        items: usize,
    },
}

fn known_tokens(v: &Vocabulary) -> Vec<String> {
    v.tokens().iter().skip(1).cloned().collect()
}

impl From<&Input> for InputState {
    fn from(i: &Input) -> Self {
        match i {
            Input::Lookup { vocab } => InputState::Lookup {
                tokens: known_tokens(vocab),
            },
            Input::Hashed { bins } => InputState::Hashed { bins: *bins },
            Input::Multi { vocab } => InputState::Multi {
                tokens: known_tokens(vocab),
            },
            Input::Text { vectorizer } => InputState::Text {
                tokens: known_tokens(&vectorizer.vocab),
            },
            Input::Number { stats, buckets } => InputState::Number {
                stats: *stats,
                buckets: buckets.clone(),
            },
            Input::History { last, items } => InputState::History {
                last: *last,
                items: *items,
            },
        }
    }
}

impl From<InputState> for Input {
    fn from(s: InputState) -> Self {
        match s {
            InputState::Lookup { tokens } => Input::Lookup {
                vocab: Vocabulary::from_ordered_tokens(tokens),
            },
            InputState::Hashed { bins } => Input::Hashed { bins },
            InputState::Multi { tokens } => Input::Multi {
                vocab: Vocabulary::from_ordered_tokens(tokens),
            },
            InputState::Text { tokens } => Input::Text {
                vectorizer: TextVectorizer {
                    vocab: Vocabulary::from_ordered_tokens(tokens),
                },
            },
            InputState::Number { stats, buckets } => Input::Number { stats, buckets },
            InputState::History { last, items } => Input::History { last, items },
        }
    }
}

/// A named tensor: name, shape, row-major values.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// Tensors by name: shape and row-major values.
pub type Tensors = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Reads `row`'s value of `key`.
pub type ValueFn<'a> = dyn Fn(usize, Key<'_>) -> Column + Sync + 'a;

/// A tower with the inputs that feed it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTower {
    pub spec: TowerSpec,
    /// One per feature of the spec.
    pub inputs: Vec<Input>,
    pub tower: Tower,
}

/// What feature `spec` reads.
pub fn key_of(spec: &FeatureSpec) -> Key<'_> {
    match spec {
        FeatureSpec::Timestamp { .. } => Key::Timestamp,
        FeatureSpec::History {
            from, last, within, ..
        } => match from {
            HistoryFrom::Past => Key::Past,
            HistoryFrom::Others => Key::Others,
            HistoryFrom::First => Key::First {
                last: *last,
                within: within.unwrap_or(*last),
            },
        },
        other => Key::Column(other.column().unwrap_or_default()),
    }
}

fn strings(v: Column) -> Vec<String> {
    match v {
        Column::Str(s) | Column::Text(s) => vec![s],
        Column::Strs(v) => v,
        Column::Number(n) => n.map(|x| x.to_string()).into_iter().collect(),
        Column::Items(_) => Vec::new(),
    }
}

/// The first of a column's values as a string (an id or category), if any.
pub(crate) fn first_string(v: Column) -> Option<String> {
    strings(v).into_iter().next()
}

fn number(v: &Column) -> Option<f32> {
    match v {
        Column::Number(n) => *n,
        _ => None,
    }
}

/// FNV-1a of `s`, modulo `bins`: a hash fixed by its definition (not by a Rust release or
/// a process seed), so a saved model hashes alike wherever it is loaded.
fn hashed(s: &str, bins: usize) -> u32 {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    (h % bins.max(1) as u64) as u32
}

impl FeatureTower {
    /// Fits every feature's preprocessing on `rows` training rows read by `value` and builds
    /// the tower: one embedding per categorical, text or bucketed feature, one standardised
    /// column per number, then the spec's dense layers (ReLU, the last linear).
    /// `catalogue` is the number of catalogue rows (the rows a history's table needs).
    pub fn fit(
        spec: &TowerSpec,
        rows: usize,
        value: &ValueFn,
        catalogue: usize,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        if rows == 0 {
            return Err(ModelError::Config("no rows to fit the features on".into()));
        }
        let mut inputs = Vec::new();
        for f in &spec.features {
            let f = f.get_ref();
            let key = key_of(f);
            let values = || (0..rows).map(|r| value(r, key));
            let empty = || {
                ModelError::Config(format!(
                    "feature \"{key}\": no values in the training rows to build a vocabulary \
                     from"
                ))
            };
            let input = match f {
                FeatureSpec::Id { .. }
                | FeatureSpec::Categorical {
                    hash_bins: None, ..
                } => {
                    let vocab = Vocabulary::from_tokens(values().flat_map(strings));
                    if vocab.len() < 2 {
                        return Err(empty());
                    }
                    Input::Lookup { vocab }
                }
                FeatureSpec::Categorical {
                    hash_bins: Some(bins),
                    ..
                } => Input::Hashed { bins: *bins },
                FeatureSpec::Multi { .. } => {
                    let vocab = Vocabulary::from_tokens(values().flat_map(strings));
                    if vocab.len() < 2 {
                        return Err(empty());
                    }
                    Input::Multi { vocab }
                }
                FeatureSpec::Text { max_tokens, .. } => {
                    let texts: Vec<String> = values().flat_map(strings).collect();
                    let vectorizer =
                        TextVectorizer::fit(texts.iter().map(String::as_str), *max_tokens);
                    if vectorizer.vocab.len() < 2 {
                        return Err(empty());
                    }
                    Input::Text { vectorizer }
                }
                FeatureSpec::Numeric {
                    buckets, quantiles, ..
                } => {
                    let xs: Vec<f32> = values().filter_map(|v| number(&v)).collect();
                    let stats = Numeric::fit(&xs).map_err(|_| no_numbers(key))?;
                    let b = match buckets {
                        Some(n) if *quantiles => Some(Buckets::quantiles(&xs, *n)?),
                        Some(n) => Some(Buckets::equal_width(&xs, *n)?),
                        None => None,
                    };
                    Input::Number { stats, buckets: b }
                }
                FeatureSpec::Timestamp { buckets, .. } => {
                    let xs: Vec<f32> = values().filter_map(|v| number(&v)).collect();
                    let stats = Numeric::fit(&xs).map_err(|_| no_numbers(key))?;
                    let b = Buckets::equal_width(&xs, *buckets)?;
                    Input::Number {
                        stats,
                        buckets: Some(b),
                    }
                }
                FeatureSpec::History { last, .. } => Input::History {
                    last: *last,
                    items: catalogue,
                },
            };
            inputs.push(input);
        }
        Self::build(spec, inputs, rng)
    }

    /// Where feature `k`'s embedding table is: its index among the tower's encoders, and
    /// its position among the tower's tables (the order of `TowerGrads::sparse`). `None`
    /// when the feature has no table (an unbucketed number).
    pub fn table_of_feature(&self, k: usize) -> Option<(usize, usize)> {
        let (mut encoder, mut table) = (0, 0);
        for (j, (f, input)) in self.spec.features.iter().zip(&self.inputs).enumerate() {
            if matches!(input, Input::Number { .. }) {
                encoder += 1;
            }
            let has = matches!(table_of(f.get_ref(), input), Ok(Some(_)));
            if j == k {
                return has.then_some((encoder, table));
            }
            if has {
                encoder += 1;
                table += 1;
            }
        }
        None
    }

    /// The columns each feature's encoders fill in the tower's input, in feature order
    /// (a bucketed number: its standardised column and its bucket's embedding).
    pub fn feature_columns(&self) -> Vec<std::ops::Range<usize>> {
        let widths: Vec<usize> = self.tower.encoders.iter().map(Encoder::width).collect();
        let (mut encoder, mut column) = (0, 0);
        let mut out = Vec::new();
        for (f, input) in self.spec.features.iter().zip(&self.inputs) {
            let numeric = matches!(input, Input::Number { .. }) as usize;
            let table = matches!(table_of(f.get_ref(), input), Ok(Some(_))) as usize;
            let width: usize = widths.iter().skip(encoder).take(numeric + table).sum();
            out.push(column..column + width);
            encoder += numeric + table;
            column += width;
        }
        out
    }

    /// The tower for fitted `inputs` (one per feature of `spec`), freshly initialised.
    pub fn build(spec: &TowerSpec, inputs: Vec<Input>, rng: &mut impl Rng) -> Result<Self> {
        if inputs.len() != spec.features.len() {
            return Err(ModelError::Config(format!(
                "{} feature inputs for {} features",
                inputs.len(),
                spec.features.len()
            )));
        }
        // Count before allocating: tables sized by the data (or by a stored input) and
        // dense layers, in checked arithmetic, within the limit and the memory there is.
        let mut parameters: Option<usize> = Some(0);
        let mut width: Option<usize> = Some(0);
        for (f, input) in spec.features.iter().zip(&inputs) {
            if let Input::Number { .. } = input {
                width = width.and_then(|w| w.checked_add(1));
            }
            if let Some((n, dim, _)) = table_of(f.get_ref(), input)? {
                parameters = parameters.and_then(|p| p.checked_add(n.checked_mul(dim)?));
                width = width.and_then(|w| w.checked_add(dim));
            }
        }
        for &out in spec.layer_sizes() {
            parameters =
                parameters.and_then(|p| p.checked_add(width?.checked_add(1)?.checked_mul(out)?));
            width = Some(out);
        }
        check_parameters(parameters)?;
        let mut encoders = Vec::new();
        for (f, input) in spec.features.iter().zip(&inputs) {
            if let Input::Number { stats, .. } = input {
                encoders.push(Encoder::Numeric(*stats));
            }
            if let Some((n, dim, pooling)) = table_of(f.get_ref(), input)? {
                encoders.push(Encoder::Bag(EmbeddingBag::new(n, dim, pooling, rng)));
            }
        }
        let mut layers = Vec::new();
        let mut width: usize = encoders.iter().map(Encoder::width).sum();
        let sizes = spec.layer_sizes();
        for (i, &out) in sizes.iter().enumerate() {
            let act = if i + 1 == sizes.len() {
                Activation::Linear
            } else {
                Activation::Relu
            };
            layers.push(Dense::new(width, out, act, rng));
            width = out;
        }
        Ok(FeatureTower {
            spec: spec.clone(),
            inputs,
            tower: Tower::new(encoders, layers)?,
        })
    }

    /// The fitted inputs as stored.
    pub fn state(&self) -> Vec<InputState> {
        self.inputs.iter().map(InputState::from).collect()
    }

    /// Every parameter of the tower, named as [`Tower::params`] names them.
    pub fn tensors(&self) -> Vec<NamedTensor> {
        self.tower
            .params()
            .into_iter()
            .map(|(name, p)| match p {
                crate::nn::Param::Table(t) => (name, vec![t.rows, t.dim], t.data.clone()),
                crate::nn::Param::Dense(v, shape) => (name, shape, v.to_vec()),
            })
            .collect()
    }

    /// The tower of `spec` with stored `inputs` and parameters (`tensors` by name): what
    /// [`FeatureTower::state`] and [`FeatureTower::tensors`] gave. A missing or misshapen
    /// tensor, or an input of another kind than its feature, is an error.
    pub fn restore(spec: &TowerSpec, inputs: Vec<InputState>, tensors: &Tensors) -> Result<Self> {
        use rand::SeedableRng;
        let inputs = inputs.into_iter().map(Input::from).collect();
        let mut t = Self::build(spec, inputs, &mut rand_chacha::ChaCha8Rng::seed_from_u64(0))?;
        let names: Vec<String> = t.tower.params().into_iter().map(|(n, _)| n).collect();
        for name in names {
            let Some((shape, data)) = tensors.get(&name) else {
                return Err(ModelError::Config(format!("parameter {name} is missing")));
            };
            t.tower.set_param(&name, shape, data.clone())?;
        }
        Ok(t)
    }

    /// The encoder inputs of `rows` rows read by `value`, in the tower's encoder order.
    pub fn encode(&self, rows: usize, value: &ValueFn) -> Vec<FeatureBatch> {
        let mut out = Vec::new();
        for (f, input) in self.spec.features.iter().zip(&self.inputs) {
            let key = key_of(f.get_ref());
            let values = || (0..rows).map(|r| value(r, key));
            match input {
                Input::Lookup { vocab } => out.push(
                    IdBatch::single(
                        values()
                            .map(|v| strings(v).first().map_or(0, |s| vocab.lookup(s)) as u32)
                            .collect(),
                    )
                    .into(),
                ),
                Input::Hashed { bins } => out.push(
                    IdBatch::single(
                        values()
                            .map(|v| strings(v).first().map_or(0, |s| hashed(s, *bins)))
                            .collect(),
                    )
                    .into(),
                ),
                Input::Multi { vocab } => {
                    out.push(bags(values().map(|v| {
                        strings(v).iter().map(|s| vocab.lookup(s) as u32).collect()
                    })))
                }
                Input::Text { vectorizer } => {
                    out.push(bags(values().map(|v| {
                        strings(v).iter().flat_map(|t| vectorizer.ids(t)).collect()
                    })))
                }
                Input::Number { stats, buckets } => {
                    let xs: Vec<f32> = values()
                        .map(|v| number(&v).filter(|x| x.is_finite()).unwrap_or(stats.mean))
                        .collect();
                    if let Some(b) = buckets {
                        let ids = xs.iter().map(|&x| b.bucket(x)).collect();
                        out.push(FeatureBatch::Numbers(xs));
                        // The same rule that gave the bucket embedding its table.
                        if matches!(table_of(f.get_ref(), input), Ok(Some(_))) {
                            out.push(IdBatch::single(ids).into());
                        }
                    } else {
                        out.push(FeatureBatch::Numbers(xs));
                    }
                }
                Input::History { last, .. } => {
                    let first = matches!(
                        f.get_ref(),
                        FeatureSpec::History {
                            from: HistoryFrom::First,
                            ..
                        }
                    );
                    out.push(bags(values().map(|v| match v {
                        Column::Items(items) if first => items[..items.len().min(*last)].to_vec(),
                        Column::Items(items) => items[items.len().saturating_sub(*last)..].to_vec(),
                        _ => Vec::new(),
                    })))
                }
            }
        }
        out
    }

    /// The tower's output for `rows` rows read by `value`, row-major.
    pub fn vectors(&self, rows: usize, value: &ValueFn) -> Result<Vec<f32>> {
        let batch = self.encode(rows, value);
        Ok(self.tower.forward(&batch, rows)?.output().to_vec())
    }
}

/// The embedding table a feature needs with this input: rows, width and pooling (`None`
/// for a number that is not bucketed).
fn table_of(f: &FeatureSpec, input: &Input) -> Result<Option<(usize, usize, Pooling)>> {
    let mean = Pooling::Mean;
    Ok(match (f, input) {
        (FeatureSpec::Id { dim, .. }, Input::Lookup { vocab })
        | (FeatureSpec::Categorical { dim, .. }, Input::Lookup { vocab }) => {
            Some((vocab.len(), *dim, mean))
        }
        (FeatureSpec::Categorical { dim, .. }, Input::Hashed { bins }) => Some((*bins, *dim, mean)),
        (FeatureSpec::Multi { dim, pooling, .. }, Input::Multi { vocab }) => {
            Some((vocab.len(), *dim, pooling.pooling(None)))
        }
        (FeatureSpec::Text { dim, .. }, Input::Text { vectorizer }) => {
            Some((vectorizer.vocab.len(), *dim, mean))
        }
        (
            FeatureSpec::Numeric { dim: Some(d), .. },
            Input::Number {
                buckets: Some(b), ..
            },
        )
        | (
            FeatureSpec::Timestamp { dim: d, .. },
            Input::Number {
                buckets: Some(b), ..
            },
        ) => Some((b.len(), *d, mean)),
        (FeatureSpec::Numeric { .. }, Input::Number { .. }) => None,
        (
            FeatureSpec::History {
                dim,
                pooling,
                decay,
                ..
            },
            Input::History { items, .. },
        ) => Some((*items, *dim, pooling.pooling(*decay))),
        (f, _) => {
            return Err(ModelError::Config(format!(
                "feature \"{}\": its stored preprocessing is of another kind",
                key_of(f)
            )))
        }
    })
}

fn no_numbers(key: Key<'_>) -> ModelError {
    ModelError::Config(format!(
        "feature \"{key}\": the training rows hold no number for it (or a value that is not \
         finite)"
    ))
}

/// One bag of ids per row.
fn bags(rows: impl Iterator<Item = Vec<u32>>) -> FeatureBatch {
    let (mut offsets, mut ids) = (vec![0u32], Vec::new());
    for r in rows {
        ids.extend(r);
        offsets.push(ids.len() as u32);
    }
    IdBatch::multi(offsets, ids).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Columns, TowersSpec};
    use rand::SeedableRng;

    const SPEC: &str = r#"
[query]
layers = [16, 8]
features = [
  { kind = "id", column = "user_id", dim = 4 },
  { kind = "categorical", column = "occupation", dim = 3, hash_bins = 5 },
  { kind = "numeric", column = "age", buckets = 3, dim = 2 },
  { kind = "timestamp", buckets = 4, dim = 2 },
  { kind = "history", last = 2, dim = 4 },
]
[candidate]
layers = [8]
features = [
  { kind = "id", column = "item_id", dim = 4 },
  { kind = "text", column = "title", dim = 3 },
  { kind = "multi", column = "genres", dim = 2, pooling = "sum" },
  { kind = "numeric", column = "year" },
]
"#;

    fn item(r: usize, k: Key<'_>) -> Column {
        let titles = ["Heat (1995)", "The Net (1995)", "Heat Wave (1990)"];
        match k {
            Key::Column("item_id") => Column::Str(format!("{}", 10 + r)),
            Key::Column("title") => Column::Text(titles[r].into()),
            Key::Column("genres") => Column::Strs(if r == 1 {
                vec![]
            } else {
                vec!["Action".into(), "Crime".into()]
            }),
            Key::Column("year") => {
                Column::Number(crate::towers::year_of(titles[r]).map(|y| y as f32))
            }
            _ => unreachable!("{k}"),
        }
    }

    fn query(r: usize, k: Key<'_>) -> Column {
        match k {
            Key::Column("user_id") => Column::Str(["7", "8", "7", "9"][r].into()),
            Key::Column("occupation") => {
                Column::Str(["writer", "doctor", "writer", "artist"][r].into())
            }
            Key::Column("age") => Column::Number(Some([20.0, 40.0, 20.0, 60.0][r])),
            Key::Timestamp => Column::Number(Some([100.0, 200.0, 300.0, 400.0][r])),
            Key::Past => Column::Items([vec![], vec![0], vec![0, 2, 1], vec![2]][r].clone()),
            _ => unreachable!("{k}"),
        }
    }

    #[test]
    fn features_are_fitted_and_encoded_in_encoder_order() {
        let spec = TowersSpec::parse("t.toml", SPEC).unwrap();
        spec.check(&Columns::movielens_100k()).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let items = FeatureTower::fit(&spec.candidate, 3, &item, 3, &mut rng).unwrap();
        // id table, title table, genres table, the year's column; then one layer.
        assert_eq!(items.tower.encoders.len(), 4);
        assert_eq!(items.tower.input_width(), 4 + 3 + 2 + 1);
        let Input::Text { vectorizer } = &items.inputs[1] else {
            panic!()
        };
        assert_eq!(vectorizer.vocab.token(1), "1995"); // the most frequent token
        let b = items.encode(3, &item);
        let FeatureBatch::Ids(genres) = &b[2] else {
            panic!()
        };
        assert_eq!(genres.offsets, [0, 2, 2, 4]);
        let FeatureBatch::Numbers(years) = &b[3] else {
            panic!()
        };
        assert_eq!(years, &[1995.0, 1995.0, 1990.0]);
        let v = items.vectors(3, &item).unwrap();
        assert_eq!(v.len(), 3 * 8);

        let users = FeatureTower::fit(&spec.query, 4, &query, 3, &mut rng).unwrap();
        // id, hashed occupation, age (column + buckets), time (column + buckets), history.
        assert_eq!(users.tower.encoders.len(), 7);
        let b = users.encode(4, &query);
        let FeatureBatch::Ids(ids) = &b[0] else {
            panic!()
        };
        assert_eq!(ids.ids, [1, 2, 1, 3]);
        let FeatureBatch::Ids(occ) = &b[1] else {
            panic!()
        };
        assert_eq!(occ.ids[0], occ.ids[2]);
        assert!(occ.ids.iter().all(|&i| i < 5));
        let FeatureBatch::Ids(age_buckets) = &b[3] else {
            panic!()
        };
        assert_eq!(age_buckets.ids, [0, 1, 0, 2]);
        let FeatureBatch::Ids(history) = &b[6] else {
            panic!()
        };
        // The last two items of each history.
        assert_eq!(history.offsets, [0, 0, 1, 3, 4]);
        assert_eq!(history.ids, [0, 2, 1, 2]);
        // Unknown users and occupations still encode (OOV, hashing).
        let stranger = |_: usize, k: Key<'_>| match k {
            Key::Column("user_id") => Column::Str("nobody".into()),
            other => query(0, other),
        };
        let FeatureBatch::Ids(ids) = &users.encode(1, &stranger)[0] else {
            panic!()
        };
        assert_eq!(ids.ids, [0]);
        assert_eq!(users.vectors(4, &query).unwrap().len(), 4 * 8);
    }

    #[test]
    fn a_restored_tower_gives_the_same_vectors() {
        let spec = TowersSpec::parse("t.toml", SPEC).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for (tower, rows, value) in [
            (&spec.query, 4, &query as &ValueFn),
            (&spec.candidate, 3, &item as &ValueFn),
        ] {
            let t = FeatureTower::fit(tower, rows, value, 3, &mut rng).unwrap();
            // Through JSON and back, as a model folder stores them.
            let state: Vec<InputState> =
                serde_json::from_str(&serde_json::to_string(&t.state()).unwrap()).unwrap();
            let tensors: std::collections::HashMap<_, _> = t
                .tensors()
                .into_iter()
                .map(|(n, s, d)| (n, (s, d)))
                .collect();
            let back = FeatureTower::restore(tower, state.clone(), &tensors).unwrap();
            assert_eq!(back, t);
            assert_eq!(
                back.vectors(rows, value).unwrap(),
                t.vectors(rows, value).unwrap()
            );
            let mut short = tensors.clone();
            short.remove("layers.0.bias");
            let e = FeatureTower::restore(tower, state.clone(), &short).unwrap_err();
            assert!(
                e.to_string().contains("parameter layers.0.bias is missing"),
                "{e}"
            );
            let mut wrong = tensors.clone();
            wrong.insert("layers.0.bias".into(), (vec![3], vec![0.0; 3]));
            let e = FeatureTower::restore(tower, state, &wrong).unwrap_err();
            assert!(e.to_string().contains("layers.0.bias: shape [3]"), "{e}");
        }
    }

    #[test]
    fn a_feature_without_values_is_a_clear_error() {
        let spec = TowersSpec::parse("t.toml", SPEC).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let no_genres = |r: usize, k: Key<'_>| match k {
            Key::Column("genres") => Column::Strs(vec![]),
            other => item(r, other),
        };
        let e = FeatureTower::fit(&spec.candidate, 3, &no_genres, 3, &mut rng).unwrap_err();
        assert!(
            e.to_string().contains("feature \"genres\": no values"),
            "{e}"
        );
        let no_years = |r: usize, k: Key<'_>| match k {
            Key::Column("year") => Column::Number(None),
            other => item(r, other),
        };
        let e = FeatureTower::fit(&spec.candidate, 3, &no_years, 3, &mut rng).unwrap_err();
        assert!(e.to_string().contains("feature \"year\""), "{e}");
    }
}
