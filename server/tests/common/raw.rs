//! HTTP/1.1 over a bare TCP stream, for requests no HTTP client library would send.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One response: status, headers (names lowercased) and body.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "status {}: non-JSON body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one response: the head, then `Content-Length` bytes (or up to EOF without one).
pub async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> RawResponse {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let mut lines = head.split("\r\n");
                let status: u16 = lines
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line in {head:?}"));
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.parse::<usize>().unwrap());
                let body_start = end + 4;
                loop {
                    if let Some(len) = len
                        && buf.len() >= body_start + len
                    {
                        let body = buf[body_start..body_start + len].to_vec();
                        return RawResponse {
                            status,
                            headers,
                            body,
                        };
                    }
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        assert!(len.is_none(), "connection closed inside the body");
                        let body = buf[body_start..].to_vec();
                        return RawResponse {
                            status,
                            headers,
                            body,
                        };
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
            let n = stream.read(&mut chunk).await.expect("reading the response");
            assert!(
                n > 0,
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("no response within 20 s")
}

/// Sends `request` on a new connection and reads one response. The request is written by a
/// separate task, so a server that answers before reading everything cannot deadlock the test.
pub async fn send_raw(addr: SocketAddr, request: Vec<u8>) -> RawResponse {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may stop reading and close (that can be what is tested): ignore errors.
        let _ = wr.write_all(&request).await;
        wr
    });
    let response = read_response(&mut rd).await;
    writer.abort();
    response
}
