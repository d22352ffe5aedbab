//! Tower specs with random sizes, up to 2^63: each either parses and trains (within the
//! limits) or is a clear error; nothing aborts, hangs or allocates what it asks for.

use super::tests::tiny;
use super::*;
use proptest::prelude::*;

/// A size: small (trains in a moment), or a power of two from 2^`over` (above the
/// limit it tests) up to 2^63, or i64::MAX.
fn size(over: u32) -> impl Strategy<Value = u64> {
    prop_oneof![
        1u64..24,
        (over..64).prop_map(|b| 1u64 << b),
        Just(i64::MAX as u64)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn random_sizes_train_or_are_clear_errors(
        dim in size(13),
        bins in size(25),
        buckets in size(17),
        time_buckets in size(17),
        layer in size(13),
        layers in 0usize..3,
        last in size(14),
    ) {
        let layer_list = vec![layer.to_string(); layers].join(", ");
        let out = if layers > 0 {
            layer
        } else {
            dim.saturating_mul(2).saturating_add(1 + 2 + 1 + 3)
        };
        let text = format!(
            r#"
[query]
features = [
  {{ kind = "id", column = "user_id", dim = {dim} }},
  {{ kind = "categorical", column = "occupation", dim = {dim}, hash_bins = {bins} }},
  {{ kind = "timestamp", buckets = {time_buckets}, dim = 2 }},
  {{ kind = "numeric", column = "age", buckets = {buckets}, dim = 2 }},
  {{ kind = "history", last = {last}, dim = 1 }},
]
layers = [{layer_list}]
[candidate]
features = [{{ kind = "id", column = "item_id", dim = {out} }}]
"#
        );
        let ml = tiny();
        let outcome = TowersSpec::parse("t.toml", &text).and_then(|spec| {
            let mut cfg = TrainConfig::preset("default")?;
            cfg.batch_size = 8;
            cfg.warm_start = None;
            let (mut model, mut trainer) =
                FeatureModel::new(cfg, spec, &ml, &ml.ratings, FeatureFiles::default())?;
            trainer.run_epoch(&mut model).map(|_| ())
        });
        if let Err(e) = outcome {
            let e = e.to_string();
            prop_assert!(!e.is_empty() && e.len() < 2000, "{e}");
        } else {
            // Only sizes within the limits train.
            prop_assert!(dim <= 4096 && layer <= 4096 && bins <= 1 << 24);
            prop_assert!(time_buckets <= 100_000 && buckets <= 100_000 && last <= 10_000);
        }
    }
}

/// The property above again, in a child process whose address space is capped at 1 GiB
/// (`RLIMIT_AS`): an allocation that a spec's sizes chose would fail there and abort the
/// child, so passing shows nothing was allocated by what a spec asks for.
#[cfg(target_os = "linux")]
#[test]
fn random_sizes_stay_under_a_memory_limit() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("TWOTOWER_UNDER_RLIMIT").is_some() {
        return; // the child runs only the property itself
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe);
    child
        .args([
            "--exact",
            "feature_model::spec_sizes::random_sizes_train_or_are_clear_errors",
            "--test-threads=1",
        ])
        .env("TWOTOWER_UNDER_RLIMIT", "1");
    // SAFETY: setrlimit only, between fork and exec.
    unsafe {
        child.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = child.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
