//! An async client for QEMU's human monitor (the readline monitor over a
//! UNIX or TCP socket): the twin of `vmwire_std::hmp`, with the same
//! options, errors and values.
//!
//! ```no_run
//! use vmwire_smol::hmp::{Monitor, Options};
//!
//! smol::block_on(async {
//!     let mut hmp = Monitor::connect_unix("/run/vm/hmp.sock", Options::default()).await?;
//!     println!("{}", hmp.info("version").await?);
//!     if !hmp.status().await?.running {
//!         hmp.command("cont").await?;
//!     }
//!     hmp.sendkey("ctrl-alt-f1", None).await?;
//!     Ok::<(), vmwire_smol::hmp::Error>(())
//! })
//! # .unwrap();
//! ```
//!
//! A command whose future is dropped before its prompt came back (or whose
//! time limit passed) goes on running in QEMU: its output is skipped by the
//! next command, which waits behind it.

use std::net::ToSocketAddrs;
use std::path::Path;
use std::time::Duration;

use futures_io::{AsyncRead, AsyncWrite};
use vmwire_proto::buf::Heap;
use vmwire_proto::hmp::{self, Client};
use vmwire_std::hmp::{Finished, Unsolicited, finished, line, no_prompt, opened, over_qmp};

pub use vmwire_std::hmp::{Error, Migrate, Options, Status};

use crate::conn::{Conn, DriveError, Stream, deadline};
use crate::qmp;

/// A connection to QEMU's human monitor over stream `S`.
///
/// Each method is a future that borrows the monitor: one command at a
/// time. A future dropped before it ends leaves the monitor usable.
#[derive(Debug)]
pub struct Monitor<S = Stream> {
    backend: Backend<S>,
    timeout: Option<Duration>,
    lf_newlines: bool,
    unsolicited: Unsolicited,
}

/// How the monitor reaches QEMU.
#[derive(Debug)]
#[allow(clippy::large_enum_variant, reason = "one per monitor, never moved in bulk")]
enum Backend<S> {
    /// A readline monitor socket.
    Readline { conn: Conn<S, Client<Heap>>, banner: String },
    /// `human-monitor-command` over a (shared) QMP connection.
    Qmp(qmp::Handle),
}

impl Monitor {
    /// Connects to a readline monitor's UNIX socket (`-monitor unix:PATH,server=on`
    /// or `-mon chardev=…,mode=readline`) and waits for the prompt.
    pub async fn connect_unix(path: impl AsRef<Path>, options: Options) -> Result<Self, Error> {
        let stream = Stream::connect_unix(path, options.timeout).await?;
        Self::handshake(stream, options).await
    }

    /// Runs the same commands over a QMP connection with
    /// `human-monitor-command`: a [`qmp::Handle`], which other tasks may
    /// share. The monitor's time limit applies to each command.
    pub fn via_qmp(qmp: qmp::Handle, options: Options) -> Self {
        Monitor {
            backend: Backend::Qmp(qmp),
            timeout: options.timeout,
            lf_newlines: options.config.lf_newlines,
            unsolicited: Unsolicited::new(),
        }
    }

    /// Connects to a readline monitor on TCP (`-monitor tcp:HOST:PORT,server=on`).
    pub async fn connect_tcp(addr: impl ToSocketAddrs, options: Options) -> Result<Self, Error> {
        let stream = Stream::connect_tcp(addr, options.timeout).await?;
        Self::handshake(stream, options).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Monitor<S> {
    /// Waits on `stream` for the banner and the first prompt.
    pub async fn handshake(stream: S, options: Options) -> Result<Self, Error> {
        let mut conn = Conn::new(stream, Client::<Heap>::new(options.config));
        let mut unsolicited = Unsolicited::new();
        let mut opening = hmp::Opening::new(opened);
        let banner = match conn.run(&mut opening, &mut unsolicited, deadline(options.timeout)).await {
            Err(DriveError::Timeout) => return Err(no_prompt(conn.machine().buffered())),
            other => other??,
        };
        let (timeout, lf_newlines) = (options.timeout, options.config.lf_newlines);
        Ok(Monitor { backend: Backend::Readline { conn, banner }, timeout, lf_newlines, unsolicited })
    }

    /// The banner before the first prompt (empty over QMP).
    pub fn banner(&self) -> &str {
        match &self.backend {
            Backend::Readline { banner, .. } => banner,
            Backend::Qmp(_) => "",
        }
    }

    /// QEMU's version as `(major, minor, micro)`: from the banner, or the QMP greeting.
    pub fn version(&self) -> Option<(u64, u64, u64)> {
        match &self.backend {
            Backend::Readline { banner, .. } => hmp::Banner { text: banner.as_bytes() }.version(),
            Backend::Qmp(qmp) => Some(qmp.greeting().version),
        }
    }

    /// Sets the default time limit for each command.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Runs `line` and returns what QEMU printed, error messages included
    /// (HMP has no error replies: `unknown command: 'x'` is output too).
    pub async fn command(&mut self, line: &str) -> Result<String, Error> {
        self.command_timeout(line, self.timeout).await
    }

    /// [`Monitor::command`] with its own time limit.
    pub async fn command_timeout(&mut self, line: &str, timeout: Option<Duration>) -> Result<String, Error> {
        self.run(line, timeout).await?.output()
    }

    async fn run(&mut self, line: &str, timeout: Option<Duration>) -> Result<Finished, Error> {
        hmp::check_text(line.as_bytes()).map_err(Error::BadLine)?;
        let conn = match &mut self.backend {
            Backend::Qmp(qmp) => {
                let args = serde_json::json!({ "command-line": line });
                let result = qmp.clone().with_timeout(timeout).execute("human-monitor-command", args).await;
                return over_qmp(result, line, self.lf_newlines);
            }
            Backend::Readline { conn, .. } => conn,
        };
        if conn.machine().state() == hmp::State::Closed {
            return Err(Error::Closed);
        }
        let id = conn.machine_mut().command(line).map_err(Error::BadLine)?;
        let mut reply = hmp::ReplyTo::new(conn.machine(), id, finished);
        conn.run(&mut reply, &mut self.unsolicited, deadline(timeout)).await?
    }

    /// Text QEMU printed while no command was running (bounded: the oldest goes first).
    pub fn take_unsolicited(&mut self) -> Vec<String> {
        self.unsolicited.take()
    }

    /// Runs a command that prints nothing when it works.
    async fn quiet(&mut self, line: &str) -> Result<(), Error> {
        self.run(line, self.timeout).await?.quiet()
    }

    /// `info WHAT`: `info status`, `info block`, `info qtree`, …
    pub async fn info(&mut self, what: &str) -> Result<String, Error> {
        self.command(&line::info(what)).await
    }

    /// The VM's run state, from `info status`.
    pub async fn status(&mut self) -> Result<Status, Error> {
        Status::parse(&self.info("status").await?)
    }

    /// Stops the guest's CPUs (`stop`).
    pub async fn stop(&mut self) -> Result<(), Error> {
        self.quiet("stop").await
    }

    /// Resumes the guest's CPUs (`cont`).
    pub async fn cont(&mut self) -> Result<(), Error> {
        self.quiet("cont").await
    }

    /// Saves the screen to `file` on QEMU's side (`screendump FILE`, PPM).
    pub async fn screendump(&mut self, file: impl AsRef<Path>) -> Result<(), Error> {
        self.quiet(&line::screendump(file.as_ref())?).await
    }

    /// Presses `keys` together, such as `ctrl-alt-f1` (`sendkey KEYS [HOLD_MS]`;
    /// QEMU's default hold time is 100 ms).
    pub async fn sendkey(&mut self, keys: &str, hold_ms: Option<u32>) -> Result<(), Error> {
        self.quiet(&line::sendkey(keys, hold_ms)).await
    }

    /// Moves the mouse by `dx`, `dy` (`mouse_move`).
    pub async fn mouse_move(&mut self, dx: i32, dy: i32) -> Result<(), Error> {
        self.quiet(&line::mouse_move(dx, dy)).await
    }

    /// Sets the mouse buttons: a mask of 1 (left), 2 (middle), 4 (right) (`mouse_button`).
    pub async fn mouse_button(&mut self, state: u32) -> Result<(), Error> {
        self.quiet(&line::mouse_button(state)).await
    }

    /// Migrates to `uri` (`tcp:HOST:PORT`, `unix:PATH`, `exec:CMD`, …).
    pub async fn migrate(&mut self, uri: &str, flags: Migrate) -> Result<(), Error> {
        self.quiet(&flags.command_line(uri)).await
    }

    /// Caps migration bandwidth at `bytes_per_second`
    /// (`migrate_set_parameter max-bandwidth`, given in bytes).
    pub async fn migrate_set_speed(&mut self, bytes_per_second: u64) -> Result<(), Error> {
        self.quiet(&line::migrate_set_speed(bytes_per_second)).await
    }

    /// Quits QEMU (`quit`): done when QEMU has read the line and closed the monitor.
    pub async fn quit(mut self) -> Result<(), Error> {
        Finished::quit(self.run("quit", self.timeout).await)
    }

    /// Closes the connection.
    pub fn close(mut self) {
        if let Backend::Readline { conn, .. } = &mut self.backend {
            conn.close();
        }
    }
}
