//! Takes the numeric `data` arrays out of a V2 JSON request before serde sees it.
//!
//! Even captured as a raw value, serde_json still walks every number of `data` (about as much
//! work as converting it), so a 1000-float request paid for its numbers twice. Here a structural
//! skim finds `inputs[i].data`, `json_numbers` converts each array in one checked pass, and serde
//! parses the rest of the body with `null` in their place. Anything unusual (escaped keys, `data`
//! that is not an array of numbers, text that is not JSON) leaves the body untouched, and the
//! normal path handles it and writes the error messages.

use super::json_numbers::{scan_array, skip_ws};
use super::tensor::TensorData;

/// The body with each spliced `data` array replaced by `null`, and those arrays by input index.
pub struct Spliced {
    pub json: Vec<u8>,
    pub data: Vec<Option<TensorData>>,
}

/// Splices the numeric `data` arrays out of `body`; `None` if there are none to take.
pub fn splice(body: &[u8]) -> Option<Spliced> {
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut data: Vec<Option<TensorData>> = Vec::new();
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    // Top-level members: only `inputs` is looked into.
    loop {
        i = skip_ws(body, i);
        match body.get(i)? {
            b'}' => break,
            b',' => i += 1,
            b'"' => {
                let (key, after) = key(body, i)?;
                i = skip_ws(body, after);
                if key == b"inputs" && body.get(i) == Some(&b'[') {
                    i = inputs(body, i + 1, &mut cuts, &mut data)?;
                } else {
                    i = skip_value(body, i)?;
                }
            }
            _ => return None,
        }
    }
    if cuts.is_empty() {
        return None;
    }
    let mut json = Vec::with_capacity(
        body.len() - cuts.iter().map(|(a, b)| b - a).sum::<usize>() + 8 * cuts.len(),
    );
    let mut from = 0;
    for (start, end) in cuts {
        json.extend_from_slice(&body[from..start]);
        json.extend_from_slice(b"null");
        from = end;
    }
    json.extend_from_slice(&body[from..]);
    Some(Spliced { json, data })
}

/// Walks the `inputs` array from just after its `[`; returns the index after its `]`.
fn inputs(
    b: &[u8],
    mut i: usize,
    cuts: &mut Vec<(usize, usize)>,
    data: &mut Vec<Option<TensorData>>,
) -> Option<usize> {
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b']' => return Some(i + 1),
            b',' => i += 1,
            b'{' => {
                data.push(None);
                i += 1;
                loop {
                    i = skip_ws(b, i);
                    match b.get(i)? {
                        b'}' => {
                            i += 1;
                            break;
                        }
                        b',' => i += 1,
                        b'"' => {
                            let (key, after) = key(b, i)?;
                            i = skip_ws(b, after);
                            let slot = data.last_mut()?;
                            if key == b"data" && b.get(i) == Some(&b'[') && slot.is_none() {
                                let (t, end) = scan_array(b, i)?;
                                cuts.push((i, end));
                                *slot = Some(t);
                                i = end;
                            } else {
                                i = skip_value(b, i)?;
                            }
                        }
                        _ => return None,
                    }
                }
            }
            _ => {
                data.push(None);
                i = skip_value(b, i)?;
            }
        }
    }
}

/// The key starting at `b[i] == b'"'` (without escapes) and the index after its `:`.
fn key(b: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let end = string_end(b, i)?;
    let raw = &b[i + 1..end - 1];
    if raw.contains(&b'\\') {
        return None;
    }
    let colon = skip_ws(b, end);
    (b.get(colon) == Some(&b':')).then_some((raw, colon + 1))
}

/// The index just past the string starting at `b[i] == b'"'`.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// The index just past the value starting at `i` (structure only: serde checks the rest).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    let i = skip_ws(b, i);
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            // A number or literal: up to the next delimiter.
            let mut j = i;
            while !matches!(b.get(j)?, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::tensor::Values;

    fn nums(t: &Option<TensorData>) -> Vec<f32> {
        match t.as_ref().map(|t| &t.values) {
            Some(Values::Num(v)) => v.clone(),
            other => panic!("not numbers: {other:?}"),
        }
    }

    #[test]
    fn takes_out_the_data_arrays_of_inputs_only() {
        let body = br#" {"id": "a\"data\":[9]", "parameters": {"data": [7]},
            "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [[1.5, -2]]},
                       {"name": "y", "data": "text", "shape": [1]},
                       {"data": [3], "name": "z"}],
            "outputs": [{"name": "o", "data": [8]}]} "#;
        let s = splice(body).unwrap();
        let rest: serde_json::Value = serde_json::from_slice(&s.json).unwrap();
        let full: serde_json::Value = serde_json::from_slice(body).unwrap();
        let mut want = full.clone();
        want["inputs"][0]["data"] = serde_json::Value::Null;
        want["inputs"][2]["data"] = serde_json::Value::Null;
        assert_eq!(rest, want);
        assert_eq!(s.data.len(), 3);
        assert_eq!(nums(&s.data[0]), vec![1.5, -2.0]);
        assert_eq!(s.data[0].as_ref().unwrap().shape, vec![1, 2]);
        assert!(s.data[1].is_none());
        assert_eq!(nums(&s.data[2]), vec![3.0]);
    }

    #[test]
    fn leaves_anything_unusual_to_serde() {
        for body in [
            r#"{"inputs": [{"data": ["a"]}]}"#,
            r#"{"inputs": [{"data": [true]}]}"#,
            r#"{"inputs": [{"data": [[1], [2, 3]]}]}"#,
            r#"{"inputs": [{"data": [1,]}]}"#,
            r#"{"inputs": [{"d\u0061ta": [1]}]}"#,
            r#"{"inputs": [{"data": [1]}"#,
            r#"{"inputs": [{"data": 1}]}"#,
            r#"{"inputs": [{"name": "x"}]}"#,
            r#"{"inputs": "nope"}"#,
            r#"["inputs"]"#,
            "",
            r#"{"inputs": [{"data": [1], "x": "unterminated}]}"#,
        ] {
            assert!(splice(body.as_bytes()).is_none(), "{body}");
        }
    }

    #[test]
    fn a_second_data_key_stays_for_serde_to_refuse() {
        let s = splice(br#"{"inputs": [{"data": [1], "data": [2]}]}"#).unwrap();
        let err =
            serde_json::from_slice::<crate::http::v2_types::InferRequest>(&s.json).unwrap_err();
        assert!(err.to_string().contains("duplicate field"), "{err}");
    }
}
