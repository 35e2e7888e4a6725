//! A transparent recording proxy: what `vmwire record` runs.
//!
//! A [`Proxy`] listens on a UNIX socket or a TCP port; for each client it
//! accepts (one at a time), it connects to the real peer and copies the
//! bytes both ways unchanged — file descriptors passed with them
//! (`SCM_RIGHTS`, UNIX sockets only) included — while it writes a
//! [transcript](vmwire_proto::transcript) with the time of every read and
//! the number of descriptors, and, if asked, a protocol-aware summary: one
//! line per message (JSON messages on one line each, HTTP requests as the
//! method and the XML-RPC call, HMP as text lines).
//!
//! Secrets are not written down. On an XML-RPC, QMP or guest agent
//! connection the client's reads are held back until they end a request
//! (or a command), then its secrets are written as `*`s, byte for byte, so
//! that every record (and an HTTP request's `Content-Length`) stays as it
//! was; the length of each remains. These are the values of the
//! `Authorization` and `Proxy-Authorization` fields and the passwords of a
//! XenAPI call ([`xenapi::secret_spans`](vmwire_proto::xenapi::secret_spans)),
//! and the passwords and keys of a QMP or guest agent command
//! ([`qmp::secret_spans`](vmwire_proto::qmp::secret_spans)). A replay takes
//! any password in their place. A request whose password cannot be placed in
//! its bytes (a chunked or compressed body) is left out, with a note that
//! says so.
//!
//! The transcript starts with a `protocol: NAME` note, so that
//! `vmwire replay` knows how to serve it. Each connection is introduced by
//! a note; a side closing its end is a record of length 0.
//!
//! The copy is a single `poll(2)` loop with blocking writes: fine for
//! request/response protocols; a peer that never reads while the other
//! side writes a lot would stall it, as it would stall the real client.
//! Each read is written down before it is passed on, so that whatever a
//! client has received is in the transcript, even if the recorder is
//! stopped the moment the client is done.

use std::io::{self, IoSliceMut, Write};
use std::net::Shutdown;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg};
use vmwire_proto::buf::Bounded;
use vmwire_proto::http::Request;
use vmwire_proto::json::Framer;
use vmwire_proto::transcript::{Direction, Record, write_record};

use crate::replay::{Cut, HttpRequests, Protocol, describe_request, json_framer};
use crate::text::escape;
use crate::transport::Stream;

pub use crate::transport::{Address, Listener};

/// A recording proxy, bound and ready to accept; see the [module documentation](self).
#[derive(Debug)]
pub struct Proxy {
    protocol: Protocol,
    listener: Listener,
    listen: Address,
    connect: Address,
}

/// Most descriptors taken from one message (the kernel's `SCM_MAX_FD`).
const MAX_FDS: usize = 253;

impl Proxy {
    /// Listens on `listen` (a UNIX socket path not in use, see
    /// [`Listener::bind`], or `HOST:PORT`), to forward to `connect`.
    pub fn bind(protocol: Protocol, listen: Address, connect: Address) -> io::Result<Proxy> {
        Ok(Proxy { protocol, listener: Listener::bind(&listen)?, listen, connect })
    }

    /// The address actually bound (with the port the system chose for `:0`).
    pub fn local_address(&self) -> Address {
        self.listener.address().unwrap_or_else(|_| self.listen.clone())
    }

    /// Proxies `connections` clients one after the other (`None`: until an
    /// error), writing the transcript to `transcript` and, if given, the
    /// summary to `summary`. Both are flushed after every record.
    pub fn run(
        &self,
        connections: Option<usize>,
        transcript: &mut dyn Write,
        summary: Option<&mut dyn Write>,
    ) -> io::Result<()> {
        // Times count from the first client's connection.
        let mut log = Log { start: Instant::now(), transcript, summary, protocol: self.protocol };
        log.note(&format!("protocol: {}", self.protocol))?;
        log.note(&format!("vmwire record: listening on {}, connecting to {}", self.local_address(), self.connect))?;
        let mut n = 0;
        while connections.is_none_or(|max| n < max) {
            let client = self.listener.accept()?;
            n += 1;
            if n == 1 {
                log.start = Instant::now();
            }
            let server = match &self.connect {
                Address::Unix(path) => Stream::connect_unix(path),
                Address::Tcp(addr) => Stream::connect_tcp(addr.as_str(), None),
            };
            let server = match server {
                Ok(s) => s,
                Err(e) => {
                    log.note(&format!("connection {n}: could not connect to {}: {e}", self.connect))?;
                    return Err(e);
                }
            };
            log.note(&format!("connection {n} opened"))?;
            copy_both_ways(&client, &server, &mut log)?;
            log.note(&format!("connection {n} closed"))?;
        }
        Ok(())
    }
}

/// Copies `client` ↔ `server` until both have closed their ends.
fn copy_both_ways(client: &Stream, server: &Stream, log: &mut Log<'_, '_>) -> io::Result<()> {
    let mut open = [true, true];
    let mut buf = vec![0u8; 1 << 16];
    let mut summaries =
        [Summary::new(log.protocol, Direction::ClientToServer), Summary::new(log.protocol, Direction::ServerToClient)];
    let mut held = Held::new(log.protocol);
    while open.iter().any(|&o| o) {
        let flags = |o: bool| if o { PollFlags::IN } else { PollFlags::empty() };
        let mut fds = [PollFd::new(client, flags(open[0])), PollFd::new(server, flags(open[1]))];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready = [fds[0].revents(), fds[1].revents()];
        for (side, (from, to, direction)) in
            [(client, server, Direction::ClientToServer), (server, client, Direction::ServerToClient)]
                .into_iter()
                .enumerate()
        {
            if !open[side] || ready[side].is_empty() {
                continue;
            }
            let (n, fds) = receive(from.as_fd(), &mut buf)?;
            let bytes = buf.get(..n).unwrap_or_default();
            // Written down first: whatever a client has received is in the
            // transcript, even if the recorder is stopped the moment it is done.
            let held = if side == 0 { held.as_mut() } else { None };
            log.record(direction, bytes, fds.len(), &mut summaries[side], held)?;
            if n == 0 {
                open[side] = false;
                let _ = shutdown_write(to);
            } else {
                forward(to, bytes, &fds)?;
            }
        }
    }
    Ok(())
}

/// Reads once, with any descriptors that came along. A reset is the end of
/// the stream.
fn receive(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    loop {
        match recvmsg(fd, &mut [IoSliceMut::new(buf)], &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for message in control.drain() {
                    if let RecvAncillaryMessage::ScmRights(rights) = message {
                        fds.extend(rights);
                    }
                }
                return Ok((msg.bytes, fds));
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::CONNRESET) => return Ok((0, Vec::new())),
            // Not a socket that takes recvmsg (cannot happen here): read plainly.
            Err(rustix::io::Errno::NOTSOCK) => {
                return rustix::io::read(fd, buf).map(|n| (n, Vec::new())).map_err(Into::into);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes all of `bytes` to `to`, with `fds` attached to the first write.
fn forward(to: &Stream, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let mut to = clone_stream(to)?;
    let mut written = 0;
    if !fds.is_empty() {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        written = to.send_with_fds(bytes, &borrowed)?;
    }
    match to.write_all(bytes.get(written..).unwrap_or_default()) {
        // The other side went away: its end shows up as a read of 0 next.
        Err(e) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) => Ok(()),
        other => other,
    }
}

/// A second handle on the same socket, to write through a shared reference.
fn clone_stream(s: &Stream) -> io::Result<Stream> {
    match s {
        Stream::Unix(u) => u.try_clone().map(Stream::Unix),
        Stream::Tcp(t) => t.try_clone().map(Stream::Tcp),
        _ => Err(io::Error::new(io::ErrorKind::Unsupported, "only sockets are proxied")),
    }
}

fn shutdown_write(s: &Stream) -> io::Result<()> {
    match s {
        Stream::Unix(u) => u.shutdown(Shutdown::Write),
        Stream::Tcp(t) => t.shutdown(Shutdown::Write),
        _ => Ok(()),
    }
}

/// Where records go.
struct Log<'a, 'b> {
    start: Instant,
    transcript: &'a mut dyn Write,
    summary: Option<&'b mut dyn Write>,
    protocol: Protocol,
}

impl Log<'_, '_> {
    fn micros(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn note(&mut self, text: &str) -> io::Result<()> {
        let record = Record { direction: Direction::Note, bytes: text.as_bytes(), micros: None, fds: 0 };
        self.write(&record)
    }

    fn write(&mut self, record: &Record<'_>) -> io::Result<()> {
        let mut out = Vec::with_capacity(record.bytes.len() + 32);
        let _ = write_record(&mut out, record);
        self.transcript.write_all(&out)?;
        self.transcript.flush()
    }

    /// Writes what one read carried, or holds it back with the reads
    /// before it until they make a whole request (`held`; see [`Held`]).
    fn record(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        fds: usize,
        summary: &mut Summary,
        held: Option<&mut Held>,
    ) -> io::Result<()> {
        let micros = self.micros();
        let fds = u32::try_from(fds).unwrap_or(u32::MAX);
        let Some(held) = held else { return self.entry(direction, bytes, micros, fds, summary) };
        let progress = held.hold(bytes, (bytes.len(), micros, fds));
        // Written as they are: a stream that closed, or grew past the limit,
        // before a request ended.
        let release = bytes.is_empty() || held.bytes.len() > MAX_HELD;
        if progress == Progress::Partial && !release {
            return Ok(());
        }
        let (mut bytes, reads, secrets) = held.release();
        if progress == Progress::Unplaced {
            return self.note(&format!(
                "a request of {} bytes not recorded: it carries a password that could not be blanked out \
                 (a chunked or compressed body)",
                bytes.len()
            ));
        }
        for span in secrets {
            if let Some(secret) = bytes.get_mut(span) {
                secret.fill(b'*');
            }
        }
        let mut at = 0;
        for (len, micros, fds) in reads {
            self.entry(direction, bytes.get(at..at + len).unwrap_or_default(), micros, fds, summary)?;
            at += len;
        }
        Ok(())
    }

    /// Writes one read's record, and its messages to the summary.
    fn entry(
        &mut self,
        direction: Direction,
        bytes: &[u8],
        micros: u64,
        fds: u32,
        summary: &mut Summary,
    ) -> io::Result<()> {
        self.write(&Record { direction, bytes, micros: Some(micros), fds })?;
        let Some(out) = self.summary.as_mut() else { return Ok(()) };
        let time = format!("+{}.{:03}ms", micros / 1000, micros % 1000);
        let marker = char::from(direction.marker());
        if bytes.is_empty() {
            writeln!(out, "{marker} {time} (closed)")?;
        }
        if fds > 0 {
            writeln!(out, "{marker} {time} ({fds} file descriptors)")?;
        }
        for line in summary.feed(bytes) {
            writeln!(out, "{marker} {time} {}", escape(&line))?;
        }
        out.flush()
    }
}

/// A client's reads, held back until they end a request (or a command), so
/// that its secrets are blanked out before anything of it is written. Each
/// byte is read once as it comes (twice where a request ends inside a
/// read), however many reads a large request takes.
struct Held {
    bytes: Vec<u8>,
    reads: Vec<Read>,
    /// The secrets of the whole requests (or commands) in `bytes` so far.
    secrets: Vec<Range<usize>>,
    reader: Requests,
}

/// A read held: its length, time (µs) and number of descriptors.
type Read = (usize, u64, u32);

/// What reads a client's requests as they come.
enum Requests {
    /// QMP and the guest agent: the commands' framer, fed `fed` bytes in
    /// all, of which `base` came before `bytes`.
    Json { framer: Box<Framer<Bounded<u8>>>, fed: usize, base: usize },
    /// XML-RPC: the requests in `bytes`.
    Http(HttpRequests),
}

/// Whether a client's held reads end a request (or a command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// They do (or are not requests at all): ready to be written.
    Whole,
    /// A request is not whole yet.
    Partial,
    /// A request carries a password, but its body is not in its bytes as it
    /// came (chunked or compressed): there is no telling where the password
    /// stands.
    Unplaced,
}

/// The most bytes held back waiting for a request to end; past it they
/// are written as they are.
const MAX_HELD: usize = 64 << 20;

impl Held {
    /// For a protocol whose requests carry secrets (XML-RPC, QMP, the guest agent).
    fn new(protocol: Protocol) -> Option<Held> {
        let reader = match protocol {
            Protocol::Xmlrpc => Requests::Http(HttpRequests::new()),
            Protocol::Qmp | Protocol::Qga => {
                Requests::Json { framer: Box::new(json_framer(protocol)), fed: 0, base: 0 }
            }
            _ => return None,
        };
        Some(Held { bytes: Vec::new(), reads: Vec::new(), secrets: Vec::new(), reader })
    }

    /// Holds one read (`bytes`, and its `read` length, time and
    /// descriptors), and finds the secrets of the requests it ends: for
    /// XML-RPC the values of their credential fields and the passwords of a
    /// XenAPI call, for QMP and the guest agent each command's passwords and keys.
    fn hold(&mut self, bytes: &[u8], read: Read) -> Progress {
        self.bytes.extend_from_slice(bytes);
        self.reads.push(read);
        match &mut self.reader {
            Requests::Json { framer, fed, base } => {
                let mut rest = bytes;
                while !rest.is_empty() {
                    let n = framer.receive(rest);
                    (*fed, rest) = (*fed + n, &rest[n..]);
                    while let Some(found) = framer.next() {
                        let Ok(command) = found else { continue };
                        let passwords: Vec<_> = vmwire_proto::qmp::secret_spans(command.raw()).collect();
                        let len = command.raw().len();
                        // The command ends where what the framer still holds begins.
                        let Some(start) = fed.checked_sub(*base + framer.buffered().len() + len) else { continue };
                        self.secrets.extend(passwords.into_iter().map(|s| s.start + start..s.end + start));
                    }
                    if n == 0 {
                        // More than the framer takes: written as it came.
                        return Progress::Whole;
                    }
                }
                if framer.in_value() { Progress::Partial } else { Progress::Whole }
            }
            // Request by request: a client may send the next before the answer.
            Requests::Http(requests) => loop {
                let passwords = |r: &Request<'_>| vmwire_proto::xenapi::secret_spans(r.body).collect::<Vec<_>>();
                let (at, head, end, passwords) = match requests.next(&self.bytes, passwords) {
                    Cut::Request { at, head, end, taken } => (at, head, end, taken),
                    Cut::Partial => return Progress::Partial,
                    // Not HTTP: written as it came.
                    Cut::Nothing | Cut::NotHttp => return Progress::Whole,
                };
                let credentials = vmwire_proto::http::credential_spans(&self.bytes[at..at + head]);
                self.secrets.extend(credentials.map(|s| s.start + at..s.end + at));
                if end.is_none() {
                    // Chunked or compressed: where any password in it stands
                    // is not to be found in its bytes.
                    return if passwords.is_empty() { Progress::Whole } else { Progress::Unplaced };
                }
                let body = at + head;
                self.secrets.extend(passwords.into_iter().map(|s| s.start + body..s.end + body));
            },
        }
    }

    /// Hands on the reads held and the secrets found in them, and starts
    /// afresh with the reads that come next.
    fn release(&mut self) -> (Vec<u8>, Vec<Read>, Vec<Range<usize>>) {
        match &mut self.reader {
            Requests::Json { framer, fed, base } => {
                // A command cut short: what follows is read afresh.
                if framer.in_value() {
                    framer.reset();
                }
                *base = *fed;
            }
            Requests::Http(requests) => *requests = HttpRequests::new(),
        }
        (std::mem::take(&mut self.bytes), std::mem::take(&mut self.reads), std::mem::take(&mut self.secrets))
    }
}

/// Cuts one direction into messages, with the protocol's own framer, for
/// the summary.
enum Summary {
    Json(Box<Framer<Bounded<u8>>>),
    Negotiator(Box<vmwire_proto::negotiator::Decoder<Bounded<u8>>>),
    Lines(Vec<u8>),
    /// HTTP: the client's requests (what is buffered of them), or the server's responses.
    Http {
        buffered: Vec<u8>,
        requests: Option<HttpRequests>,
    },
}

impl Summary {
    fn new(protocol: Protocol, direction: Direction) -> Summary {
        match protocol {
            Protocol::Qmp | Protocol::Qga | Protocol::Minimega => Summary::Json(Box::new(json_framer(protocol))),
            Protocol::Negotiator => Summary::Negotiator(Box::new(vmwire_proto::negotiator::Decoder::new(
                Bounded::new(16 << 20),
                vmwire_proto::negotiator::Limits { max_frame: 16 << 20, ..Default::default() },
            ))),
            Protocol::Hmp => Summary::Lines(Vec::new()),
            Protocol::Xmlrpc => Summary::Http {
                buffered: Vec::new(),
                requests: (direction == Direction::ClientToServer).then(HttpRequests::new),
            },
        }
    }

    /// The messages `bytes` complete, one line each.
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        match self {
            Summary::Json(framer) => {
                while !bytes.is_empty() {
                    let n = framer.receive(bytes);
                    bytes = bytes.get(n..).unwrap_or_default();
                    while let Some(message) = framer.next() {
                        lines.push(match message {
                            Ok(m) => m.value().compact().to_string(),
                            Err(e) => format!("(invalid JSON: {e})"),
                        });
                    }
                    if n == 0 {
                        framer.reset();
                    }
                }
            }
            Summary::Negotiator(decoder) => {
                while !bytes.is_empty() && !decoder.is_broken() {
                    let n = decoder.receive(bytes);
                    bytes = bytes.get(n..).unwrap_or_default();
                    while let Some(frame) = decoder.next() {
                        lines.push(match frame {
                            Ok(m) => m.value().compact().to_string(),
                            Err(e) => format!("(bad frame: {e})"),
                        });
                    }
                    if n == 0 {
                        break;
                    }
                }
            }
            Summary::Lines(pending) => {
                pending.extend_from_slice(bytes);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    lines.push(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string());
                }
                if pending.len() > 4096 {
                    lines.push(String::from_utf8_lossy(&std::mem::take(pending)).into_owned());
                }
            }
            Summary::Http { buffered, requests: Some(requests) } => {
                buffered.extend_from_slice(bytes);
                loop {
                    let (call, whole) = match requests.next(buffered, describe_request) {
                        Cut::Request { end, taken, .. } => (Some(taken), end.is_some()),
                        Cut::Partial => break,
                        Cut::Nothing => (None, false),
                        Cut::NotHttp => (Some(b"(not an HTTP request)".to_vec()), false),
                    };
                    if let Some(call) = call {
                        lines.push(String::from_utf8_lossy(&call).replacen('\n', " ", 1));
                    }
                    if !whole {
                        // All read (or no telling where the next begins): start afresh.
                        (*requests, *buffered) = (HttpRequests::new(), Vec::new());
                        break;
                    }
                }
            }
            Summary::Http { requests: None, .. } => {
                if bytes.starts_with(b"HTTP/") {
                    let status = bytes.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
                    lines.push(String::from_utf8_lossy(status).into_owned());
                }
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::http_request;

    const LOGIN: &str = "<methodCall><methodName>session.login_with_password</methodName><params>\
        <param><value>root</value></param><param><value>s3cret</value></param></params></methodCall>";

    /// `held`, read in pieces of `piece` bytes, with the secrets blanked out
    /// of each batch of reads [`Held`] lets go, as [`Log::record`] writes
    /// them; or how it stands instead.
    fn blanked_in(protocol: Protocol, held: &[u8], piece: usize) -> Result<String, Progress> {
        let mut reads = Held::new(protocol).unwrap();
        let (mut out, mut progress) = (Vec::new(), Progress::Whole);
        for read in held.chunks(piece) {
            progress = reads.hold(read, (read.len(), 0, 0));
            if progress == Progress::Unplaced {
                return Err(progress);
            }
            if progress == Progress::Whole {
                let (mut bytes, _, secrets) = reads.release();
                secrets.into_iter().for_each(|span| bytes[span].fill(b'*'));
                out.extend(bytes);
            }
        }
        match progress {
            Progress::Whole => Ok(String::from_utf8(out).unwrap()),
            other => Err(other),
        }
    }

    /// `held` with its secrets blanked out (the same whether it comes in one
    /// read or in many), or how it stands instead.
    fn blanked(protocol: Protocol, held: &[u8]) -> Result<String, Progress> {
        let whole = blanked_in(protocol, held, held.len().max(1));
        for piece in 1..held.len() {
            assert_eq!(blanked_in(protocol, held, piece), whole, "read {piece} bytes at a time");
        }
        whole
    }

    fn post(head: &str, body: &str) -> String {
        format!("POST / HTTP/1.1\r\nHost: x\r\n{head}\r\n{body}")
    }

    #[test]
    fn a_login_keeps_its_length_and_loses_its_password() {
        let credentials = "Basic cm9vdDpzM2NyZXQ=";
        let request = post(&format!("Authorization: {credentials}\r\nContent-Length: {}\r\n", LOGIN.len()), LOGIN);
        assert_eq!(blanked(Protocol::Xmlrpc, &request.as_bytes()[..40]), Err(Progress::Partial));
        let text = blanked(Protocol::Xmlrpc, request.as_bytes()).unwrap();
        assert_eq!(text.len(), request.len());
        assert!(text.contains(&format!("Authorization: {}\r\n", "*".repeat(credentials.len()))), "{text}");
        assert!(text.contains("<value>root</value>") && text.contains("<value>******</value>"), "{text}");
        // Still a request, compared as the live one with its password.
        let live = post(&format!("Content-Length: {}\r\n", LOGIN.len()), LOGIN);
        assert_eq!(http_request(text.as_bytes()), http_request(live.as_bytes()));
    }

    #[test]
    fn a_password_in_a_chunked_body_is_not_placed() {
        let chunked =
            |body: &str| post("Transfer-Encoding: chunked\r\n", &format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len()));
        assert_eq!(blanked(Protocol::Xmlrpc, chunked(LOGIN).as_bytes()), Err(Progress::Unplaced));
        // No password in it: written as it came.
        let other = chunked(&LOGIN.replace("session.login_with_password", "VM.get_all"));
        assert_eq!(blanked(Protocol::Xmlrpc, other.as_bytes()), Ok(other));
    }

    #[test]
    fn requests_sent_one_after_the_other_are_held_until_the_last_is_whole() {
        let get_all = LOGIN.replace("session.login_with_password", "VM.get_all");
        let first = post(&format!("Content-Length: {}\r\n", get_all.len()), &get_all);
        let login = post(&format!("Content-Length: {}\r\n", LOGIN.len()), LOGIN);
        // The second with bare line ends, which the server takes too.
        let login = login.replace("\r\n", "\n");
        let both = format!("{first}{login}");
        assert_eq!(blanked(Protocol::Xmlrpc, &both.as_bytes()[..both.len() - 5]), Err(Progress::Partial));
        let text = blanked(Protocol::Xmlrpc, both.as_bytes()).unwrap();
        assert_eq!(text, format!("{first}{}", login.replace("s3cret", "******")));
    }

    #[test]
    fn the_summary_has_a_line_for_every_request_however_they_come() {
        let get_all = LOGIN.replace("session.login_with_password", "VM.get_all");
        let first = post(&format!("Content-Length: {}\r\n", get_all.len()), &get_all);
        let login = post(&format!("Content-Length: {}\r\n", LOGIN.len()), LOGIN);
        let both = format!("{first}{login}");
        for piece in [both.len(), 1, 7, 100] {
            let mut summary = Summary::new(Protocol::Xmlrpc, Direction::ClientToServer);
            let lines: Vec<String> = both.as_bytes().chunks(piece).flat_map(|read| summary.feed(read)).collect();
            let want = [
                r#"POST / VM.get_all["root","s3cret"]"#,
                r#"POST / session.login_with_password["root","(not recorded)"]"#,
            ];
            assert_eq!(lines, want, "read {piece} bytes at a time");
        }
        // What is not HTTP is said so, and is not kept.
        let mut summary = Summary::new(Protocol::Xmlrpc, Direction::ClientToServer);
        assert_eq!(summary.feed(b"\x16\x03\x01 TLS?\r\n\r\n"), ["(not an HTTP request)"]);
        assert_eq!(summary.feed(first.as_bytes()), [r#"POST / VM.get_all["root","s3cret"]"#]);
    }

    #[test]
    fn a_stream_cut_short_keeps_the_secrets_of_its_whole_commands() {
        let set = r#"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "s3cret"}}"#;
        let mut reads = Held::new(Protocol::Qmp).unwrap();
        let cut = format!("{set}\r\n{{\"execute\": \"query-");
        assert_eq!(reads.hold(cut.as_bytes(), (cut.len(), 0, 0)), Progress::Partial);
        // The client closes: what is held goes out, its whole command blanked.
        assert_eq!(reads.hold(b"", (0, 0, 0)), Progress::Partial);
        let (bytes, _, secrets) = reads.release();
        assert_eq!(secrets.iter().map(|s| &bytes[s.clone()]).collect::<Vec<_>>(), [b"s3cret"]);
        // On a stream that goes on (past the size limit), the rest of the cut
        // command is not taken for one, and the next is read from its start.
        let next = format!("status\"}}\r\n{set}\r\n");
        assert_eq!(reads.hold(next.as_bytes(), (next.len(), 0, 0)), Progress::Whole);
        let (bytes, _, secrets) = reads.release();
        assert_eq!(secrets.iter().map(|s| &bytes[s.clone()]).collect::<Vec<_>>(), [b"s3cret"]);
    }

    #[test]
    fn commands_lose_their_passwords_once_whole() {
        let set = r#"{"execute": "set_password", "arguments": {"protocol": "vnc", "password": "s3cret"}}"#;
        let held = format!("{{\"execute\": \"query-status\"}}\r\n{set}\r\n");
        let text = blanked(Protocol::Qmp, held.as_bytes()).unwrap();
        assert_eq!(text, held.replace("s3cret", "******"));
        assert_eq!(blanked(Protocol::Qmp, &held.as_bytes()[..held.len() - 10]), Err(Progress::Partial));
        // The guest agent's, after its 0xFF.
        let agent = br#"{"execute": "guest-set-user-password", "arguments": {"username": "u", "password": "cHc=", "crypted": false}}"#;
        let held = [&[0xFF][..], b"\n", agent].concat();
        let mut reads = Held::new(Protocol::Qga).unwrap();
        assert_eq!(reads.hold(&held, (held.len(), 0, 0)), Progress::Whole);
        let (_, _, spans) = reads.release();
        assert_eq!(spans.iter().map(|s| &held[s.clone()]).collect::<Vec<_>>(), [b"cHc="]);
    }
}
