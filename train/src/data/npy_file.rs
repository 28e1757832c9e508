//! NumPy `.npy` input: a 2-D array of features, with the label either one of its columns (by index) or
//! a separate 1-D `.npy` file of the same length.

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

use super::{Dataset, TargetKind, Targets};
use crate::error::DataError;

pub(super) fn load(path: &Path, label: &str, kind: TargetKind) -> Result<Dataset, DataError> {
    let matrix = read_matrix(path)?;
    let (rows, columns) = matrix.shape;
    if rows == 0 {
        return Err(DataError::NoRows {
            path: path.to_owned(),
        });
    }
    let (label_values, feature_columns): (Vec<f64>, Vec<usize>) = if label.ends_with(".npy") {
        let label_path = PathBuf::from(label);
        let labels = read_matrix(&label_path)?;
        if labels.shape != (rows, 1) {
            return Err(npy_error(
                &label_path,
                format!(
                    "labels must be a 1-D array of {rows} values (one per row of {}), found shape {:?}",
                    path.display(),
                    labels.shape
                ),
            ));
        }
        (labels.values, (0..columns).collect())
    } else {
        let index: usize = label.parse().map_err(|_| {
            npy_error(path, format!("for NPY input the label must be a column index or a labels .npy file, got `{label}`"))
        })?;
        if index >= columns {
            return Err(npy_error(
                path,
                format!("label column {index} is out of range: the array has {columns} columns"),
            ));
        }
        let labels = (0..rows)
            .map(|r| matrix.values[r * columns + index])
            .collect();
        (labels, (0..columns).filter(|&c| c != index).collect())
    };
    if feature_columns.is_empty() {
        return Err(DataError::NoFeatureColumns {
            path: path.to_owned(),
        });
    }
    let mut features = Vec::with_capacity(rows * feature_columns.len());
    for row in 0..rows {
        for &column in &feature_columns {
            let value = matrix.values[row * columns + column];
            if !value.is_finite() {
                return Err(npy_error(
                    path,
                    format!("row {row}, column {column}: {value} is not a finite number"),
                ));
            }
            features.push(value as f32);
        }
    }
    for (row, value) in label_values.iter().enumerate() {
        if !value.is_finite() {
            return Err(npy_error(
                path,
                format!("row {row}: label {value} is not a finite number"),
            ));
        }
    }
    let targets = match kind {
        TargetKind::Values => Targets::Values(label_values.iter().map(|&v| v as f32).collect()),
        TargetKind::Classes => {
            let labels: Vec<String> = label_values.iter().map(|v| format_label(*v)).collect();
            Targets::classes_from_labels(&labels)
        }
    };
    Ok(Dataset {
        feature_names: feature_columns.iter().map(|c| format!("x{c}")).collect(),
        n_features: feature_columns.len(),
        features,
        targets,
    })
}

struct Matrix {
    shape: (usize, usize),
    values: Vec<f64>,
}

fn read_matrix(path: &Path) -> Result<Matrix, DataError> {
    if std::fs::metadata(path)
        .map_err(|source| DataError::Read {
            path: path.to_owned(),
            source,
        })?
        .len()
        == 0
    {
        return Err(DataError::Npy {
            path: path.to_owned(),
            message: "the file is empty".to_owned(),
        });
    }
    let tensor = Tensor::read_npy(path).map_err(|e| npy_error(path, e.to_string()))?;
    let shape = match tensor.dims() {
        [n] => (*n, 1),
        [rows, columns] => (*rows, *columns),
        dims => {
            return Err(npy_error(
                path,
                format!("expected a 1-D or 2-D array, found shape {dims:?}"),
            ));
        }
    };
    let values = tensor
        .to_dtype(DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| npy_error(path, format!("cannot convert to numbers: {e}")))?;
    Ok(Matrix { shape, values })
}

fn format_label(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        value.to_string()
    }
}

fn npy_error(path: &Path, message: String) -> DataError {
    DataError::Npy {
        path: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn label_as_column_index_or_separate_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let x = Tensor::from_vec(vec![1f32, 2.0, 0.0, 3.0, 4.0, 1.0], (2, 3), &Device::Cpu)
            .expect("tensor");
        let x_path = dir.path().join("x.npy");
        x.write_npy(&x_path).expect("write");
        let data = load(&x_path, "2", TargetKind::Classes).expect("loads");
        assert_eq!(data.features, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            data.targets,
            Targets::Classes {
                ids: vec![0, 1],
                names: vec!["0".into(), "1".into()]
            }
        );

        let y = Tensor::from_vec(vec![0.5f64, -1.5], 2, &Device::Cpu).expect("tensor");
        let y_path = dir.path().join("y.npy");
        y.write_npy(&y_path).expect("write");
        let label = y_path.to_string_lossy().to_string();
        let data = load(&x_path, &label, TargetKind::Values).expect("loads");
        assert_eq!(data.n_features, 3);
        assert_eq!(data.targets, Targets::Values(vec![0.5, -1.5]));
    }

    #[test]
    fn nan_and_bad_label_are_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let x =
            Tensor::from_vec(vec![1f32, 0.0, f32::NAN, 1.0], (2, 2), &Device::Cpu).expect("tensor");
        let x_path = dir.path().join("x.npy");
        x.write_npy(&x_path).expect("write");
        let message = load(&x_path, "1", TargetKind::Classes)
            .expect_err("NaN")
            .to_string();
        assert!(message.contains("row 1, column 0"), "{message}");
        let message = load(&x_path, "label", TargetKind::Classes)
            .expect_err("not an index")
            .to_string();
        assert!(message.contains("column index"), "{message}");
        let empty = dir.path().join("empty.npy");
        std::fs::write(&empty, b"").expect("write");
        let message = load(&empty, "0", TargetKind::Classes)
            .expect_err("empty")
            .to_string();
        assert!(message.contains("empty"), "{message}");
    }
}
