//! Durations as Kubernetes users write them (Go's `time.ParseDuration` without signs):
//! `500ms`, `30s`, `5m`, `1h30m`, `1.5s`.
use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let err = || {
        format!(
            "{text:?} is not a duration: use a number and a unit (ms, s, m, h), e.g. 30s, 5m or 1h30m"
        )
    };
    if text.is_empty() || text == "0" {
        return if text == "0" {
            Ok(Duration::ZERO)
        } else {
            Err(err())
        };
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let (number, tail) = rest.split_at(number_end);
        if number.is_empty() || number.matches('.').count() > 1 {
            return Err(err());
        }
        let value: f64 = number.parse().map_err(|_| err())?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let seconds = match unit {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += value * seconds;
        rest = next;
    }
    if !total.is_finite() || total > 365.0 * 24.0 * 3600.0 {
        return Err(format!("{text:?} is longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Prints a duration the way `parse` reads it (`1m30s`, `250ms`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_users_write() {
        let cases = [
            ("500ms", 0.5),
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("2m3s", 123.0),
            ("0", 0.0),
        ];
        for (text, secs) in cases {
            let d = parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert!((d.as_secs_f64() - secs).abs() < 1e-9, "{text}: {d:?}");
        }
        for bad in [
            "",
            "30",
            "s",
            "5 m",
            "-1s",
            "1d",
            "1.2.3s",
            "m5",
            "99999999h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["250ms", "1s", "1m30s", "2h", "1h0m5s"] {
            let d = parse(text).expect("parses");
            assert_eq!(parse(&format(d)).expect("formatted parses"), d);
        }
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
    }
}
