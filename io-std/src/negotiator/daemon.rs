//! The host daemon: answers [`GUEST_TO_HOST_CHANNEL`] for every guest, one
//! worker thread per guest, started again when a guest that went away comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{
    Commands, Error, GUEST_TO_HOST_CHANNEL, Options, find_channels_of_guest, find_running_guests, serve_guest,
};
use crate::transport::Stream;

/// Which guests the daemon serves.
#[derive(Debug, Clone)]
enum Guests {
    /// Every running guest that has the channel (`virsh`).
    Running,
    /// These guests, their sockets found with `virsh`.
    Named(Vec<String>),
    /// These guests at these sockets.
    Sockets(Vec<(String, PathBuf)>),
}

/// Answers the guests' calls on their [`GUEST_TO_HOST_CHANNEL`]: one worker
/// per guest, each serving its guest's socket until the guest goes away.
/// Every `interval` the daemon looks again: it starts a worker for a guest
/// that has (re)appeared and stops the workers of guests that are gone.
///
/// ```no_run
/// use std::time::Duration;
/// use vmwire_std::negotiator::{Commands, HostDaemon};
///
/// // Every running guest, as libvirt knows them:
/// HostDaemon::new(Commands::default()).run()?;
/// // Or guests named by socket, in the background:
/// let daemon = HostDaemon::new(Commands::default())
///     .socket("vm1", "/run/vm1/negotiator-guest-to-host.0")
///     .interval(Duration::from_secs(1))
///     .spawn();
/// daemon.stop();
/// # Ok::<(), vmwire_std::negotiator::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct HostDaemon {
    commands: Arc<Commands>,
    guests: Guests,
    interval: Duration,
    options: Options,
}

/// A running [`HostDaemon`].
#[derive(Debug)]
pub struct DaemonHandle {
    stop: Arc<Stop>,
    thread: JoinHandle<()>,
}

impl DaemonHandle {
    /// Stops the daemon: every worker's socket is shut down and its thread joined.
    pub fn stop(self) {
        self.stop.set();
        let _ = self.thread.join();
    }
}

/// A stop request the main loop sleeps on.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Sleeps for `interval` or until stopped; true if stopped.
    fn wait(&self, interval: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        let (stopped, _) = self.wake.wait_timeout_while(stopped, interval, |s| !*s).unwrap_or_else(|e| e.into_inner());
        *stopped
    }
}

/// A guest's worker: the thread and a handle on its socket to shut it down.
#[derive(Debug)]
struct Worker {
    thread: JoinHandle<()>,
    socket: UnixStream,
}

impl Worker {
    fn stop(self) {
        let _ = self.socket.shutdown(Shutdown::Both);
        let _ = self.thread.join();
    }
}

impl HostDaemon {
    /// A daemon for every running guest that has the channel (found with `virsh`).
    pub fn new(commands: Commands) -> Self {
        HostDaemon {
            commands: Arc::new(commands),
            guests: Guests::Running,
            interval: Duration::from_secs(10),
            options: Options { timeout: Some(super::DEFAULT_TIMEOUT), ..Options::default() },
        }
    }

    /// Serves guest `name`, its socket found with `virsh` (instead of every running guest).
    pub fn guest(mut self, name: &str) -> Self {
        match &mut self.guests {
            Guests::Named(names) => names.push(name.into()),
            guests => *guests = Guests::Named(vec![name.into()]),
        }
        self
    }

    /// Serves guest `name` at the UNIX socket `path` (no `virsh` needed).
    pub fn socket(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        match &mut self.guests {
            Guests::Sockets(sockets) => sockets.push((name.into(), path.into())),
            guests => *guests = Guests::Sockets(vec![(name.into(), path.into())]),
        }
        self
    }

    /// How often to look for guests that came or went (10 s by default, as the original).
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every;
        self
    }

    /// Channel options for the workers (the time limit bounds writing a
    /// response to a guest that does not read it).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Runs in this thread, for ever.
    pub fn run(self) -> Result<(), Error> {
        self.main_loop(&Stop::default());
        Ok(())
    }

    /// Runs in a thread of its own until [`DaemonHandle::stop`].
    pub fn spawn(self) -> DaemonHandle {
        let stop = Arc::new(Stop::default());
        let thread = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || self.main_loop(&stop))
        };
        DaemonHandle { stop, thread }
    }

    /// The guests to serve now, and their sockets.
    fn targets(&self) -> Result<BTreeMap<String, PathBuf>, Error> {
        let names = match &self.guests {
            Guests::Sockets(sockets) => return Ok(sockets.iter().cloned().collect()),
            Guests::Named(names) => names.clone(),
            Guests::Running => find_running_guests()?,
        };
        let mut targets = BTreeMap::new();
        for name in names {
            match find_channels_of_guest(&name) {
                Ok(mut channels) => match channels.remove(GUEST_TO_HOST_CHANNEL) {
                    Some(path) => {
                        targets.insert(name, path);
                    }
                    None => log::debug!("guest {name} has no {GUEST_TO_HOST_CHANNEL} channel"),
                },
                // It may have stopped since it was listed.
                Err(e) => log::debug!("guest {name}: {e}"),
            }
        }
        Ok(targets)
    }

    fn main_loop(&self, stop: &Stop) {
        let mut workers: BTreeMap<String, Worker> = BTreeMap::new();
        // Guests whose socket could not be connected, said once until it can.
        let mut unreachable: BTreeSet<String> = BTreeSet::new();
        loop {
            // Workers whose guest went away (the socket closed) have ended.
            let ended: Vec<String> =
                workers.iter().filter(|(_, w)| w.thread.is_finished()).map(|(n, _)| n.clone()).collect();
            for name in ended {
                if let Some(w) = workers.remove(&name) {
                    let _ = w.thread.join();
                    log::info!("guest {name}: worker ended");
                }
            }
            match self.targets() {
                Ok(targets) => {
                    let gone: Vec<String> = workers.keys().filter(|n| !targets.contains_key(*n)).cloned().collect();
                    for name in gone {
                        if let Some(w) = workers.remove(&name) {
                            log::info!("guest {name}: no longer running; stopping its worker");
                            w.stop();
                        }
                    }
                    for (name, path) in targets {
                        if let std::collections::btree_map::Entry::Vacant(slot) = workers.entry(name) {
                            match self.start(slot.key(), &path) {
                                Ok(worker) => {
                                    unreachable.remove(slot.key());
                                    slot.insert(worker);
                                }
                                Err(e) if unreachable.insert(slot.key().clone()) => {
                                    log::warn!(
                                        "guest {}: cannot connect to {}: {e} (tried again every {:?})",
                                        slot.key(),
                                        path.display(),
                                        self.interval
                                    );
                                }
                                Err(_) => {}
                            }
                        }
                    }
                }
                Err(e) => log::error!("{e}"),
            }
            if stop.wait(self.interval) {
                break;
            }
        }
        for (_, worker) in workers {
            worker.stop();
        }
    }

    /// Connects to a guest's socket and starts its worker.
    fn start(&self, name: &str, path: &PathBuf) -> io::Result<Worker> {
        let socket = UnixStream::connect(path)?;
        let handle = socket.try_clone()?;
        log::info!("guest {name}: serving {}", path.display());
        let (name, commands, options) = (name.to_owned(), Arc::clone(&self.commands), self.options.clone());
        let thread = thread::spawn(move || {
            if let Err(e) = serve_guest(Stream::Unix(socket), &name, &commands, &options) {
                log::warn!("guest {name}: {e}");
            }
        });
        Ok(Worker { thread, socket: handle })
    }
}
