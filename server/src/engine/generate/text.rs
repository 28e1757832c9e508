//! From generated token bytes to the text a client sees: bytes are released once they form
//! whole UTF-8 characters (a byte-level token can end mid-character), and text that could be
//! the start of a stop string is held back until it is known not to be — so a stop string
//! split across tokens is still found, and never partly sent.

/// What one token adds to the output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Text safe to send now.
    pub text: String,
    /// A stop string was completed: generation ends; `text` stops before it.
    pub stopped: bool,
}

pub struct TextStream {
    stops: Vec<String>,
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text not yet released (it may begin a stop string).
    held: String,
    stopped: bool,
}

/// Length of the longest suffix of `text` that is a proper prefix of some stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut keep = 0;
    for stop in stops {
        for k in (keep + 1..stop.len().min(text.len() + 1)).rev() {
            if let Some(prefix) = stop.get(..k)
                && text.ends_with(prefix)
            {
                keep = k;
                break;
            }
        }
    }
    keep
}

impl TextStream {
    /// `stops` must not contain empty strings (the HTTP layer refuses them).
    pub fn new(stops: Vec<String>) -> Self {
        TextStream {
            stops,
            partial: Vec::new(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Adds the bytes of one generated token.
    pub fn push(&mut self, bytes: &[u8]) -> Delta {
        if self.stopped {
            return Delta {
                text: String::new(),
                stopped: true,
            };
        }
        self.partial.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => {
                // Not UTF-8 at all (not merely unfinished): replace what is there.
                let lossy = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                self.held.push_str(&lossy);
                return self.release();
            }
            Err(e) => e.valid_up_to(),
        };
        let rest = self.partial.split_off(valid);
        // `valid` bytes were checked above.
        self.held
            .push_str(std::str::from_utf8(&self.partial).unwrap_or_default());
        self.partial = rest;
        self.release()
    }

    fn release(&mut self) -> Delta {
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.stopped = true;
            let text = self.held[..at].to_string();
            self.held.clear();
            return Delta {
                text,
                stopped: true,
            };
        }
        let keep = held_back(&self.held, &self.stops);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.replace_range(..cut, "");
        Delta {
            text,
            stopped: false,
        }
    }

    /// Generation ended without a stop string: whatever is held is output after all (an
    /// unfinished character as U+FFFD).
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.partial)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], tokens: &[&[u8]]) -> (Vec<String>, bool, String) {
        let mut s = TextStream::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = Vec::new();
        let mut stopped = false;
        for t in tokens {
            let d = s.push(t);
            out.push(d.text);
            stopped |= d.stopped;
        }
        (out, stopped, s.finish())
    }

    #[test]
    fn plain_text_passes_through() {
        let (out, stopped, tail) = run(&[], &[b"Hello", b" world"]);
        assert_eq!(out, ["Hello", " world"]);
        assert!(!stopped);
        assert_eq!(tail, "");
    }

    #[test]
    fn multibyte_characters_split_across_tokens() {
        let e = "é".as_bytes();
        let (out, _, tail) = run(&[], &[b"caf", &e[..1], &e[1..], b"!"]);
        assert_eq!(out, ["caf", "", "é", "!"]);
        assert_eq!(tail, "");
        // Unfinished at the end: replaced.
        let (_, _, tail) = run(&[], &[&e[..1]]);
        assert_eq!(tail, "\u{FFFD}");
        // Invalid bytes are replaced, not stuck.
        let (out, _, _) = run(&[], &[b"a\xFFb"]);
        assert_eq!(out, ["a\u{FFFD}b"]);
    }

    #[test]
    fn stop_string_across_token_boundaries() {
        let (out, stopped, tail) = run(&["END"], &[b"one E", b"N", b"D two"]);
        assert_eq!(out, ["one ", "", ""]);
        assert!(stopped);
        assert_eq!(tail, "");
        // A false start is released once it cannot be a stop.
        let (out, stopped, tail) = run(&["END"], &[b"an E", b"Nx", b"y"]);
        assert_eq!(out, ["an ", "ENx", "y"]);
        assert!(!stopped);
        assert_eq!(tail, "");
        // Held text at the end is output.
        let (out, _, tail) = run(&["END"], &[b"ab EN"]);
        assert_eq!(out, ["ab "]);
        assert_eq!(tail, "EN");
    }

    #[test]
    fn earliest_of_several_stops_and_stops_inside_one_token() {
        let (out, stopped, _) = run(&["\n\n", "###"], &[b"a ### b\n\nc"]);
        assert_eq!(out, ["a "]);
        assert!(stopped);
        let (out, _, _) = run(&["ab", "b"], &[b"xab"]);
        assert_eq!(out, ["x"]);
        // Multibyte stop strings.
        let (out, stopped, _) = run(&["é!"], &[b"caf", "é".as_bytes(), b"!"]);
        assert_eq!(out, ["caf", "", ""]);
        assert!(stopped);
    }

    #[test]
    fn hold_back_length() {
        let stops = vec!["abc".to_string(), "bd".to_string()];
        assert_eq!(held_back("xxab", &stops), 2);
        assert_eq!(held_back("xxb", &stops), 1);
        assert_eq!(held_back("xxc", &stops), 0);
        assert_eq!(held_back("", &stops), 0);
    }
}
