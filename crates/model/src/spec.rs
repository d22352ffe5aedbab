//! Tower specifications: which features each tower reads and how (the `--towers FILE` TOML
//! format), checked against the columns a dataset offers, with errors that name the line of
//! the spec they are about.
//!
//! ```toml
//! temperature = 1.0        # optional; the softmax temperature
//! normalize = false        # optional; L2-normalise both towers' outputs
//!
//! [query]
//! layers = [64, 32]        # dense layers after the features (ReLU, the last linear)
//! features = [
//!   { kind = "id", column = "user_id", dim = 32 },
//!   { kind = "categorical", column = "occupation", dim = 8 },
//!   { kind = "numeric", column = "age", buckets = 10, dim = 8 },
//!   { kind = "timestamp", buckets = 1000, dim = 32 },
//!   { kind = "history", last = 50, pooling = "mean", dim = 32 },
//! ]
//!
//! [candidate]
//! layers = [32]
//! features = [
//!   { kind = "id", column = "item_id", dim = 32 },
//!   { kind = "text", column = "title", dim = 32, max_tokens = 10000 },
//!   { kind = "multi", column = "genres", dim = 16 },
//! ]
//! ```
//!
//! ```
//! use twotower_model::spec::{Columns, TowersSpec};
//! let spec = TowersSpec::parse(
//!     "towers.toml",
//!     "[query]\nfeatures = [{ kind = \"id\", column = \"user_id\", dim = 32 }]\n\
//!      [candidate]\nfeatures = [{ kind = \"id\", column = \"item_id\", dim = 32 }]\n",
//! )
//! .unwrap();
//! spec.check(&Columns::movielens_100k()).unwrap();
//! assert_eq!(spec.output_dim(), 32);
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::nn::Pooling;
use crate::{ModelError, Result};

/// How a bag of rows is pooled, as a spec writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PoolingSpec {
    #[default]
    Mean,
    Sum,
    /// A history's mean weighted by recency (see [`Pooling::Recency`]; `decay` in the spec).
    Recency,
}

impl PoolingSpec {
    /// The pooling, with `decay` for recency (default [`DEFAULT_DECAY`]).
    pub fn pooling(self, decay: Option<f32>) -> Pooling {
        match self {
            PoolingSpec::Mean => Pooling::Mean,
            PoolingSpec::Sum => Pooling::Sum,
            PoolingSpec::Recency => Pooling::Recency {
                decay: decay.unwrap_or(DEFAULT_DECAY),
            },
        }
    }
}

/// The recency decay of a history when the spec gives none.
pub const DEFAULT_DECAY: f32 = 0.8;

/// Which of the user's items a history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HistoryFrom {
    /// Those strictly before the example's time (a query per interaction).
    #[default]
    Past,
    /// Every training item of the user but the example's own (a query per user).
    Others,
    /// The user's first items by time (a query per user): what a new user gives when they
    /// sign up (`--split cold-users --history N`). A training example reads `last` of the
    /// user's first `within` items but its own, drawn by a rule fixed per example.
    First,
}

/// The largest sizes a tower spec and a model may ask for, checked before anything is
/// allocated (the tower spec reference in the README states them).
pub mod limits {
    /// A feature's `dim`, a dense layer's units, the towers' output width.
    pub const DIM: usize = 4096;
    /// A categorical feature's `hash_bins`.
    pub const HASH_BINS: usize = 1 << 24;
    /// A numeric or timestamp feature's `buckets`.
    pub const BUCKETS: usize = 100_000;
    /// A text feature's `max_tokens`.
    pub const MAX_TOKENS: usize = 1 << 24;
    /// A history's `last` and `within`.
    pub const HISTORY: usize = 10_000;
    /// Features of one tower.
    pub const FEATURES: usize = 64;
    /// Dense layers of one tower.
    pub const LAYERS: usize = 16;
    /// Parameters of one tower, tables sized by the data included (2^29: 2 GiB of
    /// float32, about 8 GiB with the optimizer's state and gradients).
    pub const PARAMETERS: usize = 1 << 29;
}

/// One feature of a tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum FeatureSpec {
    /// The row's id through a vocabulary (`StringLookup`), embedded.
    Id { column: String, dim: usize },
    /// A categorical column through a vocabulary, or hashed into `hash_bins` rows. A text
    /// column is one category per distinct text (TFRS keys movies by title this way).
    Categorical {
        column: String,
        dim: usize,
        #[serde(default)]
        hash_bins: Option<usize>,
    },
    /// A multi-valued categorical column (genres), embedded and pooled.
    Multi {
        column: String,
        dim: usize,
        #[serde(default)]
        pooling: PoolingSpec,
    },
    /// A text column: tokens (TextVectorization's defaults) embedded and mean-pooled.
    Text {
        column: String,
        dim: usize,
        #[serde(default)]
        max_tokens: Option<usize>,
    },
    /// A number, standardised; with `buckets` and `dim`, also bucketed and embedded.
    Numeric {
        column: String,
        #[serde(default)]
        buckets: Option<usize>,
        #[serde(default)]
        quantiles: bool,
        #[serde(default)]
        dim: Option<usize>,
    },
    /// The interaction's time, standardised and bucketed (TFRS: 1,000 equal-width buckets).
    Timestamp {
        #[serde(default = "default_time_buckets")]
        buckets: usize,
        dim: usize,
    },
    /// The user's items, the last `last` by time, pooled: with `from = "past"` (the default)
    /// those strictly before the example's time; with `from = "others"` all their training
    /// items but the example's own (for logs without time, and for a query that stands for
    /// the whole user); with `from = "first"` the first `last` by time instead (a new
    /// user's first movies), each training example drawing its `last` from the first
    /// `within` (default `last`) but its own.
    History {
        #[serde(default = "default_history")]
        last: usize,
        #[serde(default)]
        pooling: PoolingSpec,
        #[serde(default)]
        from: HistoryFrom,
        /// With `from = "first"`: how many of the user's first items a training example's
        /// history is drawn from (at least `last`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        within: Option<usize>,
        /// With `pooling = "recency"`: each older item weighs this much of the next.
        #[serde(default)]
        decay: Option<f32>,
        /// Read the items' rows of the candidate tower's `item_id` table (of the same
        /// `dim`) instead of a table of its own: one table, trained by both towers.
        #[serde(default)]
        share_candidate_table: bool,
        dim: usize,
    },
}

/// Each feature read on its own, so that a mistake in one is reported at its own place
/// (read as part of the list, serde's tagged enums lose the position).
fn features_one_by_one<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Spanned<FeatureSpec>>, D::Error> {
    let raw: Vec<Spanned<toml::Value>> = Vec::deserialize(d)?;
    raw.into_iter()
        .map(|v| {
            let span = v.span();
            FeatureSpec::deserialize(v.into_inner())
                .map(|f| Spanned::new(span.clone(), f))
                .map_err(|e| {
                    serde::de::Error::custom(AtOffset(span.start, e.message().to_string()))
                })
        })
        .collect()
}

/// An error message with the byte offset it is about, carried through serde as text
/// (`@OFFSET@message`) and turned into a line by [`TowersSpec::parse`].
struct AtOffset(usize, String);

impl std::fmt::Display for AtOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "@{}@{}", self.0, self.1)
    }
}

fn default_time_buckets() -> usize {
    1000
}

fn default_history() -> usize {
    50
}

impl FeatureSpec {
    /// The data column this feature reads (`None` for the time and the history, which come
    /// with every interaction).
    pub fn column(&self) -> Option<&str> {
        match self {
            FeatureSpec::Id { column, .. }
            | FeatureSpec::Categorical { column, .. }
            | FeatureSpec::Multi { column, .. }
            | FeatureSpec::Text { column, .. }
            | FeatureSpec::Numeric { column, .. } => Some(column),
            FeatureSpec::Timestamp { .. } | FeatureSpec::History { .. } => None,
        }
    }

    /// Columns this feature adds to the tower's input.
    pub fn width(&self) -> usize {
        match self {
            FeatureSpec::Id { dim, .. }
            | FeatureSpec::Categorical { dim, .. }
            | FeatureSpec::Multi { dim, .. }
            | FeatureSpec::Text { dim, .. }
            | FeatureSpec::History { dim, .. } => *dim,
            FeatureSpec::Numeric { dim, .. } => 1 + dim.unwrap_or(0),
            FeatureSpec::Timestamp { dim, .. } => 1 + dim,
        }
    }
}

/// One tower: its features, then optional dense layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowerSpec {
    #[serde(deserialize_with = "features_one_by_one")]
    pub features: Vec<Spanned<FeatureSpec>>,
    #[serde(default)]
    pub layers: Option<Spanned<Vec<usize>>>,
}

impl TowerSpec {
    /// The dense layers' sizes (none by default).
    pub fn layer_sizes(&self) -> &[usize] {
        self.layers.as_ref().map_or(&[], |l| l.get_ref().as_slice())
    }

    /// Width of the tower's output: the last layer's, else the features' together.
    pub fn output_dim(&self) -> usize {
        self.layer_sizes()
            .last()
            .copied()
            .unwrap_or_else(|| self.features.iter().map(|f| f.get_ref().width()).sum())
    }
}

/// Both towers and how their outputs meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TowersSpec {
    pub query: TowerSpec,
    pub candidate: TowerSpec,
    /// L2-normalise both outputs before the dot product.
    #[serde(default)]
    pub normalize: bool,
    /// Softmax temperature (logits are divided by it).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// The columns of `--user-features FILE` the query tower may read, with their kinds.
    #[serde(default)]
    pub user_columns: Option<Spanned<BTreeMap<String, ColumnKind>>>,
    /// The columns of `--item-features FILE` the candidate tower may read.
    #[serde(default)]
    pub item_columns: Option<Spanned<BTreeMap<String, ColumnKind>>>,
    /// The file the spec came from and its text, for errors that name lines.
    #[serde(skip)]
    source: Source,
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Source {
    name: String,
    text: String,
}

/// The columns a dataset offers each tower, with their kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub query: Vec<(String, ColumnKind)>,
    pub candidate: Vec<(String, ColumnKind)>,
    /// Whether interactions have a time (the timestamp and a past history need one).
    pub time: bool,
}

/// What a column holds. A feature file's columns are declared as `categorical`, `multi`
/// (`|`-separated categories), `text` or `number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    #[serde(skip)]
    Id,
    Categorical,
    #[serde(rename = "multi")]
    MultiCategorical,
    Text,
    Number,
}

impl Columns {
    /// MovieLens 100K: users (id, age, gender, occupation, zip) and movies (id, title,
    /// genres, year).
    pub fn movielens_100k() -> Self {
        use ColumnKind::*;
        let owned = |v: &[(&str, ColumnKind)]| v.iter().map(|&(c, k)| (c.to_string(), k)).collect();
        Columns {
            query: owned(&[
                ("user_id", Id),
                ("age", Number),
                ("gender", Categorical),
                ("occupation", Categorical),
                ("zip", Categorical),
            ]),
            candidate: owned(&[
                ("item_id", Id),
                ("title", Text),
                ("genres", MultiCategorical),
                ("year", Number),
            ]),
            time: true,
        }
    }

    fn kind(&self, query: bool, column: &str) -> Option<ColumnKind> {
        let side = if query { &self.query } else { &self.candidate };
        side.iter().find(|(c, _)| c == column).map(|&(_, k)| k)
    }
}

impl TowersSpec {
    /// Parses a spec; `name` (the file) and the line are named in errors.
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let mut spec: TowersSpec = toml::from_str(text).map_err(|e| {
            // A feature's own error carries its position (see `features_one_by_one`).
            let inner = e
                .message()
                .strip_prefix('@')
                .and_then(|m| m.split_once('@'));
            let (offset, message) = match inner.and_then(|(o, m)| Some((o.parse().ok()?, m))) {
                Some((o, m)) => (Some(o), m.to_string()),
                None => (e.span().map(|s| s.start), e.message().to_string()),
            };
            let at = offset
                .map(|o| format!(":{}", line_of(text, o)))
                .unwrap_or_default();
            ModelError::Spec(format!("{name}{at}: {message}"))
        })?;
        spec.source = Source {
            name: name.to_string(),
            text: text.to_string(),
        };
        spec.check_sizes()?;
        Ok(spec)
    }

    /// Every size the spec asks for within [`limits`], so that nothing it asks for can
    /// exhaust memory or time before training starts (vocabulary-sized tables are bounded
    /// again by [`limits::PARAMETERS`] once the data is known).
    fn check_sizes(&self) -> Result<()> {
        use limits::*;
        for (side, tower) in [("query", &self.query), ("candidate", &self.candidate)] {
            if tower.features.len() > FEATURES {
                return Err(ModelError::Spec(format!(
                    "{}: the {side} tower has {} features, over the limit of {FEATURES}",
                    self.source.name,
                    tower.features.len()
                )));
            }
            for f in &tower.features {
                let over = |what: &str, v: usize, max: usize| {
                    (v > max).then(|| {
                        self.error(f.span(), format!("{what} is {v}, over the limit of {max}"))
                    })
                };
                let problem = match f.get_ref() {
                    FeatureSpec::Id { dim, .. } | FeatureSpec::Multi { dim, .. } => {
                        over("dim", *dim, DIM)
                    }
                    FeatureSpec::Categorical { dim, hash_bins, .. } => over("dim", *dim, DIM)
                        .or_else(|| over("hash_bins", hash_bins.unwrap_or(0), HASH_BINS)),
                    FeatureSpec::Text {
                        dim, max_tokens, ..
                    } => over("dim", *dim, DIM)
                        .or_else(|| over("max_tokens", max_tokens.unwrap_or(0), MAX_TOKENS)),
                    FeatureSpec::Numeric { buckets, dim, .. } => over("dim", dim.unwrap_or(0), DIM)
                        .or_else(|| over("buckets", buckets.unwrap_or(0), BUCKETS)),
                    FeatureSpec::Timestamp { buckets, dim } => {
                        over("dim", *dim, DIM).or_else(|| over("buckets", *buckets, BUCKETS))
                    }
                    FeatureSpec::History {
                        last, within, dim, ..
                    } => over("dim", *dim, DIM)
                        .or_else(|| over("last", *last, HISTORY))
                        .or_else(|| over("within", within.unwrap_or(0), HISTORY)),
                };
                if let Some(e) = problem {
                    return Err(e);
                }
            }
            if let Some(layers) = &tower.layers {
                let sizes = layers.get_ref();
                let bad = if sizes.len() > LAYERS {
                    Some(format!(
                        "{} layers, over the limit of {LAYERS}",
                        sizes.len()
                    ))
                } else {
                    sizes
                        .iter()
                        .find(|&&n| n == 0 || n > DIM)
                        .map(|n| format!("a layer of {n} units, outside 1 to {DIM}"))
                };
                if let Some(m) = bad {
                    return Err(self.error(layers.span(), format!("the {side} tower has {m}")));
                }
            }
        }
        Ok(())
    }

    /// The spec's text as it was parsed (what a model folder stores).
    pub fn text(&self) -> &str {
        &self.source.text
    }

    /// Reads and parses the spec file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            ModelError::Spec(format!(
                "{}:{line}: not UTF-8 text (byte {} of the file); save the spec as UTF-8",
                path.display(),
                good.len() + 1
            ))
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// The columns declared for the users' (`user = true`) or the items' feature file.
    pub fn declared(&self, user: bool) -> Vec<(String, ColumnKind)> {
        let side = if user {
            &self.user_columns
        } else {
            &self.item_columns
        };
        side.as_ref().map_or_else(Vec::new, |d| {
            d.get_ref().iter().map(|(c, &k)| (c.clone(), k)).collect()
        })
    }

    /// An error about the declared columns of one side, naming the line they start at.
    pub fn declared_error(&self, user: bool, message: String) -> ModelError {
        let side = if user {
            &self.user_columns
        } else {
            &self.item_columns
        };
        match side {
            Some(d) => self.error(d.span(), message),
            None => ModelError::Spec(format!("{}: {message}", self.source.name)),
        }
    }

    /// `base` with the declared columns of the feature files added; a declared column
    /// replaces one of `base` of the same name (declaring an id column is an error naming
    /// the spec's line).
    pub fn with_declared(&self, mut base: Columns) -> Result<Columns> {
        for user in [true, false] {
            let which = if user { "user_columns" } else { "item_columns" };
            for (column, kind) in self.declared(user) {
                if column.is_empty() || column.chars().any(char::is_control) {
                    return Err(self.declared_error(
                        user,
                        format!(
                            "{which}: the column name {} is empty or holds a tab, line break \
                             or other control character",
                            twotower_data::shown(&column)
                        ),
                    ));
                }
                let side = if user {
                    &mut base.query
                } else {
                    &mut base.candidate
                };
                if side
                    .iter()
                    .any(|(c, k)| *c == column && *k == ColumnKind::Id)
                {
                    return Err(self.declared_error(
                        user,
                        format!(
                            "{which}: {} is the id column, which the log gives; \
                             name the file's column otherwise",
                            twotower_data::shown(&column)
                        ),
                    ));
                }
                // A declared column is that column: it replaces one of the same name the
                // data offers (MovieLens's `age`, a catalogue's `genres`).
                side.retain(|(c, _)| *c != column);
                side.push((column, kind));
            }
        }
        Ok(base)
    }

    /// Width of both towers' outputs (checked equal by [`TowersSpec::check`]).
    pub fn output_dim(&self) -> usize {
        self.candidate.output_dim()
    }

    fn error(&self, span: Range<usize>, message: String) -> ModelError {
        ModelError::Spec(format!(
            "{}:{}: {message}",
            self.source.name,
            line_of(&self.source.text, span.start)
        ))
    }

    /// The candidate tower's `item_id` feature: its position and its table's width.
    pub fn candidate_item_id(&self) -> Option<(usize, usize)> {
        self.candidate
            .features
            .iter()
            .enumerate()
            .find_map(|(i, f)| match f.get_ref() {
                FeatureSpec::Id { column, dim } if column == "item_id" => Some((i, *dim)),
                _ => None,
            })
    }

    /// A history that shares the candidate tower's table needs that table: an `id`
    /// feature on `item_id` of the history's `dim`.
    fn check_shared(&self) -> Result<()> {
        for f in &self.query.features {
            let FeatureSpec::History {
                share_candidate_table: true,
                dim,
                ..
            } = f.get_ref()
            else {
                continue;
            };
            match self.candidate_item_id() {
                None => {
                    return Err(self.error(
                        f.span(),
                        "share_candidate_table needs an id feature on item_id in the candidate \
                         tower"
                            .into(),
                    ))
                }
                Some((_, d)) if d != *dim => {
                    return Err(self.error(
                        f.span(),
                        format!(
                            "share_candidate_table: the history's dim is {dim} but the \
                             candidate tower's item_id table has dim {d}; they must be equal"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Checks the spec against the columns a dataset offers: every column exists on its
    /// side and has a kind the feature can read, sizes are positive, each tower has one id
    /// feature at most, history is a query feature, and both towers end in the same width.
    pub fn check(&self, columns: &Columns) -> Result<()> {
        for (query, tower) in [(true, &self.query), (false, &self.candidate)] {
            let side = if query { "query" } else { "candidate" };
            if tower.features.is_empty() {
                return Err(ModelError::Spec(format!(
                    "{}: the {side} tower has no features",
                    self.source.name
                )));
            }
            let mut ids = 0;
            for f in &tower.features {
                let (spec, span) = (f.get_ref(), f.span());
                let fail = |m: String| Err(self.error(span.clone(), m));
                if let Some(column) = spec.column() {
                    let Some(kind) = columns.kind(query, column) else {
                        let known: Vec<&str> = if query {
                            &columns.query
                        } else {
                            &columns.candidate
                        }
                        .iter()
                        .map(|(c, _)| c.as_str())
                        .collect();
                        return fail(format!(
                            "the {side} tower has no column {} (it has {})",
                            twotower_data::shown(column),
                            known.join(", ")
                        ));
                    };
                    let fits = matches!(
                        (spec, kind),
                        (FeatureSpec::Id { .. }, ColumnKind::Id)
                            | (
                                FeatureSpec::Categorical { .. },
                                ColumnKind::Categorical
                                    | ColumnKind::Id
                                    | ColumnKind::Number
                                    | ColumnKind::Text
                            )
                            | (FeatureSpec::Multi { .. }, ColumnKind::MultiCategorical)
                            | (FeatureSpec::Text { .. }, ColumnKind::Text)
                            | (FeatureSpec::Numeric { .. }, ColumnKind::Number)
                    );
                    if !fits {
                        return fail(format!(
                            "column {} holds {kind:?} values, which this feature cannot read",
                            twotower_data::shown(column)
                        ));
                    }
                }
                match spec {
                    FeatureSpec::Id { .. } => ids += 1,
                    FeatureSpec::History { .. } if !query => {
                        return fail("history is a feature of the query tower".into())
                    }
                    FeatureSpec::Categorical {
                        hash_bins: Some(0), ..
                    } => return fail("hash_bins must be at least 1".into()),
                    FeatureSpec::Text {
                        max_tokens: Some(m),
                        ..
                    } if *m < 2 => {
                        return fail(
                            "max_tokens must be at least 2 (the OOV token and one more)".into(),
                        )
                    }
                    FeatureSpec::Numeric {
                        buckets: Some(b),
                        dim: None,
                        ..
                    } if *b > 0 => {
                        return fail("bucketed numbers need a dim for their embedding".into())
                    }
                    FeatureSpec::Numeric {
                        buckets: Some(0), ..
                    }
                    | FeatureSpec::Timestamp { buckets: 0, .. } => {
                        return fail("buckets must be at least 1".into())
                    }
                    FeatureSpec::History { last: 0, .. } => {
                        return fail("last must be at least 1".into())
                    }
                    FeatureSpec::History { decay: Some(d), .. } if !(*d > 0.0 && *d <= 1.0) => {
                        return fail(format!("decay must be in (0, 1], got {d}"))
                    }
                    FeatureSpec::History {
                        decay: Some(_),
                        pooling: PoolingSpec::Mean | PoolingSpec::Sum,
                        ..
                    } => return fail("decay applies to pooling = \"recency\"".into()),
                    FeatureSpec::Multi {
                        pooling: PoolingSpec::Recency,
                        ..
                    } => {
                        return fail(
                            "recency pooling is for a history (its items are in time order)".into(),
                        )
                    }
                    FeatureSpec::Timestamp { .. } if !columns.time => {
                        return fail("the data has no time for a timestamp feature".into())
                    }
                    FeatureSpec::History {
                        from: from @ (HistoryFrom::Past | HistoryFrom::First),
                        ..
                    } if !columns.time => {
                        return fail(format!(
                            "the data has no time, so no history is {}; use from = \"others\" \
                             (all the user's other items)",
                            if *from == HistoryFrom::Past {
                                "strictly before an example"
                            } else {
                                "a user's first"
                            }
                        ))
                    }
                    FeatureSpec::History {
                        within: Some(_),
                        from: HistoryFrom::Past | HistoryFrom::Others,
                        ..
                    } => return fail("within applies to from = \"first\"".into()),
                    FeatureSpec::History {
                        within: Some(w),
                        last,
                        ..
                    } if w < last => {
                        return fail(format!("within ({w}) must be at least last ({last})"))
                    }
                    _ => {}
                }
                let dim = match spec {
                    FeatureSpec::Numeric { dim, .. } => dim.unwrap_or(1),
                    _ => spec.width(),
                };
                if dim == 0 {
                    return fail("dim must be at least 1".into());
                }
            }
            if ids > 1 {
                return Err(ModelError::Spec(format!(
                    "{}: the {side} tower has {ids} id features; one at most",
                    self.source.name
                )));
            }
            if let Some(l) = tower.layers.as_ref().filter(|l| l.get_ref().contains(&0)) {
                return Err(self.error(l.span(), "layer sizes must be at least 1".into()));
            }
        }
        self.check_shared()?;
        let (q, c) = (self.query.output_dim(), self.candidate.output_dim());
        if q != c {
            return Err(ModelError::Spec(format!(
                "{}: the query tower ends in {q} values and the candidate tower in {c}; their \
                 dot product needs the same width (set the last layer of both)",
                self.source.name
            )));
        }
        if let Some(t) = self.temperature {
            if !(t.is_finite() && t > 0.0) {
                return Err(ModelError::Spec(format!(
                    "{}: temperature must be a positive number, got {t}",
                    self.source.name
                )));
            }
        }
        Ok(())
    }
}

/// The towers of TFRS's context-features tutorial: user id and the time (1,000 equal-width
/// buckets and the normalised value) → Dense(32); title id and title text → Dense(32).
const TFRS_CONTEXT: &str = r#"# The towers of TFRS's context-features tutorial.
[query]
layers = [32]
features = [
  { kind = "id", column = "user_id", dim = 32 },
  { kind = "timestamp", buckets = 1000, dim = 32 },
]
[candidate]
layers = [32]
features = [
  { kind = "categorical", column = "title", dim = 32 },
  { kind = "text", column = "title", dim = 32, max_tokens = 10000 },
]
"#;

impl TowersSpec {
    /// The towers of a preset that has them: `tfrs-context`, and `tfrs-deep` (the same
    /// features, layers [64, 32]); without `timestamps`, the query has no time feature (the
    /// tutorials' baseline). `None` for presets of id towers.
    pub fn preset(name: &str, timestamps: bool) -> Option<Result<Self>> {
        let mut text = match name {
            "tfrs-context" => TFRS_CONTEXT.to_string(),
            "tfrs-deep" => TFRS_CONTEXT
                .replace("layers = [32]", "layers = [64, 32]")
                .replace("context-features", "deep-retrieval"),
            _ => return None,
        };
        if !timestamps {
            text = text.replace(
                "  { kind = \"timestamp\", buckets = 1000, dim = 32 },\n",
                "",
            );
        }
        Some(Self::parse(&format!("preset {name}"), &text))
    }

    /// The towers of the `default` preset, by what the data offers: with interaction times,
    /// the user's id and their last 5 items before each interaction
    /// (`towers/movielens-history.toml`); without, the user's id and 50 of their other
    /// items (`towers/lastfm-history.toml`). Both against the item's id.
    pub fn default_for(has_time: bool) -> Result<Self> {
        if has_time {
            Self::parse(
                "preset default (towers/movielens-history.toml)",
                include_str!("../../../towers/movielens-history.toml"),
            )
        } else {
            Self::parse(
                "preset default (towers/lastfm-history.toml)",
                include_str!("../../../towers/lastfm-history.toml"),
            )
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"temperature = 0.1
[query]
layers = [64, 32]
features = [
  { kind = "id", column = "user_id", dim = 32 },
  { kind = "categorical", column = "occupation", dim = 8 },
  { kind = "numeric", column = "age", buckets = 10, dim = 8 },
  { kind = "timestamp", dim = 32 },
  { kind = "history", last = 20, dim = 32 },
]

[candidate]
layers = [32]
features = [
  { kind = "id", column = "item_id", dim = 32 },
  { kind = "text", column = "title", dim = 32, max_tokens = 5000 },
  { kind = "multi", column = "genres", dim = 16, pooling = "sum" },
  { kind = "numeric", column = "year" },
]
"#;

    fn err(text: &str) -> String {
        match TowersSpec::parse("t.toml", text) {
            Err(e) => e.to_string(),
            Ok(s) => s
                .check(&Columns::movielens_100k())
                .expect_err("the spec should be refused")
                .to_string(),
        }
    }

    #[test]
    fn a_full_spec_parses_with_defaults_and_checks() {
        let s = TowersSpec::parse("t.toml", GOOD).unwrap();
        s.check(&Columns::movielens_100k()).unwrap();
        assert_eq!(s.output_dim(), 32);
        assert_eq!(s.temperature, Some(0.1));
        assert!(!s.normalize);
        let q: Vec<&FeatureSpec> = s.query.features.iter().map(|f| f.get_ref()).collect();
        assert_eq!(
            q[3],
            &FeatureSpec::Timestamp {
                buckets: 1000,
                dim: 32
            }
        );
        assert!(matches!(
            q[4],
            FeatureSpec::History {
                last: 20,
                pooling: PoolingSpec::Mean,
                from: HistoryFrom::Past,
                ..
            }
        ));
        // Widths: 32 + 8 + (1 + 8) + (1 + 32) + 32 into the layers.
        let widths: usize = q.iter().map(|f| f.width()).sum();
        assert_eq!(widths, 114);
    }

    #[test]
    fn presets_have_the_tutorials_towers() {
        let c = TowersSpec::preset("tfrs-context", true).unwrap().unwrap();
        c.check(&Columns::movielens_100k()).unwrap();
        assert_eq!(c.query.features.len(), 2);
        assert_eq!(c.query.layer_sizes(), [32]);
        let base = TowersSpec::preset("tfrs-context", false).unwrap().unwrap();
        assert_eq!(base.query.features.len(), 1);
        let deep = TowersSpec::preset("tfrs-deep", true).unwrap().unwrap();
        assert_eq!(deep.candidate.layer_sizes(), [64, 32]);
        assert!(TowersSpec::preset("tfrs", true).is_none());
        let cfg = crate::TrainConfig::preset("tfrs-deep").unwrap();
        assert_eq!((cfg.batch_size, cfg.epochs), (2048, 300));
    }

    #[test]
    fn mistakes_name_the_line() {
        let unknown = GOOD.replace("\"occupation\"", "\"job\"");
        let e = err(&unknown);
        assert!(
            e.starts_with("t.toml:6: the query tower has no column \"job\""),
            "{e}"
        );
        assert!(e.contains("occupation"), "{e}");
        let wrong = GOOD.replace("column = \"title\"", "column = \"genres\"");
        let e = err(&wrong);
        assert!(
            e.starts_with("t.toml:16:") && e.contains("MultiCategorical"),
            "{e}"
        );
        let e = err(&GOOD.replace("kind = \"multi\"", "kind = \"bag\""));
        assert!(e.starts_with("t.toml:17:") && e.contains("bag"), "{e}");
        let e = err(&GOOD.replace("max_tokens = 5000", "max_tokens = 1"));
        assert!(
            e.starts_with("t.toml:16:") && e.contains("max_tokens"),
            "{e}"
        );
        let e = err(&GOOD.replace("dim = 16,", "dims = 16,"));
        assert!(e.starts_with("t.toml:17:") && e.contains("dims"), "{e}");
        let e = err(&GOOD.replace("layers = [32]", "layers = [16]"));
        assert!(
            e.contains("ends in 32 values and the candidate tower in 16"),
            "{e}"
        );
        let e = err(&GOOD.replace("layers = [64, 32]", "layers = [0, 32]"));
        assert!(e.starts_with("t.toml:3:"), "{e}");
        let e = err(&GOOD.replace(
            "{ kind = \"numeric\", column = \"year\" }",
            "{ kind = \"history\", dim = 8 }",
        ));
        assert!(
            e.starts_with("t.toml:18:") && e.contains("query tower"),
            "{e}"
        );
        let e = err(&GOOD.replace(
            "{ kind = \"timestamp\", dim = 32 }",
            "{ kind = \"id\", column = \"user_id\", dim = 1 }",
        ));
        assert!(e.contains("2 id features"), "{e}");
        let e = err(&GOOD.replace("temperature = 0.1", "temperature = -1.0"));
        assert!(e.contains("temperature must be a positive number"), "{e}");
        let e = err("[query]\nfeatures = []\n[candidate]\nfeatures = []\n");
        assert!(e.contains("the query tower has no features"), "{e}");
        let e = err(&GOOD.replace("last = 20,", "last = 20, decay = 0.5,"));
        assert!(e.starts_with("t.toml:9:") && e.contains("recency"), "{e}");
        let e = err(&GOOD.replace(
            "last = 20,",
            "last = 20, pooling = \"recency\", decay = 1.5,",
        ));
        assert!(e.starts_with("t.toml:9:") && e.contains("(0, 1]"), "{e}");
        let e = err(&GOOD.replace("pooling = \"sum\"", "pooling = \"recency\""));
        assert!(e.starts_with("t.toml:17:") && e.contains("history"), "{e}");
        let recency = GOOD.replace(
            "last = 20,",
            "last = 20, pooling = \"recency\", decay = 0.7,",
        );
        TowersSpec::parse("t.toml", &recency)
            .unwrap()
            .check(&Columns::movielens_100k())
            .unwrap();
        let e = err(&GOOD.replace("last = 20,", "last = 20, from = \"later\","));
        assert!(e.starts_with("t.toml:9:") && e.contains("later"), "{e}");
        let e = err(&GOOD.replace("last = 20,", "last = 20, within = 40,"));
        assert!(
            e.starts_with("t.toml:9:") && e.contains("from = \"first\""),
            "{e}"
        );
        let e = err(&GOOD.replace("last = 20,", "last = 20, from = \"first\", within = 10,"));
        assert!(
            e.starts_with("t.toml:9:") && e.contains("within (10)"),
            "{e}"
        );
        let first = GOOD.replace("last = 20,", "last = 20, from = \"first\", within = 40,");
        TowersSpec::parse("t.toml", &first)
            .unwrap()
            .check(&Columns::movielens_100k())
            .unwrap();
    }

    /// A history may share the candidate's item table only when there is one of its width.
    #[test]
    fn declared_column_names_are_checked_and_quoted_shortly() {
        let declare = |name: &str| {
            let text = format!(
                "[user_columns]\n{name:?} = \"categorical\"\n[query]\nfeatures = [{{ kind = \
                 \"id\", column = \"user_id\", dim = 4 }}]\n[candidate]\nfeatures = [{{ \
                 kind = \"id\", column = \"item_id\", dim = 4 }}]\n"
            );
            TowersSpec::parse("t.toml", &text)
                .unwrap()
                .with_declared(Columns::movielens_100k())
        };
        // A tab or line break would make the saved feature table unreadable.
        for bad in ["a\tb", "a\nb", ""] {
            let e = declare(bad).unwrap_err().to_string();
            assert!(
                e.contains("t.toml:1") && e.contains("control character"),
                "{e}"
            );
        }
        // The id column is the log's; `age` replaces MovieLens's field.
        let e = declare("user_id").unwrap_err().to_string();
        assert!(e.contains("id column"), "{e}");
        let c = declare("age").unwrap();
        assert_eq!(c.kind(true, "age"), Some(ColumnKind::Categorical));
        // A megabyte of name is quoted in 80 characters, not echoed whole.
        let long = "x".repeat(1 << 20);
        let text = GOOD.replace("\"occupation\"", &format!("{long:?}"));
        let e = err(&text);
        assert!(
            e.len() < 1000 && e.contains("1048576 characters"),
            "{}",
            e.len()
        );
    }

    #[test]
    fn a_shared_table_must_exist_and_fit() {
        let shared = GOOD.replace("last = 20,", "last = 20, share_candidate_table = true,");
        TowersSpec::parse("t.toml", &shared)
            .unwrap()
            .check(&Columns::movielens_100k())
            .unwrap();
        let e = err(&shared.replace(
            "{ kind = \"id\", column = \"item_id\", dim = 32 }",
            "{ kind = \"id\", column = \"item_id\", dim = 16 }",
        ));
        assert!(
            e.starts_with("t.toml:9:") && e.contains("dim is 32") && e.contains("dim 16"),
            "{e}"
        );
        let e = err(&shared.replace("  { kind = \"id\", column = \"item_id\", dim = 32 },\n", ""));
        assert!(e.starts_with("t.toml:9:") && e.contains("item_id"), "{e}");
    }

    /// The spec files the README's figures come from stay valid.
    #[test]
    fn the_repository_specs_check() {
        let ml = Columns::movielens_100k();
        let mut lastfm = Columns::movielens_100k();
        lastfm.time = false;
        lastfm.query.retain(|(c, _)| c == "user_id");
        for (name, text, columns) in [
            (
                "movielens-history",
                include_str!("../../../towers/movielens-history.toml"),
                &ml,
            ),
            (
                "movielens-features",
                include_str!("../../../towers/movielens-features.toml"),
                &ml,
            ),
            (
                "movielens-features-history",
                include_str!("../../../towers/movielens-features-history.toml"),
                &ml,
            ),
            (
                "movielens-cold",
                include_str!("../../../towers/movielens-cold.toml"),
                &ml,
            ),
            (
                "movielens-visitor",
                include_str!("../../../towers/movielens-visitor.toml"),
                &ml,
            ),
            (
                "lastfm-history",
                include_str!("../../../towers/lastfm-history.toml"),
                &lastfm,
            ),
            (
                "lastfm-text",
                include_str!("../../../towers/lastfm-text.toml"),
                &lastfm,
            ),
        ] {
            let spec = TowersSpec::parse(name, text).unwrap();
            spec.check(columns).unwrap();
            assert_eq!(spec.output_dim(), 64, "{name}");
        }
    }

    #[test]
    fn data_without_time_takes_only_the_others_history() {
        let mut untimed = Columns::movielens_100k();
        untimed.time = false;
        let spec = TowersSpec::parse("t.toml", GOOD).unwrap();
        let e = spec.check(&untimed).unwrap_err().to_string();
        assert!(e.starts_with("t.toml:8:") && e.contains("no time"), "{e}");
        let others = GOOD
            .replace("  { kind = \"timestamp\", dim = 32 },\n", "")
            .replace("last = 20,", "last = 20, from = \"others\",");
        TowersSpec::parse("t.toml", &others)
            .unwrap()
            .check(&untimed)
            .unwrap();
        let past = GOOD.replace("  { kind = \"timestamp\", dim = 32 },\n", "");
        let e = TowersSpec::parse("t.toml", &past)
            .unwrap()
            .check(&untimed)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:8:") && e.contains("from = \"others\""),
            "{e}"
        );
        let e = TowersSpec::parse("t.toml", &past.replace("last = 20,", "from = \"first\","))
            .unwrap()
            .check(&untimed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a user's first"), "{e}");
    }
}
