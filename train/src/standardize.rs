//! Feature standardisation `x' = (x - mean) / std`, fitted on training rows and stored with the model.

use crate::data::Dataset;

/// Per-feature mean and standard deviation. A constant feature gets `std = 1` so it maps to zero
/// instead of dividing by zero (the digits data has always-blank border pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardizer {
    pub fn fit(data: &Dataset) -> Standardizer {
        let n = data.len().max(1) as f64;
        let width = data.n_features;
        let mut sum = vec![0f64; width];
        for row in 0..data.len() {
            for (acc, &x) in sum.iter_mut().zip(data.row(row)) {
                *acc += f64::from(x);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let mut squares = vec![0f64; width];
        for row in 0..data.len() {
            for ((acc, &x), m) in squares.iter_mut().zip(data.row(row)).zip(&mean) {
                *acc += (f64::from(x) - m).powi(2);
            }
        }
        let std = squares
            .iter()
            .map(|s| {
                let std = (s / n).sqrt();
                if std < 1e-8 { 1.0 } else { std as f32 }
            })
            .collect();
        Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// Standardises a row-major feature matrix whose rows have `mean.len()` features.
    pub fn apply(&self, features: &[f32]) -> Vec<f32> {
        features
            .iter()
            .zip(self.mean.iter().zip(&self.std).cycle())
            .map(|(&x, (&mean, &std))| (x - mean) / std)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Targets;

    #[test]
    fn fits_mean_and_population_std_and_guards_constant_columns() {
        let data = Dataset {
            feature_names: vec!["a".into(), "b".into()],
            n_features: 2,
            features: vec![1.0, 5.0, 3.0, 5.0],
            targets: Targets::Values(vec![0.0, 0.0]),
        };
        let standardizer = Standardizer::fit(&data);
        assert_eq!(standardizer.mean, [2.0, 5.0]);
        assert_eq!(standardizer.std, [1.0, 1.0]);
        assert_eq!(standardizer.apply(&data.features), [-1.0, 0.0, 1.0, 0.0]);
    }
}
