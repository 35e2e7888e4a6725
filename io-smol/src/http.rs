//! HTTP connections for the async XML-RPC and XenAPI clients: TCP, TLS
//! (rustls, feature `tls`) and UNIX sockets, and the link that drives an
//! HTTP machine over them, connecting again whenever the machine says its
//! connection is spent (`Machine::needs_connection`).
//!
//! URLs, TLS settings and their errors are `vmwire_std::http`'s.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};
use vmwire_proto::Machine;
use vmwire_proto::op::{Inbox, Operation};
#[cfg(feature = "tls")]
pub use vmwire_std::http::pem_certificates;
pub use vmwire_std::http::{Address, OpenError, TlsOptions, Url, UrlError, redact};
use vmwire_std::http::{connect_failed, endpoint_machine};
use vmwire_std::transport::time_left;

use crate::conn::{Conn, Connect, DriveError, Stream, With, deadline};

/// An HTTP connection: a socket, or TLS over a TCP one.
#[derive(Debug)]
pub(crate) enum HttpStream {
    /// HTTP over TCP or a UNIX socket.
    Plain(Stream),
    /// HTTPS.
    #[cfg(feature = "tls")]
    Tls(Box<futures_rustls::client::TlsStream<Stream>>),
}

impl HttpStream {
    /// Whether the connection has something to say although nothing was
    /// asked: the server closed it, or wrote unasked. Reads once without
    /// waiting; TLS records that carry no data (TLS 1.3's session tickets)
    /// are taken in on the way.
    fn has_unasked(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        !matches!(Pin::new(self).poll_read(&mut cx, &mut byte), Poll::Pending)
    }
}

impl AsyncRead for HttpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            HttpStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for HttpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            HttpStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            HttpStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            HttpStream::Plain(s) => Pin::new(s).poll_close(cx),
            #[cfg(feature = "tls")]
            HttpStream::Tls(s) => Pin::new(s).poll_close(cx),
        }
    }
}

/// Opens connections to one endpoint.
#[derive(Clone)]
pub(crate) struct Connector {
    address: Address,
    #[cfg(feature = "tls")]
    tls: Option<futures_rustls::TlsConnector>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Connector {
    fn new(address: &Address, tls: &TlsOptions) -> io::Result<Self> {
        let needs_tls = matches!(address, Address::Tcp { tls: true, .. });
        #[cfg(feature = "tls")]
        let tls = match needs_tls {
            true => Some(futures_rustls::TlsConnector::from(tls.client_config()?)),
            false => None,
        };
        #[cfg(not(feature = "tls"))]
        if needs_tls {
            let _ = tls;
            return Err(io::Error::new(io::ErrorKind::Unsupported, "HTTPS needs vmwire-smol's `tls` feature"));
        }
        Ok(Connector {
            address: address.clone(),
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// A new connection (the TLS handshake done), by `deadline`.
    async fn connect(&self, deadline: Option<Instant>) -> io::Result<HttpStream> {
        match &self.address {
            Address::Unix(path) => Stream::connect_unix(path, time_left(deadline)).await.map(HttpStream::Plain),
            Address::Tcp { host, port, .. } => {
                let stream = Stream::connect_tcp((host.as_str(), *port), time_left(deadline)).await?;
                #[cfg(feature = "tls")]
                if let Some(tls) = &self.tls {
                    let name = futures_rustls::pki_types::ServerName::try_from(host.clone())
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))?;
                    let handshake = async {
                        let tls = tls.connect(name, stream).await.map_err(vmwire_std::http::handshake_error)?;
                        Ok(HttpStream::Tls(Box::new(tls)))
                    };
                    return within(deadline, handshake).await;
                }
                Ok(HttpStream::Plain(stream))
            }
        }
    }
}

/// `work`, or [`io::ErrorKind::TimedOut`] if `deadline` passes first.
#[cfg(feature = "tls")]
async fn within<T>(deadline: Option<Instant>, work: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    use async_io::Timer;
    use futures_lite::future;
    let Some(deadline) = deadline else { return work.await };
    future::or(work, async {
        Timer::at(deadline).await;
        Err(io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake within the time limit"))
    })
    .await
}

/// A machine, its connection, and how to open another.
#[derive(Debug)]
pub(crate) struct Link<M> {
    conn: Conn<HttpStream, M>,
    connector: Connector,
    timeout: Option<Duration>,
}

impl<M: Machine> Link<M> {
    /// Parses `url`, makes the machine for its endpoint (with `headers`,
    /// and basic authentication from the URL's credentials), and connects
    /// within `timeout`.
    pub(crate) async fn connect(
        url: &str,
        headers: &[(String, String)],
        tls: &TlsOptions,
        timeout: Option<Duration>,
        machine: impl FnOnce(&vmwire_proto::http::Endpoint<'_>) -> Result<M, vmwire_proto::http::Error>,
    ) -> Result<(Self, Url), OpenError> {
        let (mut machine, url) = endpoint_machine(url, headers, machine)?;
        let connector = Connector::new(&url.address, tls).map_err(OpenError::Io)?;
        let stream = connector.connect(deadline(timeout)).await.map_err(OpenError::Io)?;
        machine.connected();
        Ok((Link { conn: Conn::new(stream, machine), connector, timeout }, url))
    }

    /// The machine, once any stale connection has been let go: a kept-alive
    /// connection the server has since closed (or written to unasked) is
    /// dropped before a request is queued, so that the request goes out on
    /// a fresh one instead of failing.
    pub(crate) fn machine(&mut self) -> &mut M {
        let (stream, machine) = self.conn.parts_mut();
        machine.drop_stale(|| stream.has_unasked());
        machine
    }

    /// Runs `operation` (the machine's events that are not its own to
    /// `inbox`), connecting whenever the machine needs to; each wait for
    /// the server within the time limit, the whole by `deadline`. On any
    /// error the connection is dropped and what was outstanding abandoned;
    /// so it is when this future is dropped before the end.
    pub(crate) async fn run<O, I>(
        &mut self,
        operation: &mut O,
        inbox: &mut I,
        deadline: Option<Instant>,
    ) -> Result<O::Output, DriveError<M::Error>>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        let connector = &self.connector;
        let connect: &mut Connect<'_, HttpStream, M::Error> =
            &mut |deadline| Box::pin(async move { connector.connect(deadline).await.map_err(connect_failed) });
        let with = With { connect: Some(connect), step: self.timeout };
        let result = self.conn.run_with(with, operation, inbox, deadline).await;
        if result.is_err() {
            self.conn.close();
            self.conn.machine_mut().close();
        }
        result
    }
}
