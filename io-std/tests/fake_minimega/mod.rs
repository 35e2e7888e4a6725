//! A fake minimega daemon for the tests, on a real UNIX socket.
//!
//! minimega is a Go program built from its own source tree and packaged in
//! no registry these machines reach, so the client cannot be tested against
//! the real daemon here. This fake stands in for it, built from the protocol
//! facts in `docs/reference/minimega-protocol.md` (established from
//! minimega 3.1.0's source and a real daemon) and from the real daemon's
//! captures in `fixtures/minimega/`; `fake_is_faithful_to_every_capture` in
//! `tests/minimega.rs` feeds it each capture's requests and checks that it
//! answers byte for byte as the real daemon did (modulo what changes from
//! run to run: load figures, Go's map order of table rows).
//!
//! What it reproduces:
//! - requests read as Go's streaming `json.Decoder` reads them: no framing,
//!   several requests per write or one split over several, keys matched
//!   case-insensitively (with Go's Unicode folding), unknown keys ignored;
//!   malformed JSON, a value of the wrong type, or garbage after a request
//!   closes the connection without a reply;
//! - replies as Go's `json.Encoder` writes them: compact frames ending in
//!   `\n`, members in the order `Resp, Rendered, More, Status` (+ `Suggest`),
//!   `<>&` escaped; `Resp: null` for blank and comment lines;
//! - minimega's CLI: its lexer, its rendering (`host: ` annotations, aligned
//!   and sorted tables, output modes), multi-frame streams (`read`, and a
//!   namespace prefix forwarding them) with errors mid-stream, the daemon-wide
//!   active namespace, suggestions, plumbing pipes, `quit`;
//! - status messages: a `Status: true` frame can be sent at any time to the
//!   connection that last ran a command, and, when asked, in the middle of
//!   every multi-frame reply.
#![allow(dead_code)]

pub mod gojson;
pub mod lexer;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use gojson::{Decoded, GoValue, quoted};

pub const VERSION: &str = "minimega 3.1.0 04636ffde53212479924deaaed3819065b144976 2026-11-21";

/// The columns of `vm info`.
pub const VM_INFO_HEADER: [&str; 44] = [
    "id",
    "name",
    "state",
    "uptime",
    "type",
    "uuid",
    "cc_active",
    "pid",
    "vlan",
    "bridge",
    "tap",
    "mac",
    "ip",
    "ip6",
    "qos",
    "qinq",
    "bond",
    "memory",
    "vcpus",
    "disks",
    "snapshot",
    "initrd",
    "kernel",
    "cdrom",
    "save",
    "append",
    "serial-ports",
    "virtio-ports",
    "vnc_port",
    "usb-use-xhci",
    "tpm-socket",
    "bidirectional-copy-paste",
    "android_avd",
    "android_console_port",
    "android_adb_port",
    "android_serial",
    "filesystem",
    "hostname",
    "init",
    "preinit",
    "fifo",
    "volume",
    "console_port",
    "tags",
];

const HELP_NAMESPACE: &str = "Usage:\n\tnamespace [name]\n\tnamespace <name> (command)\n\nWith no arguments, \"namespace\" prints summary info about namespaces:\n\n- name   : name of the namespace\n- vlans  : range of VLANs, empty if not set\n- active : active or not\n\nWhen a namespace is specified, it changes the active namespace or runs a single\ncommand in the different namespace.";

const TOP_LEVEL: &[&str] = &[
    ".alias",
    ".annotate",
    ".columns",
    ".compress",
    ".csv",
    ".filter",
    ".headers",
    ".json",
    ".preprocess",
    ".record",
    ".sort",
    ".unalias",
    "bridge",
    "capture",
    "cc",
    "clear",
    "deploy",
    "disk",
    "dnsmasq",
    "dot",
    "echo",
    "help",
    "history",
    "host",
    "log",
    "mesh",
    "namespace",
    "ns",
    "nuke",
    "optimize",
    "pipe",
    "plumb",
    "qos",
    "quit",
    "read",
    "router",
    "shell",
    "status",
    "tap",
    "vlans",
    "vm",
    "vnc",
    "wait",
    "write",
];

const VM_SUBCOMMANDS: &[&str] = &[
    "cdrom",
    "config",
    "flush",
    "hotplug",
    "info",
    "kill",
    "launch",
    "migrate",
    "net",
    "qmp",
    "save",
    "screenshot",
    "snapshot",
    "start",
    "stop",
    "tag",
    "top",
];

/// What the host reports about itself (`host`, `host name`'s `Data`).
#[derive(Debug, Clone)]
pub struct HostStats {
    pub cpus: u32,
    pub mem_total: u64,
    pub mem_used: u64,
    pub load: String,
    pub uptime_ns: u64,
}

/// The output flags (minicli's `Flags`): daemon-wide defaults, or one-shot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    pub mode: Mode,
    pub headers: bool,
    pub annotate: bool,
    pub sort: bool,
    pub compress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Default,
    Json,
    Csv,
}

impl Default for Flags {
    fn default() -> Self {
        Flags { mode: Mode::Default, headers: true, annotate: true, sort: true, compress: true }
    }
}

/// One response (minicli's `Response`).
#[derive(Debug, Clone, Default)]
pub struct Resp {
    pub host: String,
    pub response: String,
    pub header: Option<Vec<String>>,
    pub tabular: Option<Vec<Vec<String>>>,
    pub error: String,
    /// `Data` as Go-encoded JSON.
    pub data: Option<String>,
}

/// One frame to send: its responses (`None`: `Resp: null`) and the flags
/// they render with.
#[derive(Debug, Clone)]
struct Frame {
    resps: Option<Vec<Resp>>,
    flags: Flags,
}

/// A plumbing pipe.
#[derive(Debug, Clone, Default)]
struct PipeInfo {
    count: u64,
    previous: String,
    readers: Vec<Arc<Writer>>,
}

type Writer = Mutex<UnixStream>;

/// Everything the daemon knows.
pub struct World {
    pub hostname: String,
    pub host: HostStats,
    /// Namespaces and their VLAN ranges, in creation order.
    pub namespaces: Vec<(String, String)>,
    pub active: String,
    pub history: Vec<String>,
    /// Files `read` can read, by path.
    pub files: HashMap<String, String>,
    pub flags: Flags,
    /// Sent as a status message after the first frame of every multi-frame reply.
    pub status_mid_stream: Option<String>,
    /// Requests seen, as the daemon decoded them (for tests of the client's bytes).
    pub requests: Vec<String>,
    cc: Vec<String>,
    pipes: HashMap<String, PipeInfo>,
}

impl Default for World {
    fn default() -> Self {
        World {
            hostname: "mmpeer".into(),
            host: HostStats {
                cpus: 2,
                mem_total: 24105,
                mem_used: 606,
                load: "1.88 2.05 1.22".into(),
                uptime_ns: 982_910_000_000,
            },
            namespaces: vec![("minimega".into(), "101-4096".into())],
            active: "minimega".into(),
            history: Vec::new(),
            files: HashMap::new(),
            flags: Flags::default(),
            status_mid_stream: None,
            requests: Vec::new(),
            cc: Vec::new(),
            pipes: HashMap::new(),
        }
    }
}

/// What the daemon shares between connections.
struct Shared {
    world: Mutex<World>,
    /// Every connection, to close them all when the daemon quits.
    conns: Mutex<Vec<UnixStream>>,
    /// The connection that last ran a command: status messages go there (the
    /// daemon keys its status channel by one name, so the last one wins).
    status_target: Mutex<Option<Arc<Writer>>>,
    stopped: AtomicBool,
    path: PathBuf,
}

/// A running fake daemon; stopped (and its socket removed) on drop.
pub struct Fake {
    _dir: tempfile::TempDir,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Fake {
    /// A daemon with the default world (namespace `minimega`, host `mmpeer`).
    pub fn start() -> Fake {
        Self::with(|_| {})
    }

    /// A daemon whose world `setup` prepares.
    pub fn with(setup: impl FnOnce(&mut World)) -> Fake {
        let dir = tempfile::Builder::new().prefix("fake-minimega").tempdir().expect("temp dir");
        let path = dir.path().join("minimega");
        let listener = UnixListener::bind(&path).expect("bind");
        let mut world = World::default();
        setup(&mut world);
        let shared = Arc::new(Shared {
            world: Mutex::new(world),
            conns: Mutex::new(Vec::new()),
            status_target: Mutex::new(None),
            stopped: AtomicBool::new(false),
            path,
        });
        let accepting = Arc::clone(&shared);
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Ok(clone) = stream.try_clone() {
                    lock(&accepting.conns).push(clone);
                }
                let shared = Arc::clone(&accepting);
                thread::spawn(move || serve(&shared, stream));
            }
        });
        Fake { _dir: dir, shared, accept: Some(accept) }
    }

    /// The socket.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The daemon's state.
    pub fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.shared.world)
    }

    /// Sends a status message now, as the daemon's status goroutine does, to
    /// the connection that last ran a command. Returns whether there was one.
    pub fn status(&self, text: &str) -> bool {
        let target = lock(&self.shared.status_target).clone();
        match target {
            Some(writer) => {
                write_frame(&writer, &status_frame(text));
                true
            }
            None => false,
        }
    }

    /// Whether the daemon has quit.
    pub fn stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        stop(&self.shared);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The daemon exits: no more connections, and every open one closes.
fn stop(shared: &Shared) {
    if shared.stopped.swap(true, Ordering::SeqCst) {
        return;
    }
    // Wake the accept loop, and remove the socket as the daemon does on
    // exit, before any client can see its connection close.
    let _ = UnixStream::connect(&shared.path);
    let _ = std::fs::remove_file(&shared.path);
    for conn in lock(&shared.conns).drain(..) {
        let _ = conn.shutdown(std::net::Shutdown::Both);
    }
}

fn write_frame(writer: &Writer, frame: &str) -> bool {
    // One write per frame, as Go's encoder does: frames never interleave.
    lock(writer).write_all(frame.as_bytes()).is_ok()
}

fn status_frame(text: &str) -> String {
    format!("{{\"Resp\":null,\"Rendered\":{},\"More\":false,\"Status\":true}}\n", quoted(text))
}

/// A request, as `miniclient.Request` decodes it.
#[derive(Debug, Default)]
struct Request {
    command: String,
    suggest: String,
    plumb_pipe: String,
}

/// Go's `Decode(&request)`: `None` when the value does not fit (the
/// daemon then closes the connection).
fn request(value: &GoValue) -> Option<Request> {
    let mut r = Request::default();
    match value {
        GoValue::Null => return Some(r),
        GoValue::Object(members) => {
            for (key, value) in members {
                let field = match gojson::fold(key).as_str() {
                    "COMMAND" => &mut r.command,
                    "SUGGEST" => &mut r.suggest,
                    "PLUMBPIPE" => &mut r.plumb_pipe,
                    _ => continue,
                };
                match value {
                    GoValue::String(s) => *field = s.clone(),
                    GoValue::Null => {}
                    _ => return None,
                }
            }
        }
        _ => return None,
    }
    Some(r)
}

/// Reads values off the connection as Go's `json.Decoder` does.
struct Decoder {
    stream: UnixStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Decoder {
    /// The next value; `None` at the end of the stream or on invalid input.
    fn next(&mut self) -> Option<GoValue> {
        loop {
            match gojson::decode(&self.buf, self.eof) {
                Decoded::Value(v, n) => {
                    self.buf.drain(..n);
                    return Some(v);
                }
                Decoded::Invalid(_) => return None,
                Decoded::Empty | Decoded::Incomplete if self.eof => return None,
                Decoded::Empty | Decoded::Incomplete => {
                    let mut chunk = [0u8; 4096];
                    match self.stream.read(&mut chunk) {
                        Ok(0) | Err(_) => self.eof = true,
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        }
    }
}

/// One connection: `commandSocketHandle`.
fn serve(shared: &Arc<Shared>, stream: UnixStream) {
    let Ok(clone) = stream.try_clone() else { return };
    let writer: Arc<Writer> = Arc::new(Mutex::new(clone));
    let mut decoder = Decoder { stream, buf: Vec::new(), eof: false };
    while let Some(value) = decoder.next() {
        let mut text = String::new();
        gojson::value(&mut text, &value);
        lock(&shared.world).requests.push(text);
        let Some(r) = request(&value) else { break };
        if !r.plumb_pipe.is_empty() {
            plumb(shared, &writer, &mut decoder, &r.plumb_pipe);
            break;
        }
        if r.command.is_empty() == r.suggest.is_empty() {
            let resp = error_resp(&lock(&shared.world).hostname, "must specify either command or suggest");
            let frame = encode_frame(Some(&[resp]), &Flags::default(), false);
            if !write_frame(&writer, &frame) {
                break;
            }
            continue;
        }
        if !r.suggest.is_empty() {
            let suggestions = suggest(&r.suggest);
            let mut frame = String::from("{\"Resp\":null,\"Rendered\":\"\",\"More\":false,\"Status\":false");
            if !suggestions.is_empty() {
                let items: Vec<String> = suggestions.iter().map(|s| quoted(s)).collect();
                frame.push_str(&format!(",\"Suggest\":[{}]", items.join(",")));
            }
            frame.push_str("}\n");
            if !write_frame(&writer, &frame) {
                break;
            }
            continue;
        }
        *lock(&shared.status_target) = Some(Arc::clone(&writer));
        let (frames, effect, status) = {
            let mut world = lock(&shared.world);
            let (frames, effect) = world.command(&r.command);
            (frames, effect, world.status_mid_stream.clone())
        };
        if effect == Effect::Quit {
            stop(shared);
            return;
        }
        let n = frames.len();
        let mut ok = true;
        for (i, frame) in frames.iter().enumerate() {
            let more = i + 1 < n;
            ok = ok && write_frame(&writer, &encode_frame(frame.resps.as_deref(), &frame.flags, more));
            if i == 0 && n > 1 {
                if let Some(text) = &status {
                    ok = ok && write_frame(&writer, &status_frame(text));
                }
            }
        }
        if let Effect::QuitAfter(seconds) = effect {
            let shared = Arc::clone(shared);
            thread::spawn(move || {
                thread::sleep(Duration::from_secs(seconds));
                stop(&shared);
            });
        }
        if !ok {
            break;
        }
    }
    let _ = lock(&writer).shutdown(std::net::Shutdown::Both);
}

/// The connection is a pipe from now on: strings in go to the pipe, the
/// pipe's strings go out.
fn plumb(shared: &Arc<Shared>, writer: &Arc<Writer>, decoder: &mut Decoder, name: &str) {
    lock(&shared.world).pipes.entry(name.to_string()).or_default().readers.push(Arc::clone(writer));
    while let Some(value) = decoder.next() {
        let GoValue::String(line) = value else { break };
        if !line.is_empty() {
            lock(&shared.world).pipe_write(name, &line);
        }
    }
    if let Some(pipe) = lock(&shared.world).pipes.get_mut(name) {
        pipe.readers.retain(|r| !Arc::ptr_eq(r, writer));
    }
}

/// What a command does to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    None,
    /// `quit`: the daemon exits; no reply.
    Quit,
    /// `quit N`: reply, then exit N seconds later.
    QuitAfter(u64),
}

fn error_resp(host: &str, error: &str) -> Resp {
    Resp { host: host.into(), error: error.into(), ..Resp::default() }
}

/// Go's `strconv.Atoi`.
fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// minicli's `table.Less`.
fn go_less(a: &[String], b: &[String]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return match (atoi(x), atoi(y)) {
                (Some(v), Some(w)) => v.cmp(&w),
                _ => x.cmp(y),
            };
        }
    }
    std::cmp::Ordering::Equal
}

/// Go's `time.Duration.String` for whole seconds and up.
fn go_duration(ns: u64) -> String {
    let (h, m) = (ns / 3_600_000_000_000, ns / 60_000_000_000 % 60);
    let frac = ns % 60_000_000_000;
    let mut s = format!("{}.{:09}", frac / 1_000_000_000, frac % 1_000_000_000);
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// Go's `text/tabwriter` with minwidth 5, padding 1, as minicli sets it up,
/// over lines of cells (all but the last cell of a line end in a tab).
fn tabwriter(lines: &[Vec<String>]) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![5usize; columns];
    for line in lines {
        for (j, cell) in line.iter().enumerate().take(line.len().saturating_sub(1)) {
            widths[j] = widths[j].max(cell.chars().count() + 1);
        }
    }
    let mut out = String::new();
    for line in lines {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                out.push_str(&" ".repeat(widths[j] - cell.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

/// Go's `encoding/csv` writer (no CRLF).
fn csv(lines: &[Vec<String>]) -> String {
    let field = |f: &str| {
        let needs = !f.is_empty()
            && (f == "\\." || f.contains([',', '"', '\r', '\n']) || f.chars().next().is_some_and(char::is_whitespace));
        if needs { format!("\"{}\"", f.replace('"', "\"\"")) } else { f.to_string() }
    };
    lines.iter().map(|l| l.iter().map(|f| field(f)).collect::<Vec<_>>().join(",") + "\n").collect()
}

/// Responses as JSON, as `json.Marshal(Responses)` writes them.
fn resps_json(resps: &[Resp]) -> String {
    let strings = |v: &[String]| format!("[{}]", v.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(","));
    let items: Vec<String> = resps
        .iter()
        .map(|r| {
            format!(
                "{{\"Host\":{},\"Response\":{},\"Header\":{},\"Tabular\":{},\"Error\":{},\"Data\":{}}}",
                quoted(&r.host),
                quoted(&r.response),
                r.header.as_deref().map_or("null".into(), strings),
                r.tabular.as_deref().map_or("null".into(), |rows| format!(
                    "[{}]",
                    rows.iter().map(|row| strings(row)).collect::<Vec<_>>().join(",")
                )),
                quoted(&r.error),
                r.data.as_deref().unwrap_or("null"),
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// minicli's `Responses.String()`.
fn render(resps: &[Resp], flags: &Flags) -> String {
    if resps.is_empty() {
        return String::new();
    }
    if flags.mode == Mode::Json {
        return resps_json(resps);
    }
    let header = resps.iter().find_map(|r| r.header.clone());
    let count: usize = resps.iter().map(|r| r.tabular.as_ref().map_or(0, Vec::len)).sum();
    let mut out = String::new();
    match header {
        Some(header) if count > 0 => {
            let mut header = header;
            if flags.annotate {
                header.insert(0, "host".into());
            }
            let mut data: Vec<Vec<String>> = Vec::new();
            for r in resps {
                for row in r.tabular.iter().flatten() {
                    let mut row = row.clone();
                    if flags.annotate {
                        row.insert(0, r.host.clone());
                    }
                    data.push(row);
                }
            }
            if flags.sort {
                data.sort_by(|a, b| go_less(a, b));
            }
            let mut lines = Vec::new();
            if flags.headers {
                lines.push(header);
            }
            lines.extend(data);
            if flags.mode == Mode::Csv {
                out = csv(&lines);
            } else {
                let cells: Vec<Vec<String>> = lines
                    .into_iter()
                    .map(|l| {
                        l.into_iter().enumerate().map(|(j, c)| if j == 0 { c } else { format!("| {c}") }).collect()
                    })
                    .collect();
                out = tabwriter(&cells);
            }
        }
        _ => {
            for r in resps {
                if r.error.is_empty() && !r.response.is_empty() {
                    if flags.annotate {
                        out.push_str(&r.host);
                        out.push_str(": ");
                    }
                    out.push_str(&r.response);
                    out.push('\n');
                }
            }
        }
    }
    out.trim().to_string()
}

/// A frame as `sendLocalResp` encodes it.
fn encode_frame(resps: Option<&[Resp]>, flags: &Flags, more: bool) -> String {
    match resps {
        None => format!("{{\"Resp\":null,\"Rendered\":\"\",\"More\":{more},\"Status\":false}}\n"),
        Some(resps) => format!(
            "{{\"Resp\":{},\"Rendered\":{},\"More\":{more},\"Status\":false}}\n",
            resps_json(resps),
            quoted(&render(resps, flags))
        ),
    }
}

/// Completions as the daemon's completer gives them: whole lines, each
/// with a trailing space, sorted.
fn suggest(input: &str) -> Vec<String> {
    let words: Vec<&str> = input.split_whitespace().collect();
    let ends_in_space = input.ends_with(char::is_whitespace);
    let (done, partial) = match (words.split_last(), ends_in_space) {
        (Some((last, rest)), false) => (rest.to_vec(), *last),
        _ => (words.clone(), ""),
    };
    let candidates: &[&str] = match done.as_slice() {
        [] => TOP_LEVEL,
        ["vm"] => VM_SUBCOMMANDS,
        _ => &[],
    };
    let mut out: Vec<String> = candidates
        .iter()
        .filter(|c| c.starts_with(partial))
        .map(|c| done.iter().chain(std::iter::once(c)).copied().collect::<Vec<_>>().join(" ") + " ")
        .collect();
    out.sort();
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn parse_bool(word: &str) -> Option<bool> {
    match word {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

const MODES: [&str; 7] = [".json", ".csv", ".headers", ".annotate", ".sort", ".compress", ".record"];

/// Whether minicli would compile `words` (a known command pattern).
fn compiles(words: &[String]) -> bool {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        [] => false,
        [m] if MODES.contains(m) => true,
        [m, b] if MODES.contains(m) => parse_bool(b).is_some(),
        [m, b, rest @ ..] if MODES.contains(m) => {
            parse_bool(b).is_some() && compiles(&words[words.len() - rest.len()..])
        }
        [".columns" | ".filter", _, rest @ ..] => !rest.is_empty() && compiles(&words[2..]),
        ["echo", ..] | ["version"] | ["host"] | ["host", "name"] | ["vlans"] | ["history"] | ["help", ..] => true,
        ["vm", "info"] | ["vm", "kill", _] | ["vm", "config", "memory", _] => true,
        ["namespace"] | ["namespace", _] => true,
        ["namespace", _, ..] => compiles(&words[2..]),
        ["clear", "namespace"] | ["clear", "namespace", _] | ["clear", "cc"] | ["clear", "pipe", _] => true,
        ["ns", "hosts"] | ["read", _] | ["mesh", "list"] | ["mesh", "status"] => true,
        ["mesh", "send", _, ..] => w.len() > 3,
        ["cc", "exec", ..] => w.len() > 2,
        ["cc", "commands"] | ["status", "updates"] => true,
        ["pipe"] | ["pipe", _, _] => true,
        ["shell", _, ..] => true,
        ["quit"] | ["quit", _] => w.len() == 1 || w[1].parse::<u64>().is_ok(),
        _ => false,
    }
}

impl World {
    fn ok(&self, response: impl Into<String>) -> Resp {
        Resp { host: self.hostname.clone(), response: response.into(), ..Resp::default() }
    }

    fn err(&self, error: impl Into<String>) -> Resp {
        error_resp(&self.hostname, &error.into())
    }

    fn host_data(&self) -> String {
        let h = &self.host;
        format!(
            "{{\"Name\":{},\"RxBps\":0,\"TxBps\":0,\"CPUs\":{},\"MemTotal\":{},\"MemUsed\":{},\"VMs\":0,\"AndroidVMs\":0,\"Limit\":-1,\"CPUCommit\":0,\"MemCommit\":0,\"NetworkCommit\":0,\"Load\":{},\"Uptime\":{}}}",
            quoted(&self.hostname),
            h.cpus,
            h.mem_total,
            h.mem_used,
            quoted(&h.load),
            h.uptime_ns
        )
    }

    fn table(&self, header: &[&str], rows: Vec<Vec<String>>) -> Resp {
        Resp {
            host: self.hostname.clone(),
            header: Some(header.iter().map(|s| s.to_string()).collect()),
            tabular: Some(rows),
            ..Resp::default()
        }
    }

    fn ensure_namespace(&mut self, name: &str) {
        if !self.namespaces.iter().any(|(n, _)| n == name) {
            self.namespaces.push((name.to_string(), String::new()));
        }
    }

    fn pipe_write(&mut self, name: &str, data: &str) {
        let pipe = self.pipes.entry(name.to_string()).or_default();
        pipe.count += 1;
        pipe.previous = data.to_string();
        let line = quoted(data) + "\n";
        for reader in &pipe.readers {
            write_frame(reader, &line);
        }
    }

    /// Runs one command line as the daemon does with a `Command` request:
    /// the frames to send, and what happens to the connection.
    fn command(&mut self, line: &str) -> (Vec<Frame>, Effect) {
        let words = match lexer::lex(line) {
            Ok(words) => words,
            Err(e) => {
                return (vec![Frame { resps: Some(vec![self.err(e.to_string())]), flags: self.flags }], Effect::None);
            }
        };
        if words.is_empty() {
            return (vec![Frame { resps: None, flags: self.flags }], Effect::None);
        }
        if !compiles(&words) {
            let e = self.err(format!("invalid command: `{}`", line.trim()));
            return (vec![Frame { resps: Some(vec![e]), flags: self.flags }], Effect::None);
        }
        match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["quit"] => return (Vec::new(), Effect::Quit),
            ["quit", n] => {
                let n: u64 = n.parse().unwrap_or(0);
                let r = self.ok(format!("quitting after {n} seconds"));
                self.history.push(line.to_string());
                return (vec![Frame { resps: Some(vec![r]), flags: self.flags }], Effect::QuitAfter(n));
            }
            _ => {}
        }
        let record = words[0] != "read";
        let frames = self.exec(&words, None, self.flags);
        if record {
            self.history.push(line.to_string());
        }
        (frames, Effect::None)
    }

    /// Runs compiled `words` in namespace `ns` (`None`: the active one).
    fn exec(&mut self, words: &[String], ns: Option<&str>, flags: Flags) -> Vec<Frame> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let one = |r: Resp, flags: Flags| vec![Frame { resps: Some(vec![r]), flags }];
        match w.as_slice() {
            [mode, ..] if MODES.contains(mode) => {
                let value = w.get(1).and_then(|b| parse_bool(b));
                if w.len() <= 2 {
                    // Bare: the daemon-wide default.
                    let mut r = self.ok("");
                    let current = self.flags;
                    let set = |f: &mut Flags, v: bool| match *mode {
                        ".json" => {
                            f.mode = if v {
                                Mode::Json
                            } else if f.mode == Mode::Json {
                                Mode::Default
                            } else {
                                f.mode
                            }
                        }
                        ".csv" => {
                            f.mode = if v {
                                Mode::Csv
                            } else if f.mode == Mode::Csv {
                                Mode::Default
                            } else {
                                f.mode
                            }
                        }
                        ".headers" => f.headers = v,
                        ".annotate" => f.annotate = v,
                        ".sort" => f.sort = v,
                        ".compress" => f.compress = v,
                        _ => {}
                    };
                    match value {
                        Some(v) => set(&mut self.flags, v),
                        None => {
                            let on = match *mode {
                                ".json" => current.mode == Mode::Json,
                                ".csv" => current.mode == Mode::Csv,
                                ".headers" => current.headers,
                                ".annotate" => current.annotate,
                                ".sort" => current.sort,
                                ".compress" => current.compress,
                                _ => false,
                            };
                            r.response = on.to_string();
                        }
                    }
                    return one(r, self.flags);
                }
                let mut sub = flags;
                let v = value.unwrap_or(false);
                match *mode {
                    ".json" => {
                        sub.mode = if v {
                            Mode::Json
                        } else if sub.mode == Mode::Json {
                            Mode::Default
                        } else {
                            sub.mode
                        }
                    }
                    ".csv" => {
                        sub.mode = if v {
                            Mode::Csv
                        } else if sub.mode == Mode::Csv {
                            Mode::Default
                        } else {
                            sub.mode
                        }
                    }
                    ".headers" => sub.headers = v,
                    ".annotate" => sub.annotate = v,
                    ".sort" => sub.sort = v,
                    ".compress" => sub.compress = v,
                    _ => {}
                }
                self.exec(&words[2..], ns, sub)
            }
            [".columns", columns, ..] => {
                let columns: Vec<String> = columns.split(',').map(str::to_string).collect();
                let mut frames = self.exec(&words[2..], ns, flags);
                for frame in &mut frames {
                    for r in frame.resps.iter_mut().flatten() {
                        let Some(header) = r.header.clone() else { continue };
                        let Some(tabular) = r.tabular.clone() else {
                            r.header = Some(columns.clone());
                            continue;
                        };
                        let mut names = Vec::new();
                        let mut rows = vec![Vec::new(); tabular.len()];
                        for col in &columns {
                            let Some(j) = header
                                .iter()
                                .position(|h| h == col)
                                .or_else(|| header.iter().position(|h| h.starts_with(col.as_str())))
                            else {
                                continue;
                            };
                            names.push(header[j].clone());
                            for (k, row) in tabular.iter().enumerate() {
                                rows[k].push(row[j].clone());
                            }
                        }
                        r.header = Some(names);
                        r.tabular = Some(rows);
                    }
                }
                frames
            }
            [".filter", filter, ..] => {
                let (col, val) =
                    filter.split_once('=').map(|(c, v)| (c.to_lowercase(), v.to_lowercase())).unwrap_or_default();
                let mut frames = self.exec(&words[2..], ns, flags);
                for frame in &mut frames {
                    for r in frame.resps.iter_mut().flatten() {
                        let (Some(header), Some(tabular)) = (&r.header, &mut r.tabular) else { continue };
                        if let Some(j) = header.iter().position(|h| h.to_lowercase() == col) {
                            tabular.retain(|row| row[j].to_lowercase() == val);
                        }
                    }
                }
                frames
            }
            ["namespace"] => {
                let active = self.active.clone();
                let rows = self
                    .namespaces
                    .iter()
                    .rev()
                    .map(|(n, v)| vec![n.clone(), v.clone(), (*n == active).to_string()])
                    .collect();
                one(self.table(&["namespace", "vlans", "active"], rows), flags)
            }
            ["namespace", name] => {
                if !valid_name(name) {
                    return one(
                        self.err("invalid name; must only include letters, numbers, hyphens and underscores"),
                        flags,
                    );
                }
                self.ensure_namespace(name);
                self.active = name.to_string();
                one(self.ok(""), flags)
            }
            ["namespace", name, ..] => {
                if !valid_name(name) {
                    return one(
                        self.err("invalid name; must only include letters, numbers, hyphens and underscores"),
                        flags,
                    );
                }
                self.ensure_namespace(name);
                let name = name.to_string();
                self.exec(&words[2..], Some(&name), flags)
            }
            ["clear", "namespace"] => {
                self.active = "minimega".into();
                one(self.ok(""), flags)
            }
            ["clear", "namespace", name] => {
                self.namespaces.retain(|(n, _)| n != name || n == "minimega");
                if self.active == *name {
                    self.active = "minimega".into();
                }
                one(self.ok(""), flags)
            }
            ["read", path] => self.read(path, ns, flags),
            ["echo", rest @ ..] => one(self.ok(rest.join(" ")), flags),
            ["version"] => one(self.ok(VERSION), flags),
            ["host", "name"] => {
                let mut r = self.ok(self.hostname.clone());
                r.data = Some(self.host_data());
                one(r, flags)
            }
            ["host"] => {
                let h = &self.host;
                let row = vec![
                    h.cpus.to_string(),
                    h.load.clone(),
                    h.mem_used.to_string(),
                    h.mem_total.to_string(),
                    "0.0".into(),
                    "0.0".into(),
                    "0".into(),
                    "-1".into(),
                    "0".into(),
                    "0".into(),
                    "0".into(),
                    "0".into(),
                    go_duration(h.uptime_ns),
                ];
                let header = [
                    "cpus",
                    "load",
                    "memused",
                    "memtotal",
                    "rx",
                    "tx",
                    "vms",
                    "vmlimit",
                    "androidvms",
                    "cpucommit",
                    "memcommit",
                    "netcommit",
                    "uptime",
                ];
                let mut r = self.table(&header, vec![row]);
                r.data = Some(self.host_data());
                one(r, flags)
            }
            ["vm", "info"] => {
                let mut r = self.table(&VM_INFO_HEADER, Vec::new());
                r.tabular = None;
                r.data = Some("[]".into());
                one(r, flags)
            }
            ["vm", "kill", target] => one(self.err(format!("vm not found: {target}")), flags),
            ["vm", "config", "memory", value] => match value.parse::<u64>() {
                Ok(_) => one(self.ok(""), flags),
                Err(_) => one(self.err(format!("strconv.ParseUint: parsing {}: invalid syntax", quoted(value))), flags),
            },
            ["ns", "hosts"] => one(self.ok(self.hostname.clone()), flags),
            ["mesh", "list"] => one(self.ok(format!("{}\n", self.hostname)), flags),
            ["mesh", "status"] => {
                let row = vec!["1".into(), "0".into(), "0".into(), self.hostname.clone(), "9000".into()];
                one(self.table(&["size", "degree", "peers", "context", "port"], vec![row]), flags)
            }
            ["mesh", "send", ..] => vec![Frame { resps: Some(Vec::new()), flags }],
            ["vlans"] => one(self.table(&["alias", "vlan"], Vec::new()), flags),
            ["history"] => one(self.ok(self.history.join("\n")), flags),
            ["help", "namespace"] => one(self.ok(HELP_NAMESPACE), flags),
            ["help", ..] => one(self.ok(""), flags),
            ["cc", "exec", rest @ ..] => {
                self.cc.push(rest.join(" "));
                let mut r = self.ok("");
                r.data = Some(self.cc.len().to_string());
                one(r, flags)
            }
            ["cc", "commands"] => {
                let rows = self
                    .cc
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        [&(i + 1).to_string(), "", &format!("[{c}]"), "0", "false", "false", "[]", "[]", "", "", ""]
                            .map(str::to_string)
                            .to_vec()
                    })
                    .collect();
                let header = [
                    "id",
                    "prefix",
                    "command",
                    "responses",
                    "background",
                    "once",
                    "sent",
                    "received",
                    "connectivity",
                    "level",
                    "filter",
                ];
                one(self.table(&header, rows), flags)
            }
            ["clear", "cc"] => {
                self.cc.clear();
                one(self.ok(""), flags)
            }
            ["status", "updates"] => one(self.ok("status update frequency: 3s"), flags),
            // `shell seq [FIRST] LAST`, the one program the fake runs: its
            // output is the response (`shell seq 1 5000000` makes one frame
            // of about 78 MB, its output twice: `Response` and `Rendered`).
            ["shell", "seq", bounds @ ..] => {
                let numbers: Vec<u64> = bounds.iter().filter_map(|b| b.parse().ok()).collect();
                let (first, last) = match numbers.as_slice() {
                    [last] => (1, *last),
                    [first, last] => (*first, *last),
                    _ => return one(self.err("exit status 1"), flags),
                };
                let mut out = String::new();
                for n in first..=last {
                    out.push_str(&n.to_string());
                    out.push('\n');
                }
                one(self.ok(out), flags)
            }
            ["shell", program, ..] => {
                one(self.err(format!("exec: {}: executable file not found in $PATH", quoted(program))), flags)
            }
            ["pipe"] => {
                let mut names: Vec<&String> = self.pipes.keys().collect();
                names.sort();
                let rows = names
                    .into_iter()
                    .map(|n| {
                        let p = &self.pipes[n];
                        vec![
                            n.clone(),
                            "all".into(),
                            p.readers.len().to_string(),
                            "0".into(),
                            p.count.to_string(),
                            String::new(),
                            p.previous.clone(),
                        ]
                    })
                    .collect();
                one(self.table(&["name", "mode", "readers", "writers", "count", "via", "previous"], rows), flags)
            }
            ["pipe", name, data] => {
                let full = format!("{}//{name}", ns.unwrap_or(&self.active.clone()));
                self.pipe_write(&full, data);
                one(self.ok(""), flags)
            }
            ["clear", "pipe", name] => {
                let full = format!("{}//{name}", ns.unwrap_or(&self.active.clone()));
                self.pipes.remove(&full);
                one(self.ok(""), flags)
            }
            _ => one(self.err(format!("invalid command: `{}`", words.join(" "))), flags),
        }
    }

    /// `read FILE`: a frame per command of the file; the first line that
    /// does not compile ends it with an error frame.
    fn read(&mut self, path: &str, ns: Option<&str>, flags: Flags) -> Vec<Frame> {
        let Some(text) = self.files.get(path).cloned() else {
            let e = self.err(format!("open {path}: no such file or directory"));
            return vec![Frame { resps: Some(vec![e]), flags }];
        };
        let base = path.rsplit('/').next().unwrap_or(path).to_string();
        let mut frames = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let words = match lexer::lex(line) {
                Ok(words) if words.is_empty() => continue,
                Ok(words) if compiles(&words) => words,
                Ok(_) => {
                    let e = self.err(format!("{base}:{} invalid command: `{}`", i + 1, line.trim()));
                    frames.push(Frame { resps: Some(vec![e]), flags });
                    break;
                }
                Err(e) => {
                    let e = self.err(format!("{base}:{} {e}", i + 1));
                    frames.push(Frame { resps: Some(vec![e]), flags });
                    break;
                }
            };
            let namespace = ns.map(str::to_string).unwrap_or_else(|| self.active.clone());
            frames.extend(self.exec(&words, Some(&namespace), flags));
            self.history.push(format!("namespace {} {line}", quoted(&namespace)));
        }
        frames
    }
}

#[test]
fn go_duration_formats_as_go() {
    assert_eq!(go_duration(905_630_000_000), "15m5.63s");
    assert_eq!(go_duration(3_600_000_000_000 + 1_000_000_000), "1h0m1s");
    assert_eq!(go_duration(2_000_000_000), "2s");
}
