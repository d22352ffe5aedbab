//! The index's inner loops, each in a portable scalar form and an AVX2+FMA form chosen at
//! run time: f32 dot products, and the scan of 4-bit codes through byte lookup tables
//! (the "fast scan" of ScaNN and FAISS). The scalar forms are the reference the tests hold
//! the SIMD forms to.

/// Vectors scored together by one [`scan`] step: a block of codes holds this many items.
pub const BLOCK: usize = 32;

/// True when this CPU runs the AVX2 kernels (AVX2, FMA and F16C, which every AVX2 CPU
/// has).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Inner product of two equally long slices.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "dot of slices of different lengths");
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); lengths are equal.
        return unsafe { x86::dot(a, b) };
    }
    dot_scalar(a, b)
}

/// The scalar reference of [`dot`].
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// `out[r] = query · rows[r]` for every row of the row-major matrix `rows`.
pub fn dot_rows(query: &[f32], rows: &[f32], out: &mut [f32]) {
    let d = query.len();
    assert_eq!(rows.len(), out.len() * d, "matrix and output disagree");
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && d > 0 {
        // SAFETY: AVX2+FMA present; `rows` holds `out.len()` rows of `d` (checked above).
        unsafe { x86::dot_rows(query, rows, out) };
        return;
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(d.max(1))) {
        *o = dot_scalar(query, row);
    }
}

/// `out += Σ (a − b·w[o]) · (y_o · v) · y_o` over the rows `o` of `ids` in the row-major
/// `table` of `v.len()` columns (`w`: `None` weighs every row 1) — the per-row part of an
/// implicit-feedback ALS system's product `A·v` (Hu, Koren & Volinsky).
///
/// # Panics
/// When a row of `ids` is outside `table`, `out` is not as long as `v`, or a weight is
/// missing.
pub fn rank_one_sum(
    table: &[f32],
    ids: &[u32],
    v: &[f32],
    (a, b): (f32, f32),
    w: Option<&[f32]>,
    out: &mut [f32],
) {
    assert_eq!(
        out.len(),
        v.len(),
        "rank_one_sum: output and vector disagree"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2+FMA present; every row is sliced (bounds-checked) before use and
        // `out` is as long as `v` (checked above).
        unsafe { x86::rank_one_sum(table, ids, v, (a, b), w, out) };
        return;
    }
    rank_one_sum_scalar(table, ids, v, (a, b), w, out);
}

/// The scalar reference of [`rank_one_sum`].
pub fn rank_one_sum_scalar(
    table: &[f32],
    ids: &[u32],
    v: &[f32],
    (a, b): (f32, f32),
    w: Option<&[f32]>,
    out: &mut [f32],
) {
    let d = v.len();
    for &o in ids {
        let o = o as usize;
        let row = &table[o * d..(o + 1) * d];
        let c = (a - b * w.map_or(1.0, |w| w[o])) * dot_scalar(row, v);
        for (y, x) in out.iter_mut().zip(row) {
            *y += c * x;
        }
    }
}

/// Half-precision copies of `v` when this CPU scores them in SIMD (AVX2, FMA and F16C);
/// empty otherwise, and callers then use the f32 rows.
pub fn to_f16(v: &[f32]) -> Vec<u16> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: F16C present (checked above).
        return unsafe { x86::to_f16(v) };
    }
    let _ = v;
    Vec::new()
}

/// [`dot_rows`] over half-precision rows made by [`to_f16`].
///
/// # Panics
/// When the rows are not `out.len()` rows of `query.len()`, or `to_f16` returned nothing
/// on this CPU.
pub fn dot_rows_f16(query: &[f32], rows: &[u16], out: &mut [f32]) {
    let d = query.len();
    assert_eq!(rows.len(), out.len() * d, "matrix and output disagree");
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C present; sizes checked above.
        unsafe { x86::dot_rows_f16(query, rows, out) };
        return;
    }
    panic!("half-precision rows exist only on CPUs with F16C");
}

/// `out[i] = query · rows[slots[i]]`: scattered rows of a row-major matrix (re-ranking).
pub fn dot_gather(query: &[f32], rows: &[f32], slots: &[u32], out: &mut [f32]) {
    let d = query.len();
    assert_eq!(slots.len(), out.len());
    assert!(
        slots.iter().all(|&s| (s as usize + 1) * d <= rows.len()),
        "slot outside the matrix"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && d > 0 {
        // SAFETY: AVX2+FMA present; every slot's row lies inside `rows` (checked above).
        unsafe { x86::dot_gather(query, rows, slots, out) };
        return;
    }
    for (o, &s) in out.iter_mut().zip(slots) {
        *o = dot_scalar(query, &rows[s as usize * d..(s as usize + 1) * d]);
    }
}

/// Lookup tables of one query for [`scan`]: per subspace 16 byte values, each stored twice
/// (32 bytes) so that one AVX2 register holds a table in both of its lanes.
#[derive(Debug, Clone, Default)]
pub struct Luts {
    pub bytes: Vec<u8>,
}

impl Luts {
    /// Tables for `subspaces` subspaces from `values[m * 16 + c]` (each at most 127, so two
    /// tables can be added in a byte).
    pub fn new(values: &[u8], subspaces: usize) -> Self {
        assert_eq!(values.len(), subspaces * 16);
        let mut bytes = vec![0u8; subspaces * 32];
        for m in 0..subspaces {
            let t = &values[m * 16..(m + 1) * 16];
            debug_assert!(t.iter().all(|&v| v <= 127));
            bytes[m * 32..m * 32 + 16].copy_from_slice(t);
            bytes[m * 32 + 16..m * 32 + 32].copy_from_slice(t);
        }
        Luts { bytes }
    }

    fn get(&self, m: usize, code: u8) -> u8 {
        self.bytes[m * 32 + code as usize]
    }
}

/// Bytes of one block of codes for `subspaces` subspaces (`subspaces` is even).
pub fn block_bytes(subspaces: usize) -> usize {
    subspaces / 2 * BLOCK
}

/// Writes the 4-bit codes of up to 32 items (`codes[i][m]`, each below 16) as one block:
/// byte `p * 32 + j` holds item `j`'s code for subspace `2p` in its low nibble and for
/// `2p + 1` in its high nibble. Missing items get code 0.
pub fn pack_block(codes: &[&[u8]], subspaces: usize, out: &mut [u8]) {
    assert!(codes.len() <= BLOCK && subspaces.is_multiple_of(2));
    assert_eq!(out.len(), block_bytes(subspaces));
    out.fill(0);
    for (j, c) in codes.iter().enumerate() {
        for p in 0..subspaces / 2 {
            out[p * BLOCK + j] = (c[2 * p] & 15) | ((c[2 * p + 1] & 15) << 4);
        }
    }
}

/// Scores blocks of packed codes through `luts`: the sum over subspaces of each item's
/// table entry. Calls `on_hit(item, sum)` for every item whose sum is above `threshold`
/// (items numbered from 0 across the blocks, in order); `on_hit` returns the threshold to
/// use from the next block on.
pub fn scan<F: FnMut(usize, u16) -> u16>(
    codes: &[u8],
    subspaces: usize,
    luts: &Luts,
    threshold: u16,
    on_hit: F,
) {
    let bb = block_bytes(subspaces);
    assert!(
        bb > 0 && codes.len().is_multiple_of(bb),
        "codes are not whole blocks"
    );
    assert_eq!(
        luts.bytes.len(),
        subspaces * 32,
        "tables of another subspace count"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 (checked above); sizes were checked against `subspaces`.
        unsafe { x86::scan(codes, subspaces, luts, threshold, on_hit) };
        return;
    }
    scan_scalar(codes, subspaces, luts, threshold, on_hit)
}

/// The scalar reference of [`scan`].
pub fn scan_scalar<F: FnMut(usize, u16) -> u16>(
    codes: &[u8],
    subspaces: usize,
    luts: &Luts,
    mut threshold: u16,
    mut on_hit: F,
) {
    let bb = block_bytes(subspaces);
    for (b, block) in codes.chunks_exact(bb).enumerate() {
        let mut sums = [0u16; BLOCK];
        for p in 0..subspaces / 2 {
            for (j, s) in sums.iter_mut().enumerate() {
                let byte = block[p * BLOCK + j];
                *s += luts.get(2 * p, byte & 15) as u16 + luts.get(2 * p + 1, byte >> 4) as u16;
            }
        }
        let mut next = threshold;
        for (j, &s) in sums.iter().enumerate() {
            if s > threshold {
                next = on_hit(b * BLOCK + j, s);
            }
        }
        threshold = next;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Luts, BLOCK};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        s
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rank_one_sum(
        table: &[f32],
        ids: &[u32],
        v: &[f32],
        ab: (f32, f32),
        w: Option<&[f32]>,
        out: &mut [f32],
    ) {
        // Widths of 8 to 64 keep `v` and `out` in registers across the rows.
        match v.len() {
            8 => return rank_one_sum_held::<1>(table, ids, v, ab, w, out),
            16 => return rank_one_sum_held::<2>(table, ids, v, ab, w, out),
            24 => return rank_one_sum_held::<3>(table, ids, v, ab, w, out),
            32 => return rank_one_sum_held::<4>(table, ids, v, ab, w, out),
            40 => return rank_one_sum_held::<5>(table, ids, v, ab, w, out),
            48 => return rank_one_sum_held::<6>(table, ids, v, ab, w, out),
            56 => return rank_one_sum_held::<7>(table, ids, v, ab, w, out),
            64 => return rank_one_sum_held::<8>(table, ids, v, ab, w, out),
            _ => {}
        }
        let (a, b) = ab;
        let d = v.len();
        let po = out.as_mut_ptr();
        for &o in ids {
            let o = o as usize;
            let row = &table[o * d..(o + 1) * d];
            let c = (a - b * w.map_or(1.0, |w| w[o])) * dot(row, v);
            let cv = _mm256_set1_ps(c);
            let pr = row.as_ptr();
            let mut i = 0;
            while i + 8 <= d {
                let y = _mm256_loadu_ps(po.add(i));
                _mm256_storeu_ps(
                    po.add(i),
                    _mm256_fmadd_ps(cv, _mm256_loadu_ps(pr.add(i)), y),
                );
                i += 8;
            }
            while i < d {
                *po.add(i) += c * *pr.add(i);
                i += 1;
            }
        }
    }

    /// [`rank_one_sum`] for `v.len() == 8 * N`, `v` and the sum held in `N` registers each.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rank_one_sum_held<const N: usize>(
        table: &[f32],
        ids: &[u32],
        v: &[f32],
        (a, b): (f32, f32),
        w: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let d = 8 * N;
        let mut vr = [_mm256_setzero_ps(); N];
        let mut acc = [_mm256_setzero_ps(); N];
        for (k, (vk, ak)) in vr.iter_mut().zip(acc.iter_mut()).enumerate() {
            *vk = _mm256_loadu_ps(v.as_ptr().add(8 * k));
            *ak = _mm256_loadu_ps(out.as_ptr().add(8 * k));
        }
        for &o in ids {
            let o = o as usize;
            let row = &table[o * d..(o + 1) * d];
            let pr = row.as_ptr();
            let mut y = [_mm256_setzero_ps(); N];
            let mut s = _mm256_setzero_ps();
            for (k, (yk, vk)) in y.iter_mut().zip(&vr).enumerate() {
                *yk = _mm256_loadu_ps(pr.add(8 * k));
                s = _mm256_fmadd_ps(*yk, *vk, s);
            }
            let cv = _mm256_set1_ps((a - b * w.map_or(1.0, |w| w[o])) * hsum(s));
            for (ak, yk) in acc.iter_mut().zip(&y) {
                *ak = _mm256_fmadd_ps(cv, *yk, *ak);
            }
        }
        for (k, ak) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * k), *ak);
        }
    }

    /// The sum of the eight lanes of `s`.
    #[inline(always)]
    unsafe fn hsum(s: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quad, _mm_shuffle_ps(quad, quad, 1)))
    }

    /// An element type of rows that [`dot4`] reads: f32, or f16 bits (with F16C).
    trait Elem: Copy {
        /// Eight elements from `p` as floats.
        unsafe fn load8(p: *const Self) -> __m256;
        /// One element as a float.
        unsafe fn load1(p: *const Self) -> f32;
    }

    impl Elem for f32 {
        #[inline(always)]
        unsafe fn load8(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load1(p: *const f32) -> f32 {
            *p
        }
    }

    impl Elem for u16 {
        #[inline(always)]
        unsafe fn load8(p: *const u16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        }
        #[inline(always)]
        unsafe fn load1(p: *const u16) -> f32 {
            let mut lane = [0u16; 8];
            lane[0] = *p;
            _mm256_cvtss_f32(Self::load8(lane.as_ptr()))
        }
    }

    /// Inner products of `q` with the 4 rows starting at the pointers, each `q.len()` long.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot4<E: Elem>(q: &[f32], p: [*const E; 4]) -> [f32; 4] {
        let d = q.len();
        let full = d / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut t = 0;
        while t < full {
            let qv = _mm256_loadu_ps(q.as_ptr().add(t));
            for (a, &row) in acc.iter_mut().zip(&p) {
                *a = _mm256_fmadd_ps(E::load8(row.add(t)), qv, *a);
            }
            t += 8;
        }
        let mut out = hsum4(acc);
        for (t, &qt) in q.iter().enumerate().skip(full) {
            for (o, &row) in out.iter_mut().zip(&p) {
                *o += qt * E::load1(row.add(t));
            }
        }
        out
    }

    /// `out[r] = q · row r` for rows of f32 or f16 bits, four rows per step.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot_rows_of<E: Elem>(q: &[f32], rows: &[E], out: &mut [f32]) {
        let d = q.len();
        let base = rows.as_ptr();
        let n = out.len();
        let mut r = 0;
        while r < n {
            let take = (n - r).min(4);
            // Past the last row, the final row is repeated and its results dropped.
            let p: [*const E; 4] = std::array::from_fn(|j| base.add((r + j.min(take - 1)) * d));
            out[r..r + take].copy_from_slice(&dot4(q, p)[..take]);
            r += take;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows(q: &[f32], rows: &[f32], out: &mut [f32]) {
        dot_rows_of(q, rows, out)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn to_f16(v: &[f32]) -> Vec<u16> {
        let mut out = vec![0u16; v.len()];
        let mut i = 0;
        while i + 8 <= v.len() {
            let h = _mm256_cvtps_ph(
                _mm256_loadu_ps(v.as_ptr().add(i)),
                _MM_FROUND_TO_NEAREST_INT,
            );
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, h);
            i += 8;
        }
        for (j, o) in out.iter_mut().enumerate().skip(i) {
            let mut lane = [0.0f32; 8];
            lane[0] = v[j];
            let h = _mm256_cvtps_ph(_mm256_loadu_ps(lane.as_ptr()), _MM_FROUND_TO_NEAREST_INT);
            *o = _mm_extract_epi16(h, 0) as u16;
        }
        out
    }

    /// Sums each of 4 accumulators' lanes: `[Σ a0, Σ a1, Σ a2, Σ a3]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum4(acc: [__m256; 4]) -> [f32; 4] {
        let s01 = _mm256_hadd_ps(acc[0], acc[1]);
        let s23 = _mm256_hadd_ps(acc[2], acc[3]);
        let s = _mm256_hadd_ps(s01, s23);
        let sum = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let mut out = [0.0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), sum);
        out
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows_f16(q: &[f32], rows: &[u16], out: &mut [f32]) {
        dot_rows_of(q, rows, out)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_gather(q: &[f32], rows: &[f32], slots: &[u32], out: &mut [f32]) {
        let d = q.len();
        let base = rows.as_ptr();
        let at = |i: usize| base.add(slots[i] as usize * d);
        let n = out.len();
        let mut r = 0;
        while r + 4 <= n {
            // Fetch the next group while this one is computed.
            for j in r + 4..(r + 8).min(n) {
                _mm_prefetch(at(j) as *const i8, _MM_HINT_T0);
                if d > 16 {
                    _mm_prefetch(at(j).add(16) as *const i8, _MM_HINT_T0);
                    _mm_prefetch(at(j).add(d - 1) as *const i8, _MM_HINT_T0);
                }
            }
            out[r..r + 4].copy_from_slice(&dot4(q, [at(r), at(r + 1), at(r + 2), at(r + 3)]));
            r += 4;
        }
        for (i, o) in out.iter_mut().enumerate().skip(r) {
            *o = dot(q, std::slice::from_raw_parts(at(i), d));
        }
    }

    /// Reports the lanes of one block's sums above `threshold`; returns the threshold
    /// for what follows.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn report<F: FnMut(usize, u16) -> u16>(
        first: usize,
        even: __m256i,
        odd: __m256i,
        threshold: u16,
        on_hit: &mut F,
    ) -> u16 {
        let t = _mm256_set1_epi16(threshold as i16);
        let zero = _mm256_setzero_si256();
        // A lane is above the threshold exactly when the saturating difference is not 0.
        let miss_e = _mm256_cmpeq_epi16(_mm256_subs_epu16(even, t), zero);
        let miss_o = _mm256_cmpeq_epi16(_mm256_subs_epu16(odd, t), zero);
        let hit_e = !(_mm256_movemask_epi8(miss_e) as u32);
        let hit_o = !(_mm256_movemask_epi8(miss_o) as u32);
        if (hit_e | hit_o) == 0 {
            return threshold;
        }
        let mut se = [0u16; 16];
        let mut so = [0u16; 16];
        _mm256_storeu_si256(se.as_mut_ptr() as *mut __m256i, even);
        _mm256_storeu_si256(so.as_mut_ptr() as *mut __m256i, odd);
        let mut next = threshold;
        for i in 0..16 {
            if hit_e & (1 << (2 * i)) != 0 {
                next = on_hit(first + 2 * i, se[i]);
            }
            if hit_o & (1 << (2 * i)) != 0 {
                next = on_hit(first + 2 * i + 1, so[i]);
            }
        }
        next
    }

    /// Two blocks at a time, so that each pair of tables is loaded once for both. Sums
    /// are kept as whole 16-bit lanes (low byte + 256 × high byte, wrapping) beside the
    /// high bytes alone; the low bytes' sum is recovered at the end (it fits in 16 bits).
    #[target_feature(enable = "avx2")]
    pub unsafe fn scan<F: FnMut(usize, u16) -> u16>(
        codes: &[u8],
        subspaces: usize,
        luts: &Luts,
        mut threshold: u16,
        mut on_hit: F,
    ) {
        let pairs = subspaces / 2;
        let bb = pairs * BLOCK;
        let blocks = codes.len() / bb;
        let low = _mm256_set1_epi8(0x0f);
        let lp = luts.bytes.as_ptr();
        let mut b = 0;
        while b < blocks {
            let two = b + 1 < blocks;
            let cp0 = codes.as_ptr().add(b * bb);
            // With one block left, the second lane of work repeats it and is ignored.
            let cp1 = if two { cp0.add(bb) } else { cp0 };
            let mut all0 = _mm256_setzero_si256();
            let mut high0 = _mm256_setzero_si256();
            let mut all1 = _mm256_setzero_si256();
            let mut high1 = _mm256_setzero_si256();
            for p in 0..pairs {
                let t0 = _mm256_loadu_si256(lp.add(2 * p * 32) as *const __m256i);
                let t1 = _mm256_loadu_si256(lp.add((2 * p + 1) * 32) as *const __m256i);
                let c0 = _mm256_loadu_si256(cp0.add(p * BLOCK) as *const __m256i);
                let c1 = _mm256_loadu_si256(cp1.add(p * BLOCK) as *const __m256i);
                let s0 = _mm256_add_epi8(
                    _mm256_shuffle_epi8(t0, _mm256_and_si256(c0, low)),
                    _mm256_shuffle_epi8(t1, _mm256_and_si256(_mm256_srli_epi16(c0, 4), low)),
                );
                let s1 = _mm256_add_epi8(
                    _mm256_shuffle_epi8(t0, _mm256_and_si256(c1, low)),
                    _mm256_shuffle_epi8(t1, _mm256_and_si256(_mm256_srli_epi16(c1, 4), low)),
                );
                all0 = _mm256_add_epi16(all0, s0);
                high0 = _mm256_add_epi16(high0, _mm256_srli_epi16(s0, 8));
                all1 = _mm256_add_epi16(all1, s1);
                high1 = _mm256_add_epi16(high1, _mm256_srli_epi16(s1, 8));
            }
            let even0 = _mm256_sub_epi16(all0, _mm256_slli_epi16(high0, 8));
            threshold = report(b * BLOCK, even0, high0, threshold, &mut on_hit);
            if two {
                let even1 = _mm256_sub_epi16(all1, _mm256_slli_epi16(high1, 8));
                threshold = report((b + 1) * BLOCK, even1, high1, threshold, &mut on_hit);
            }
            b += 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn dot_agrees_with_the_scalar_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100] {
            let a: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - exact).abs() < 1e-5, "n={n}");
            assert!((dot_scalar(&a, &b) as f64 - exact).abs() < 1e-5, "n={n}");
        }
    }

    #[test]
    fn row_products_agree_with_the_scalar_reference() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for d in [1, 3, 8, 13, 64] {
            let rows: Vec<f32> = (0..11 * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let q: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let mut out = vec![0.0; 11];
            dot_rows(&q, &rows, &mut out);
            let slots = [10u32, 0, 3, 3, 7, 1];
            let mut gathered = vec![0.0; slots.len()];
            dot_gather(&q, &rows, &slots, &mut gathered);
            for r in 0..11 {
                let want = dot_scalar(&q, &rows[r * d..(r + 1) * d]);
                assert!((out[r] - want).abs() < 1e-5, "d={d} row {r}");
            }
            for (g, &s) in gathered.iter().zip(&slots) {
                assert!((g - out[s as usize]).abs() < 1e-5, "d={d} slot {s}");
            }
        }
    }

    #[test]
    fn rank_one_sums_agree_with_the_definition() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        for d in [1, 7, 8, 16, 21, 24, 32, 40, 64, 72] {
            let table: Vec<f32> = (0..6 * d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let v: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let w: Vec<f32> = (0..6).map(|_| rng.gen_range(0.5..2.0)).collect();
            let ids = [5u32, 0, 2, 2];
            for weights in [None, Some(&w[..])] {
                let start: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
                let mut want: Vec<f64> = start.iter().map(|&x| x as f64).collect();
                for &o in &ids {
                    let row = &table[o as usize * d..(o as usize + 1) * d];
                    let yv: f64 = row.iter().zip(&v).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let c = (3.0 - 0.5 * weights.map_or(1.0, |w| w[o as usize]) as f64) * yv;
                    for (t, &x) in want.iter_mut().zip(row) {
                        *t += c * x as f64;
                    }
                }
                let (mut fast, mut scalar) = (start.clone(), start.clone());
                rank_one_sum(&table, &ids, &v, (3.0, 0.5), weights, &mut fast);
                rank_one_sum_scalar(&table, &ids, &v, (3.0, 0.5), weights, &mut scalar);
                for ((f, s), t) in fast.iter().zip(&scalar).zip(&want) {
                    assert!((*f as f64 - t).abs() < 1e-4, "d={d}");
                    assert!((*s as f64 - t).abs() < 1e-4, "d={d}");
                }
            }
        }
    }

    #[test]
    fn half_precision_rows_score_within_rounding() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        for d in [5, 16, 21, 64] {
            let rows: Vec<f32> = (0..9 * d).map(|_| rng.gen_range(-2.0..2.0)).collect();
            let q: Vec<f32> = (0..d).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let h = to_f16(&rows);
            if h.is_empty() {
                return; // no F16C: the f32 rows are used
            }
            let mut out = vec![0.0; 9];
            dot_rows_f16(&q, &h, &mut out);
            for r in 0..9 {
                let row = &rows[r * d..(r + 1) * d];
                let bound: f32 = q.iter().zip(row).map(|(a, b)| (a * b).abs()).sum::<f32>() * 1e-3;
                assert!(
                    (out[r] - dot_scalar(&q, row)).abs() <= bound,
                    "d={d} row {r}"
                );
            }
        }
    }

    #[test]
    fn scan_agrees_with_the_scalar_reference_and_a_plain_sum() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let m = 8;
        let n_items = 3 * BLOCK;
        let item_codes: Vec<Vec<u8>> = (0..n_items)
            .map(|_| (0..m).map(|_| rng.gen_range(0..16)).collect())
            .collect();
        let values: Vec<u8> = (0..m * 16).map(|_| rng.gen_range(0..128)).collect();
        let luts = Luts::new(&values, m);
        let mut codes = vec![0u8; 3 * block_bytes(m)];
        for (b, out) in codes.chunks_exact_mut(block_bytes(m)).enumerate() {
            let refs: Vec<&[u8]> = item_codes[b * BLOCK..(b + 1) * BLOCK]
                .iter()
                .map(|c| c.as_slice())
                .collect();
            pack_block(&refs, m, out);
        }
        let plain: Vec<u16> = item_codes
            .iter()
            .map(|c| (0..m).map(|s| values[s * 16 + c[s] as usize] as u16).sum())
            .collect();
        for threshold in [0u16, 300, 500, 700, u16::MAX] {
            let mut fast = Vec::new();
            scan(&codes, m, &luts, threshold, |i, s| {
                fast.push((i, s));
                threshold
            });
            let mut slow = Vec::new();
            scan_scalar(&codes, m, &luts, threshold, |i, s| {
                slow.push((i, s));
                threshold
            });
            fast.sort_unstable();
            let want: Vec<(usize, u16)> = plain
                .iter()
                .enumerate()
                .filter(|(_, &s)| s > threshold)
                .map(|(i, &s)| (i, s))
                .collect();
            assert_eq!(fast, want, "threshold {threshold}");
            assert_eq!(slow, want, "threshold {threshold}");
        }
    }
}
