//! A freestanding binary that uses vmwire-proto's machines on fixed storage.
#![no_std]
#![no_main]

use vmwire_proto::buf::Fixed;
use vmwire_proto::{Machine, negotiator, qmp};
use vmwire_proto::{hmp, http, qga, xenapi, xmlrpc};

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
    let requested =
        matches!(responder.poll(), Ok(Some(negotiator::ResponderEvent::Request(r))) if r.method == "list_commands");
    let answered = responder.respond_array(|a| a.str("caf\u{e9}").map(drop)).is_ok()
        && responder.transmit() == b"42\n{\"success\": true, \"result\": [\"caf\\u00e9\"]}";
    if greeted
        && negotiating
        && requested
        && answered
        && minimega_runs()
        && xenapi_logs_in()
        && hmp_runs()
        && qga_syncs()
    {
        0
    } else {
        1
    }
}

/// A minimega command, built with the command-line builder, and its reply.
fn minimega_runs() -> bool {
    use vmwire_proto::minimega;
    let mut mm = minimega::Client::<Fixed<512, 256, 4>>::new(minimega::Config::default());
    let line = minimega::CommandLine::new_in(heapless::String::<64>::new(), "echo").arg("a b").finish();
    let sent = line.is_ok_and(|line| mm.command(&line).is_ok());
    let _ = mm.receive(b"{\"Resp\":[{\"Host\":\"h\",\"Response\":\"a b\",\"Header\":null,\"Tabular\":null,\"Error\":\"\",\"Data\":null}],\"Rendered\":\"h: a b\",\"More\":false,\"Status\":false}\n");
    let answered =
        matches!(mm.poll(), Ok(Some(minimega::Event::Frame(f))) if f.responses().any(|r| r.response() == "a b"));
    let ended = matches!(mm.poll(), Ok(Some(minimega::Event::End(s))) if s.frames == 1);
    sent && answered && ended
}

/// A XenAPI login through the session machine, HTTP and XML-RPC on fixed
/// storage: the parser, the writer and the framing, without an allocator.
fn xenapi_logs_in() -> bool {
    let endpoint = http::Endpoint { target: "/", host: "xapi", headers: &[] };
    let Ok(mut xapi) = xenapi::Session::<Fixed<1024, 1024, 4>>::new(xenapi::Config::default(), &endpoint) else {
        return false;
    };
    if xapi.login_with_password("root", "pw", "1.0", "nostd").is_err() {
        return false;
    }
    xapi.connected();
    let sent = xapi.transmit().starts_with(b"POST / HTTP/1.1\r\nHost: xapi\r\n");
    let n = xapi.transmit().len();
    xapi.transmitted(n);
    let body: &[u8] = b"<methodResponse><params><param><value><struct><member><name>Status</name>\
<value>Success</value></member><member><name>Value</name><value>OpaqueRef:s</value></member>\
</struct></value></param></params></methodResponse>";
    let _ = xapi.receive(b"HTTP/1.1 200 OK\r\nContent-Length: 216\r\n\r\n");
    let _ = xapi.receive(body);
    let logged_in = matches!(xapi.poll(), Ok(Some(xenapi::Event::LoggedIn { session: "OpaqueRef:s" })));
    let parsed = xmlrpc::parse_response(body).is_ok_and(|r| r.result().is_ok_and(|v| v.get("Status").is_some()));
    sent && logged_in && parsed && body.len() == 216
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
