//! Progress bars on stderr (hidden when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `total` units with a `{msg}` slot.
pub fn bar(total: u64, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{per_sec}}) {{msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

/// A download bar (bytes), sized once the length is known.
pub fn download() -> impl FnMut(u64, Option<u64>) {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "downloading [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    move |done, total| {
        if let Some(t) = total {
            pb.set_length(t);
        }
        pb.set_position(done);
        if total == Some(done) {
            pb.finish_and_clear();
        }
    }
}
