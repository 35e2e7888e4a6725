//! negotiator-common's Python peers, a commands directory for them and
//! for our responders, and a hostile peer of raw bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use vmwire_std::negotiator::{Commands, Error};

/// A Python `NegotiatorInterface` serving one connection on a socket it
/// binds (argv[1]), with `USER_COMMANDS_DIRECTORY` pointed at argv[2].
pub const SERVER: &str = include_str!("../peers/negotiator_server.py");

/// A Python `NegotiatorInterface` calling the other end of a socket: it
/// connects (argv[2] == "connect") or waits for a connection (QEMU's
/// chardev is the server on the host), makes its calls, prints the outcomes
/// as one line of JSON, and closes.
pub const CALLER: &str = include_str!("../peers/negotiator_caller.py");

/// Starts the Python program `script` (with negotiator-common) with `args`,
/// and waits until it prints `ready` (if `wait`). The process, and its output.
pub fn python(script: &str, args: &[&str], wait: bool) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(super::require_python_module("negotiator_common"))
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    if wait {
        assert_eq!(read_line(&mut out).trim(), "ready", "the Python peer did not start");
    }
    (child, out)
}

/// A line of a Python peer's output.
pub fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line
}

/// A temporary directory with a commands directory of small scripts.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let commands = dir.path().join("commands");
        std::fs::create_dir(&commands).unwrap();
        for (name, body) in [
            ("echo-input", "cat"),
            ("echo-args", "printf '%s|' \"$@\""),
            ("echo-env", "printf '%s' \"$NEGOTIATOR_GUEST\""),
            ("lines", "printf 'one\\ntwo\\n'"),
            ("fail", "exit 3"),
            // Says it started, then waits for its go ahead (files named by its argument).
            ("slow", "touch \"$1.started\"; while [ ! -e \"$1.go\" ]; do sleep 0.01; done; printf late"),
            ("sleepy", "sleep 30"),
        ] {
            let path = commands.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Not executable: not a command.
        std::fs::write(commands.join("README"), "not a command\n").unwrap();
        Fixture { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The commands directory, each command limited to 2 s.
    pub fn commands(&self) -> Commands {
        Commands { time_limit: Some(Duration::from_secs(2)), ..Commands::in_directory(self.path("commands")) }
    }

    /// [`python`], here.
    pub fn python(&self, script: &str, args: &[&str], wait: bool) -> (Child, BufReader<ChildStdout>) {
        python(script, args, wait)
    }
}

/// A hostile peer: raw bytes to a responder, its answers read back.
pub struct Hostile {
    pub stream: UnixStream,
    pub server: JoinHandle<Result<(), Error>>,
    _fx: Fixture,
}

impl Hostile {
    /// Connects to a responder that `serve` starts (in a thread) on a
    /// listener, with the [`Fixture`]'s commands.
    pub fn serving(serve: impl FnOnce(UnixListener, Commands) -> JoinHandle<Result<(), Error>>) -> Self {
        let fx = Fixture::new();
        let socket = fx.path("hostile.sock");
        let server = serve(UnixListener::bind(&socket).unwrap(), fx.commands());
        let stream = UnixStream::connect(&socket).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Hostile { stream, server, _fx: fx }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends a request with `body`; its response.
    pub fn request(&mut self, body: &str) -> serde_json::Value {
        self.send(format!("{}\n{body}", body.len()).as_bytes());
        self.response()
    }

    /// Reads one response frame.
    pub fn response(&mut self) -> serde_json::Value {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while self.stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let len: usize = std::str::from_utf8(&line).unwrap().parse().unwrap();
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    /// Sends a request; its response's error text.
    pub fn error(&mut self, body: &str) -> String {
        let response = self.request(body);
        assert_eq!(response["success"], false, "{response}");
        response["error"].as_str().unwrap().to_owned()
    }

    /// Closes our end; the responder's outcome.
    pub fn finish(self) -> Result<(), Error> {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = (&self.stream).read_to_end(&mut Vec::new());
        self.server.join().unwrap()
    }

    /// The session goes on: a command still runs.
    pub fn works(&mut self) {
        let ok = self.request(r#"{"method": "execute", "args": ["echo-args", "still", "here"], "kw": {}}"#);
        assert_eq!(ok, serde_json::json!({"success": true, "result": "still|here|"}));
    }
}
