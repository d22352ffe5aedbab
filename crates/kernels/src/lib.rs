//! The numeric kernels twotower shares, each beside its scalar reference.
//!
//! - [`gemm`]: dense f32 matrix products over strided views ([`gemm::MatRef`]), spread over
//!   cores; the products of training (logits and their gradients) and of exact search.
//! - [`simd`]: dot products of one query against many rows (f32 and half precision) and the
//!   4-bit lookup-table scan of product quantization, AVX2/F16C at run time with a public
//!   scalar twin for each.
//! - [`topk`]: the `k` best of a stream of scores ([`TopK`], [`top_k`]).
//! - [`fastexp`]: the exponentials of the softmax, vectorised, with their error bound.
//!
//! It owns arithmetic only: no files, no models, no indexes. The index crate builds its
//! searches on it; the model crate its loss.
//!
//! ```
//! use twotower_kernels::{simd, top_k};
//! let rows = [1.0f32, 0.0, 0.0, 1.0, 0.8, 0.6];
//! let mut scores = [0.0f32; 3];
//! simd::dot_rows(&[1.0, 0.5], &rows, &mut scores);
//! // The SIMD path agrees with the scalar reference.
//! assert_eq!(scores[2], simd::dot_scalar(&[1.0, 0.5], &rows[4..]));
//! assert_eq!(top_k(&scores, 1, &[])[0].id, 2);
//! ```

pub mod fastexp;
pub mod gemm;
pub mod simd;
pub mod topk;

pub use topk::{top_k, Neighbor, Reservoir, TopK};
