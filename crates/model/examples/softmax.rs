//! Times one in-batch softmax step (forward and backward) on a batch shaped like the tfrs
//! preset's on a 100,000-user × 20,000-item log, on 1 and on all worker threads, alternating,
//! and prints the medians: `cargo run --release -p twotower-model --example softmax
//! [U C D REPS [THREADS]]` (with THREADS, only that count).

use rand::{Rng, SeedableRng};
use twotower_model::loss::{InBatchSoftmax, SoftmaxBatch};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (u, c, d, reps) = (
        *args.first().unwrap_or(&7800),
        *args.get(1).unwrap_or(&5000),
        *args.get(2).unwrap_or(&32),
        *args.get(3).unwrap_or(&15),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let q: Vec<f32> = (0..u * d).map(|_| rng.gen_range(-0.3..0.3)).collect();
    let cand: Vec<f32> = (0..c * d).map(|_| rng.gen_range(-0.3..0.3)).collect();
    let rows: Vec<(u32, u32)> = (0..8192)
        .map(|i| ((i % u) as u32, rng.gen_range(0..c) as u32))
        .collect();
    let mut mult = vec![1.0f32; c];
    for &(_, ci) in &rows {
        mult[ci as usize] += 1.0;
    }
    let sm = InBatchSoftmax {
        temperature: 1.0,
        remove_accidental_hits: false,
    };
    let batch = SoftmaxBatch {
        queries: &q,
        candidates: &cand,
        dim: d,
        rows: &rows,
        multiplicity: &mult,
        bias: &[],
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A fifth argument times that thread count alone (to profile one of them).
    let counts = match args.get(4) {
        Some(&t) => vec![t],
        None => vec![1, cores],
    };
    let pools: Vec<(usize, rayon::ThreadPool)> = counts
        .into_iter()
        .map(|t| {
            (
                t,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap(),
            )
        })
        .collect();
    let mut times = vec![Vec::new(); pools.len()];
    for _ in 0..reps {
        for (k, (_, pool)) in pools.iter().enumerate() {
            let t0 = std::time::Instant::now();
            let out = pool.install(|| sm.forward_backward(&batch));
            std::hint::black_box(out.loss);
            times[k].push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut medians = Vec::new();
    for (k, (t, _)) in pools.iter().enumerate() {
        times[k].sort_by(f64::total_cmp);
        let m = times[k][times[k].len() / 2];
        let gf = 6.0 * (u * c * d) as f64 / m / 1e6;
        println!(
            "{t} thread(s): median {m:.2} ms per step, {gf:.1} GFLOP/s (fastest {:.2} ms)",
            times[k][0]
        );
        medians.push(m);
    }
    println!("scaling {:.3}x", medians[0] / medians[medians.len() - 1]);
}
