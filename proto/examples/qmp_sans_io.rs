//! The sans-IO face by hand: a QMP session over a plain blocking socket,
//! the machine on fixed storage (no allocator), the caller moving bytes.
//!
//! `cargo run -p vmwire-proto --example qmp_sans_io -- /run/vm/qmp.sock`
//! (a QEMU started with `-qmp unix:/run/vm/qmp.sock,server=on,wait=off`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use vmwire_proto::Machine;
use vmwire_proto::buf::Fixed;
use vmwire_proto::qmp::{Client, Config, Event, Id};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os().nth(1).ok_or("usage: qmp_sans_io QMP-SOCKET")?;
    let mut socket = UnixStream::connect(path)?;
    // 64 KiB to receive into, 1 KiB to encode commands into, 8 commands in flight.
    let mut qmp = Client::<Fixed<65536>>::new(Config::default());
    let mut asked: Option<Id> = None;
    loop {
        // 1. Events out: everything the bytes so far amount to.
        while let Some(event) = qmp.poll()? {
            match event {
                Event::Greeting(g) => println!("greeting: QEMU {:?}", g.version()),
                Event::Ready { .. } => asked = Some(qmp.execute("query-status", None)?),
                Event::Return { id, value } if Some(id) == asked.as_ref() => {
                    println!("query-status: {}", value.raw_str());
                    return Ok(());
                }
                Event::Closed => return Err("QEMU closed the connection".into()),
                other => println!("other: {other:?}"),
            }
        }
        // 2. Bytes out: what the machine queued (qmp_capabilities, the command).
        while !qmp.transmit().is_empty() {
            let n = socket.write(qmp.transmit())?;
            qmp.transmitted(n);
        }
        // 3. Bytes in, straight into the machine's buffer.
        let n = socket.read(qmp.recv_buf())?;
        if n == 0 {
            qmp.recv_eof();
        } else {
            qmp.recv_commit(n)?;
        }
    }
}
