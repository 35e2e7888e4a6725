//! A freestanding binary that uses vmwire-proto's machines on fixed storage.
#![no_std]
#![no_main]

use vmwire_proto::buf::Fixed;
use vmwire_proto::{Machine, negotiator, qmp};

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
    // negotiator: a request in, the responder's answer out, on fixed storage.
    let mut responder = negotiator::Responder::<Fixed<256, 256, 1>>::new(negotiator::Config::default());
    let _ = responder.receive(b"27\n{\"method\": \"list_commands\"}");
    let requested = matches!(responder.poll(), Ok(Some(negotiator::ResponderEvent::Request(r))) if r.method == "list_commands");
    let answered = responder.respond_array(|a| a.str("caf\u{e9}").map(drop)).is_ok()
        && responder.transmit() == b"42\n{\"success\": true, \"result\": [\"caf\\u00e9\"]}";
    if greeted && negotiating && requested && answered && minimega_runs() { 0 } else { 1 }
}

/// A minimega command, built with the command-line builder, and its reply.
fn minimega_runs() -> bool {
    use vmwire_proto::minimega;
    let mut mm = minimega::Client::<Fixed<512, 256, 4>>::new(minimega::Config::default());
    let line = minimega::CommandLine::new_in(heapless::String::<64>::new(), "echo").arg("a b").finish();
    let sent = line.is_ok_and(|line| mm.command(&line).is_ok());
    let _ = mm.receive(b"{\"Resp\":[{\"Host\":\"h\",\"Response\":\"a b\",\"Header\":null,\"Tabular\":null,\"Error\":\"\",\"Data\":null}],\"Rendered\":\"h: a b\",\"More\":false,\"Status\":false}\n");
    let answered = matches!(mm.poll(), Ok(Some(minimega::Event::Frame(f))) if f.responses().any(|r| r.response() == "a b"));
    let ended = matches!(mm.poll(), Ok(Some(minimega::Event::End(s))) if s.frames == 1);
    sent && answered && ended
}
