//! Tensor `data` as clients send it: flat or nested JSON arrays, or raw binary
//! (the binary tensor data extension). Nested arrays are flattened in row-major order
//! while parsing, so no intermediate `serde_json::Value` tree is built.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::ranges::{self, Extremes};
use crate::error::ApiError;

/// Flattened element values.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Numbers (and booleans as 0/1), as f32: every model here computes in f32.
    Num(Vec<f32>),
    /// BYTES elements.
    Bytes(Vec<Vec<u8>>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Num(v) => v.len(),
            Values::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Flattened `data` plus the shape its nesting implies.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub values: Values,
    /// Lengths of the nested arrays, outermost first (`[len]` for a flat array).
    pub shape: Vec<usize>,
    /// Some element was a non-integral number.
    pub saw_float: bool,
    /// Some element was a boolean.
    pub saw_bool: bool,
    /// The smallest and largest numbers, as parsed (before conversion to f32).
    pub extremes: Extremes,
}

/// The shape of nested arrays seen while flattening them, shared by the serde visitor below and
/// the fast path in `json_numbers.rs` so both read the same shapes.
#[derive(Default)]
pub(super) struct Shape {
    /// Length of the arrays at each depth; all arrays at one depth must agree.
    dims: Vec<Option<usize>>,
    /// Depth of the elements (scalars).
    leaf_depth: Option<usize>,
}

impl Shape {
    /// An element at `depth`; false if elements were seen at another depth (ragged).
    pub(super) fn element(&mut self, depth: usize) -> bool {
        match self.leaf_depth {
            None => self.leaf_depth = Some(depth),
            Some(d) if d != depth => return false,
            Some(_) => {}
        }
        true
    }

    /// An array at `depth` ended after `count` elements; false if it disagrees with another
    /// array at that depth (ragged).
    pub(super) fn array(&mut self, depth: usize, count: usize) -> bool {
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(count),
            Some(c) if c != count => return false,
            Some(_) => {}
        }
        if count == 0 && self.leaf_depth.is_none() {
            // An empty array: its elements would sit one level deeper.
            self.leaf_depth = Some(depth + 1);
        }
        true
    }

    /// Lengths of the nested arrays, outermost first.
    pub(super) fn dims(&self) -> Vec<usize> {
        let leaf = self.leaf_depth.unwrap_or(0);
        self.dims
            .iter()
            .take(leaf)
            .map(|d| d.unwrap_or(0))
            .collect()
    }
}

const RAGGED: &str = "ragged nested array in tensor data";

#[derive(Default)]
struct Acc {
    nums: Vec<f32>,
    strs: Vec<Vec<u8>>,
    saw_float: bool,
    saw_bool: bool,
    extremes: Extremes,
    shape: Shape,
}

impl Acc {
    fn num<E: de::Error>(&mut self, v: f64, depth: usize) -> Result<(), E> {
        self.extremes.see(v);
        self.nums.push(v as f32);
        self.leaf(depth)
    }

    fn leaf<E: de::Error>(&mut self, depth: usize) -> Result<(), E> {
        if !self.shape.element(depth) {
            return Err(E::custom(RAGGED));
        }
        if !self.strs.is_empty() && !self.nums.is_empty() {
            return Err(E::custom("tensor data mixes strings and numbers"));
        }
        Ok(())
    }
}

struct Seed<'a> {
    acc: &'a mut Acc,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, boolean, string or (nested) array of them")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let depth = self.depth;
        if let Some(n) = seq.size_hint() {
            self.acc.nums.reserve(n);
        }
        let mut count = 0usize;
        while seq
            .next_element_seed(Seed {
                acc: &mut *self.acc,
                depth: depth + 1,
            })?
            .is_some()
        {
            count += 1;
        }
        if !self.acc.shape.array(depth, count) {
            return Err(de::Error::custom(RAGGED));
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if v.fract() != 0.0 {
            self.acc.saw_float = true;
        }
        self.acc.num(v, self.depth)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.acc.num(v as f64, self.depth)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.acc.num(v as f64, self.depth)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.acc.saw_bool = true;
        self.acc.num(if v { 1.0 } else { 0.0 }, self.depth)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.acc.strs.push(v.as_bytes().to_vec());
        self.acc.leaf(self.depth)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.acc.strs.push(v.into_bytes());
        self.acc.leaf(self.depth)
    }
}

impl<'de> serde::Deserialize<'de> for TensorData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut acc = Acc::default();
        Seed {
            acc: &mut acc,
            depth: 0,
        }
        .deserialize(d)?;
        let shape = acc.shape.dims();
        let values = if acc.strs.is_empty() {
            Values::Num(acc.nums)
        } else {
            Values::Bytes(acc.strs)
        };
        Ok(TensorData {
            values,
            shape,
            saw_float: acc.saw_float,
            saw_bool: acc.saw_bool,
            extremes: acc.extremes,
        })
    }
}

/// Element size in bytes of a fixed-size datatype.
pub fn element_size(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" | "FP16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        _ => return None,
    })
}

pub fn is_known_datatype(datatype: &str) -> bool {
    datatype == "BYTES" || element_size(datatype).is_some()
}

fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(c);
    a
}

/// Decodes a binary tensor (little-endian, row-major; BYTES as 4-byte length + bytes). Floats
/// that are not finite in FP32 (NaN, infinities, FP64 beyond FP32's range) and BOOL bytes other
/// than 0 and 1 are refused with their element (`shape` places it).
pub fn decode_binary(datatype: &str, raw: &[u8], shape: &[usize]) -> Result<Values, ApiError> {
    if datatype == "BYTES" {
        let mut out = Vec::new();
        let mut rest = raw;
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(ApiError::bad("truncated BYTES element length"));
            }
            let n = u32::from_le_bytes(arr(&rest[..4])) as usize;
            rest = &rest[4..];
            if rest.len() < n {
                return Err(ApiError::bad("truncated BYTES element"));
            }
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        return Ok(Values::Bytes(out));
    }
    let size = element_size(datatype)
        .ok_or_else(|| ApiError::bad(format!("unsupported datatype {datatype}")))?;
    if !raw.len().is_multiple_of(size) {
        return Err(ApiError::bad(format!(
            "binary data of {} bytes is not a whole number of {datatype} elements",
            raw.len()
        )));
    }
    let chunks = raw.chunks_exact(size);
    let nums: Vec<f32> = match datatype {
        "FP32" => chunks.map(|c| f32::from_le_bytes(arr(c))).collect(),
        "FP64" => chunks.map(|c| f64::from_le_bytes(arr(c)) as f32).collect(),
        "FP16" => chunks
            .map(|c| half_to_f32(u16::from_le_bytes(arr(c))))
            .collect(),
        "BOOL" | "UINT8" => chunks.map(|c| c[0] as f32).collect(),
        "INT8" => chunks.map(|c| c[0] as i8 as f32).collect(),
        "INT16" => chunks.map(|c| i16::from_le_bytes(arr(c)) as f32).collect(),
        "UINT16" => chunks.map(|c| u16::from_le_bytes(arr(c)) as f32).collect(),
        "INT32" => chunks.map(|c| i32::from_le_bytes(arr(c)) as f32).collect(),
        "UINT32" => chunks.map(|c| u32::from_le_bytes(arr(c)) as f32).collect(),
        "INT64" => chunks.map(|c| i64::from_le_bytes(arr(c)) as f32).collect(),
        "UINT64" => chunks.map(|c| u64::from_le_bytes(arr(c)) as f32).collect(),
        _ => return Err(ApiError::bad(format!("unsupported datatype {datatype}"))),
    };
    // Checked after the conversion, as reductions that vectorise: folding the check into the
    // conversion loops kept them from vectorising (FP32: 0.5k -> 12k instructions per
    // 1000-float request, callgrind); these passes over 4 kB in cache cost far less.
    let ok = match datatype {
        "FP32" | "FP64" | "FP16" => all_finite(&nums),
        "BOOL" => raw.iter().fold(0u8, |acc, b| acc | (b & !1)) == 0,
        _ => true,
    };
    if !ok {
        // Rare: find the element, with the value as sent.
        for (at, c) in raw.chunks_exact(size).enumerate() {
            let v = match datatype {
                "FP64" => f64::from_le_bytes(arr(c)),
                "BOOL" => f64::from(c[0]),
                _ => f64::from(nums[at]),
            };
            if !ranges::holds(datatype, v) {
                return Err(ApiError::BadRequest(ranges::out_of_range_at(
                    datatype, shape, at, v,
                )));
            }
        }
    }
    Ok(Values::Num(nums))
}

/// No NaN or infinity (an exponent of all ones). An OR of compares, which vectorises on
/// baseline x86-64 (a `max` of the bits did not: no SSE2 unsigned max).
fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(0u32, |acc, v| {
        acc | u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
    }) == 0
}

/// IEEE 754 half to f32.
fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal
            let v = (m as f32) * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<TensorData, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn flat_and_nested() {
        let t = parse("[1, 2.5, -3]").unwrap();
        assert_eq!(t.values, Values::Num(vec![1.0, 2.5, -3.0]));
        assert_eq!(t.shape, vec![3]);
        assert!(t.saw_float);
        let t = parse("[[1, 2, 3], [4, 5, 6]]").unwrap();
        assert_eq!(t.values, Values::Num(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
        assert_eq!(t.shape, vec![2, 3]);
        assert!(!t.saw_float);
        let t = parse(r#"["a", "b"]"#).unwrap();
        assert_eq!(t.values, Values::Bytes(vec![b"a".to_vec(), b"b".to_vec()]));
        let t = parse("[true, false]").unwrap();
        assert!(t.saw_bool);
    }

    #[test]
    fn rejects_ragged_and_mixed() {
        assert!(parse("[[1, 2], [3]]").is_err());
        assert!(parse("[[1, 2], 3]").is_err());
        assert!(parse(r#"[1, "a"]"#).is_err());
        assert!(parse(r#"["a", 1]"#).is_err());
        assert!(parse(r#"[{"a": 1}]"#).is_err());
        assert!(parse("[null]").is_err());
    }

    #[test]
    fn binary() {
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            decode_binary("FP32", &raw, &[2]).unwrap(),
            Values::Num(vec![1.5, -2.0])
        );
        assert!(decode_binary("FP32", &raw[..5], &[2]).is_err());
        let mut b = Vec::new();
        for s in ["hi", ""] {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        }
        assert_eq!(
            decode_binary("BYTES", &b, &[2]).unwrap(),
            Values::Bytes(vec![b"hi".to_vec(), vec![]])
        );
        assert!(decode_binary("BYTES", &b[..3], &[2]).is_err());
        let bad: Vec<u8> = [1.0f32, 2.0, f32::NAN, 0.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let e = decode_binary("FP32", &bad, &[2, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("element 2 (at [1, 0]) is NaN"), "{e}");
        let big: Vec<u8> = [0.0f64, 1e300]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let e = decode_binary("FP64", &big, &[2]).unwrap_err().to_string();
        assert!(e.contains("element 1 is 1e300"), "{e}");
        let e = decode_binary("BOOL", &[0, 1, 2], &[3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("element 2 is 2"), "{e}");
        assert!(decode_binary("FP16", &[0x00, 0x7c], &[1]).is_err());
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
    }
}
