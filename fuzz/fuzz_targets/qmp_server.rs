//! The QMP server machine (`qmp::Server`, what `vmwire qmp-mux` serves
//! untrusted clients with) fed arbitrary bytes from a client, with a caller
//! that answers the commands it hands out now or later (as the mux does,
//! when QEMU replies), in-band ones in order, out-of-band ones newest first:
//! never panics, never fails a `poll` or a reply that fits its fixed
//! storage, holds a refusal (and reads nothing) while in-band commands are
//! in flight and reads nothing at `max_in_flight`, reports `Closed` exactly
//! once and nothing after it, writes nothing after `close()`, and gives the
//! same events and the same bytes whatever the chunking (and with `Heap`
//! storage as with `Fixed`). What it writes is read back with serde_json:
//! one JSON object per `\r\n` line, the greeting first, then exactly one
//! line per negotiation, refusal, answer and event, in the order the
//! contract gives (an in-band command's refusal after the replies to the
//! commands before it), each answer carrying its command's id.
//!
//! Input: a byte for the chunk size, a byte of caller policy (see
//! [`Policy`]), then the client's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Fixed, Heap, Storage};
use vmwire_proto::json::{Limits, Value};
use vmwire_proto::qmp::server::{Event, Server, ServerConfig};
use vmwire_proto::qmp::{State, Timestamp};

/// The largest client message (and the receive buffer).
const RX: usize = 1024;
/// The transmit buffer: room for any one line the machine writes (a
/// refusal quotes a key and an id of up to `RX` bytes, escaped to ASCII,
/// at most six bytes for two), not for two.
const TX: usize = 4096;

/// How the caller behaves, from one byte of the input.
#[derive(Debug, Clone, Copy)]
struct Policy {
    /// The greeting offers `oob`.
    offer_oob: bool,
    /// `ServerConfig::max_in_flight`.
    max_in_flight: usize,
    /// Commands the caller keeps unanswered before answering one.
    defer: usize,
    /// Answers give the command's arguments back (else `{}`).
    echo: bool,
    /// An event is sent after every event the machine hands out.
    events: bool,
    /// The caller ends with `close()` rather than the end of the stream.
    close: bool,
}

impl Policy {
    fn new(b: u8) -> Self {
        Policy {
            offer_oob: b & 1 != 0,
            max_in_flight: [1, 2, 3, 64][usize::from(b >> 1 & 3)],
            defer: [0, 1, 3, 64][usize::from(b >> 3 & 3)],
            echo: b & 0x20 != 0,
            events: b & 0x40 != 0,
            close: b & 0x80 != 0,
        }
    }

    fn config(self) -> ServerConfig {
        ServerConfig {
            limits: Limits { max_message: RX, max_depth: 32 },
            max_transmit: TX,
            max_in_flight: self.max_in_flight,
        }
    }
}

/// A command handed out and not answered yet.
struct Pending {
    name: String,
    id: Option<Vec<u8>>,
    arguments: Option<Vec<u8>>,
    oob: bool,
}

/// A line the server must write, in order.
#[derive(Debug, Clone)]
enum Line {
    Greeting {
        oob: bool,
    },
    /// `{"return": {}}`, with the `qmp_capabilities` command's id if any.
    Negotiated,
    /// `{"error": {"class": …, "desc": …}}`, with the message's id if any.
    Refused(&'static str),
    /// The caller's answer to a command.
    Answer {
        id: Option<Vec<u8>>,
        body: Body,
    },
    Event(u64),
}

#[derive(Debug, Clone)]
enum Body {
    Return(Vec<u8>),
    Error { class: &'static str, desc: String },
}

/// One run: the machine, the caller's bookkeeping, what was logged and sent.
struct Run<S: Storage> {
    server: Server<S>,
    policy: Policy,
    /// Commands in flight, in the order they came.
    pending: Vec<Pending>,
    /// A refusal the machine holds behind the in-band commands in flight.
    held: Option<&'static str>,
    /// A refusal released by the last in-band answer that did not fit
    /// beside it: it goes out at the next `poll` or answer.
    floating: Option<&'static str>,
    negotiated: bool,
    /// Out-of-band execution negotiated.
    oob: bool,
    closed: bool,
    events_sent: u64,
    log: Vec<String>,
    sent: Vec<u8>,
    lines: Vec<Line>,
}

impl<S: Storage> Run<S> {
    fn new(policy: Policy) -> Self {
        let mut server = Server::<S>::new(policy.config());
        let caps: &[&str] = if policy.offer_oob { &["oob"] } else { &[] };
        server.greet((7, 2, 22), "fuzz", caps).expect("greet");
        let mut run = Run {
            server,
            policy,
            pending: Vec::new(),
            held: None,
            floating: None,
            negotiated: false,
            oob: false,
            closed: false,
            events_sent: 0,
            log: Vec::new(),
            sent: Vec::new(),
            lines: vec![Line::Greeting { oob: policy.offer_oob }],
        };
        run.flush();
        run
    }

    /// Takes everything the machine has to send (the client reads at once).
    fn flush(&mut self) {
        let out = self.server.transmit();
        assert!(out.len() <= TX, "the transmit buffer grew past its storage");
        self.sent.extend_from_slice(out);
        let n = out.len();
        self.server.transmitted(n);
        assert!(self.server.transmit().is_empty());
    }

    fn in_band(&self) -> usize {
        self.pending.iter().filter(|p| !p.oob).count()
    }

    /// Answers `pending[i]`; a held refusal follows the last in-band answer
    /// (at once if there is room beside it, else after the next answer or
    /// before the next event).
    fn answer(&mut self, i: usize) {
        let p = self.pending.remove(i);
        let id = p.id.as_deref().map(|id| Value::parse(id).expect("an id handed out parses"));
        let before = self.server.transmit().len();
        assert_eq!(before, 0);
        let (result, body) = if p.name.len() % 2 == 1 {
            let desc = format!("The command {} has not been found", p.name);
            (
                self.server.send_error(id, p.oob, "CommandNotFound", &desc),
                Body::Error { class: "CommandNotFound", desc },
            )
        } else {
            let value = match (&p.arguments, self.policy.echo) {
                (Some(a), true) => a.clone(),
                _ => b"{}".to_vec(),
            };
            let v = Value::parse(&value).expect("arguments handed out parse");
            (self.server.send_return(id, p.oob, v), Body::Return(value))
        };
        if self.closed && self.policy.close {
            // After close(), nothing more is written.
            assert!(result.is_ok(), "answer after close: {result:?}");
            assert!(self.server.transmit().is_empty(), "written after close()");
            return;
        }
        // Every answer fits (the transmit buffer was empty): it must go out.
        assert!(result.is_ok(), "answer refused with an empty transmit buffer: {result:?}");
        self.log.push(format!("answered {} {:?} oob={}", p.name, p.id.as_deref().map(String::from_utf8_lossy), p.oob));
        self.lines.push(Line::Answer { id: p.id, body });
        if !p.oob && self.in_band() == 0 && self.held.is_some() {
            self.floating = self.held.take();
        }
        let lines = self.server.transmit().windows(2).filter(|w| w == b"\r\n").count();
        match (self.floating, lines) {
            (_, 1) => {}
            (Some(class), 2) => {
                self.lines.push(Line::Refused(class));
                self.floating = None;
            }
            _ => panic!("{lines} lines for one answer: {:?}", String::from_utf8_lossy(self.server.transmit())),
        }
        self.flush();
        assert_eq!(self.server.in_flight(), self.pending.len(), "in-flight count");
    }

    /// Answers one command: the newest out-of-band one, else the oldest.
    fn answer_one(&mut self) {
        let i = self.pending.iter().rposition(|p| p.oob).unwrap_or(0);
        self.answer(i);
    }

    /// Answers every in-band command, in order.
    fn answer_in_band(&mut self) {
        while let Some(i) = self.pending.iter().position(|p| !p.oob) {
            self.answer(i);
        }
    }

    fn send_event(&mut self) {
        let n = self.events_sent;
        let data = format!("{{\"n\": {n}}}");
        let ts = Timestamp { seconds: 1_700_000_000 + n as i64, microseconds: 5 };
        let sent = self.server.send_event("STOP", ts, Some(Value::parse(data.as_bytes()).unwrap()));
        let expect = self.server.state() == State::Ready && !(self.closed && self.policy.close);
        match sent {
            Ok(true) if expect => {
                self.events_sent += 1;
                self.lines.push(Line::Event(n));
            }
            Ok(false) if !expect => assert!(self.server.transmit().is_empty(), "an event not sent was written"),
            other => panic!("send_event in {:?}: {other:?}", self.server.state()),
        }
        self.flush();
    }

    /// Before a `poll`: a refusal left waiting for room goes out first (the
    /// transmit buffer is empty).
    fn before_poll(&mut self) {
        assert!(self.server.transmit().is_empty());
        if let Some(class) = self.floating.take() {
            self.lines.push(Line::Refused(class));
        }
    }

    /// Polls until the machine has nothing more, acting on each event.
    fn drain(&mut self) {
        loop {
            self.before_poll();
            let event = match self.server.poll() {
                Ok(Some(e)) => e,
                Ok(None) => {
                    self.flush();
                    break;
                }
                Err(e) => panic!("poll failed: {e}"),
            };
            assert!(!self.closed, "an event after Closed: {event:?}");
            let line = describe(&event);
            let mut held_now = false;
            match event {
                Event::Negotiated { oob } => {
                    assert!(!self.negotiated, "negotiated twice");
                    assert!(!oob || self.policy.offer_oob, "oob enabled though not offered");
                    self.negotiated = true;
                    self.oob = oob;
                    self.lines.push(Line::Negotiated);
                }
                Event::Command(c) => {
                    assert!(self.negotiated, "a command before negotiation");
                    assert!(!c.oob || self.oob, "exec-oob without oob");
                    assert!(c.name != "qmp_capabilities" || c.oob, "qmp_capabilities handed out");
                    if let Some(a) = c.arguments {
                        assert!(a.as_object().is_some(), "arguments not an object");
                    }
                    self.pending.push(Pending {
                        name: c.name.to_cow().into_owned(),
                        id: c.id.map(|id| id.raw().to_vec()),
                        arguments: c.arguments.map(|a| a.raw().to_vec()),
                        oob: c.oob,
                    });
                    assert!(self.pending.len() <= self.policy.max_in_flight, "past max_in_flight");
                }
                Event::Refused { class } => {
                    assert!(matches!(class, "GenericError" | "CommandNotFound"), "class {class}");
                    if self.in_band() > 0 {
                        self.held = Some(class);
                        held_now = true;
                    } else {
                        self.lines.push(Line::Refused(class));
                    }
                }
                Event::Closed => self.closed = true,
            }
            self.log.push(line);
            assert_eq!(self.server.oob(), self.oob);
            self.flush();
            assert_eq!(self.server.in_flight(), self.pending.len(), "in-flight count");
            if self.closed {
                assert_eq!(self.server.state(), State::Closed);
                continue;
            }
            if self.policy.events {
                self.send_event();
            }
            if held_now {
                // The refusal waits for the in-band commands before it, and
                // the machine reads nothing meanwhile.
                self.before_poll();
                assert!(matches!(self.server.poll(), Ok(None)), "read on past a held refusal");
                self.answer_in_band();
            }
            if self.pending.len() >= self.policy.max_in_flight {
                self.before_poll();
                assert!(matches!(self.server.poll(), Ok(None)), "read on past max_in_flight");
                self.flush();
                self.answer_one();
            }
            while self.pending.len() > self.policy.defer {
                self.answer_one();
            }
        }
    }

    /// Feeds `data` in pieces of `chunk` bytes, then ends the stream (or
    /// closes), then answers what is left.
    fn feed(&mut self, data: &[u8], chunk: usize) {
        for piece in data.chunks(chunk) {
            let mut fed = 0;
            while fed < piece.len() {
                let n = self.server.receive(&piece[fed..]).expect("receive");
                fed += n;
                self.drain();
                assert!(self.server.recv_buf().len() <= RX, "the receive buffer grew past its storage");
                if n == 0 {
                    // Nothing taken: after polling there must be room (the
                    // caller leaves nothing blocked).
                    let again = self.server.receive(&piece[fed..]).expect("receive");
                    assert!(again > 0, "no room after polling");
                    fed += again;
                    self.drain();
                }
            }
        }
        if self.policy.close {
            // What waits to be written is dropped.
            self.floating = None;
            self.server.close();
            assert!(self.server.transmit().is_empty(), "close() left bytes to send");
        } else {
            self.server.recv_eof();
        }
        self.drain();
        assert!(self.closed, "no Closed at the end of the stream");
        assert!(matches!(self.server.poll(), Ok(None)), "an event after Closed");
        // The answers to what is still in flight (the client may still read).
        while !self.pending.is_empty() {
            self.answer_one();
        }
        assert_eq!(self.server.in_flight(), 0);
        assert!(self.held.is_none() && self.floating.is_none(), "a refusal never sent");
        self.send_event();
        assert!(matches!(self.server.poll(), Ok(None)), "an event after Closed");
        assert_eq!(self.log.iter().filter(|l| *l == "Closed").count(), 1, "Closed once");
    }
}

/// One line for an event: names, ids and arguments as text.
fn describe(e: &Event<'_>) -> String {
    match e {
        Event::Command(c) => format!(
            "command {:?} args={:?} id={:?} oob={}",
            c.name.to_cow(),
            c.arguments.map(|a| a.raw_str()),
            c.id.map(|i| i.raw_str()),
            c.oob
        ),
        Event::Negotiated { oob } => format!("negotiated oob={oob}"),
        Event::Refused { class } => format!("refused {class}"),
        Event::Closed => "Closed".to_string(),
    }
}

/// serde_json's reading of JSON text the framer took; `None` for numbers
/// past `f64` (`1e400`), which serde_json refuses and the framer does not.
fn serde(text: &[u8]) -> Option<serde_json::Value> {
    match serde_json::from_slice(text) {
        Ok(v) => Some(v),
        Err(e) if e.to_string().starts_with("number out of range") => None,
        Err(e) => panic!("not JSON ({e}): {}", String::from_utf8_lossy(text)),
    }
}

/// The bytes sent are `expected`, one JSON object per `\r\n` line.
fn check_sent(sent: &[u8], expected: &[Line]) {
    let text = Shown(sent);
    assert!(sent.is_empty() || sent.ends_with(b"\r\n"), "output does not end a line: {text:?}");
    let lines: Vec<&[u8]> =
        if sent.is_empty() { Vec::new() } else { sent[..sent.len() - 2].split(|&b| b == b'\n').collect() };
    let lines: Vec<&[u8]> = lines.into_iter().map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    for line in &lines {
        assert!(!line.contains(&b'\r'), "a bare CR in a line: {text:?}");
    }
    assert_eq!(lines.len(), expected.len(), "lines written, against lines expected {expected:?}:\n{text}");
    for (line, want) in lines.iter().zip(expected) {
        let shown = Shown(line);
        let Some(v) = serde(line) else { continue };
        let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {shown}"));
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let has_id = obj.contains_key("id");
        match want {
            Line::Greeting { oob } => {
                let caps = &v["QMP"]["capabilities"];
                assert_eq!(caps, &serde_json::json!(if *oob { vec!["oob"] } else { vec![] }), "{shown}");
                assert_eq!(v["QMP"]["version"]["qemu"]["minor"], 2, "{shown}");
            }
            Line::Negotiated => {
                assert_eq!(keys.len(), 1 + usize::from(has_id), "{shown}");
                assert_eq!(v["return"], serde_json::json!({}), "{shown}");
            }
            Line::Refused(class) => {
                assert_eq!(keys.len(), 1 + usize::from(has_id), "{shown}");
                assert_eq!(v["error"]["class"], *class, "{shown}");
                assert!(v["error"]["desc"].is_string(), "{shown}");
                assert_eq!(v["error"].as_object().map(|e| e.len()), Some(2), "{shown}");
            }
            Line::Answer { id, body } => {
                match id {
                    Some(id) => {
                        if let Some(id) = serde(id) {
                            assert_eq!(obj.get("id"), Some(&id), "the answer's id: {shown}");
                        }
                    }
                    None => assert!(!has_id, "an id on an answer to a command without one: {shown}"),
                }
                assert_eq!(keys.len(), 1 + usize::from(has_id), "{shown}");
                match body {
                    Body::Return(value) => {
                        if let Some(value) = serde(value) {
                            assert_eq!(v.get("return"), Some(&value), "{shown}");
                        }
                    }
                    Body::Error { class, desc } => {
                        assert_eq!(v["error"]["class"], *class, "{shown}");
                        assert_eq!(v["error"]["desc"], desc.as_str(), "{shown}");
                    }
                }
            }
            Line::Event(n) => {
                assert_eq!(v["event"], "STOP", "{shown}");
                assert_eq!(v["data"]["n"], *n, "{shown}");
                assert!(v["timestamp"]["seconds"].is_i64(), "{shown}");
            }
        }
    }
}

/// Bytes shown as text in a failure's message, converted only then (the
/// conversion of every line on every run cost a tenth of the target's time).
#[derive(Clone, Copy)]
struct Shown<'a>(&'a [u8]);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        String::from_utf8_lossy(self.0).fmt(f)
    }
}

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        String::from_utf8_lossy(self.0).fmt(f)
    }
}

fn run<S: Storage>(data: &[u8], chunk: usize, policy: Policy) -> Run<S> {
    let mut run = Run::<S>::new(policy);
    run.feed(data, chunk);
    run
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let Some((&policy, rest)) = rest.split_first() else { return };
    let policy = Policy::new(policy);
    let whole = run::<Heap>(rest, rest.len().max(1), policy);
    let chunked = run::<Fixed<RX, TX, 1>>(rest, usize::from(chunk % 97) + 1, policy);
    assert_eq!(whole.log, chunked.log, "the chunking changed the events");
    assert_eq!(whole.sent, chunked.sent, "the chunking changed the bytes sent");
    // The same bytes: reading them back once checks both runs.
    check_sent(&whole.sent, &whole.lines);
});
