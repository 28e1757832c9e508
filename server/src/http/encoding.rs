//! HTTP content codings: `Content-Encoding: gzip / deflate` request bodies (decoded with
//! `--max-body-bytes` applied to the decoded size, so a small compression bomb gets 413) and
//! compressed answers when `Accept-Encoding` asks for them.

use std::io::{Read, Write};

use axum::http::HeaderValue;
use flate2::Compression;
use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
use flate2::write::{GzEncoder, ZlibEncoder};

use crate::error::ApiError;

/// The codings this server reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// zlib-wrapped DEFLATE, as HTTP defines `deflate` (raw DEFLATE is read too: some clients
    /// send that).
    Deflate,
}

impl Coding {
    pub fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }

    fn parse(token: &str) -> Option<Option<Coding>> {
        match token.to_ascii_lowercase().as_str() {
            "gzip" | "x-gzip" => Some(Some(Coding::Gzip)),
            "deflate" => Some(Some(Coding::Deflate)),
            "identity" => Some(None),
            _ => None,
        }
    }
}

/// The coding of a request body from its `Content-Encoding` (`None`: not encoded). More than one
/// coding, or one this server does not know, is 415.
pub fn request_coding(header: Option<&HeaderValue>) -> Result<Option<Coding>, ApiError> {
    let Some(value) = header else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedEncoding("a non-ASCII Content-Encoding".into()))?;
    let codings: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    match codings.as_slice() {
        [] => Ok(None),
        [one] => Coding::parse(one)
            .ok_or_else(|| ApiError::UnsupportedEncoding(format!("Content-Encoding {one:?}"))),
        _ => Err(ApiError::UnsupportedEncoding(format!(
            "Content-Encoding {text:?} (more than one coding)"
        ))),
    }
}

/// Decodes `body`; more than `limit` decoded bytes is 413 (and stops decoding right there).
pub fn decode(coding: Coding, body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let zlib_header = body.len() >= 2
        && body[0] & 0x0f == 8
        && (u16::from(body[0]) << 8 | u16::from(body[1])).is_multiple_of(31);
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(GzDecoder::new(body)),
        Coding::Deflate if zlib_header => Box::new(ZlibDecoder::new(body)),
        Coding::Deflate => Box::new(DeflateDecoder::new(body)),
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    // One byte past the limit tells "over" from "exactly at".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad(format!("invalid {} body: {e}", coding.name())))?;
    if out.len() > limit {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    Ok(out)
}

/// The coding to answer in, from the request's `Accept-Encoding`: the acceptable (q > 0) one
/// with the highest q, gzip first on a tie; `None` for identity.
pub fn response_coding(accept: &HeaderValue) -> Option<Coding> {
    let text = accept.to_str().ok()?;
    let mut best: Option<(Coding, f32)> = None;
    let mut consider = |coding: Coding, q: f32| {
        if q > 0.0
            && best.is_none_or(|(c, bq)| {
                q > bq || (q == bq && coding == Coding::Gzip && c != Coding::Gzip)
            })
        {
            best = Some((coding, q));
        }
    };
    // Codings named explicitly, and `*` for the ones not named.
    let mut named = [false; 2];
    let mut star: Option<f32> = None;
    for item in text.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        if token == "*" {
            star = Some(q);
            continue;
        }
        if let Some(Some(coding)) = Coding::parse(token) {
            named[coding as usize] = true;
            consider(coding, q);
        }
    }
    if let Some(q) = star {
        for coding in [Coding::Gzip, Coding::Deflate] {
            if !named[coding as usize] {
                consider(coding, q);
            }
        }
    }
    best.map(|(c, _)| c)
}

/// Answers shorter than this are sent as they are: compressing them saves nothing.
pub const MIN_COMPRESSED_LEN: usize = 256;

/// Compresses an answer (fast level: answers are compressed once, on the HTTP thread).
pub fn encode(coding: Coding, body: &[u8]) -> Vec<u8> {
    let out = Vec::with_capacity(body.len() / 2 + 64);
    // Writing into a Vec cannot fail.
    let encoded = match coding {
        Coding::Gzip => {
            let mut e = GzEncoder::new(out, Compression::fast());
            e.write_all(body).and_then(|()| e.finish())
        }
        Coding::Deflate => {
            let mut e = ZlibEncoder::new(out, Compression::fast());
            e.write_all(body).and_then(|()| e.finish())
        }
    };
    encoded.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn request_codings() {
        assert_eq!(request_coding(None).unwrap(), None);
        assert_eq!(request_coding(Some(&hv("identity"))).unwrap(), None);
        assert_eq!(
            request_coding(Some(&hv("gzip"))).unwrap(),
            Some(Coding::Gzip)
        );
        assert_eq!(
            request_coding(Some(&hv(" X-GZIP "))).unwrap(),
            Some(Coding::Gzip)
        );
        assert_eq!(
            request_coding(Some(&hv("deflate"))).unwrap(),
            Some(Coding::Deflate)
        );
        for bad in ["br", "gzip, deflate", "compress", "zstd"] {
            let e = request_coding(Some(&hv(bad))).unwrap_err();
            assert_eq!(
                e.status(),
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{bad}"
            );
        }
    }

    #[test]
    fn accept_encoding_negotiation() {
        let cases = [
            ("gzip", Some(Coding::Gzip)),
            ("deflate", Some(Coding::Deflate)),
            ("deflate, gzip", Some(Coding::Gzip)),
            ("gzip;q=0.5, deflate;q=0.9", Some(Coding::Deflate)),
            ("gzip; q=0, deflate", Some(Coding::Deflate)),
            ("gzip;q=0", None),
            ("*", Some(Coding::Gzip)),
            ("gzip;q=0, *", Some(Coding::Deflate)),
            ("*;q=0", None),
            ("identity", None),
            ("br, zstd", None),
            ("", None),
            ("GZip", Some(Coding::Gzip)),
        ];
        for (header, want) in cases {
            assert_eq!(response_coding(&hv(header)), want, "{header:?}");
        }
    }

    #[test]
    fn round_trips_and_limits() {
        let text = br#"{"inputs": [1, 2, 3]}"#.repeat(100);
        for coding in [Coding::Gzip, Coding::Deflate] {
            let packed = encode(coding, &text);
            assert!(packed.len() < text.len());
            assert_eq!(decode(coding, &packed, text.len()).unwrap(), text);
            let e = decode(coding, &packed, text.len() - 1).unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
            let e = decode(coding, &packed[..packed.len() / 2], 1 << 20).unwrap_err();
            assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        }
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        raw.write_all(&text).unwrap();
        assert_eq!(
            decode(Coding::Deflate, &raw.finish().unwrap(), 1 << 20).unwrap(),
            text
        );
    }
}
