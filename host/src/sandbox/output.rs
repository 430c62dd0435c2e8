//! What a component prints to stdout and stderr: the first [`GuestOutput::capacity`] bytes are
//! kept for the log, the rest is counted and dropped. Writing never fails, so a guest whose
//! runtime panics on a failed write (Rust's `println!` does) is never broken by printing much.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Debug, Clone)]
pub struct GuestOutput {
    capacity: usize,
    state: Arc<Mutex<Captured>>,
}

#[derive(Debug, Default)]
struct Captured {
    kept: Vec<u8>,
    dropped: u64,
}

impl GuestOutput {
    pub fn new(capacity: usize) -> Self {
        GuestOutput { capacity, state: Arc::default() }
    }

    /// The bytes kept, and how many more were dropped.
    pub fn contents(&self) -> (Vec<u8>, u64) {
        match self.state.lock() {
            Ok(state) => (state.kept.clone(), state.dropped),
            Err(poisoned) => {
                let state = poisoned.into_inner();
                (state.kept.clone(), state.dropped)
            }
        }
    }

    fn take(&self, bytes: &[u8]) {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let room = self.capacity.saturating_sub(state.kept.len()).min(bytes.len());
        state.kept.extend_from_slice(&bytes[..room]);
        state.dropped += (bytes.len() - room) as u64;
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.take(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always room: what does not fit is dropped, not refused.
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.take(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_counts_the_rest() {
        let mut output = GuestOutput::new(4);
        output.write(Bytes::from_static(b"abc")).unwrap();
        output.write(Bytes::from_static(b"defgh")).unwrap();
        assert_eq!(output.check_write().unwrap(), 64 * 1024, "a full buffer never closes the stream");
        assert_eq!(output.contents(), (b"abcd".to_vec(), 4));
    }
}
