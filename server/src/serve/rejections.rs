//! JSON instead of hyper's empty answers to requests it cannot parse.
//!
//! hyper answers a malformed request line or header, conflicting `Content-Length`s (400), an
//! over-long URI (414) and oversized headers (431) itself, before any service runs, with an empty
//! body, and closes the connection; there is no hook to change that answer. This wrapper around
//! the socket recognises it as it is written (hyper writes it as one head with `content-length: 0`
//! and no `content-type`, where every answer of this server has a content type), writes a JSON
//! answer with the same status in its place, reports the rejection, and on close drains what the
//! client is still sending for a moment so the answer is not lost to a TCP reset.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::ServeEvents;

/// Why a request was refused before routing; the `reason` label of
/// `sconce_http_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Unparseable request line or header, bad or conflicting `Content-Length` (400).
    MalformedRequest,
    /// The request URI is too long (414).
    UriTooLong,
    /// Headers too large or too many (431).
    HeadersTooLarge,
    /// A path segment that is not UTF-8 once percent-decoded (400, from the router).
    BadPathEncoding,
}

impl Rejection {
    pub const ALL: [Rejection; 4] = [
        Rejection::MalformedRequest,
        Rejection::UriTooLong,
        Rejection::HeadersTooLarge,
        Rejection::BadPathEncoding,
    ];

    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::MalformedRequest => "malformed_request",
            Rejection::UriTooLong => "uri_too_long",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::BadPathEncoding => "bad_path_encoding",
        }
    }

    fn from_status(status: u16) -> Option<Self> {
        match status {
            400 => Some(Rejection::MalformedRequest),
            414 => Some(Rejection::UriTooLong),
            431 => Some(Rejection::HeadersTooLarge),
            _ => None,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Rejection::MalformedRequest => {
                "malformed HTTP request: the request line, a header or Content-Length cannot be parsed"
            }
            Rejection::UriTooLong => "request URI is too long",
            Rejection::HeadersTooLarge => "request headers are too large or too many",
            Rejection::BadPathEncoding => "invalid percent-encoded path",
        }
    }
}

/// The status of hyper's own error answer if `chunk` starts with one (see the module doc).
fn automatic_error_status(chunk: &[u8]) -> Option<(u16, usize)> {
    // Answers of this server (2xx mostly) leave at the first byte that differs.
    let rest = chunk.strip_prefix(b"HTTP/1.1 4")?;
    let code = match rest.get(..2)? {
        b"00" => 400,
        b"14" => 414,
        b"31" => 431,
        _ => return None,
    };
    let head_len = chunk.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = chunk[..head_len].to_ascii_lowercase();
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    (has(b"\r\ncontent-length: 0\r\n") && !has(b"\r\ncontent-type:")).then_some((code, head_len))
}

/// The JSON answer that replaces hyper's for `why`.
fn json_answer(status: u16, why: Rejection) -> Vec<u8> {
    let body = serde_json::json!({ "error": why.message() }).to_string();
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn not_connected() -> io::Error {
    io::Error::from(io::ErrorKind::NotConnected)
}

/// A connection's socket, rewriting hyper's automatic error answers (see the module doc).
pub struct JsonRejections {
    /// `None` only after `Drop` took it to linger.
    stream: Option<TcpStream>,
    events: Arc<dyn ServeEvents>,
    /// The replacement answer and how much of it is written.
    replacement: Vec<u8>,
    written: usize,
    replaced: bool,
}

impl JsonRejections {
    pub fn new(stream: TcpStream, events: Arc<dyn ServeEvents>) -> Self {
        JsonRejections {
            stream: Some(stream),
            events,
            replacement: Vec::new(),
            written: 0,
            replaced: false,
        }
    }

    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.stream.as_mut().map(Pin::new).ok_or_else(not_connected)
    }

    /// Writes what is left of the replacement answer.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let JsonRejections {
            stream,
            replacement,
            written,
            ..
        } = self;
        while *written < replacement.len() {
            let stream = stream.as_mut().ok_or_else(not_connected)?;
            let n = ready!(Pin::new(stream).poll_write(cx, &replacement[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// If `chunk` is hyper's own error answer, queues the JSON one in its place and returns how
    /// many bytes of `chunk` it stands for.
    fn intercept(&mut self, chunk: &[u8]) -> Option<usize> {
        if self.replaced {
            return None;
        }
        let (status, head_len) = automatic_error_status(chunk)?;
        let why = Rejection::from_status(status)?;
        self.replaced = true;
        self.replacement = json_answer(status, why);
        self.written = 0;
        self.events.rejected(why);
        Some(head_len)
    }
}

impl AsyncRead for JsonRejections {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().stream()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonRejections {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if let Some(n) = this.intercept(buf) {
            // Start writing it now; poll_flush finishes it.
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(n));
        }
        this.stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(n) = this.intercept(first)
        {
            let _ = this.poll_replacement(cx)?;
            return Poll::Ready(Ok(n));
        }
        this.stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        this.stream()?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        this.stream()?.poll_shutdown(cx)
    }
}

/// How long, and how much, a rejected client may keep sending after its answer.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 << 20;

impl Drop for JsonRejections {
    fn drop(&mut self) {
        // Closing a socket with unread input resets the connection, and the client may then
        // lose the answer it has not read yet. A rejected request often is still arriving
        // (oversized headers), so read and discard it for a moment after a half-close.
        if !self.replaced {
            return;
        }
        let (Some(mut stream), Ok(handle)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let rest = self
            .replacement
            .split_off(self.written.min(self.replacement.len()));
        handle.spawn(async move {
            let linger = async {
                stream.write_all(&rest).await?;
                stream.shutdown().await?;
                let mut sink = vec![0u8; 16 << 10];
                let mut total = 0;
                while total < LINGER_BYTES {
                    let n = stream.read(&mut sink).await?;
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
                io::Result::Ok(())
            };
            let _ = tokio::time::timeout(LINGER, linger).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hyper_s_automatic_answers_only() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 29 Nov 2026 00:00:00 GMT\r\n\r\n";
        assert_eq!(
            automatic_error_status(hyper_431),
            Some((431, hyper_431.len()))
        );
        let hyper_400 =
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            automatic_error_status(hyper_400),
            Some((400, hyper_400.len()))
        );
        for ours in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{\"error\":1}",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request",
            b"",
            b"{\"outputs\": []}",
        ] {
            assert_eq!(automatic_error_status(ours), None, "{}", String::from_utf8_lossy(ours));
        }
    }

    #[test]
    fn json_answers_are_complete_http() {
        let a = String::from_utf8(json_answer(431, Rejection::HeadersTooLarge)).unwrap();
        let (head, body) = a.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("too large"));
    }
}
