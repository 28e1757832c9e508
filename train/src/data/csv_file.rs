//! CSV with a header line: one label column (by name), every other column a numeric feature.

use std::path::Path;

use super::{Dataset, TargetKind, Targets};
use crate::error::DataError;

pub(super) fn load(
    path: &Path,
    label_column: &str,
    kind: TargetKind,
) -> Result<Dataset, DataError> {
    let file = std::fs::File::open(path).map_err(|source| DataError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let header = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    if header.is_empty() || (header.len() == 1 && header.get(0).is_some_and(str::is_empty)) {
        return Err(DataError::Empty {
            path: path.to_owned(),
        });
    }
    let label_index = header
        .iter()
        .position(|name| name == label_column)
        .ok_or_else(|| DataError::MissingLabelColumn {
            path: path.to_owned(),
            column: label_column.to_owned(),
            available: header.iter().collect::<Vec<_>>().join(", "),
        })?;
    if header.len() < 2 {
        return Err(DataError::NoFeatureColumns {
            path: path.to_owned(),
        });
    }
    let feature_names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != label_index)
        .map(|(_, name)| name.to_owned())
        .collect();

    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut values = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader
            .read_record(&mut record)
            .map_err(|e| csv_error(path, e))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, csv::Position::line);
        for (column, cell) in record.iter().enumerate() {
            if column == label_index {
                continue;
            }
            features.push(parse_number(path, line, &header[column], cell)?);
        }
        let label = &record[label_index];
        match kind {
            TargetKind::Classes => {
                if label.is_empty() {
                    return Err(DataError::Malformed {
                        path: path.to_owned(),
                        line,
                        message: format!("the label column `{label_column}` is empty"),
                    });
                }
                if label.parse::<f64>().is_ok_and(|v| !v.is_finite()) {
                    return Err(not_finite(path, line, label_column, label));
                }
                labels.push(label.to_owned());
            }
            TargetKind::Values => values.push(parse_number(path, line, label_column, label)?),
        }
    }
    let targets = match kind {
        TargetKind::Classes => Targets::classes_from_labels(&labels),
        TargetKind::Values => Targets::Values(values),
    };
    if targets.is_empty() {
        return Err(DataError::NoRows {
            path: path.to_owned(),
        });
    }
    Ok(Dataset {
        n_features: feature_names.len(),
        feature_names,
        features,
        targets,
    })
}

fn parse_number(path: &Path, line: u64, column: &str, cell: &str) -> Result<f32, DataError> {
    match cell.parse::<f32>() {
        Ok(value) if value.is_finite() => Ok(value),
        Ok(_) => Err(not_finite(path, line, column, cell)),
        Err(_) => Err(DataError::NonNumeric {
            path: path.to_owned(),
            line,
            column: column.to_owned(),
            value: if cell.is_empty() {
                "(empty cell)".to_owned()
            } else {
                cell.to_owned()
            },
        }),
    }
}

fn not_finite(path: &Path, line: u64, column: &str, cell: &str) -> DataError {
    DataError::NotFinite {
        path: path.to_owned(),
        line,
        column: column.to_owned(),
        value: cell.to_owned(),
    }
}

fn csv_error(path: &Path, error: csv::Error) -> DataError {
    let line = error.position().map_or(0, csv::Position::line);
    let message = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("expected {expected_len} fields like the header, found {len}")
        }
        _ => error.to_string(),
    };
    match error.into_kind() {
        csv::ErrorKind::Io(source) => DataError::Read {
            path: path.to_owned(),
            source,
        },
        _ => DataError::Malformed {
            path: path.to_owned(),
            line,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new()
            .suffix(".csv")
            .tempfile()
            .expect("temp file");
        std::io::Write::write_all(&mut file, content.as_bytes()).expect("write");
        file
    }

    fn load_err(content: &str, label: &str, kind: TargetKind) -> String {
        let file = write(content);
        load(file.path(), label, kind)
            .expect_err("should fail")
            .to_string()
    }

    #[test]
    fn reads_features_and_labels_with_label_anywhere() {
        let file = write("a,label,b\n1,cat,2\n3,dog,4\n");
        let data = load(file.path(), "label", TargetKind::Classes).expect("loads");
        assert_eq!(data.feature_names, ["a", "b"]);
        assert_eq!(data.features, [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            data.targets,
            Targets::Classes {
                ids: vec![0, 1],
                names: vec!["cat".into(), "dog".into()]
            }
        );
    }

    #[test]
    fn reads_regression_targets() {
        let file = write("x,y\n1,0.5\n2,1.5\n");
        let data = load(file.path(), "y", TargetKind::Values).expect("loads");
        assert_eq!(data.targets, Targets::Values(vec![0.5, 1.5]));
    }

    #[test]
    fn missing_label_column_names_header_line_and_columns() {
        let message = load_err("a,b\n1,2\n", "target", TargetKind::Classes);
        assert!(message.contains("line 1"), "{message}");
        assert!(
            message.contains("`target`") && message.contains("a, b"),
            "{message}"
        );
    }

    #[test]
    fn non_numeric_cell_names_line_and_column() {
        let message = load_err("a,b,label\n1,2,0\n3,oops,1\n", "label", TargetKind::Classes);
        assert!(message.contains("line 3"), "{message}");
        assert!(
            message.contains("column `b`") && message.contains("`oops` is not a number"),
            "{message}"
        );
    }

    #[test]
    fn nan_names_line() {
        let message = load_err("a,label\n1,0\n2,1\nNaN,0\n", "label", TargetKind::Classes);
        assert!(
            message.contains("line 4") && message.contains("NaN"),
            "{message}"
        );
        let message = load_err("a,y\n1,0\n2,nan\n", "y", TargetKind::Values);
        assert!(
            message.contains("line 3") && message.contains("column `y`"),
            "{message}"
        );
    }

    #[test]
    fn empty_file_and_header_only_are_explained() {
        let message = load_err("", "label", TargetKind::Classes);
        assert!(
            message.contains("line 1") && message.contains("empty"),
            "{message}"
        );
        let message = load_err("a,label\n", "label", TargetKind::Classes);
        assert!(message.contains("no data rows"), "{message}");
    }

    #[test]
    fn ragged_row_names_line() {
        let message = load_err("a,b,label\n1,2,0\n1,0\n", "label", TargetKind::Classes);
        assert!(
            message.contains("line 3") && message.contains("expected 3 fields"),
            "{message}"
        );
    }

    #[test]
    fn empty_cell_is_reported() {
        let message = load_err("a,b,label\n1,,0\n", "label", TargetKind::Classes);
        assert!(
            message.contains("line 2") && message.contains("empty cell"),
            "{message}"
        );
    }
}
