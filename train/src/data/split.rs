//! Seeded index splits: held-out test set, validation set, k folds.

use crate::rng::SeededRng;

/// `0..n` in a seeded random order.
pub fn shuffled_indices(n: usize, rng: &mut SeededRng) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut indices);
    indices
}

/// Splits `indices` into `(kept, held_out)` with `round(len × fraction)` held out (at least one when
/// `fraction > 0` and at least two indices exist).
pub fn hold_out(indices: &[usize], fraction: f64) -> (Vec<usize>, Vec<usize>) {
    if fraction <= 0.0 || indices.len() < 2 {
        return (indices.to_vec(), Vec::new());
    }
    let held = ((indices.len() as f64 * fraction).round() as usize).clamp(1, indices.len() - 1);
    let (held_out, kept) = indices.split_at(held);
    (kept.to_vec(), held_out.to_vec())
}

/// One cross-validation fold: the rows to train on and the rows to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Fold {
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
}

/// `k` contiguous folds over `indices` (already shuffled); fold sizes differ by at most one.
pub fn k_folds(indices: &[usize], k: usize) -> Vec<Fold> {
    let n = indices.len();
    (0..k)
        .map(|fold| {
            let start = fold * n / k;
            let end = (fold + 1) * n / k;
            let validation = indices[start..end].to_vec();
            let train = indices[..start]
                .iter()
                .chain(&indices[end..])
                .copied()
                .collect();
            Fold { train, validation }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_partition_the_indices() {
        let indices: Vec<usize> = (0..11).collect();
        let folds = k_folds(&indices, 3);
        assert_eq!(folds.len(), 3);
        let mut all: Vec<usize> = folds.iter().flat_map(|f| f.validation.clone()).collect();
        all.sort();
        assert_eq!(all, indices);
        for fold in &folds {
            assert_eq!(fold.train.len() + fold.validation.len(), 11);
            assert!(fold.validation.iter().all(|i| !fold.train.contains(i)));
            assert!((3..=4).contains(&fold.validation.len()));
        }
    }

    #[test]
    fn hold_out_takes_the_fraction() {
        let indices: Vec<usize> = (0..10).collect();
        let (kept, held) = hold_out(&indices, 0.2);
        assert_eq!(held, [0, 1]);
        assert_eq!(kept.len(), 8);
        assert_eq!(hold_out(&indices, 0.0).1, Vec::<usize>::new());
    }

    #[test]
    fn shuffle_depends_only_on_seed() {
        let a = shuffled_indices(50, &mut SeededRng::new(1));
        let b = shuffled_indices(50, &mut SeededRng::new(1));
        let c = shuffled_indices(50, &mut SeededRng::new(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
