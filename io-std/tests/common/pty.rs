//! Pseudo-terminals: character devices without a guest.

use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

/// A pseudo-terminal: its controlling side, and the path of the terminal.
pub fn open() -> (File, PathBuf) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    (File::from(master), PathBuf::from(name.to_str().unwrap()))
}

/// Copies bytes from one pty's controlling side to another's until either closes.
pub fn relay(mut from: File, mut to: File) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Two terminals wired back to back like a serial cable: a peer on one
/// ([`Cable::peer`]), a client on the other ([`Cable::client`]).
pub struct Cable {
    pub peer: PathBuf,
    pub client: PathBuf,
    /// Each terminal stays open here (never read) while the cable is: a
    /// terminal closed by everyone hangs up, and the wire would end early.
    holders: [File; 2],
    wires: [JoinHandle<()>; 2],
}

impl Cable {
    pub fn new() -> Cable {
        let (peer_side, peer) = open();
        let (client_side, client) = open();
        let holders = [File::open(&peer).unwrap(), File::open(&client).unwrap()];
        let wires =
            [relay(peer_side.try_clone().unwrap(), client_side.try_clone().unwrap()), relay(client_side, peer_side)];
        Cable { peer, client, holders, wires }
    }

    /// Waits until the peer has made its terminal raw (qemu-ga does once it has it open).
    pub fn wait_raw(&self, who: &str) {
        super::eventually(&format!("{who} to take {}", self.peer.display()), Duration::from_secs(10), || {
            let termios = rustix::termios::tcgetattr(&self.holders[0]).unwrap();
            (!termios.local_modes.contains(rustix::termios::LocalModes::ICANON)).then_some(())
        });
    }

    /// Once both ends are closed: lets go of the terminals and waits for the wires to end.
    pub fn finish(self) {
        drop(self.holders);
        for wire in self.wires {
            wire.join().unwrap();
        }
    }
}

/// The controlling side of a terminal nobody has open any more, raw,
/// non-blocking and with its buffer full: it polls as hung up at once and
/// refuses writes (`EAGAIN`), as a virtio-serial port with no host does.
pub fn hung_up_and_full() -> File {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave_path = ptsname(&master, Vec::new()).unwrap();
    drop(File::open(slave_path.to_str().unwrap()).unwrap());
    // Raw: no echo of what is written back to this side.
    let mut termios = rustix::termios::tcgetattr(&master).unwrap();
    termios.make_raw();
    rustix::termios::tcsetattr(&master, rustix::termios::OptionalActions::Now, &termios).unwrap();
    rustix::io::ioctl_fionbio(&master, true).unwrap();
    let mut master = File::from(master);
    // Full: the kernel moves written bytes on to the line discipline's
    // buffer in the background, so fill until a round takes nothing more.
    loop {
        let mut taken = 0;
        while let Ok(n) = master.write(&[b'x'; 4096]) {
            taken += n;
        }
        if taken == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    master
}

/// CPU time (user + system, in ticks of `USER_HZ`) this thread has used.
pub fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
