//! The connection edge of `serve`: at most `max_connections` at once (a connection past it is
//! closed at once), a first byte within `first_byte_timeout` (a silent connection holds nothing
//! for long), and request headers within `header_timeout` (hyper's timer, which also ends idle
//! keep-alive connections). TLS handshakes have axum-server's own timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Limits every accepted connection.
#[derive(Clone, Debug)]
pub(crate) struct Capped {
    permits: Arc<Semaphore>,
    first_byte_timeout: Duration,
}

impl Capped {
    pub(crate) fn new(max_connections: usize, first_byte_timeout: Duration) -> Capped {
        Capped { permits: Arc::new(Semaphore::new(max_connections.max(1))), first_byte_timeout }
    }
}

impl<I, S> Accept<I, S> for Capped
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = CappedStream<I>;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let permit = self.permits.clone().try_acquire_owned();
        let deadline = self.first_byte_timeout;
        Box::pin(async move {
            let Ok(permit) = permit else {
                tracing::warn!("connection limit reached: closing a new connection");
                return Err(io::Error::other("connection limit reached"));
            };
            let first_byte = Some(Box::pin(tokio::time::sleep(deadline)));
            Ok((CappedStream { inner: stream, _permit: permit, first_byte }, service))
        })
    }
}

/// A connection that holds one of the limited permits while it lives, and fails its first read
/// if no byte came in time.
#[derive(Debug)]
pub(crate) struct CappedStream<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
    first_byte: Option<Pin<Box<Sleep>>>,
}

impl<I: AsyncRead + Unpin> AsyncRead for CappedStream<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.first_byte = None;
                Poll::Ready(result)
            }
            Poll::Pending => match this.first_byte.as_mut().map(|s| s.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request in time")))
                }
                _ => Poll::Pending,
            },
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for CappedStream<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
