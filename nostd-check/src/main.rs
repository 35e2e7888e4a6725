//! A freestanding binary that uses vmwire-proto's machines on fixed storage.
#![no_std]
#![no_main]

use vmwire_proto::buf::Fixed;
use vmwire_proto::{Machine, qmp};
use vmwire_proto::{hmp, qga};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The precompiled `core` refers to the unwinding personality even with
/// `panic = "abort"`; nothing here unwinds.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Feeds a greeting through the QMP machine so that the code is really
/// linked and run; exits 0 if the machine saw it.
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let mut client = qmp::Client::<Fixed<512, 256, 4>>::new(qmp::Config::default());
    let _ = client.receive(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n");
    let greeted = matches!(client.poll(), Ok(Some(qmp::Event::Greeting(_))));
    let negotiating = client.transmit().starts_with(b"{\"execute\":\"qmp_capabilities\"");
    if !(greeted && negotiating) {
        return 1;
    }
    if !(hmp_runs() && qga_syncs()) {
        return 1;
    }
    0
}

/// The human monitor machine: banner, one command, its echo and output.
fn hmp_runs() -> bool {
    let mut hmp = hmp::Client::<Fixed<512, 64>>::new(hmp::Config::default());
    let Ok(id) = hmp.command("cont") else { return false };
    let _ = hmp.receive(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ");
    let bannered = matches!(hmp.poll(), Ok(Some(hmp::Event::Banner(_))));
    let sent = hmp.transmit() == b"cont\n";
    hmp.transmitted(5);
    let _ = hmp.receive(b"c\x1b[K\x1b[Dco\x1b[K\x1b[D\x1b[Dcon\x1b[K\x1b[D\x1b[D\x1b[Dcont\x1b[K\r\n(qemu) ");
    let finished = matches!(hmp.poll(), Ok(Some(hmp::Event::Output { id: got, text: b"" })) if got == id);
    bannered && sent && finished
}

/// The guest agent machine: the opening 0xFF sync, and a stale reply dropped.
fn qga_syncs() -> bool {
    let mut qga = qga::Client::<Fixed<512, 256, 4>>::new(qga::Config::default(), 7);
    let opens = qga.transmit().starts_with(b"\xff{\"execute\":\"guest-sync-delimited\"");
    let _ = qga.receive(b"{\"return\": {}}\n\xff{\"return\": 7}\n");
    opens && matches!(qga.poll(), Ok(Some(qga::Event::Synced)))
}
