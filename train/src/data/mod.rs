//! Training data: a feature matrix plus one target column, read from CSV or NPY.

mod csv_file;
mod npy_file;
pub mod split;

use std::path::Path;

use crate::error::DataError;

/// Whether the label column holds class names (classification) or numbers to regress on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Classes,
    Values,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// `ids[i]` indexes `names`; `names` is sorted numerically when every label is a number.
    Classes {
        ids: Vec<u32>,
        names: Vec<String>,
    },
    Values(Vec<f32>),
}

impl Targets {
    pub fn len(&self) -> usize {
        match self {
            Targets::Classes { ids, .. } => ids.len(),
            Targets::Values(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of output units the network needs for these targets.
    pub fn output_units(&self) -> usize {
        match self {
            Targets::Classes { names, .. } => names.len(),
            Targets::Values(_) => 1,
        }
    }

    fn subset(&self, indices: &[usize]) -> Targets {
        match self {
            Targets::Classes { ids, names } => Targets::Classes {
                ids: indices.iter().map(|&i| ids[i]).collect(),
                names: names.clone(),
            },
            Targets::Values(values) => {
                Targets::Values(indices.iter().map(|&i| values[i]).collect())
            }
        }
    }

    /// Class ids from label texts; classes are ordered numerically if all labels are numbers, else by text.
    pub fn classes_from_labels(labels: &[String]) -> Targets {
        let mut names: Vec<String> = labels.to_vec();
        names.sort();
        names.dedup();
        let numeric: Option<Vec<f64>> = names.iter().map(|n| n.parse::<f64>().ok()).collect();
        if let Some(numbers) = numeric {
            let mut paired: Vec<(f64, String)> = numbers.into_iter().zip(names).collect();
            paired.sort_by(|a, b| a.0.total_cmp(&b.0));
            names = paired.into_iter().map(|(_, name)| name).collect();
        }
        let ids = labels
            .iter()
            .map(|label| names.iter().position(|n| n == label).unwrap_or_default() as u32)
            .collect();
        Targets::Classes { ids, names }
    }
}

/// A feature matrix (row-major, `len() × n_features`) and its targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub feature_names: Vec<String>,
    pub n_features: usize,
    pub features: Vec<f32>,
    pub targets: Targets,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    pub fn row(&self, index: usize) -> &[f32] {
        &self.features[index * self.n_features..(index + 1) * self.n_features]
    }

    /// The rows at `indices`, in that order (class names are kept whole so ids stay comparable).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut features = Vec::with_capacity(indices.len() * self.n_features);
        for &i in indices {
            features.extend_from_slice(self.row(i));
        }
        Dataset {
            feature_names: self.feature_names.clone(),
            n_features: self.n_features,
            features,
            targets: self.targets.subset(indices),
        }
    }

    /// Reads `path` by extension: `.npy` as NumPy arrays, anything else as CSV with a header.
    ///
    /// For CSV, `label` names the label column. For NPY, `label` is either the index of the label
    /// column in the 2-D array, or the path of a separate 1-D `.npy` array of labels.
    pub fn load(path: &Path, label: &str, kind: TargetKind) -> Result<Dataset, DataError> {
        let is_npy = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("npy"));
        if is_npy {
            npy_file::load(path, label, kind)
        } else {
            csv_file::load(path, label, kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_class_labels_sort_as_numbers() {
        let labels: Vec<String> = ["10", "2", "1", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Targets::Classes { ids, names } = Targets::classes_from_labels(&labels) else {
            panic!("expected classes");
        };
        assert_eq!(names, ["1", "2", "10"]);
        assert_eq!(ids, [2, 1, 0, 1]);
    }

    #[test]
    fn text_class_labels_sort_as_text() {
        let labels: Vec<String> = ["cat", "ant", "cat"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let Targets::Classes { ids, names } = Targets::classes_from_labels(&labels) else {
            panic!("expected classes");
        };
        assert_eq!(names, ["ant", "cat"]);
        assert_eq!(ids, [1, 0, 1]);
    }

    #[test]
    fn subset_keeps_rows_and_class_names() {
        let data = Dataset {
            feature_names: vec!["a".into(), "b".into()],
            n_features: 2,
            features: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            targets: Targets::Classes {
                ids: vec![0, 1, 2],
                names: vec!["x".into(), "y".into(), "z".into()],
            },
        };
        let sub = data.subset(&[2, 0]);
        assert_eq!(sub.features, [5.0, 6.0, 1.0, 2.0]);
        assert_eq!(
            sub.targets,
            Targets::Classes {
                ids: vec![2, 0],
                names: vec!["x".into(), "y".into(), "z".into()]
            }
        );
    }
}
