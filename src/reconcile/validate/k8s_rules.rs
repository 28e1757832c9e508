//! Kubernetes' own naming and value rules (k8s.io/apimachinery's `validation` package, as of
//! 1.20), checked before applying so a bad spec is reported with the field to fix instead of
//! surfacing as an apiserver rejection of a child object. Each function returns `Err(why)` with
//! the rule in the apiserver's words.

const DNS1123_LABEL_RULE: &str = "must consist of lower case alphanumeric characters or '-', and \
     must start and end with an alphanumeric character";
const DNS1035_LABEL_RULE: &str = "must consist of lower case alphanumeric characters or '-', start \
     with an alphabetic character, and end with an alphanumeric character";

fn is_label_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// A DNS-1123 label: pod-template and Deployment-derived names, claim names.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.iter().all(|&c| is_label_char(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    if !ok {
        return Err(format!("a DNS-1123 label {DNS1123_LABEL_RULE}"));
    }
    Ok(())
}

/// A DNS-1035 label: what a Service name must be.
pub fn dns1035_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if s.len() > 63 {
        return Err("must be no more than 63 characters".into());
    }
    let ok = !b.is_empty()
        && b.iter().all(|&c| is_label_char(c))
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Err(format!("a DNS-1035 label {DNS1035_LABEL_RULE}"));
    }
    Ok(())
}

/// A DNS-1123 subdomain: ServiceAccount names, the prefix of qualified names.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err("must be no more than 253 characters".into());
    }
    let ok = !s.is_empty()
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter().all(|&c| is_label_char(c))
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
        });
    if !ok {
        return Err(
            "a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character"
                .into(),
        );
    }
    Ok(())
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most `max` long (0 allowed when `empty_ok`).
fn alnum_with_inner_punctuation(s: &str, max: usize, empty_ok: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return empty_ok;
    }
    b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label or annotation key: `[prefix/]name`, prefix a DNS-1123 subdomain.
pub fn qualified_name(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    if let Some(prefix) = prefix {
        dns1123_subdomain(prefix).map_err(|why| format!("prefix part {why}"))?;
    }
    if !alnum_with_inner_punctuation(name, 63, false) {
        return Err(
            "name part must consist of alphanumeric characters, '-', '_' or '.', must start and \
             end with an alphanumeric character, and be at most 63 characters"
                .into(),
        );
    }
    Ok(())
}

/// A label value (may be empty).
pub fn label_value(s: &str) -> Result<(), String> {
    if !alnum_with_inner_punctuation(s, 63, true) {
        return Err(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', \
             '_' or '.', must start and end with an alphanumeric character, and be at most 63 \
             characters"
                .into(),
        );
    }
    Ok(())
}

/// An environment variable name as 1.20 checks it (`IsEnvVarName`).
pub fn env_var_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        return Err(
            "a valid environment variable name must consist of alphabetic characters, digits, \
             '_', '-', or '.', and must not start with a digit"
                .into(),
        );
    }
    Ok(())
}

/// Parses a `resource.Quantity` (`<signed number><suffix>`: `500m`, `1.5`, `2Gi`, `1e3`) to
/// its value, for syntax and sign checks and request <= limit comparisons.
pub fn quantity(s: &str) -> Result<f64, String> {
    let err = || {
        "quantities must match the regular expression \
         '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' (e.g. 500m, 1.5, 2Gi)"
            .to_string()
    };
    let number_end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))))
        .map_or(s.len(), |(i, _)| i);
    let (number, suffix) = s.split_at(number_end);
    let digits = number.trim_start_matches(['+', '-']);
    if digits.is_empty() || digits == "." || digits.matches('.').count() > 1 {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let scale = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e = &exp[1..];
            let digits = e.trim_start_matches(['+', '-']);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            let e: i32 = e.parse().map_err(|_| err())?;
            10f64.powi(e)
        }
        _ => return Err(err()),
    };
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        for ok in ["a", "a-1", "1digits", "x".repeat(63).as_str()] {
            assert!(dns1123_label(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "my.model",
            "a_b",
            "x".repeat(64).as_str(),
        ] {
            assert!(dns1123_label(bad).is_err(), "{bad}");
        }
        assert!(dns1035_label("digits").is_ok());
        for bad in ["1digits", "my.model", "Digits", "a-"] {
            assert!(dns1035_label(bad).is_err(), "{bad}");
        }
        assert!(dns1123_subdomain("my.sa-1").is_ok());
        for bad in ["", "My", "a..b", ".a", "a_b"] {
            assert!(dns1123_subdomain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn qualified_names_and_label_values() {
        for ok in ["disk", "kubernetes.io/hostname", "a_b.c-d", "example.com/X"] {
            assert!(qualified_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/x", "Example.com/x", "a/b/c", "-x", "x y"] {
            assert!(qualified_name(bad).is_err(), "{bad}");
        }
        for ok in ["", "ssd", "a.b_c-D"] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-x", "x ", "a/b", "x".repeat(64).as_str()] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_var_names() {
        for ok in ["A", "SCONCE_MAX_BATCH_SIZE", "my.var", "-x", "_"] {
            assert!(env_var_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A=B", "1A", "A B", "é"] {
            assert!(env_var_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities() {
        let cases = [
            ("1", 1.0),
            ("500m", 0.5),
            ("1.5", 1.5),
            ("2Gi", 2.0 * 1024.0 * 1024.0 * 1024.0),
            ("256Mi", 256.0 * 1024.0 * 1024.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            (".5", 0.5),
            ("5.", 5.0),
            ("+1k", 1000.0),
            ("-1", -1.0),
        ];
        for (text, value) in cases {
            let got = quantity(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!((got - value).abs() <= value.abs() * 1e-12, "{text}: {got}");
        }
        for bad in [
            "", "1.5.5", "abc", "1Gb", "1 Gi", ".", "1e", "1e+", "m", "--1", "1ki",
        ] {
            assert!(quantity(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
