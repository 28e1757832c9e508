//! Which numbers each datatype holds. A value outside its declared datatype (INT8 1000, UINT8
//! -1), a non-finite one, or one that overflows FP32 (the type every model here computes in)
//! would give a plausible-looking but meaningless answer, so it is refused with the element.
//!
//! The number scanners track the smallest and largest value of each tensor as they convert it
//! ([`Extremes`], two branch-free instructions per number), so the check costs nothing per
//! element; only a refused tensor is searched for the element to name.

/// The smallest and largest values of a tensor, as parsed (before conversion to f32).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extremes {
    pub min: f64,
    pub max: f64,
}

impl Default for Extremes {
    fn default() -> Self {
        Extremes {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Extremes {
    /// Takes a value into account. Written as selects (not `f64::min`, which also orders NaN)
    /// so they compile to `minsd` / `maxsd`: indices tracked here cost ~17 instructions per
    /// number in the scanner (measured with callgrind), more than the whole check is worth.
    #[inline(always)]
    pub fn see(&mut self, v: f64) {
        self.min = if v < self.min { v } else { self.min };
        self.max = if v > self.max { v } else { self.max };
    }
}

/// Whether `datatype` holds `v` (the value as parsed, before conversion to f32).
pub fn holds(datatype: &str, v: f64) -> bool {
    let within = |lo: f64, hi: f64| (lo..=hi).contains(&v);
    match datatype {
        "BOOL" => within(0.0, 1.0),
        "INT8" => within(-128.0, 127.0),
        "UINT8" => within(0.0, 255.0),
        "INT16" => within(-32768.0, 32767.0),
        "UINT16" => within(0.0, 65535.0),
        "INT32" => within(-2147483648.0, 2147483647.0),
        "UINT32" => within(0.0, 4294967295.0),
        // 2^63 and 2^64: the f64 nearest to i64::MAX / u64::MAX, which a JSON number at the
        // limit parses to.
        "INT64" => within(-9223372036854775808.0, 9223372036854775808.0),
        "UINT64" => within(0.0, 18446744073709551616.0),
        // Halves round to infinity from 65520 on.
        "FP16" => v.abs() < 65520.0,
        // FP64 too: the models compute in FP32, so a value must survive the conversion.
        _ => (v as f32).is_finite(),
    }
}

/// The range `datatype` holds, for error messages.
pub fn describe(datatype: &str) -> String {
    match datatype {
        "BOOL" => "BOOL (0 or 1)".into(),
        "INT8" => "INT8 (-128 to 127)".into(),
        "UINT8" => "UINT8 (0 to 255)".into(),
        "INT16" => "INT16 (-32768 to 32767)".into(),
        "UINT16" => "UINT16 (0 to 65535)".into(),
        "INT32" => "INT32 (-2147483648 to 2147483647)".into(),
        "UINT32" => "UINT32 (0 to 4294967295)".into(),
        "INT64" => "INT64".into(),
        "UINT64" => "UINT64 (non-negative)".into(),
        "FP16" => "FP16 (finite, magnitude up to 65504)".into(),
        "FP32" => "FP32 (finite, magnitude up to 3.4028235e38)".into(),
        other => {
            format!("{other} as the model computes it: FP32 (finite, magnitude up to 3.4028235e38)")
        }
    }
}

/// The row-major position of flat index `at` in `shape`, e.g. `[1, 3]`.
fn position(shape: &[usize], mut at: usize) -> String {
    let mut pos = vec![0; shape.len()];
    for (p, &d) in pos.iter_mut().zip(shape).rev() {
        if d > 0 {
            *p = at % d;
            at /= d;
        }
    }
    format!("{pos:?}")
}

/// The error for element `at` (value `v`, as sent) outside `datatype`.
pub fn out_of_range_at(datatype: &str, shape: &[usize], at: usize, v: f64) -> String {
    let place = if shape.len() > 1 {
        format!("element {at} (at {})", position(shape, at))
    } else {
        format!("element {at}")
    };
    format!(
        "{place} is {v:?}, outside the range of {}",
        describe(datatype)
    )
}

/// Checks a tensor against `datatype` by its extremes; when refused, names the first element
/// out of range among `values` (the converted tensor) and what is wrong with it.
pub fn check(datatype: &str, shape: &[usize], e: &Extremes, values: &[f32]) -> Result<(), String> {
    if e.min > e.max || (holds(datatype, e.min) && holds(datatype, e.max)) {
        return Ok(());
    }
    let bad = if holds(datatype, e.min) { e.max } else { e.min };
    // The converted values are exact for every datatype up to 16 bits and keep overflow as
    // infinity; at the 32/64-bit integer limits rounding can hide the culprit, so fall back to
    // the element that converted like the offending extreme.
    let at = values
        .iter()
        .position(|&x| !holds(datatype, f64::from(x)))
        .or_else(|| values.iter().position(|&x| x == bad as f32))
        .unwrap_or(0);
    let x = values.get(at).copied().unwrap_or(bad as f32);
    // Show the value as sent: the converted one is exact unless it overflowed to infinity; then
    // the offending extreme, when it is the only element that overflowed that way.
    let unique = values.iter().filter(|&&v| v == x).count() == 1;
    let value = if !x.is_finite() && x == bad as f32 && unique {
        bad
    } else {
        f64::from(x)
    };
    Err(out_of_range_at(datatype, shape, at, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extremes(values: &[f64]) -> Extremes {
        let mut e = Extremes::default();
        for v in values {
            e.see(*v);
        }
        e
    }

    fn converted(values: &[f64]) -> Vec<f32> {
        values.iter().map(|v| *v as f32).collect()
    }

    fn check_values(datatype: &str, shape: &[usize], values: &[f64]) -> Result<(), String> {
        check(datatype, shape, &extremes(values), &converted(values))
    }

    #[test]
    fn limits_of_every_datatype() {
        let cases: &[(&str, &[f64], &[f64])] = &[
            ("BOOL", &[0.0, 1.0], &[-1.0, 2.0, 0.5 + 1.0]),
            ("INT8", &[-128.0, 127.0], &[-129.0, 128.0, 1000.0]),
            ("UINT8", &[0.0, 255.0], &[-1.0, 256.0]),
            ("INT16", &[-32768.0, 32767.0], &[-32769.0, 32768.0]),
            ("UINT16", &[0.0, 65535.0], &[-1.0, 65536.0]),
            (
                "INT32",
                &[-2147483648.0, 2147483647.0],
                &[2147483648.0, -2147483649.0],
            ),
            ("UINT32", &[0.0, 4294967295.0], &[-1.0, 4294967296.0]),
            ("INT64", &[i64::MIN as f64, i64::MAX as f64], &[1e19, -1e19]),
            ("UINT64", &[0.0, u64::MAX as f64], &[-1.0, 1e20]),
            (
                "FP16",
                &[65504.0, -65504.0, 65519.0],
                &[65520.0, -70000.0, f64::INFINITY],
            ),
            (
                "FP32",
                &[3.4028234e38, -3.4028234e38, 1e-300],
                &[3.5e38, -1e39, f64::INFINITY, f64::NEG_INFINITY, f64::NAN],
            ),
            ("FP64", &[1e38, -1e-300], &[1e300, f64::INFINITY, f64::NAN]),
        ];
        for (dt, ok, bad) in cases {
            for v in *ok {
                assert!(holds(dt, *v), "{dt} {v}");
            }
            for v in *bad {
                assert!(!holds(dt, *v), "{dt} {v}");
            }
        }
    }

    #[test]
    fn check_names_the_element_and_its_position() {
        let v = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -4e38];
        let msg = check_values("FP32", &[2, 4], &v).unwrap_err();
        assert!(msg.starts_with("element 7 (at [1, 3]) is -4e38"), "{msg}");
        let msg = check_values("INT8", &[3], &[5.0, 1000.0, -200.0]).unwrap_err();
        assert!(msg.contains("element 1 is 1000"), "{msg}");
        assert!(msg.contains("INT8 (-128 to 127)"), "{msg}");
        // The first element out of range, not the most extreme one.
        let msg = check_values("INT8", &[3], &[0.0, 200.0, 1000.0]).unwrap_err();
        assert!(msg.contains("element 1 is 200"), "{msg}");
        assert!(check_values("INT8", &[2], &[-128.0, 127.0]).is_ok());
        assert!(check("FP32", &[0], &Extremes::default(), &[]).is_ok());
        let msg = check_values("FP32", &[1], &[f64::INFINITY]).unwrap_err();
        assert!(msg.contains("is inf"), "{msg}");
        let msg = check_values("FP32", &[2], &[1.0, 3.5e38]).unwrap_err();
        assert!(msg.contains("element 1 is 3.5e38"), "{msg}");
        // INT32's limit and one past it convert to the same f32: the legit one passes, and
        // the culprit is still found.
        assert!(check_values("INT32", &[1], &[2147483647.0]).is_ok());
        let msg = check_values("INT32", &[2], &[5.0, 2147483648.0]).unwrap_err();
        assert!(msg.contains("element 1"), "{msg}");
    }

    #[test]
    fn positions() {
        assert_eq!(position(&[2, 3], 5), "[1, 2]");
        assert_eq!(position(&[2, 2, 2], 6), "[1, 1, 0]");
        assert_eq!(position(&[4], 3), "[3]");
    }
}
