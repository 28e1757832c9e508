//! Which numbers each datatype holds. A value outside its declared datatype (INT8 1000, UINT8
//! -1), a non-finite one, or one that overflows FP32 (the type every model here computes in)
//! would give a plausible-looking but meaningless answer, so it is refused with the element.
//!
//! The number scanners track the smallest and largest value of each tensor as they convert it
//! ([`Extremes`]), so checking a tensor costs two comparisons instead of a second pass.

/// The smallest and largest values of a tensor and where they first occur (flat index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extremes {
    pub min: f64,
    pub min_at: usize,
    pub max: f64,
    pub max_at: usize,
}

impl Default for Extremes {
    fn default() -> Self {
        Extremes {
            min: f64::INFINITY,
            min_at: 0,
            max: f64::NEG_INFINITY,
            max_at: 0,
        }
    }
}

impl Extremes {
    /// Takes element `at` into account.
    #[inline(always)]
    pub fn see(&mut self, v: f64, at: usize) {
        if v < self.min {
            self.min = v;
            self.min_at = at;
        }
        if v > self.max {
            self.max = v;
            self.max_at = at;
        }
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

/// Checks a tensor's extremes against `datatype`; the error names the offending element (the
/// extreme one; the smaller index when both ends are out).
pub fn check(datatype: &str, shape: &[usize], e: &Extremes) -> Result<(), String> {
    if e.min > e.max {
        // No numbers at all.
        return Ok(());
    }
    let low = (!holds(datatype, e.min)).then_some((e.min_at, e.min));
    let high = (!holds(datatype, e.max)).then_some((e.max_at, e.max));
    let bad = match (low, high) {
        (Some(l), Some(h)) => Some(if l.0 <= h.0 { l } else { h }),
        (l, h) => l.or(h),
    };
    match bad {
        Some((at, v)) => Err(out_of_range_at(datatype, shape, at, v)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extremes(values: &[f64]) -> Extremes {
        let mut e = Extremes::default();
        for (i, v) in values.iter().enumerate() {
            e.see(*v, i);
        }
        e
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
        let e = extremes(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -4e38]);
        let msg = check("FP32", &[2, 4], &e).unwrap_err();
        assert!(msg.starts_with("element 7 (at [1, 3]) is -4e38"), "{msg}");
        let e = extremes(&[5.0, 1000.0, -200.0]);
        let msg = check("INT8", &[3], &e).unwrap_err();
        assert!(msg.contains("element 1 is 1000"), "{msg}");
        assert!(msg.contains("INT8 (-128 to 127)"), "{msg}");
        let e = extremes(&[-200.0, 1000.0]);
        assert!(check("INT8", &[2], &e).unwrap_err().contains("element 0"));
        assert!(check("INT8", &[2], &extremes(&[-128.0, 127.0])).is_ok());
        assert!(check("FP32", &[0], &Extremes::default()).is_ok());
        let e = extremes(&[f64::INFINITY]);
        assert!(check("FP32", &[1], &e).unwrap_err().contains("is inf"));
    }

    #[test]
    fn positions() {
        assert_eq!(position(&[2, 3], 5), "[1, 2]");
        assert_eq!(position(&[2, 2, 2], 6), "[1, 1, 0]");
        assert_eq!(position(&[4], 3), "[3]");
    }
}
