//! Selecting the k best-scoring ids out of a score vector.

/// One search result: a row id and its inner-product score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    pub id: u32,
    pub score: f32,
}

/// The `k` highest scores, best first; equal scores are ordered by id. Ids in `exclude`
/// (any order) are skipped.
pub fn top_k(scores: &[f32], k: usize, exclude: &[u32]) -> Vec<Neighbor> {
    let mut skip = exclude.to_vec();
    skip.sort_unstable();
    let mut all: Vec<Neighbor> = scores
        .iter()
        .enumerate()
        .filter(|(i, _)| skip.binary_search(&(*i as u32)).is_err())
        .map(|(i, &score)| Neighbor {
            id: i as u32,
            score,
        })
        .collect();
    let better = |a: &Neighbor, b: &Neighbor| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id));
    if k < all.len() {
        all.select_nth_unstable_by(k, better);
        all.truncate(k);
    }
    all.sort_unstable_by(better);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_best_breaks_ties_by_id_and_skips_excluded() {
        let s = [0.5, 2.0, 1.0, 2.0, -1.0];
        let ids: Vec<u32> = top_k(&s, 3, &[]).iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        let ids: Vec<u32> = top_k(&s, 2, &[3, 1]).iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![2, 0]);
        assert_eq!(top_k(&s, 10, &[]).len(), 5);
        assert!(top_k(&s, 0, &[]).is_empty());
    }
}
