//! HTTP connections for the XML-RPC and XenAPI clients: URLs, TCP, TLS
//! (rustls) and UNIX sockets, and the loop that drives an HTTP machine,
//! reconnecting whenever the machine says its connection is spent.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use std::os::fd::AsFd;
use vmwire_proto::Machine;
use vmwire_proto::op::{Inbox, Operation};

use crate::transport::{Conn, DriveError, Stream, With, deadline, time_left, wait_ready};

/// Where an endpoint is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `host:port` over TCP, with TLS or not.
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
        /// HTTPS.
        tls: bool,
    },
    /// A UNIX socket (xapi's local one is `/var/lib/xcp/xapi`).
    Unix(PathBuf),
}

/// A parsed endpoint URL.
///
/// `http://host[:port][/path]`, `https://…`, `unix:/path/to/socket` (or
/// `unix:///path`), and `http+unix://%2Fpath%2Fto%2Fsocket[/path]`. A
/// `user:password@` before the host becomes HTTP basic authentication; a
/// `#fragment` is dropped (it is the client's, never sent).
///
/// ```
/// use vmwire_std::http::{Address, Url};
/// let u = Url::parse("https://root:pw@[::1]:8443/RPC2")?;
/// assert_eq!(u.address, Address::Tcp { host: "::1".into(), port: 8443, tls: true });
/// assert_eq!((u.host_field().as_str(), u.target.as_str()), ("[::1]:8443", "/RPC2"));
/// assert_eq!(u.credentials, Some(("root".into(), "pw".into())));
/// let local = Url::parse("unix:///var/lib/xcp/xapi")?;
/// assert_eq!(local.address, Address::Unix("/var/lib/xcp/xapi".into()));
/// // A fragment is never sent; a query needs no path before it.
/// assert_eq!(Url::parse("http://h:8000/RPC2?x=1#top")?.target, "/RPC2?x=1");
/// assert_eq!(Url::parse("http://h?x=1")?.target, "/?x=1");
/// assert_eq!(Url::parse("http://h#top")?.address, Address::Tcp { host: "h".into(), port: 80, tls: false });
/// # Ok::<(), vmwire_std::http::UrlError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Url {
    /// Where to connect.
    pub address: Address,
    /// The request target (`/` by default).
    pub target: String,
    /// `user:password` given in the URL.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No password in logs.
        f.debug_struct("Url")
            .field("address", &self.address)
            .field("target", &self.target)
            .field("credentials", &self.credentials.as_ref().map(|(user, _)| user))
            .finish()
    }
}

/// A URL that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError(pub String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad URL: {}", self.0)
    }
}

impl std::error::Error for UrlError {}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| UrlError(format!("bad percent escape in {s:?}")))?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError(format!("{s:?} is not UTF-8")))
}

/// `url` as it may be shown in an error or a log: a password in it
/// (`user:password@`) is replaced with `***`.
///
/// ```
/// use vmwire_std::http::redact;
/// assert_eq!(redact("http://root:S3cret@[::1"), "http://root:***@[::1");
/// assert_eq!(redact("https://host/p:q@r"), "https://host/p:q@r");
/// assert_eq!(redact("root:S3cret@host"), "root:***@host"); // the scheme forgotten
/// ```
pub fn redact(url: &str) -> String {
    let start = url.find("//").map_or(0, |k| k + 2);
    let authority_end = url[start..].find('/').map_or(url.len(), |k| start + k);
    let Some(at) = url[start..authority_end].rfind('@').map(|k| start + k) else { return url.to_owned() };
    match url[start..at].find(':').map(|k| start + k) {
        Some(colon) => format!("{}***{}", &url[..=colon], &url[at..]),
        None => url.to_owned(),
    }
}

impl Url {
    /// Parses `url`. Errors never show a password given in it.
    pub fn parse(url: &str) -> Result<Url, UrlError> {
        Self::parse_shown_as(url, &redact(url))
    }

    /// Parses `url`, naming it `shown` in errors.
    fn parse_shown_as(url: &str, shown: &str) -> Result<Url, UrlError> {
        let (scheme, rest) = url.split_once(':').ok_or_else(|| UrlError(format!("{shown:?} has no scheme")))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "unix" {
            let path = rest.trim_start_matches("//");
            let path = if path.starts_with('/') { path } else { rest };
            if path.is_empty() {
                return Err(UrlError(format!("{shown:?} names no socket")));
            }
            return Ok(Url { address: Address::Unix(path.into()), target: "/".into(), credentials: None });
        }
        if !matches!(scheme.as_str(), "http" | "https" | "http+unix") {
            return Err(UrlError(format!("{shown:?}: the scheme must be http, https, http+unix or unix")));
        }
        let rest = rest.strip_prefix("//").ok_or_else(|| UrlError(format!("{shown:?}: expected {scheme}://")))?;
        // The fragment is the client's own, never sent (RFC 9112 3.2); the
        // authority ends at the path, the query or the fragment (RFC 3986 3.2).
        let rest = rest.split_once('#').map_or(rest, |(rest, _fragment)| rest);
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let password = percent_decode(password)
                    .map_err(|_| UrlError("the password is not percent-encoded UTF-8".into()))?;
                (Some((percent_decode(user)?, password)), hostport)
            }
            None => (None, authority),
        };
        if scheme == "http+unix" {
            let path = percent_decode(hostport)?;
            return Ok(Url { address: Address::Unix(path.into()), target, credentials });
        }
        let tls = scheme == "https";
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| UrlError(format!("{shown:?}: unclosed [")))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError(format!("{shown:?} names no host")));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| UrlError(format!("bad port {p:?}")))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Url { address: Address::Tcp { host: host.into(), port, tls }, target, credentials })
    }

    /// The `Host` field: the host, the port unless it is the scheme's
    /// default; `localhost` for a UNIX socket (as the XenAPI SDK sends).
    pub fn host_field(&self) -> String {
        match &self.address {
            Address::Unix(_) => "localhost".into(),
            Address::Tcp { host, port, tls } => {
                let mut field = Vec::new();
                let _ = vmwire_proto::http::write_host(&mut field, host, *port, if *tls { 443 } else { 80 });
                String::from_utf8_lossy(&field).into_owned()
            }
        }
    }

    /// The `Authorization` field for the URL's credentials, if any.
    pub fn authorization(&self) -> Option<String> {
        let (user, password) = self.credentials.as_ref()?;
        let mut field = Vec::new();
        vmwire_proto::http::write_basic_authorization(&mut field, user, password).ok()?;
        Some(String::from_utf8_lossy(&field).into_owned())
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp { tls, .. } => {
                write!(f, "{}://{}{}", if *tls { "https" } else { "http" }, self.host_field(), self.target)
            }
        }
    }
}

/// How TLS certificates are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// Check the server's certificate (against Mozilla's roots and
    /// [`TlsOptions::trusted`]) and its name. On by default; turning it off
    /// accepts any certificate (xapi's own is self-signed), which is only as
    /// safe as the network.
    pub verify: bool,
    /// More certificates to trust (DER), such as a pool's self-signed one.
    pub trusted: Vec<Vec<u8>>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { verify: true, trusted: Vec::new() }
    }
}

#[cfg(feature = "tls")]
impl TlsOptions {
    /// The rustls client configuration these options make (rustls on ring;
    /// Mozilla's roots and [`TlsOptions::trusted`], or any certificate when
    /// [`TlsOptions::verify`] is off): the one every adapter's HTTPS uses,
    /// this crate's and vmwire-smol's.
    pub fn client_config(&self) -> io::Result<std::sync::Arc<rustls::ClientConfig>> {
        tls::client_config(self)
    }
}

/// Reads the certificates of a PEM file (DER each), for
/// [`TlsOptions::trusted`]; a file with none (a key, or not PEM at all) is
/// [`io::ErrorKind::InvalidData`].
#[cfg(feature = "tls")]
pub fn pem_certificates(path: impl AsRef<std::path::Path>) -> io::Result<Vec<Vec<u8>>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidData, e);
    let certificates = CertificateDer::pem_file_iter(path.as_ref())
        .map_err(|e| invalid(e.to_string()))?
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| invalid(e.to_string())))
        .collect::<io::Result<Vec<_>>>()?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
    }
    Ok(certificates)
}

/// A TLS handshake's error as said to a user (this crate's HTTPS and
/// vmwire-smol's): an answer that is not TLS at all (a plain HTTP server on
/// an `https://` URL) named as such, not as rustls's "received corrupt
/// message of type InvalidContentType"; a certificate refused, with why and
/// what trusts a pool's self-signed one, not as
/// `Other(OtherError(CaUsedAsEndEntity))`.
#[cfg(feature = "tls")]
pub fn handshake_error(e: io::Error) -> io::Error {
    use rustls::{CertificateError, Error, InvalidMessage};
    let said = match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidMessage(InvalidMessage::InvalidContentType)) => {
            "the server did not answer in TLS (a plain HTTP server: http://?)".to_string()
        }
        Some(Error::InvalidCertificate(why)) => {
            let why = match why {
                CertificateError::Other(other) => other.to_string(),
                CertificateError::NotValidForNameContext { expected, presented } => {
                    format!("it is not for {}: it names {}", expected.to_str(), presented.join(", "))
                }
                why => format!("{why:?}"),
            };
            let hint = if matches!(why.as_str(), "UnknownIssuer" | "CaUsedAsEndEntity") {
                "; to trust a self-signed one (a XenServer pool's) as it is, give it: `vmwire --ca FILE`, \
                 `TlsOptions::trusted`"
            } else {
                ""
            };
            format!("the server's certificate is not trusted ({why}){hint}")
        }
        _ => return e,
    };
    io::Error::new(io::ErrorKind::InvalidData, said)
}

/// Opens connections to one endpoint.
#[derive(Clone)]
pub(crate) struct Connector {
    address: Address,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Connector {
    pub(crate) fn new(address: &Address, tls: &TlsOptions) -> io::Result<Self> {
        let needs_tls = matches!(address, Address::Tcp { tls: true, .. });
        #[cfg(feature = "tls")]
        let tls = if needs_tls { Some(tls.client_config()?) } else { None };
        #[cfg(not(feature = "tls"))]
        if needs_tls {
            let _ = tls;
            return Err(io::Error::new(io::ErrorKind::Unsupported, "HTTPS needs vmwire-std's `tls` feature"));
        }
        Ok(Connector {
            address: address.clone(),
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// A new connection (the TLS handshake done), by `deadline`.
    pub(crate) fn connect(&self, deadline: Option<Instant>) -> io::Result<Stream> {
        match &self.address {
            Address::Unix(path) => Stream::connect_unix(path),
            Address::Tcp { host, port, .. } => {
                let stream = Stream::connect_tcp((host.as_str(), *port), time_left(deadline))?;
                #[cfg(feature = "tls")]
                if let (Some(config), Stream::Tcp(tcp)) = (&self.tls, &stream) {
                    return tls::handshake(config.clone(), host, tcp.try_clone()?, time_left(deadline));
                }
                Ok(stream)
            }
        }
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::io;
    use std::net::TcpStream;
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{WebPkiServerVerifier, verify_server_name};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::server::ParsedCertificate;
    use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

    use super::TlsOptions;
    use crate::transport::Stream;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    pub(super) fn client_config(options: &TlsOptions) -> io::Result<Arc<ClientConfig>> {
        let invalid = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let builder =
            ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(invalid)?;
        let config = if options.verify {
            let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            for der in &options.trusted {
                roots.add(CertificateDer::from(der.clone())).map_err(invalid)?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let verifier = Pinned { webpki, pinned: options.trusted.clone() };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        } else {
            let algorithms = provider().signature_verification_algorithms;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms)))
                .with_no_client_auth()
        };
        Ok(Arc::new(config))
    }

    pub(super) fn handshake(
        config: Arc<ClientConfig>,
        host: &str,
        mut tcp: TcpStream,
        timeout: Option<Duration>,
    ) -> io::Result<Stream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host:?}: {e}")))?;
        let mut conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // The socket's own timeouts bound the handshake and every later
        // read or write that rustls makes on its own.
        tcp.set_read_timeout(timeout)?;
        tcp.set_write_timeout(timeout)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(super::handshake_error)?;
        }
        Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }

    /// webpki's verification (chain to a root, validity, name), and besides
    /// a server certificate byte for byte one of [`TlsOptions::trusted`]:
    /// a pool's self-signed certificate (`openssl req -x509` marks it a CA,
    /// which webpki refuses as a server's own, `CaUsedAsEndEntity`) is
    /// trusted as it is, pinned, its name still checked.
    #[derive(Debug)]
    struct Pinned {
        webpki: Arc<WebPkiServerVerifier>,
        pinned: Vec<Vec<u8>>,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if self.pinned.iter().any(|der| der[..] == end_entity[..]) {
                verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
                return Ok(ServerCertVerified::assertion());
            }
            self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.webpki.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.webpki.supported_verify_schemes()
        }
    }

    /// Accepts any certificate (signatures are still checked): for
    /// `verify: false` only.
    #[derive(Debug)]
    struct AnyCertificate(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }
}

/// Why opening a client failed (each client's error type converts it).
#[derive(Debug)]
pub enum OpenError {
    /// The URL is not usable.
    Url(UrlError),
    /// The machine refused the endpoint (a header field it cannot send).
    Machine(vmwire_proto::http::Error),
    /// Connecting failed.
    Io(io::Error),
}

/// Parses `url` and makes the machine for its endpoint, with `headers` and
/// basic authentication from the URL's credentials: the first step of
/// opening a client, before connecting (shared with vmwire-smol's clients).
pub fn endpoint_machine<M>(
    url: &str,
    headers: &[(String, String)],
    machine: impl FnOnce(&vmwire_proto::http::Endpoint<'_>) -> Result<M, vmwire_proto::http::Error>,
) -> Result<(M, Url), OpenError> {
    let url = Url::parse(url).map_err(OpenError::Url)?;
    let authorization = url.authorization().map(|auth| ("Authorization".to_string(), auth));
    let fields: Vec<(&str, &str)> =
        headers.iter().chain(authorization.as_ref()).map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let host = url.host_field();
    let endpoint = vmwire_proto::http::Endpoint { target: &url.target, host: &host, headers: &fields };
    let machine = machine(&endpoint).map_err(OpenError::Machine)?;
    Ok((machine, url))
}

/// A new connection that could not be opened, as the loop driving a
/// machine reports it: not opened in time is [`DriveError::Timeout`].
/// Shared with vmwire-smol's link.
pub fn connect_failed<E>(e: io::Error) -> DriveError<E> {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => DriveError::Timeout,
        _ => DriveError::Io(e),
    }
}

/// A machine, its connection, and how to open another.
#[derive(Debug)]
pub(crate) struct Link<M> {
    conn: Conn<M>,
    connector: Connector,
    timeout: Option<Duration>,
}

impl<M: Machine> Link<M> {
    /// Parses `url`, makes the machine for its endpoint (with `headers`,
    /// and basic authentication from the URL's credentials), and connects.
    pub(crate) fn connect(
        url: &str,
        headers: &[(String, String)],
        tls: &TlsOptions,
        timeout: Option<Duration>,
        machine: impl FnOnce(&vmwire_proto::http::Endpoint<'_>) -> Result<M, vmwire_proto::http::Error>,
    ) -> Result<(Self, Url), OpenError> {
        let (machine, url) = endpoint_machine(url, headers, machine)?;
        let connector = Connector::new(&url.address, tls).map_err(OpenError::Io)?;
        let link = Link::open(connector, machine, timeout).map_err(OpenError::Io)?;
        Ok((link, url))
    }

    /// Connects (within `timeout`) and pairs the connection with `machine`.
    pub(crate) fn open(connector: Connector, mut machine: M, timeout: Option<Duration>) -> io::Result<Self> {
        let stream = connector.connect(deadline(timeout))?;
        machine.connected();
        Ok(Link { conn: Conn::new(stream, machine), connector, timeout })
    }

    /// The machine, once any stale connection has been let go: a kept-alive
    /// connection the server has since closed (or written to unasked) is
    /// dropped before a request is queued, so that the request goes out on
    /// a fresh one instead of failing.
    pub(crate) fn machine(&mut self) -> &mut M {
        let (stream, machine) = self.conn.parts_mut();
        machine.drop_stale(|| {
            stream.has_buffered() || wait_ready(stream.as_fd(), PollFlags::IN, Some(Instant::now())).unwrap_or(true)
        });
        machine
    }

    /// Runs `operation` (the machine's events that are not its own to
    /// `inbox`), connecting whenever the machine needs to. On any error the
    /// connection is dropped and what was outstanding abandoned.
    pub(crate) fn run<O, I>(&mut self, operation: &mut O, inbox: &mut I) -> Result<O::Output, DriveError<M::Error>>
    where
        O: Operation<M>,
        I: Inbox<M> + ?Sized,
    {
        self.run_within(operation, inbox, None)
    }

    /// [`Link::run`] for an operation of several requests (and pauses):
    /// each wait for the server within the time limit, the whole by `deadline`.
    pub(crate) fn run_within<O, I>(
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
        let mut connect = |deadline| connector.connect(deadline).map_err(connect_failed);
        let with = With { connect: Some(&mut connect), step: self.timeout, ..With::default() };
        let result = self.conn.run_with(with, operation, inbox, deadline);
        if result.is_err() {
            self.conn.close();
            self.conn.machine_mut().close();
        }
        result
    }
}
