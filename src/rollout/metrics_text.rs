//! The Prometheus text exposition format, as far as reading a server's own counters and
//! histograms needs: `name{label="value",...} number` lines; comments and other lines skipped.

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample whose metric name is one of `names` (others are not even parsed further).
pub fn parse(text: &str, names: &[&str]) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let name_end = line.find(['{', ' '])?;
            let name = &line[..name_end];
            if !names.contains(&name) {
                return None;
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                let (labels, consumed) = parse_labels(&line[name_end + 1..])?;
                (labels, &line[name_end + 1 + consumed..])
            } else {
                (Vec::new(), &line[name_end..])
            };
            let value = rest.split_whitespace().next()?;
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some(Sample {
                name: name.to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// `a="x",b="y\"z"}` -> labels and the bytes consumed (through the closing brace).
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, usize)> {
    let mut labels = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    loop {
        while bytes.get(i) == Some(&b',') || bytes.get(i) == Some(&b' ') {
            i += 1;
        }
        if bytes.get(i) == Some(&b'}') {
            return Some((labels, i + 1));
        }
        let eq = i + text[i..].find('=')?;
        let key = text[i..eq].trim().to_string();
        if bytes.get(eq + 1) != Some(&b'"') {
            return None;
        }
        let mut value = String::new();
        let mut j = eq + 2;
        loop {
            match *bytes.get(j)? {
                b'\\' => {
                    match *bytes.get(j + 1)? {
                        b'n' => value.push('\n'),
                        other => value.push(char::from(other)),
                    }
                    j += 2;
                }
                b'"' => break,
                _ => {
                    let ch = text[j..].chars().next()?;
                    value.push(ch);
                    j += ch.len_utf8();
                }
            }
        }
        labels.push((key, value));
        i = j + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_and_histogram_buckets() {
        let text = "# HELP sconce_requests Inference requests\n\
                    # TYPE sconce_requests counter\n\
                    sconce_requests_total{model=\"mnist\",protocol=\"v2\",code=\"200\"} 41\n\
                    sconce_requests_total{model=\"mn\\\"ist\",protocol=\"v2\",code=\"500\"} 2\n\
                    sconce_request_duration_seconds_bucket{model=\"mnist\",protocol=\"v2\",le=\"0.0001\"} 0\n\
                    sconce_request_duration_seconds_bucket{model=\"mnist\",protocol=\"v2\",le=\"+Inf\"} 43\n\
                    sconce_model_ready{model=\"mnist\"} 1\n\
                    sconce_requests_in_flight 3\n\
                    # EOF\n";
        let samples = parse(
            text,
            &[
                "sconce_requests_total",
                "sconce_request_duration_seconds_bucket",
                "sconce_requests_in_flight",
            ],
        );
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].label("code"), Some("200"));
        assert_eq!(samples[0].value, 41.0);
        assert_eq!(samples[1].label("model"), Some("mn\"ist"));
        assert_eq!(samples[3].label("le"), Some("+Inf"));
        assert_eq!(samples[4].name, "sconce_requests_in_flight");
        assert_eq!(samples[4].value, 3.0);
        assert!(samples.iter().all(|s| s.name != "sconce_model_ready"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = "x{a=\"1\" 3\nx{a=1} 2\nx{a=\"1\"} nope\nx{a=\"1\"} 4\n";
        let samples = parse(text, &["x"]);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].value, 4.0);
    }
}
