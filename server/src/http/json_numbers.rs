//! The fast path for V2 `data`: (nested) arrays of JSON numbers, read straight from the request
//! text.
//!
//! serde_json spends ~350 instructions per number through the visitor in `tensor.rs` (number
//! parsing plus one visitor call per element); a 1000-float request then costs more than the
//! model. The body was already validated as JSON when serde_json captured `data` as a raw value,
//! so this scanner only needs to split tokens and convert numbers, digits straight into an
//! integer mantissa and an exact power-of-ten step (Clinger's fast path, correctly rounded);
//! the rare number outside that path goes to std's parser. Anything else — strings, booleans, ragged arrays — returns `None` and goes
//! through the serde visitor, which also writes the error messages.

use serde_json::value::RawValue;

use super::ranges::Extremes;
use super::tensor::{Shape, TensorData, Values};
use crate::error::ApiError;

/// Flattens `data`, by the fast path when it applies.
pub fn parse_data(raw: &RawValue) -> Result<TensorData, ApiError> {
    match scan(raw.get()) {
        Some(t) => Ok(t),
        None => serde_json::from_str(raw.get())
            .map_err(|e| ApiError::bad(format!("invalid tensor data: {e}"))),
    }
}

/// Reads JSON that is an array (nested or not) of numbers only; `None` otherwise.
pub fn scan(json: &str) -> Option<TensorData> {
    let b = json.as_bytes();
    let (t, end) = scan_array(b, skip_ws(b, 0))?;
    (skip_ws(b, end) == b.len()).then_some(t)
}

/// Reads the array of numbers starting at `b[start] == b'['`, checking the JSON grammar as it
/// goes (the caller may not have validated the text); returns it and the index just past it.
pub fn scan_array(b: &[u8], start: usize) -> Option<(TensorData, usize)> {
    if b.get(start) != Some(&b'[') {
        return None;
    }
    // Typical numbers take four bytes or more with their separator.
    let mut nums: Vec<f32> = Vec::with_capacity((b.len() - start) / 4);
    // Elements seen so far in each open array, outermost first.
    let mut open: Vec<usize> = Vec::new();
    let mut shape = Shape::default();
    let mut saw_float = false;
    // Tracked here so the range check needs no second pass over the values.
    let mut extremes = Extremes::default();
    let mut i = start;
    // Grammar: after `[` a value or `]`; after a value `,` or `]`; after `,` a value.
    let mut want_value = true;
    let mut may_close = true;
    loop {
        match *b.get(i)? {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b',' if !want_value => {
                want_value = true;
                may_close = false;
                i += 1;
            }
            b'[' if want_value => {
                open.push(0);
                may_close = true;
                i += 1;
            }
            b']' if may_close => {
                let count = open.pop()?;
                if !shape.array(open.len(), count) {
                    return None;
                }
                i += 1;
                match open.last_mut() {
                    Some(parent) => *parent += 1,
                    None => break,
                }
                want_value = false;
                may_close = true;
            }
            b'-' | b'0'..=b'9' if want_value => {
                let v = number(b, &mut i)?;
                if !saw_float && v.fract() != 0.0 {
                    saw_float = true;
                }
                extremes.see(v);
                nums.push(v as f32);
                if !shape.element(open.len()) {
                    return None;
                }
                *open.last_mut()? += 1;
                want_value = false;
                may_close = true;
            }
            _ => return None,
        }
    }
    let t = TensorData {
        values: Values::Num(nums),
        shape: shape.dims(),
        saw_float,
        saw_bool: false,
        extremes,
    };
    Some((t, i))
}

pub fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Powers of ten that f64 holds exactly.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Reads the JSON number starting at `*i` (grammar checked) and moves `*i` past it.
fn number(b: &[u8], i: &mut usize) -> Option<f64> {
    let start = *i;
    let negative = b[start] == b'-';
    let mut at = start + usize::from(negative);
    // Up to 19 digits fit a u64; longer numbers (rare) go to std below.
    let mut mantissa: u64 = 0;
    let int_start = at;
    let int_digits = digit_run(b, at, &mut mantissa);
    at += int_digits;
    // JSON: at least one digit, and no leading zero before more digits.
    if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut digits = int_digits;
    let mut exp10: i64 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let n = digit_run(b, at, &mut mantissa);
        if n == 0 {
            return None;
        }
        at += n;
        digits += n;
        exp10 -= n as i64;
    }
    if matches!(b.get(at), Some(b'e' | b'E')) {
        at += 1;
        let sign = match b.get(at) {
            Some(b'-') => {
                at += 1;
                -1
            }
            Some(b'+') => {
                at += 1;
                1
            }
            _ => 1,
        };
        let first = at;
        let mut e: i64 = 0;
        while let Some(d) = digit(b, at) {
            e = (e * 10 + d as i64).min(1 << 20);
            at += 1;
        }
        if at == first {
            return None;
        }
        exp10 += sign * e;
    }
    *i = at;
    // Clinger: a mantissa below 2^53 times or over an exact power of ten rounds correctly.
    if digits <= 19 && mantissa < (1 << 53) && exp10.unsigned_abs() < POW10.len() as u64 {
        let m = mantissa as f64;
        let p = POW10[exp10.unsigned_abs() as usize];
        let v = if exp10 < 0 { m / p } else { m * p };
        return Some(if negative { -v } else { v });
    }
    // Checked above: the token is ASCII digits, signs, '.', 'e'.
    std::str::from_utf8(&b[start..at]).ok()?.parse().ok()
}

/// Appends the run of ASCII digits at `b[at..]` to `mantissa` (wrapping: the caller checks the
/// count) and returns the run's length.
fn digit_run(b: &[u8], at: usize, mantissa: &mut u64) -> usize {
    let mut m = *mantissa;
    let mut n = 0;
    for &c in &b[at.min(b.len())..] {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        n += 1;
    }
    *mantissa = m;
    n
}

fn digit(b: &[u8], at: usize) -> Option<u64> {
    let d = b.get(at)?.wrapping_sub(b'0');
    (d < 10).then_some(u64::from(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(s: &str) -> Option<TensorData> {
        serde_json::from_str(s).ok()
    }

    /// The fast path agrees with the serde visitor wherever it answers, and leaves every input
    /// the visitor rejects (or reads as strings/booleans) to it.
    #[test]
    fn agrees_with_the_serde_visitor() {
        let cases = [
            "[1, 2.5, -3]",
            "[[1, 2, 3], [4, 5, 6]]",
            "[[[1], [2]], [[3], [4]]]",
            "[]",
            "[[]]",
            "[[], []]",
            "[[], [1]]",
            "[[1], []]",
            "[[1, 2], [3]]",
            "[[1, 2], 3]",
            "[1, [2, 3]]",
            "[1e3, -2E-2, 0.0, -0, 1.5e+2, 123456789012]",
            "[0.1234567, 3.4028235e38, 1e-45]",
            "[0.000123, 1.500000, 12345678901234567890123, 9007199254740993, 1e22, 1e23, 5e-324]",
            "[2.2250738585072011e-308, 0.1, 0.3, 123.456e-2, -1E+2, 0e5, 0.0e-0]",
            "[ [ 1 ,2 ] ,\n [3,\t4] ]",
            r#"["a", "b"]"#,
            "[true, false]",
            "[1, true]",
            "[null]",
            r#"[{"a": 1}]"#,
            "3",
            "[[1, 2], [3, 4], [5, 6, 7]]",
            "[1, []]",
            "[[], 1]",
            "[[[]], [[]]]",
            // Not JSON: the fast path must refuse, whatever the visitor says.
            "[1,,2]",
            "[1 2]",
            "[,1]",
            "[1,]",
            "[01]",
            "[1.]",
            "[.5]",
            "[-]",
            "[1e]",
            "[+1]",
            "[1]]",
            "[[1]",
            "[1",
            "[--1]",
            "[0x10]",
            "[1e5.5]",
        ];
        for case in cases {
            let fast = scan(case);
            let slow = slow(case);
            match (&fast, &slow) {
                (Some(f), Some(s)) => {
                    // serde_json's own float parsing may be an ulp off std's (it is not
                    // correctly rounded without its `float_roundtrip` feature); the f32 values
                    // agree, and the extremes agree up to that ulp.
                    let (fe, se) = (f.extremes, s.extremes);
                    for (a, b) in [(fe.min, se.min), (fe.max, se.max)] {
                        assert!(
                            a == b || (a - b).abs() <= a.abs() * 1e-15,
                            "{case}: {a} {b}"
                        );
                    }
                    let same_extremes = TensorData {
                        extremes: s.extremes,
                        ..f.clone()
                    };
                    assert_eq!(&same_extremes, s, "{case}");
                }
                (None, _) => {}
                (Some(_), None) => panic!("fast path accepted {case}, which the visitor rejects"),
            }
        }
        // The common shapes do take the fast path.
        for case in [
            "[1, 2.5, -3]",
            "[[1, 2, 3], [4, 5, 6]]",
            "[]",
            "[[]]",
            "[1e3]",
        ] {
            assert!(scan(case).is_some(), "{case}");
        }
    }

    /// Every number the fast path converts is the f64 std's correctly rounded parser gives.
    #[test]
    fn numbers_round_like_std() {
        let mut tokens: Vec<String> = [
            "0",
            "-0",
            "1",
            "-1",
            "0.1",
            "0.2",
            "0.3",
            "1.5",
            "-2.75",
            "123.456",
            "1e3",
            "1E-3",
            "1e+22",
            "1e22",
            "1e23",
            "4.9e-324",
            "1.7976931348623157e308",
            "9007199254740992",
            "9007199254740993",
            "12345678901234567890",
            "0.000001",
            "3.14159265358979323846",
            "2.2250738585072014e-308",
            "100000000000000000000000",
            "7.0e-10",
            "0.1e1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Six-decimal values like the benchmark's, and a spread of magnitudes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for k in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 4_000_000) as f64 / 1e6 - 2.0;
            tokens.push(format!("{v:.6}"));
            tokens.push(format!("{:e}", v * 10f64.powi(k % 40 - 20)));
        }
        for t in &tokens {
            let mut i = 0;
            let got = number(t.as_bytes(), &mut i).unwrap();
            assert_eq!(i, t.len(), "{t}");
            let want: f64 = t.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{t}");
        }
    }

    #[test]
    fn digit_runs_of_every_length() {
        for len in 0..=20 {
            let digits: String = (0..len).map(|k| char::from(b'1' + (k % 9) as u8)).collect();
            for tail in ["", ",", "]", "e5", ".", " 7"] {
                let text = format!("{digits}{tail}");
                let mut m = 0u64;
                let n = digit_run(text.as_bytes(), 0, &mut m);
                assert_eq!(n, len, "{text}");
                if len <= 19 {
                    let want: u64 = if len == 0 { 0 } else { digits.parse().unwrap() };
                    assert_eq!(m, want, "{text}");
                }
            }
        }
    }

    #[test]
    fn shapes_and_flags() {
        let t = scan("[[1, 2, 3], [4, 5, 6]]").unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert!(!t.saw_float);
        let t = scan("[[0.5], [2]]").unwrap();
        assert_eq!(t.shape, vec![2, 1]);
        assert!(t.saw_float);
        assert_eq!(scan("[[]]").unwrap().shape, vec![1, 0]);
        assert_eq!(scan("[]").unwrap().shape, vec![0]);
    }

    #[test]
    fn extremes_keep_the_values_as_parsed() {
        let t = scan("[[1, 1e999], [-3.5e38, 2]]").unwrap();
        assert_eq!(t.extremes.max, f64::INFINITY);
        assert_eq!(t.extremes.min, -3.5e38);
    }

    #[test]
    fn falls_back_with_the_visitors_errors() {
        let raw = RawValue::from_string("[[1, 2], [3]]".into()).unwrap();
        let err = parse_data(&raw).unwrap_err().to_string();
        assert!(err.contains("ragged"), "{err}");
        let raw = RawValue::from_string(r#"["a", "b"]"#.into()).unwrap();
        assert_eq!(
            parse_data(&raw).unwrap().values,
            Values::Bytes(vec![b"a".to_vec(), b"b".to_vec()])
        );
    }
}
