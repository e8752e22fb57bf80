//! Bounded capture of a guest's stdout and stderr.
//!
//! The guest may write as much as it likes and every write succeeds (so a
//! chatty algorithm is not turned into a failing one), but only the first
//! `capacity` bytes are kept; the rest are counted and dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// What a guest wrote to one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes written, up to the capacity.
    pub bytes: Vec<u8>,
    /// How many bytes were written in all.
    pub total: u64,
}

impl Captured {
    /// Whether bytes were dropped.
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }

    /// The kept bytes as text, with a note when some were dropped.
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated() {
            s.push_str(&format!(
                "\n[truncated: {} of {} bytes kept]",
                self.bytes.len(),
                self.total
            ));
        }
        s
    }
}

#[derive(Debug)]
struct Buffer {
    captured: Captured,
    capacity: usize,
}

/// A stdout/stderr sink that keeps the first `capacity` bytes.
#[derive(Debug, Clone)]
pub(crate) struct CapturePipe {
    buffer: Arc<Mutex<Buffer>>,
}

impl CapturePipe {
    pub(crate) fn new(capacity: usize) -> CapturePipe {
        CapturePipe {
            buffer: Arc::new(Mutex::new(Buffer {
                captured: Captured::default(),
                capacity,
            })),
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        // A poisoned lock only means another write panicked; the data is still ours.
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = buffer.capacity.saturating_sub(buffer.captured.bytes.len());
        let keep = room.min(bytes.len());
        buffer.captured.bytes.extend_from_slice(&bytes[..keep]);
        buffer.captured.total += bytes.len() as u64;
    }

    /// A copy of the bytes kept so far.
    pub(crate) fn contents(&self) -> Vec<u8> {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.captured.bytes.clone()
    }

    /// What was captured so far.
    pub(crate) fn take(&self) -> Captured {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut buffer.captured)
    }
}

/// Each write may be this large; the guest's writes are split accordingly.
const WRITE_PERMIT: usize = 64 * 1024;

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturePipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let pipe = CapturePipe::new(4);
        pipe.write_bytes(b"abc");
        pipe.write_bytes(b"defgh");
        let captured = pipe.take();
        assert_eq!(captured.bytes, b"abcd");
        assert_eq!(captured.total, 8);
        assert!(captured.truncated());
        assert!(captured.text().ends_with("[truncated: 4 of 8 bytes kept]"));
    }
}
