//! Dense f32 matrix products (row-major), spread over cores with rayon.
//!
//! These are the products of training (logits and their gradients) and of exact search.
//! They call the `matrixmultiply` micro-kernels (AVX2/FMA at run time where the CPU has
//! them) on row blocks, one block per rayon task.

use rayon::prelude::*;

/// A read-only strided matrix view: element (i, j) is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows × cols` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix buffer too short");
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, without copying.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// Rows of output below which a product is not split across threads.
const MIN_ROWS_PER_TASK: usize = 64;

/// `out = beta * out + a · b`, with `out` row-major `a.rows × b.cols`.
pub fn gemm(a: MatRef, b: MatRef, beta: f32, out: &mut [f32]) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(out.len(), m * n, "output has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = m.div_ceil(threads * 2).max(MIN_ROWS_PER_TASK);
    let run = |row0: usize, block: &mut [f32]| {
        let rows = block.len() / n;
        // SAFETY: the views were checked to cover rows*cols elements with their strides;
        // the block is exactly `rows × n`, row-major.
        unsafe {
            matrixmultiply::sgemm(
                rows,
                k,
                n,
                1.0,
                a.data.as_ptr().add(row0 * a.row_stride),
                a.row_stride as isize,
                a.col_stride as isize,
                b.data.as_ptr(),
                b.row_stride as isize,
                b.col_stride as isize,
                beta,
                block.as_mut_ptr(),
                n as isize,
                1,
            )
        }
    };
    check_view(&a);
    check_view(&b);
    if m <= rows_per_task {
        run(0, out);
    } else {
        out.par_chunks_mut(rows_per_task * n)
            .enumerate()
            .for_each(|(i, block)| run(i * rows_per_task, block));
    }
}

fn check_view(v: &MatRef) {
    if v.rows > 0 && v.cols > 0 {
        let last = (v.rows - 1) * v.row_stride + (v.cols - 1) * v.col_stride;
        assert!(last < v.data.len(), "matrix view reaches past its buffer");
    }
}

/// `a · bᵀ` for row-major `a` (m × k) and `b` (n × k): every row of `a` against every row of `b`.
pub fn matmul_nt(a: &[f32], m: usize, b: &[f32], n: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    gemm(
        MatRef::new(a, m, k),
        MatRef::new(b, n, k).t(),
        0.0,
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef, b: MatRef) -> Vec<f32> {
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                let mut s = 0.0f64;
                for t in 0..a.cols {
                    s += a.data[i * a.row_stride + t * a.col_stride] as f64
                        * b.data[t * b.row_stride + j * b.col_stride] as f64;
                }
                out[i * b.cols + j] = s as f32;
            }
        }
        out
    }

    #[test]
    fn products_agree_with_naive_in_every_layout() {
        let (m, k, n) = (301, 17, 45);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 97) as f32 / 48.0 - 1.0)
            .collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let want = naive(MatRef::new(&a, m, k), MatRef::new(&b, k, n));
        let cases = [
            (MatRef::new(&a, m, k), MatRef::new(&b, k, n)),
            (MatRef::new(&a, m, k), MatRef::new(&bt, n, k).t()),
            (MatRef::new(&at, k, m).t(), MatRef::new(&b, k, n)),
        ];
        for (x, y) in cases {
            let mut got = vec![0.0; m * n];
            gemm(x, y, 0.0, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{g} vs {w}");
            }
        }
        assert_eq!(matmul_nt(&a, m, &bt, n, k).len(), m * n);
    }
}
