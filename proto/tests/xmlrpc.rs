//! HTTP framing and XML-RPC on every capture in `fixtures/xenapi/` (the
//! XenAPI Python SDK against a XenAPI-shaped `xmlrpc.server`), replayed in
//! the chunking the sockets really had; the writer checked byte for byte
//! against the SDK's own requests; property tests for round trips and
//! chunking invariance.

mod common;

use common::{Record, transcript};
use proptest::prelude::*;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Buf, Heap};
use vmwire_proto::http::{self, Endpoint, ServerEvent, Version};
use vmwire_proto::xmlrpc::{
    self, ErrorKind, Iso8601, MethodResponse, Options, Value, ValueWriter, WriteError, write_call, write_response,
};

/// One request and its response, as the two HTTP machines read them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exchange {
    method: String,
    target: String,
    request_version: Version,
    request: Vec<u8>,
    status: u16,
    reason: String,
    headers: Vec<(String, Vec<u8>)>,
    response: Vec<u8>,
    keep_alive: bool,
    /// Which connection of the session carried it.
    connection: usize,
}

/// Replays a transcript through `http::Server` (client-to-server bytes) and
/// `http::Client` (server-to-client bytes), record by record.
fn replay(txn: &[u8]) -> Vec<Exchange> {
    replay_in(txn, &[usize::MAX])
}

/// [`replay`], with every record fed in pieces of the given sizes.
fn replay_in(txn: &[u8], sizes: &[usize]) -> Vec<Exchange> {
    let endpoint = Endpoint { target: "/", host: "127.0.0.1", headers: &[] };
    let mut exchanges: Vec<Exchange> = Vec::new();
    let mut connection = 0;
    let mut server = http::Server::<Heap>::new(http::ServerConfig::default());
    let mut client = http::Client::<Heap>::new(http::Config::default(), &endpoint).unwrap();
    let mut pending: Option<Exchange> = None;
    let records = transcript(txn);
    for (i, record) in records.iter().enumerate() {
        match record {
            Record::Note(note) => {
                let note = String::from_utf8_lossy(note);
                // A new connection: "connection N opened", or in the raw
                // session each note before a request.
                let raw_exchange = matches!(records.get(i + 1), Some(Record::ClientToServer(_)))
                    && !note.contains("opened")
                    && !note.starts_with("SDK");
                if note.contains("opened") || raw_exchange {
                    connection += 1;
                    server = http::Server::new(http::ServerConfig::default());
                    client.close();
                }
            }
            Record::ClientToServer(bytes) => {
                common::feed(&mut server, bytes, sizes, |event| match event {
                    ServerEvent::Request(r) => {
                        assert!(pending.is_none(), "a request before the last one was answered");
                        pending = Some(Exchange {
                            method: r.method.into(),
                            target: r.target.into(),
                            request_version: r.version,
                            request: r.body.to_vec(),
                            status: 0,
                            reason: String::new(),
                            headers: Vec::new(),
                            response: Vec::new(),
                            keep_alive: false,
                            connection,
                        });
                    }
                    other => panic!("server: {other:?}"),
                });
                if let Some(p) = &pending {
                    if server.state() == http::ServerState::Responding {
                        let body = p.request.clone();
                        client.post(&[], |out| out.try_extend(&body).map_err(http::Error::from)).unwrap();
                        if client.needs_connection() {
                            client.connected();
                        }
                        let n = client.transmit().len();
                        client.transmitted(n);
                        server.respond(200, "OK", &[], |_| Ok::<_, http::Error>(())).unwrap();
                        let n = server.transmit().len();
                        server.transmitted(n);
                    }
                }
            }
            Record::ServerToClient(bytes) => {
                let mut on_event = |event: http::Event<'_>| match event {
                    http::Event::Response(r) => {
                        let mut e = pending.take().expect("a response to no request");
                        e.status = r.status;
                        e.reason = r.reason.into();
                        e.headers = r.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec())).collect();
                        e.response = r.body.to_vec();
                        e.keep_alive = r.keep_alive;
                        exchanges.push(e);
                    }
                    other => panic!("client: {other:?}"),
                };
                common::feed(&mut client, bytes, sizes, &mut on_event);
            }
        }
    }
    assert!(pending.is_none(), "a request without a response: {pending:?}");
    exchanges
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../fixtures/xenapi/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

const SESSIONS: &[&str] = &[
    "01_login_get_all_get_record",
    "02_vm_start_failure",
    "03_session_invalid_relogin",
    "04_session_invalid_always",
    "05_nil_base64_datetime",
    "06_xmlrpc_faults",
    "07_logout",
    "08_raw_http_edge_cases",
    "09_gzip_response",
    "10_keepalive_http11",
];

fn session(name: &str) -> Vec<Exchange> {
    replay(&fixture(&format!("{name}.txn")))
}

fn result(e: &Exchange) -> MethodResponse<'_> {
    xmlrpc::parse_response(&e.response).unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&e.response)))
}

/// The XenAPI `Value` of a `{Status: Success, Value: …}` result.
fn xen_value<'a>(r: &MethodResponse<'a>) -> Value<'a> {
    let v = r.result().unwrap();
    assert!(v.get("Status").unwrap().as_str().unwrap() == "Success", "{v:?}");
    v.get("Value").unwrap()
}

/// The XenAPI `ErrorDescription` of a failure, decoded.
fn xen_failure(r: &MethodResponse<'_>) -> Vec<String> {
    let v = r.result().unwrap();
    assert!(v.get("Status").unwrap().as_str().unwrap() == "Failure", "{v:?}");
    v.get("ErrorDescription").unwrap().as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn string_params(call: &xmlrpc::MethodCall<'_>) -> Vec<String> {
    call.params.iter().map(|p| p.as_str().map(|s| s.to_string()).unwrap_or_else(|| format!("{p:?}"))).collect()
}

#[test]
fn every_request_and_response_of_every_session_parses() {
    for name in SESSIONS {
        let exchanges = session(name);
        assert!(!exchanges.is_empty(), "{name}");
        for e in exchanges {
            let xml = e.headers.iter().any(|(n, v)| n == "content-type" && v == b"text/xml");
            if e.method == "POST" && e.status == 200 && xml {
                result(&e);
            }
            if e.method == "POST" && e.target == "/" && e.status == 200 && e.request.starts_with(b"<") {
                if let Err(err) = xmlrpc::parse_call(&e.request) {
                    // The one malformed body of 08 is not XML at all.
                    assert_eq!(e.request, b"not xml!!", "{name}: {err}");
                }
            }
        }
    }
}

#[test]
fn login_get_all_get_record() {
    let e = session("01_login_get_all_get_record");
    assert_eq!(e.len(), 5);
    let login = xmlrpc::parse_call(&e[0].request).unwrap();
    assert!(login.name == "session.login_with_password");
    assert_eq!(string_params(&login), ["root", "secret", "2.21", "wire-capture"]);
    assert!(xen_value(&result(&e[0])).as_str().unwrap() == "OpaqueRef:00000000-0000-0000-0000-00005e550001");
    assert_eq!((e[0].request_version, e[0].keep_alive, e[0].reason.as_str()), (Version::Http11, false, "OK"));

    let all = result(&e[1]);
    let refs: Vec<String> =
        xen_value(&all).as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    assert_eq!(refs.len(), 3);
    assert_eq!(refs[2], "OpaqueRef:00000000-0000-0000-0000-000000001002");

    let record = result(&e[2]);
    let vm = xen_value(&record);
    let name = vm.get("name_label").unwrap().as_str().unwrap();
    assert!(name == "café <&> ☃");
    assert_eq!(name.raw(), "café &lt;&amp;&gt; ☃");
    assert_eq!(vm.get("memory_static_max").unwrap().as_i64(), Some(4294967296), "XenAPI ints are strings");
    assert_eq!(vm.get("is_a_template"), Some(Value::Boolean(false)));
    assert_eq!(vm.get("HVM_shadow_multiplier"), Some(Value::Double(1.0)));
    let t = vm.get("snapshot_time").unwrap().as_datetime().unwrap();
    assert_eq!(
        t.parse(),
        Some(Iso8601 { year: 1970, month: 1, day: 1, offset_minutes: Some(0), ..Iso8601::default() })
    );
    let other = vm.get("other_config").unwrap().as_struct().unwrap();
    let pairs: Vec<(String, String)> =
        other.members().map(|(k, v)| (k.to_string(), v.as_str().unwrap().to_string())).collect();
    assert_eq!(pairs, [("folder".into(), "/bench".into()), ("index".into(), "2".into())]);
    assert_eq!(vm.get("VIFs").unwrap().as_array().unwrap().len(), 2);

    let records = result(&e[3]);
    let by_ref = xen_value(&records).as_struct().unwrap();
    assert_eq!(by_ref.members().count(), 3);
    assert!(by_ref.get(&refs[1]).unwrap().get("power_state").unwrap().as_str().unwrap() == "Halted");
}

#[test]
fn failures_are_data() {
    let e = session("02_vm_start_failure");
    assert_eq!(
        xen_failure(&result(&e[1])),
        ["VM_BAD_POWER_STATE", "OpaqueRef:00000000-0000-0000-0000-000000001000", "halted", "running"]
    );
    let start = xmlrpc::parse_call(&e[1].request).unwrap();
    assert!(start.name == "VM.start");
    assert_eq!(start.params.get(2), Some(Value::Boolean(false)));
    assert!(xen_value(&result(&e[2])).as_str().unwrap() == "");
    assert_eq!(xen_failure(&result(&e[3])), ["HANDLE_INVALID", "VM", "OpaqueRef:bogus"]);
    assert_eq!(xen_failure(&result(&e[4])), ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]);
}

#[test]
fn session_invalid_then_relogin_and_forever() {
    let e = session("03_session_invalid_relogin");
    let methods: Vec<String> = e.iter().map(|x| xmlrpc::parse_call(&x.request).unwrap().name.to_string()).collect();
    assert_eq!(methods, ["session.login_with_password", "VM.get_all", "session.login_with_password", "VM.get_all"]);
    assert_eq!(xen_failure(&result(&e[1]))[0], "SESSION_INVALID");
    assert_eq!(xen_value(&result(&e[3])).as_array().unwrap().len(), 3);

    let e = session("04_session_invalid_always");
    let methods: Vec<String> = e.iter().map(|x| xmlrpc::parse_call(&x.request).unwrap().name.to_string()).collect();
    let login = "session.login_with_password";
    assert_eq!(methods, [login, "task.get_all", login, "task.get_all", login, "task.get_all", login]);
}

#[test]
fn nil_base64_datetime_and_every_scalar() {
    let e = session("05_nil_base64_datetime");
    let set = xmlrpc::parse_call(&e[1].request).unwrap();
    assert_eq!(set.params.get(2), Some(Value::Nil));
    assert_eq!(xen_value(&result(&e[1])), Value::Nil);

    let blob = result(&e[2]);
    let b = xen_value(&blob).as_base64().unwrap();
    assert_eq!(b.to_vec().unwrap(), b"\x00\x01\x02binary\xff\xfe00000000-0000-0000-0000-00000abc0000");

    let when = result(&e[3]);
    let t = xen_value(&when).as_datetime().unwrap();
    assert_eq!(t.text().as_str(), Some("20240102T03:04:05Z"));
    assert_eq!(t.parse().unwrap().to_string(), "20240102T03:04:05Z");

    let mixed = xmlrpc::parse_call(&e[4].request).unwrap();
    let args = mixed.params.get(2).unwrap();
    assert_eq!(args.get("i"), Some(Value::Int(2147483647)));
    assert_eq!(args.get("f"), Some(Value::Double(0.1)));
    assert_eq!(args.get("b"), Some(Value::Boolean(true)));
    assert!(args.get("s").unwrap().as_str().unwrap() == "a<b&c");
    let l: Vec<Value> = args.get("l").unwrap().as_array().unwrap().iter().collect();
    assert_eq!(l.len(), 3);
    assert_eq!((l[0], l[2]), (Value::Int(1), Value::Nil));
}

#[test]
fn faults() {
    let e = session("06_xmlrpc_faults");
    let f = result(&e[1]).fault().unwrap();
    assert_eq!((f.code, f.string.to_string().as_str()), (-32500, "explicit fault from VM.crash"));
    let f = result(&e[2]).fault().unwrap();
    assert_eq!((f.code, f.string.to_string().as_str()), (1, "<class 'ValueError'>:uncaught server-side error"));
    let f = result(&e[3]).fault().unwrap();
    assert!(f.string == "<class 'Exception'>:method \"VM.nosuch\" is not supported");
    // A bare value with no Status struct: valid XML-RPC, not a XenAPI result.
    let bare = result(&e[4]).result().unwrap();
    assert_eq!(bare.as_array().unwrap().len(), 2);
    // After logout the SDK sends a nil session; the server says SESSION_INVALID
    // (the SDK then raises its own Fault(401) without asking the server again).
    let logout = session("07_logout");
    assert!(xmlrpc::parse_call(&logout[1].request).unwrap().name == "session.logout");
    assert_eq!(xmlrpc::parse_call(&logout[2].request).unwrap().params.first(), Some(Value::Nil));
    assert_eq!(xen_failure(&result(&logout[2]))[0], "SESSION_INVALID");
}

#[test]
fn raw_http_edge_cases() {
    let e = session("08_raw_http_edge_cases");
    assert_eq!(e.len(), 7);
    // GET: Python's 501 page, with Connection: close and an HTML body.
    assert_eq!((e[0].method.as_str(), e[0].status, e[0].keep_alive), ("GET", 501, false));
    assert!(e[0].reason.starts_with("Unsupported method"));
    assert!(e[0].response.starts_with(b"<!DOCTYPE HTML>"));
    assert_eq!((e[1].target.as_str(), e[1].status, e[1].response.as_slice()), ("/nope", 404, &b"No such page"[..]));
    assert_eq!(e[2].request, b"not xml!!");
    assert!(result(&e[2]).fault().unwrap().string.to_string().contains("ExpatError"));
    assert_eq!(e[3].request_version, Version::Http10);
    assert_eq!(xen_failure(&result(&e[3])), ["SESSION_INVALID", ""]);
    // Untyped values, no declaration, no white space.
    let call = xmlrpc::parse_call(&e[4].request).unwrap();
    assert_eq!(string_params(&call), ["root", "secret"]);
    // An encoding declaration, UTF-8 inside.
    let call = xmlrpc::parse_call(&e[5].request).unwrap();
    assert_eq!(string_params(&call), ["OpaqueRef:nobody", "café"]);
    // <i8>
    let call = xmlrpc::parse_call(&e[6].request).unwrap();
    assert_eq!(call.params.first(), Some(Value::Int(i64::MAX)));
}

#[test]
fn gzip_response_is_decoded() {
    let e = session("09_gzip_response");
    assert!(e[1].headers.iter().any(|(n, v)| n == "content-encoding" && v == b"gzip"));
    let records = result(&e[1]);
    assert_eq!(xen_value(&records).as_struct().unwrap().members().count(), 3);
}

#[test]
fn keep_alive_carries_four_calls_on_one_connection() {
    let e = session("10_keepalive_http11");
    assert_eq!(e.len(), 4);
    assert!(e.iter().all(|x| x.connection == 1 && x.keep_alive));
    assert!(xen_value(&result(&e[2])).as_str().unwrap() == "Running");
}

/// A peer that is not an HTTP server (here the guest agent, which answers
/// each stray byte of a request with a line of JSON and never ends a head)
/// is told from its first byte, not when the time limit runs out; a status
/// line arriving a byte at a time is not mistaken for one.
#[test]
fn a_response_that_does_not_begin_http_fails_at_once() {
    let endpoint = Endpoint { target: "/", host: "h", headers: &[] };
    let agent = b"{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error, stray 'P'\"}}\n";
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    for (bytes, sizes) in [(&agent[..], &[1][..]), (&agent[..], &[4096][..]), (&ok[..], &[1][..])] {
        let mut client = http::Client::<Heap>::new(http::Config::default(), &endpoint).unwrap();
        client.post(&[], |b| b.try_extend(b"x").map_err(http::Error::from)).unwrap();
        client.connected();
        let mut seen = Vec::new();
        common::feed(&mut client, bytes, sizes, |event| seen.push(format!("{event:?}")));
        let want = if bytes == ok { "Response" } else { "Malformed(BadHead { what: \"not an HTTP response" };
        assert!(seen.len() == 1 && seen[0].starts_with(want), "{seen:?}");
    }
}

#[test]
fn get_all_records_1000() {
    let http_bytes = fixture("11_get_all_records_1000.response.http");
    let xml = fixture("11_get_all_records_1000.response.xml");
    let endpoint = Endpoint { target: "/", host: "h", headers: &[] };
    let mut client = http::Client::<Heap>::new(http::Config::default(), &endpoint).unwrap();
    client.post(&[], |b| b.try_extend(b"x").map_err(http::Error::from)).unwrap();
    client.connected();
    let mut bodies = 0;
    common::feed(&mut client, &http_bytes, &[65536, 1460, 7], |event| match event {
        http::Event::Response(r) => {
            assert_eq!(r.body, &xml[..]);
            bodies += 1;
        }
        other => panic!("{other:?}"),
    });
    assert_eq!(bodies, 1);
    let response = xmlrpc::parse_response(&xml).unwrap();
    let vms = xen_value(&response).as_struct().unwrap();
    assert_eq!(vms.members().count(), 1000);
    let total: i64 = vms.members().map(|(_, vm)| vm.get("VCPUs_max").unwrap().as_i64().unwrap()).sum();
    assert!(total > 1000);
}

#[test]
fn every_captured_request_body_is_what_our_writer_writes() {
    // The SDK's bytes, reproduced: same layout, same escaping.
    for name in SESSIONS.iter().filter(|n| !n.starts_with("08")) {
        for e in session(name) {
            let call = xmlrpc::parse_call(&e.request).unwrap();
            let mut out = Vec::new();
            write_call(&mut out, &call.name.to_string(), Options::default(), |p| {
                for v in call.params.iter() {
                    p.param(|w| w.value(&v))?;
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&e.request), "{name}");
        }
    }
}

#[test]
fn every_captured_response_body_is_what_our_writer_writes() {
    for name in SESSIONS.iter().filter(|n| !n.starts_with("08") && !n.starts_with("09")) {
        for e in session(name) {
            let mut out = Vec::new();
            match result(&e) {
                MethodResponse::Params(p) => {
                    write_response(&mut out, Options::default(), |w| w.value(&p.first().unwrap())).unwrap()
                }
                MethodResponse::Fault(f) => xmlrpc::write_fault(&mut out, f.code, &f.string.to_string()).unwrap(),
            }
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&e.response), "{name}");
        }
    }
}

#[test]
fn errors_name_what_and_where() {
    let cases: &[(&[u8], ErrorKind, usize)] = &[
        (b"not xml!!", ErrorKind::Syntax { expected: "`<methodResponse>`" }, 0),
        (b"<methodResponse><params><param><value><int>12a</int>", ErrorKind::InvalidScalar { ty: "int" }, 43),
        (b"<methodResponse><params><param><value><boolean>2</boolean>", ErrorKind::InvalidScalar { ty: "boolean" }, 47),
        (b"<methodResponse><params><param><value><str>x</str>", ErrorKind::UnknownType, 38),
        (b"<methodResponse><params><param><value>a &nbsp; b</value>", ErrorKind::InvalidReference, 40),
        (
            b"<methodResponse><params><param><value>a<b/></value>",
            ErrorKind::Syntax { expected: "text, not an element" },
            39,
        ),
        (b"<methodResponse><params><param><value>abc", ErrorKind::Truncated, 41),
        (b"<!DOCTYPE x><methodResponse/>", ErrorKind::Doctype, 0),
        (b"<?xml version='1.0' encoding='ISO-8859-1'?><methodResponse/>", ErrorKind::UnsupportedEncoding, 30),
        (
            b"<methodResponse><params></params></methodResponse>x",
            ErrorKind::Syntax { expected: "the end of the document" },
            50,
        ),
        (
            b"<methodResponse><params></parms></methodResponse>",
            ErrorKind::Syntax { expected: "`</params>` or `<param>`" },
            24,
        ),
        (b"<methodResponse>\xff</methodResponse>", ErrorKind::InvalidUtf8, 16),
        (b"<methodResponse><fault><value><int>1</int></value></fault></methodResponse>", ErrorKind::BadFault, 23),
        (
            b"<methodResponse><!-- a -- b --><params/></methodResponse>",
            ErrorKind::Syntax { expected: "`-->` (comments cannot hold `--`)" },
            23,
        ),
    ];
    for (doc, kind, offset) in cases {
        let e = xmlrpc::parse_response(doc).unwrap_err();
        assert_eq!((e.kind, e.offset), (*kind, *offset), "{}", String::from_utf8_lossy(doc));
    }
}

#[test]
fn limits_are_typed_errors() {
    let deep = format!(
        "<methodResponse><params><param>{}{}</param></params></methodResponse>",
        "<value><array><data>".repeat(200),
        "</data></array></value>".repeat(200)
    );
    let e = xmlrpc::parse_response(deep.as_bytes()).unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::TooDeep { limit: 128 }, 31 + 128 * 20 + 7));
    let roomy = xmlrpc::Limits { max_depth: 200, ..Default::default() };
    assert!(xmlrpc::parse_response_with(deep.as_bytes(), &roomy).is_ok());
    let small = xmlrpc::Limits { max_size: 64, ..Default::default() };
    let e = xmlrpc::parse_response_with(deep.as_bytes(), &small).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge { limit: 64 });
}

#[test]
fn what_xml_allows_is_read() {
    let doc = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\" standalone='yes'?>\n<!-- before -->\n\
        <?pi data?><methodResponse xmlns:ex=\"http://ws.apache.org/xmlrpc/namespaces/extensions\">\r\n\
        <params >\t<param><value\n><struct><member><name>a&#x41;</name><value><ex:i8>-9</ex:i8></value></member>\
        <!-- c --><member><name/><value><string/></value></member>\
        <member><name>n</name><value><ex:nil/></value></member>\
        <member><name>e</name><value/></member>\
        <member><name>cd</name><value><![CDATA[<&>]]>&amp;<!-- x -->y\r\nz</value></member>\
        <member><name>arr</name><value><array><data/></array></value></member>\
        <member><name>arr2</name><value><array/></value></member>\
        <member><name>s</name><value><struct/></value></member>\
        <member><name>ws</name><value>  </value></member>\
        <member><name>i</name><value><int> +7 </int></value></member>\
        </struct></value></param></params></methodResponse><!-- after -->\n";
    let response = xmlrpc::parse_response(doc.as_bytes()).unwrap();
    let v = response.result().unwrap();
    let got: Vec<(String, String)> = v
        .as_struct()
        .unwrap()
        .members()
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => format!("{s:?}={s}"),
                other => format!("{other:?}"),
            };
            (k.to_string(), shown)
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("aA", "Int(-9)"),
        ("", "\"\"="),
        ("n", "Nil"),
        ("e", "\"\"="),
        ("cd", "\"<![CDATA[<&>]]>&amp;<!-- x -->y\\r\\nz\"=<&>&y\nz"),
        ("arr", "Array([])"),
        ("arr2", "Array([])"),
        ("s", "Struct({})"),
        ("ws", "\"  \"=  "),
        ("i", "Int(7)"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn writer_escapes_and_options() {
    let mut out = Vec::new();
    let v = ValueWriter::new(&mut out, Options { nil: false, i8: false });
    assert_eq!(v.nil(), Err(WriteError::NilNotAllowed));
    let v = ValueWriter::new(&mut out, Options { nil: false, i8: false });
    assert_eq!(v.int(1 << 40), Err(WriteError::IntegerOutOfRange));
    let v = ValueWriter::new(&mut out, Options::default());
    assert_eq!(v.double(f64::NAN), Err(WriteError::NonFiniteDouble));
    assert!(out.is_empty());
    ValueWriter::new(&mut out, Options::default()).int(1 << 40).unwrap();
    ValueWriter::new(&mut out, Options::default()).double(1e21).unwrap();
    ValueWriter::new(&mut out, Options::default()).string("\r\t]]>").unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "<value><i8>1099511627776</i8></value>\n<value><double>1000000000000000000000.0</double></value>\n\
         <value><string>&#13;\t]]&gt;</string></value>\n"
    );
    // What XML 1.0 cannot carry, even as a reference, is refused, not written.
    for (text, character) in
        [("a\u{0}", '\u{0}'), ("\u{1b}[2J", '\u{1b}'), ("x\u{FFFE}", '\u{FFFE}'), ("\u{FFFF}", '\u{FFFF}')]
    {
        let v = ValueWriter::new(&mut out, Options::default());
        assert_eq!(v.string(text), Err(WriteError::NotXmlText { character }), "{text:?}");
    }
    let mut call = Vec::new();
    let written =
        write_call(&mut call, "VM.set_name_label", Options::default(), |p| p.param(|v| v.string("a\u{7}")).map(drop));
    assert_eq!(written, Err(WriteError::NotXmlText { character: '\u{7}' }));
}

// ---------------------------------------------------------------------------
// Round trips of arbitrary values.

#[derive(Debug, Clone, PartialEq)]
enum Owned {
    Int(i64),
    Bool(bool),
    Str(String),
    Double(f64),
    Base64(Vec<u8>),
    Date(Iso8601),
    Nil,
    Array(Vec<Owned>),
    Struct(Vec<(String, Owned)>),
}

fn owned(v: Value<'_>) -> Owned {
    match v {
        Value::Int(n) => Owned::Int(n),
        Value::Boolean(b) => Owned::Bool(b),
        Value::String(s) => Owned::Str(s.to_string()),
        Value::Double(d) => Owned::Double(d),
        Value::Base64(b) => Owned::Base64(b.to_vec().unwrap()),
        Value::DateTime(t) => Owned::Date(t.parse().unwrap()),
        Value::Nil => Owned::Nil,
        Value::Array(a) => Owned::Array(a.iter().map(owned).collect()),
        Value::Struct(s) => Owned::Struct(s.members().map(|(k, v)| (k.to_string(), owned(v))).collect()),
    }
}

fn write_owned<S: vmwire_proto::buf::Sink + ?Sized>(w: ValueWriter<'_, S>, v: &Owned) -> Result<(), WriteError> {
    match v {
        Owned::Int(n) => w.int(*n),
        Owned::Bool(b) => w.boolean(*b),
        Owned::Str(s) => w.string(s),
        Owned::Double(d) => w.double(*d),
        Owned::Base64(b) => w.base64(b),
        Owned::Date(t) => w.datetime(t),
        Owned::Nil => w.nil(),
        Owned::Array(items) => w.array(|a| {
            for item in items {
                write_owned(a.value()?, item)?;
            }
            Ok(())
        }),
        Owned::Struct(members) => w.structure(|s| {
            for (k, v) in members {
                s.member(k, |w| write_owned(w, v))?;
            }
            Ok(())
        }),
    }
}

/// Whatever serde hands a self-describing visitor.
#[derive(Debug, Clone, PartialEq)]
enum Any {
    Int(i64),
    Bool(bool),
    Str(String),
    Float(f64),
    Bytes(Vec<u8>),
    Unit,
    Seq(Vec<Any>),
    Map(Vec<(String, Any)>),
}

impl<'de> serde::Deserialize<'de> for Any {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Any;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("anything")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Any, E> {
                Ok(Any::Int(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Any, E> {
                Ok(Any::Bool(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Any, E> {
                Ok(Any::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Any, E> {
                Ok(Any::Str(v.into()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Any, E> {
                Ok(Any::Bytes(v))
            }
            fn visit_unit<E>(self) -> Result<Any, E> {
                Ok(Any::Unit)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(Any::Seq(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = a.next_entry()? {
                    members.push(member);
                }
                Ok(Any::Map(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// What serde should make of a value (dates as their text).
fn to_any(v: &Owned) -> Any {
    match v {
        Owned::Int(n) => Any::Int(*n),
        Owned::Bool(b) => Any::Bool(*b),
        Owned::Str(s) => Any::Str(s.clone()),
        Owned::Double(d) => Any::Float(*d),
        Owned::Base64(b) => Any::Bytes(b.clone()),
        Owned::Date(t) => Any::Str(t.to_string()),
        Owned::Nil => Any::Unit,
        Owned::Array(items) => Any::Seq(items.iter().map(to_any).collect()),
        Owned::Struct(members) => Any::Map(members.iter().map(|(k, v)| (k.clone(), to_any(v))).collect()),
    }
}

fn arb_date() -> impl Strategy<Value = Iso8601> {
    (0u16..10000, 1u8..13, 1u8..29, 0u8..24, 0u8..60, 0u8..60, prop_oneof![Just(0u32), 1u32..1_000_000_000])
        .prop_flat_map(|(year, month, day, hour, minute, second, nanosecond)| {
            prop_oneof![Just(None), (-1439i16..1440).prop_map(Some)].prop_map(move |offset_minutes| Iso8601 {
                year,
                month,
                day,
                hour,
                minute,
                second,
                nanosecond,
                offset_minutes,
            })
        })
}

fn arb_value() -> impl Strategy<Value = Owned> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Owned::Int),
        any::<bool>().prop_map(Owned::Bool),
        any::<String>().prop_map(Owned::Str),
        any::<f64>().prop_filter("finite", |d| d.is_finite()).prop_map(Owned::Double),
        proptest::collection::vec(any::<u8>(), 0..200).prop_map(Owned::Base64),
        arb_date().prop_map(Owned::Date),
        Just(Owned::Nil),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Owned::Array),
            proptest::collection::vec((any::<String>(), inner), 0..8).prop_map(Owned::Struct),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn value_to_xml_to_value(v in arb_value()) {
        let mut out = Vec::new();
        write_response(&mut out, Options::default(), |w| write_owned(w, &v)).unwrap();
        let text = String::from_utf8(out).unwrap();
        // As written; with no white space between tags; with comments
        // between them (which changes how containers are skipped).
        let compact = text.replace(">\n<", "><");
        let commented = text.replace("</member>", "<!-- m --></member>").replace("<value>", "<value><?pi x?>");
        for doc in [&text, &compact, &commented] {
            let response = xmlrpc::parse_response(doc.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {doc}")))?;
            let back = owned(response.result().unwrap());
            prop_assert_eq!(&back, &v, "{}", doc);
            // serde reads the same values.
            let any: Any = response.params().unwrap().deserialize_first().unwrap();
            prop_assert_eq!(&any, &to_any(&v));
            let any: Any = response.result().unwrap().deserialize().unwrap();
            prop_assert_eq!(&any, &to_any(&v));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = xmlrpc::parse_response(&bytes);
        let _ = xmlrpc::parse_call(&bytes);
        let _ = xmlrpc::parse_value(&bytes);
    }

    #[test]
    fn mutated_captures_never_panic(at in 0usize..2000, byte in any::<u8>(), cut in 0usize..2600) {
        let e = session("01_login_get_all_get_record");
        let mut doc = e[2].response.clone();
        let at = at % doc.len();
        doc[at] = byte;
        doc.truncate(cut.min(doc.len()));
        if let Ok(r) = xmlrpc::parse_response(&doc) {
            // Whatever passed validation can be walked to the end.
            if let Ok(v) = r.result() {
                let _ = owned_lenient(v);
            }
        }
    }

    #[test]
    fn http_reading_is_invariant_under_chunking(sizes in proptest::collection::vec(1usize..300, 1..8)) {
        for name in ["01_login_get_all_get_record", "09_gzip_response", "10_keepalive_http11", "08_raw_http_edge_cases"] {
            let txn = fixture(&format!("{name}.txn"));
            prop_assert_eq!(replay_in(&txn, &sizes), replay(&txn), "{}", name);
        }
    }
}

fn owned_lenient(v: Value<'_>) -> usize {
    match v {
        Value::Array(a) => a.iter().map(owned_lenient).sum::<usize>() + 1,
        Value::Struct(s) => s.members().map(|(_, v)| owned_lenient(v)).sum::<usize>() + 1,
        Value::Base64(b) => b.to_vec().map_or(0, |v| v.len()),
        _ => 1,
    }
}

#[test]
fn chunked_responses_and_limits() {
    let endpoint = Endpoint { target: "/RPC2", host: "h", headers: &[("originator", "t")] };
    let config = http::Config { limits: http::Limits { max_body: 1000, ..Default::default() }, ..Default::default() };
    let mut client = http::Client::<Heap>::new(config, &endpoint).unwrap();
    let send = |c: &mut http::Client<Heap>| {
        c.post(&[("traceparent", "00-1-2-01")], |b| b.try_extend(b"<x/>").map_err(http::Error::from)).unwrap();
        if c.needs_connection() {
            c.connected();
        }
        let n = c.transmit().len();
        c.transmitted(n);
    };
    send(&mut client);
    let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let mut seen = Vec::new();
    common::feed(&mut client, chunked, &[3], |e| match e {
        http::Event::Response(r) => seen.push((r.body.to_vec(), r.keep_alive)),
        other => panic!("{other:?}"),
    });
    assert_eq!(seen, [(b"hello world".to_vec(), true)]);
    assert_eq!(client.state(), http::State::Idle);
    // Over the body limit: a typed error, and the connection is dropped.
    send(&mut client);
    let mut errors = Vec::new();
    common::feed(&mut client, b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", &[100], |e| match e {
        http::Event::Malformed(e) => errors.push(e),
        other => panic!("{other:?}"),
    });
    assert_eq!(errors, [http::Error::BodyTooLarge { limit: 1000 }]);
    assert_eq!(client.state(), http::State::Disconnected);
    // HTTP/1.0 read to close.
    send(&mut client);
    let mut bodies = Vec::new();
    common::feed(&mut client, b"HTTP/1.0 200 OK\r\n\r\nto the end", &[4], |e| panic!("{e:?}"));
    common::feed(&mut client, b"", &[1], |e| match e {
        http::Event::Response(r) => bodies.push(r.body.to_vec()),
        other => panic!("{other:?}"),
    });
    assert_eq!(bodies, [b"to the end".to_vec()]);
    // A connection lost halfway.
    send(&mut client);
    let mut lost = Vec::new();
    common::feed(&mut client, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", &[4], |e| panic!("{e:?}"));
    common::feed(&mut client, b"", &[1], |e| match e {
        http::Event::ConnectionLost { received } => lost.push(received),
        other => panic!("{other:?}"),
    });
    assert_eq!(lost, [42]);
}

#[test]
fn server_answers_what_it_cannot_read() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", b"HTTP/1.1 501 Not Implemented\r\n"),
        (b"POST / HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n", b"HTTP/1.1 413 Content Too Large\r\n"),
        (b"BAD REQUEST LINE\r\n\r\n", b"HTTP/1.1 400 Bad Request\r\n"),
    ];
    for (request, status) in cases {
        let mut server = http::Server::<Heap>::new(http::ServerConfig::default());
        let mut malformed = 0;
        common::feed(&mut server, request, &[1000], |e| match e {
            ServerEvent::Malformed(_) => malformed += 1,
            other => panic!("{other:?}"),
        });
        assert_eq!(malformed, 1);
        assert!(server.transmit().starts_with(status), "{}", String::from_utf8_lossy(server.transmit()));
        assert!(server.transmit().windows(17).any(|w| w == b"Connection: close"));
    }
    // Expect: 100-continue is answered before the body is sent.
    let mut server = http::Server::<Heap>::new(http::ServerConfig::default());
    server.receive(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").unwrap();
    assert!(server.poll().unwrap().is_none());
    assert_eq!(server.transmit(), b"HTTP/1.1 100 Continue\r\n\r\n");
    // Pipelined requests are answered in order.
    let mut server = http::Server::<Heap>::new(http::ServerConfig::default());
    let two = b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\naPOST /b HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nb";
    server.receive(two).unwrap();
    let mut targets = Vec::new();
    for _ in 0..2 {
        match server.poll().unwrap() {
            Some(ServerEvent::Request(r)) => targets.push(r.target.to_string()),
            other => panic!("{other:?}"),
        }
        assert!(server.poll().unwrap().is_none(), "the next request waits for the answer");
        server.respond(200, "OK", &[], |_| Ok::<_, http::Error>(())).unwrap();
    }
    assert_eq!(targets, ["/a", "/b"]);
    let sent = String::from_utf8(server.transmit().to_vec()).unwrap();
    assert_eq!(sent.matches("HTTP/1.1 200 OK").count(), 2);
    assert!(sent.ends_with("Connection: keep-alive\r\nContent-Length: 0\r\n\r\n"), "{sent}");
}

#[test]
fn serde_round_trip_of_rust_types() {
    use serde::{Deserialize, Serialize};
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Power {
        Running,
        Halted,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Change {
        Rename(String),
        Resize { vcpus: u32 },
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Vm {
        name: String,
        memory: u64,
        power: Power,
        tags: Vec<String>,
        other: std::collections::BTreeMap<String, String>,
        parent: Option<String>,
        snapshot: Option<Iso8601>,
        ratio: f64,
        change: Change,
        pair: (i32, bool),
        vcpus_utilisation: std::collections::BTreeMap<u32, f64>,
    }
    let vm = Vm {
        name: "web <1> & co".into(),
        memory: 1 << 34,
        power: Power::Halted,
        tags: vec!["a".into(), "".into()],
        other: [("k".to_string(), "v\r\n".to_string())].into(),
        parent: None,
        snapshot: Iso8601::parse("20240102T03:04:05Z"),
        ratio: 0.25,
        change: Change::Resize { vcpus: 4 },
        pair: (-1, true),
        vcpus_utilisation: [(0, 0.5), (1, 0.0)].into(),
    };
    let mut out = Vec::new();
    write_call(&mut out, "VM.create", Options::default(), |p| xmlrpc::ser::to_params(p, &("OpaqueRef:s", &vm)))
        .unwrap();
    let call = xmlrpc::parse_call(&out).unwrap();
    let (session, back): (String, Vm) = call.params.deserialize().unwrap();
    assert_eq!((session.as_str(), &back), ("OpaqueRef:s", &vm));
    assert_eq!(call.params.get(1).unwrap().get("memory"), Some(Value::Int(1 << 34)));
    // Without <nil/> and <i8>, the same value cannot be written.
    let strict = Options { nil: false, i8: false };
    let err = xmlrpc::ser::to_value(&mut Vec::new(), &vm, strict).unwrap_err();
    assert_eq!(err, WriteError::IntegerOutOfRange);
    // XenAPI's integers are strings; serde reads them as integers.
    let doc = b"<methodResponse><params><param><value><struct><member><name>memory</name><value>4294967296</value></member></struct></value></param></params></methodResponse>";
    #[derive(Deserialize)]
    struct Memory {
        memory: i64,
    }
    let m: Memory = xmlrpc::parse_response(doc).unwrap().params().unwrap().deserialize_first().unwrap();
    assert_eq!(m.memory, 4294967296);
}
