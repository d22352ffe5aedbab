//! Synthetic interaction logs shaped like recommender data, for benchmarks at any scale.
//!
//! Items belong to latent topics and have power-law popularity; users have power-law
//! activity and two favourite topics. Each interaction picks a user by activity, then, with
//! probability `affinity`, an item of one of the user's topics (by popularity within the
//! topic), otherwise an item by global popularity. A model that learns the user → topic
//! structure beats popularity; popularity alone is a strong baseline, as in real logs.
//!
//! The log is written in the MovieLens CSV layout (`ratings.csv`, `movies.csv`), so every
//! command reads it with `--dataset movielens-csv --data-dir DIR`. Generation is split into
//! chunks with their own seeds, run on all cores, and is identical for a seed whatever the
//! number of threads.

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{DataError, Result};

/// What a synthetic log folder is, for the `--out` rule: `synth.json` (format
/// `twotower-synth`, the generator's settings) beside the two CSV files.
pub const FOLDER: twotower_folder::Kind = twotower_folder::Kind::new(
    "a synthetic log folder",
    "synth.json",
    "twotower-synth",
    &["ratings.csv", "movies.csv"],
);

/// The shape of a synthetic log.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub users: u32,
    pub items: u32,
    pub interactions: u64,
    pub seed: u64,
    /// Number of latent topics.
    pub topics: u32,
    /// Probability that an interaction follows the user's taste rather than popularity.
    pub affinity: f64,
    /// Exponent of the item popularity power law.
    pub zipf: f64,
}

impl SynthConfig {
    /// Defaults for the structure: 64 topics, affinity 0.7, Zipf exponent 1.0.
    pub fn new(users: u32, items: u32, interactions: u64, seed: u64) -> Self {
        SynthConfig {
            users,
            items,
            interactions,
            seed,
            topics: 64,
            affinity: 0.7,
            zipf: 1.0,
        }
    }
}

const CHUNK: u64 = 1 << 18;
/// First timestamp of a synthetic log (2020-01-01); one second per interaction.
const T0: i64 = 1_577_836_800;

/// Walker's alias table: O(1) sampling from fixed weights.
struct AliasTable {
    ids: Vec<u32>,
    prob: Vec<f32>,
    alias: Vec<u32>,
}

impl AliasTable {
    fn new(ids: Vec<u32>, weight: impl Fn(u32) -> f64) -> Self {
        let n = ids.len();
        let w: Vec<f64> = ids.iter().map(|&i| weight(i)).collect();
        let total: f64 = w.iter().sum();
        let mut scaled: Vec<f64> = w.iter().map(|x| x * n as f64 / total).collect();
        let mut prob = vec![1.0f32; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            prob[s] = scaled[s] as f32;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        AliasTable { ids, prob, alias }
    }

    fn sample(&self, rng: &mut impl Rng) -> u32 {
        let i = rng.gen_range(0..self.ids.len());
        let j = if rng.gen::<f32>() < self.prob[i] {
            i
        } else {
            self.alias[i] as usize
        };
        self.ids[j]
    }
}

/// A power law over a random permutation of `0..n`: weight of `i` is `1 / (rank(i) + 1)^s`.
fn power_law_ranks(n: u32, rng: &mut impl Rng) -> Vec<u32> {
    let mut rank: Vec<u32> = (0..n).collect();
    for i in (1..rank.len()).rev() {
        rank.swap(i, rng.gen_range(0..=i));
    }
    rank
}

/// Writes `ratings.csv`, `movies.csv` and `synth.json` into `out`, atomically; an
/// existing `out` is replaced only when it is a synthetic log folder (see [`FOLDER`]).
pub fn write_synth(cfg: &SynthConfig, out: &Path) -> Result<()> {
    if cfg.users == 0 || cfg.items == 0 || cfg.interactions == 0 || cfg.topics == 0 {
        return Err(DataError::Invalid(
            "users, items, interactions and topics must all be at least 1".into(),
        ));
    }
    if !(0.0..=1.0).contains(&cfg.affinity) {
        return Err(DataError::Invalid(
            "affinity must be between 0 and 1".into(),
        ));
    }
    let topics = cfg.topics.min(cfg.items);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let item_rank = power_law_ranks(cfg.items, &mut rng);
    let user_rank = power_law_ranks(cfg.users, &mut rng);
    let item_topic: Vec<u32> = (0..cfg.items).map(|_| rng.gen_range(0..topics)).collect();
    let user_topics: Vec<[u32; 2]> = (0..cfg.users)
        .map(|_| [rng.gen_range(0..topics), rng.gen_range(0..topics)])
        .collect();
    let item_w = |i: u32| 1.0 / ((item_rank[i as usize] + 1) as f64).powf(cfg.zipf);
    let global = AliasTable::new((0..cfg.items).collect(), item_w);
    let mut by_topic: Vec<Vec<u32>> = vec![Vec::new(); topics as usize];
    for i in 0..cfg.items {
        by_topic[item_topic[i as usize] as usize].push(i);
    }
    let per_topic: Vec<Option<AliasTable>> = by_topic
        .into_iter()
        .map(|ids| (!ids.is_empty()).then(|| AliasTable::new(ids, item_w)))
        .collect();
    let users = AliasTable::new((0..cfg.users).collect(), |u| {
        1.0 / ((user_rank[u as usize] + 1) as f64).sqrt()
    });

    twotower_folder::check_replaceable(out, &FOLDER)?;
    let write = |tmp: &Path| -> Result<()> {
        let ratings = tmp.join("ratings.csv");
        let mut w = std::io::BufWriter::with_capacity(
            1 << 20,
            std::fs::File::create(&ratings).map_err(|e| DataError::io(&ratings, e))?,
        );
        w.write_all(b"userId,movieId,rating,timestamp\n")
            .map_err(|e| DataError::io(&ratings, e))?;
        let chunks = cfg.interactions.div_ceil(CHUNK);
        // Generate a few chunks per core at a time, write them in order.
        let wave = (rayon::current_num_threads() * 4) as u64;
        for first in (0..chunks).step_by(wave as usize) {
            let bufs: Vec<Vec<u8>> = (first..(first + wave).min(chunks))
                .into_par_iter()
                .map(|c| {
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        cfg.seed ^ (c + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    let start = c * CHUNK;
                    let end = (start + CHUNK).min(cfg.interactions);
                    let mut buf = Vec::with_capacity(((end - start) * 28) as usize);
                    let mut num = itoa::Buffer::new();
                    for row in start..end {
                        let u = users.sample(&mut rng);
                        let item = if rng.gen::<f64>() < cfg.affinity {
                            let t = user_topics[u as usize][rng.gen_range(0..2)];
                            match &per_topic[t as usize] {
                                Some(c) => c.sample(&mut rng),
                                None => global.sample(&mut rng),
                            }
                        } else {
                            global.sample(&mut rng)
                        };
                        let rating = rng.gen_range(1..=5u32);
                        buf.extend_from_slice(num.format(u + 1).as_bytes());
                        buf.push(b',');
                        buf.extend_from_slice(num.format(item + 1).as_bytes());
                        buf.push(b',');
                        buf.extend_from_slice(num.format(rating).as_bytes());
                        buf.push(b',');
                        buf.extend_from_slice(num.format(T0 + row as i64).as_bytes());
                        buf.push(b'\n');
                    }
                    buf
                })
                .collect();
            for b in bufs {
                w.write_all(&b).map_err(|e| DataError::io(&ratings, e))?;
            }
        }
        w.flush().map_err(|e| DataError::io(&ratings, e))?;
        let movies = tmp.join("movies.csv");
        let mut m = String::from("movieId,title,genres\n");
        for i in 0..cfg.items {
            m.push_str(&format!(
                "{},Item {},Topic {}\n",
                i + 1,
                i + 1,
                item_topic[i as usize]
            ));
        }
        std::fs::write(&movies, m).map_err(|e| DataError::io(&movies, e))?;
        let manifest = tmp.join(FOLDER.manifest);
        let text = format!(
            "{{\"format\": \"{}\", \"users\": {}, \"items\": {}, \"interactions\": {}, \
             \"seed\": {}, \"topics\": {}, \"affinity\": {}, \"zipf\": {}}}\n",
            FOLDER.format,
            cfg.users,
            cfg.items,
            cfg.interactions,
            cfg.seed,
            cfg.topics,
            cfg.affinity,
            cfg.zipf
        );
        std::fs::write(&manifest, text).map_err(|e| DataError::io(&manifest, e))
    };
    twotower_folder::replace(out, &FOLDER, write, DataError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dataset;

    fn dir(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tt-synth-{name}-{}", std::process::id()))
    }

    #[test]
    fn deterministic_for_a_seed_and_readable() {
        let cfg = SynthConfig::new(300, 120, 600_000, 5);
        let (a, b, c) = (dir("a"), dir("b"), dir("c"));
        write_synth(&cfg, &a).unwrap();
        write_synth(&cfg, &b).unwrap();
        let ra = std::fs::read(a.join("ratings.csv")).unwrap();
        assert_eq!(ra, std::fs::read(b.join("ratings.csv")).unwrap());
        write_synth(
            &SynthConfig {
                seed: 6,
                ..cfg.clone()
            },
            &c,
        )
        .unwrap();
        assert_ne!(ra, std::fs::read(c.join("ratings.csv")).unwrap());
        let ml = Dataset::open(&a).unwrap();
        assert_eq!(ml.ratings.len(), 600_000);
        assert_eq!(ml.movies.len(), 120);
        assert!(ml
            .ratings
            .iter()
            .all(|r| (1..=300).contains(&r.user) && (1..=120).contains(&r.item)));
        assert!(ml
            .ratings
            .windows(2)
            .all(|w| w[0].timestamp < w[1].timestamp));
        // Power-law popularity: the top 10% of items hold well over 10% of interactions.
        let mut counts = vec![0u64; 121];
        for r in &ml.ratings {
            counts[r.item as usize] += 1;
        }
        counts.sort_unstable_by(|x, y| y.cmp(x));
        let top: u64 = counts[..12].iter().sum();
        assert!(top as f64 > 0.3 * 600_000.0, "top-10% share {top}");
        for d in [a, b, c] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    #[test]
    fn rejects_empty_shapes() {
        let e = write_synth(&SynthConfig::new(0, 10, 10, 1), &dir("zero")).unwrap_err();
        assert!(e.to_string().contains("at least 1"));
    }
}
