//! The XenAPI session machine replayed against the captured sessions of
//! the official Python SDK: the machine is given the SDK's operations, must
//! send the very request bodies the SDK sent (re-logins and retries
//! included), and is fed the server's captured answers in their real chunking.

mod common;

use common::{Record, transcript};
use proptest::prelude::*;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Fixed, Heap, Storage};
use vmwire_proto::http::Endpoint;
use vmwire_proto::xenapi::{self, Config, Event, Outcome, Session, State, TaskStatus};
use vmwire_proto::xmlrpc::{self, Value};

/// One request of the SDK and the server's answer, as captured.
struct Exchange {
    request: Vec<u8>,
    response: Vec<Vec<u8>>,
}

fn exchanges(name: &str) -> Vec<Exchange> {
    let txn = std::fs::read(format!("{}/../fixtures/xenapi/{name}.txn", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut out: Vec<Exchange> = Vec::new();
    let mut answered = true;
    for record in transcript(&txn) {
        match record {
            Record::ClientToServer(bytes) if answered => {
                out.push(Exchange { request: bytes, response: Vec::new() });
                answered = false;
            }
            Record::ClientToServer(bytes) => out.last_mut().unwrap().request.extend_from_slice(&bytes),
            Record::ServerToClient(bytes) if !bytes.is_empty() => {
                out.last_mut().unwrap().response.push(bytes);
                answered = true;
            }
            _ => {}
        }
    }
    out
}

fn body(http: &[u8]) -> &[u8] {
    let at = http.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    &http[at..]
}

/// Issues the SDK's operation behind `request` (the session param dropped:
/// the machine puts its own first).
fn issue<S: Storage>(xapi: &mut Session<S>, request: &[u8]) -> Result<(), xenapi::Error> {
    let call = xmlrpc::parse_call(body(request)).unwrap();
    let method = call.name.to_string();
    let params: Vec<Value> = call.params.iter().collect();
    let copy = |skip: usize| {
        move |p: &mut xmlrpc::ParamsWriter<'_, _>| {
            for v in &params[skip..] {
                p.param(|w| w.value(v))?;
            }
            Ok(())
        }
    };
    if let Some(login) = method.strip_prefix("session.login").or(method.strip_prefix("session.slave_local_login")) {
        let _ = login;
        xapi.login(&method, copy(0))
    } else if method == "session.logout" {
        xapi.logout()
    } else {
        xapi.call(&method, copy(1))
    }
}

/// What the events said, in words.
fn describe(e: &Event<'_>) -> String {
    match e {
        Event::LoggedIn { session } => format!("logged in {session}"),
        Event::Relogin { attempt, session } => format!("relogin {attempt} {session}"),
        Event::Result(v) => match v {
            Value::String(s) => format!("result {s:?}"),
            Value::Array(a) => format!("result array of {}", a.len()),
            Value::Struct(s) => format!("result struct of {}", s.members().count()),
            other => format!("result {other:?}"),
        },
        Event::Failure(f) => format!("failure {f}"),
        Event::SessionInvalid { tries } => format!("session invalid after {tries}"),
        Event::LoggedOut => "logged out".into(),
        Event::Fault(f) => format!("fault {} {}", f.code, f.string),
        Event::HttpStatus { status, .. } => format!("http {status}"),
        Event::Malformed(e) => format!("malformed {e}"),
        Event::ConnectionLost { received } => format!("lost {received}"),
    }
}

/// Replays a session: returns the events, and how many of the captured
/// requests were sent (byte-identical bodies).
fn replay<S: Storage + 'static>(name: &str, sizes: &[usize]) -> (Vec<String>, usize) {
    let endpoint = Endpoint { target: "/", host: "127.0.0.1:17081", headers: &[] };
    let mut xapi = Session::<S>::new(Config::default(), &endpoint).unwrap();
    let mut events = Vec::new();
    let mut sent = 0;
    for ex in exchanges(name) {
        if xapi.transmit().is_empty() && !xapi.needs_connection() {
            if let Err(e) = issue(&mut xapi, &ex.request) {
                events.push(format!("refused: {e}"));
                break;
            }
        }
        if xapi.needs_connection() {
            xapi.connected();
        }
        let ours = xapi.transmit().to_vec();
        assert!(!ours.is_empty(), "{name}: the machine sent nothing for request {sent}");
        assert_eq!(
            String::from_utf8_lossy(body(&ours)),
            String::from_utf8_lossy(body(&ex.request)),
            "{name}: request {sent}"
        );
        let head = String::from_utf8_lossy(&ours[..ours.len() - body(&ours).len()]).to_string();
        assert!(head.contains("Content-Type: text/xml\r\n") && head.contains("Host: 127.0.0.1:17081\r\n"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body(&ours).len())), "{head}");
        xapi.transmitted(ours.len());
        sent += 1;
        let http10 = ex.response.first().is_some_and(|r| r.starts_with(b"HTTP/1.0"));
        for piece in &ex.response {
            common::feed(&mut xapi, piece, sizes, |e| events.push(describe(&e)));
        }
        if http10 {
            common::feed(&mut xapi, b"", sizes, |e| events.push(describe(&e)));
        }
    }
    (events, sent)
}

const SESSION_1: &str = "OpaqueRef:00000000-0000-0000-0000-00005e550001";

#[test]
fn login_calls_and_records() {
    let (events, sent) = replay::<Heap>("01_login_get_all_get_record", &[usize::MAX]);
    assert_eq!(sent, 5);
    assert_eq!(
        events,
        [
            format!("logged in {SESSION_1}"),
            "result array of 3".into(),
            "result struct of 20".into(),
            "result struct of 3".into(),
            "result \"Halted\"".into(),
        ]
    );
}

#[test]
fn failures_are_events_and_a_bad_login_forgets() {
    let (events, _) = replay::<Heap>("02_vm_start_failure", &[usize::MAX]);
    assert_eq!(
        events,
        [
            "logged in OpaqueRef:00000000-0000-0000-0000-00005e550002",
            "failure VM_BAD_POWER_STATE: OpaqueRef:00000000-0000-0000-0000-000000001000, halted, running",
            "result \"\"",
            "failure HANDLE_INVALID: VM, OpaqueRef:bogus",
            "failure SESSION_AUTHENTICATION_FAILED: root, Authentication failure",
        ]
    );
}

#[test]
fn session_invalid_relogs_in_and_retries() {
    let (events, sent) = replay::<Heap>("03_session_invalid_relogin", &[usize::MAX]);
    assert_eq!(sent, 4, "login, call, re-login, retry: as the SDK sent them");
    assert_eq!(
        events,
        [
            "logged in OpaqueRef:00000000-0000-0000-0000-00005e550003",
            "relogin 1 OpaqueRef:00000000-0000-0000-0000-00005e550004",
            "result array of 3",
        ]
    );
}

#[test]
fn session_invalid_forever_gives_up_after_three_tries() {
    let (events, sent) = replay::<Heap>("04_session_invalid_always", &[usize::MAX]);
    assert_eq!(sent, 7, "the SDK's 3 calls and 4 logins, byte for byte");
    assert_eq!(events.len(), 4);
    assert!(events[1].starts_with("relogin 1 ") && events[2].starts_with("relogin 2 "), "{events:?}");
    assert_eq!(events[3], "session invalid after 3");
}

#[test]
fn nil_base64_datetime() {
    let (events, _) = replay::<Heap>("05_nil_base64_datetime", &[usize::MAX]);
    assert_eq!(events[1], "result Nil");
    assert!(events[2].starts_with("result Base64("), "{}", events[2]);
    assert!(events[3].starts_with("result DateTime("), "{}", events[3]);
    assert_eq!(events[4], "result Nil");
}

#[test]
fn faults_and_bare_values() {
    let (events, _) = replay::<Heap>("06_xmlrpc_faults", &[usize::MAX]);
    assert_eq!(
        events[1..],
        [
            "fault -32500 explicit fault from VM.crash",
            "fault 1 <class 'ValueError'>:uncaught server-side error",
            "fault 1 <class 'Exception'>:method \"VM.nosuch\" is not supported",
            "malformed XenAPI: not a XenAPI result: the result is not a struct",
        ]
    );
}

#[test]
fn logout_forgets_the_session() {
    let (events, sent) = replay::<Heap>("07_logout", &[usize::MAX]);
    assert_eq!(sent, 2);
    assert_eq!(events[1..], ["logged out", "refused: XenAPI: not logged in"]);
}

#[test]
fn gzip_and_keep_alive() {
    let (events, _) = replay::<Heap>("09_gzip_response", &[usize::MAX]);
    assert_eq!(events[1], "result struct of 3");
    let (events, sent) = replay::<Heap>("10_keepalive_http11", &[usize::MAX]);
    assert_eq!(sent, 4);
    assert_eq!(
        events[1..],
        [
            "result array of 3",
            "result \"Running\"",
            "failure VM_BAD_POWER_STATE: OpaqueRef:00000000-0000-0000-0000-000000001000, halted, running"
        ]
    );
}

#[test]
fn fixed_storage_runs_the_same_session() {
    let heap = replay::<Heap>("03_session_invalid_relogin", &[usize::MAX]);
    let fixed = replay::<Fixed<4096, 2048, 4>>("03_session_invalid_relogin", &[usize::MAX]);
    assert_eq!(heap, fixed);
}

#[test]
fn results_decode_and_misshapes_are_errors() {
    let parse = |doc: &'static str| xmlrpc::parse_response(doc.as_bytes()).unwrap();
    let ok = parse(
        "<methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member><member><name>Value</name><value>5</value></member></struct></value></param></params></methodResponse>",
    );
    assert!(matches!(xenapi::decode(ok.result().unwrap()), Ok(Outcome::Success(v)) if v.as_i64() == Some(5)));
    let no_value = parse(
        "<methodResponse><params><param><value><struct><member><name>Status</name><value>Success</value></member></struct></value></param></params></methodResponse>",
    );
    assert_eq!(
        xenapi::decode(no_value.result().unwrap()),
        Err(xenapi::Error::NotAResult { what: "Success without a Value" })
    );
    let no_status = parse("<methodResponse><params><param><value><struct/></value></param></params></methodResponse>");
    assert_eq!(xenapi::decode(no_status.result().unwrap()), Err(xenapi::Error::NotAResult { what: "no Status" }));
    assert_eq!(TaskStatus::from_text("pending"), Some(TaskStatus::Pending));
    assert!(TaskStatus::from_text("cancelled").unwrap().is_finished());
    assert!(!TaskStatus::Pending.is_finished());
    assert_eq!(TaskStatus::from_text("bogus"), None);
    let v = xenapi::task_result("<?xml version='1.0'?><value><array><data><value>a</value></data></array></value>")
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
}

#[test]
fn calls_need_a_login_and_one_at_a_time() {
    let endpoint = Endpoint { target: "/", host: "h", headers: &[] };
    let mut xapi = Session::<Heap>::new(Config::default(), &endpoint).unwrap();
    assert_eq!(xapi.call("VM.get_all", |_| Ok(())), Err(xenapi::Error::NotLoggedIn));
    assert_eq!(xapi.logout(), Err(xenapi::Error::NotLoggedIn));
    xapi.login_with_password("root", "pw", "2.21", "t").unwrap();
    assert_eq!(xapi.state(), State::LoggingIn);
    assert_eq!(xapi.login_with_password("root", "pw", "2.21", "t"), Err(xenapi::Error::Busy));
    assert_eq!(xapi.call_async("VM.start", |_| Ok(())), Err(xenapi::Error::Busy));
    // The adapter gives up on the login: the credentials are dropped.
    xapi.close();
    assert_eq!(xapi.state(), State::LoggedOut);
    assert!(xapi.transmit().is_empty());
    assert!(!format!("{xapi:?}").contains("pw"));
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(sizes in proptest::collection::vec(1usize..200, 1..6)) {
        for name in ["03_session_invalid_relogin", "04_session_invalid_always", "09_gzip_response", "10_keepalive_http11"] {
            prop_assert_eq!(replay::<Heap>(name, &sizes), replay::<Heap>(name, &[usize::MAX]), "{}", name);
        }
    }

    #[test]
    fn arbitrary_responses_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
        let endpoint = Endpoint { target: "/", host: "h", headers: &[] };
        let mut xapi = Session::<Fixed<512, 1024, 4>>::new(Config::default(), &endpoint).unwrap();
        xapi.login_with_password("root", "pw", "2.21", "t").unwrap();
        xapi.connected();
        let n = xapi.transmit().len();
        xapi.transmitted(n);
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: ".to_vec();
        head.extend_from_slice(bytes.len().to_string().as_bytes());
        head.extend_from_slice(b"\r\n\r\n");
        head.extend_from_slice(&bytes);
        head.truncate(cut.max(30).min(head.len()));
        let mut fed = 0;
        while fed < head.len() {
            let n = xapi.receive(&head[fed..]).unwrap();
            fed += n;
            while let Ok(Some(_)) = xapi.poll() {}
            if n == 0 { break; }
        }
        xapi.recv_eof();
        while let Ok(Some(_)) = xapi.poll() {}
    }
}

/// Every password the SDK sent in the captures, and only it, is where
/// `secret_spans` says: blanked there, each call still parses, its password
/// is stars of the same length and its other params are as they were.
#[test]
fn secret_spans_are_the_passwords_the_sdk_sent() {
    let mut logins = 0;
    for name in
        ["01_login_get_all_get_record", "02_vm_start_failure", "04_session_invalid_always", "10_keepalive_http11"]
    {
        for exchange in exchanges(name) {
            let call = body(&exchange.request);
            let Ok(parsed) = xmlrpc::parse_call(call) else { continue };
            let method = parsed.name.to_cow().into_owned();
            let spans: Vec<_> = xenapi::secret_spans(call).collect();
            assert_eq!(spans.len(), xenapi::secret_params(&method).len(), "{method}");
            let mut blanked = call.to_vec();
            for span in &spans {
                blanked[span.clone()].fill(b'*');
            }
            let before: Vec<Value<'_>> = parsed.params.iter().collect();
            let after_call = xmlrpc::parse_call(&blanked).unwrap();
            let after: Vec<Value<'_>> = after_call.params.iter().collect();
            assert_eq!(before.len(), after.len());
            for (n, (b, a)) in before.iter().zip(&after).enumerate() {
                if xenapi::secret_params(&method).contains(&n) {
                    let password = b.as_str().unwrap().raw();
                    assert!(
                        !password.is_empty() && a.as_str().unwrap().raw() == "*".repeat(password.len()),
                        "{method}"
                    );
                    logins += 1;
                } else {
                    assert_eq!(b, a, "{method} param {n}");
                }
            }
        }
    }
    assert!(logins >= 4, "{logins}");
}

/// The password's text as written, whatever its markup: a bare `<value>`,
/// a reference, a CDATA section; nothing for a password that is not a
/// string, a method that takes none, or a body that is not a call.
#[test]
fn secret_spans_cover_the_text_as_written() {
    let login = |param: &str| {
        format!(
            "<?xml version='1.0'?><methodCall><methodName>session.slave_local_login_with_password</methodName>\
             <params><param><value>root</value></param><param>{param}</param></params></methodCall>"
        )
    };
    for (param, text) in [
        ("<value>pw</value>", "pw"),
        ("<value><string>a&lt;b</string></value>", "a&lt;b"),
        ("<value><string><![CDATA[x<y]]></string></value>", "<![CDATA[x<y]]>"),
        ("<value><string></string></value>", ""),
    ] {
        let call = login(param);
        let spans: Vec<_> = xenapi::secret_spans(call.as_bytes()).collect();
        assert_eq!(spans.len(), 1, "{param}");
        assert_eq!(&call[spans[0].clone()], text);
    }
    assert_eq!(xenapi::secret_spans(login("<value><int>7</int></value>").as_bytes()).count(), 0);
    let change = "<methodCall><methodName>session.change_password</methodName><params>\
        <param><value>OpaqueRef:s</value></param><param><value>old</value></param>\
        <param><value>new</value></param></params></methodCall>";
    let texts: Vec<_> = xenapi::secret_spans(change.as_bytes()).map(|s| &change[s]).collect();
    assert_eq!(texts, ["old", "new"]);
    let other =
        "<methodCall><methodName>VM.get_all</methodName><params><param><value>pw</value></param></params></methodCall>";
    assert_eq!(xenapi::secret_spans(other.as_bytes()).count(), 0);
    assert_eq!(xenapi::secret_spans(b"<methodCall><methodName>session.login_with_password").count(), 0);
}

/// Secrets in struct members, at any depth down to `SECRET_DEPTH`: a
/// storage repository's `device_config` passwords, external
/// authentication's `pass`, `secret.create`'s `value`; not a secret's
/// reference, a member that is not a string, or one deeper than the walk.
#[test]
fn secret_spans_find_members_that_carry_secrets() {
    let member = |name: &str, value: &str| format!("<member><name>{name}</name><value>{value}</value></member>");
    let call = |method: &str, params: &[String]| {
        let params: String = params.iter().map(|p| format!("<param><value>{p}</value></param>")).collect();
        format!(
            "<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>"
        )
    };
    let device_config = format!(
        "<struct>{}{}{}{}{}</struct>",
        member("server", "//nas/share"),
        member("username", "u"),
        member("password", "<string>cifs&amp;pw</string>"),
        member("password_secret", "OpaqueRef:secret"),
        member("port", "<int>3260</int>"),
    );
    let iscsi = format!(
        "<struct>{}{}</struct>",
        member("ChapPassword", "chap"),
        member("incoming_chappassword", "<string><![CDATA[in]]></string>")
    );
    let sr = call(
        "SR.create",
        &["OpaqueRef:s".into(), "OpaqueRef:h".into(), device_config.clone(), "<int>0</int>".into(), iscsi],
    );
    let texts: Vec<_> = xenapi::secret_spans(sr.as_bytes()).map(|s| &sr[s]).collect();
    assert_eq!(texts, ["cifs&amp;pw", "chap", "<![CDATA[in]]>"]);
    // Blanked, the call parses, with only those changed.
    let mut blanked = sr.clone().into_bytes();
    for span in xenapi::secret_spans(sr.as_bytes()) {
        blanked[span].fill(b'*');
    }
    let blanked = String::from_utf8(blanked).unwrap();
    assert_eq!(
        blanked,
        sr.replace("cifs&amp;pw", "***********").replace("chap<", "****<").replace("<![CDATA[in]]>", "**************")
    );
    assert!(xmlrpc::parse_call(blanked.as_bytes()).is_ok());

    // In arrays, and `value` only where `secret.create` takes it.
    let auth = call(
        "pool.enable_external_auth",
        &["OpaqueRef:s".into(), format!("<struct>{}{}</struct>", member("user", "admin"), member("pass", "adpw"))],
    );
    assert_eq!(xenapi::secret_spans(auth.as_bytes()).map(|s| &auth[s]).collect::<Vec<_>>(), ["adpw"]);
    let secret =
        call("secret.create", &["OpaqueRef:s".into(), format!("<struct>{}</struct>", member("value", "topsecret"))]);
    assert_eq!(xenapi::secret_spans(secret.as_bytes()).map(|s| &secret[s]).collect::<Vec<_>>(), ["topsecret"]);
    let other = call(
        "VM.add_to_other_config",
        &["OpaqueRef:s".into(), "OpaqueRef:vm".into(), format!("<struct>{}</struct>", member("value", "v"))],
    );
    assert_eq!(xenapi::secret_spans(other.as_bytes()).count(), 0);
    let listed = call(
        "PBD.create",
        &[
            "OpaqueRef:s".into(),
            format!("<array><data><value><struct>{}</struct></value></data></array>", member("password", "deep")),
        ],
    );
    assert_eq!(xenapi::secret_spans(listed.as_bytes()).map(|s| &listed[s]).collect::<Vec<_>>(), ["deep"]);

    // A name is read decoded, however long: a reference in it, or CDATA.
    let long = format!("{}_&#112;assword", "x".repeat(100));
    let named =
        call("SR.probe", &[format!("<struct>{}{}</struct>", member(&long, "a"), member("<![CDATA[pass]]>", "b"))]);
    assert_eq!(xenapi::secret_spans(named.as_bytes()).map(|s| &named[s]).collect::<Vec<_>>(), ["a", "b"]);

    // A secret's member that is not a string is walked into, as a password
    // param that is not one is.
    let wrapped = call(
        "SR.probe",
        &[format!("<struct>{}</struct>", member("password", &format!("<struct>{}</struct>", member("pass", "in"))))],
    );
    assert_eq!(xenapi::secret_spans(wrapped.as_bytes()).map(|s| &wrapped[s]).collect::<Vec<_>>(), ["in"]);

    // Down to SECRET_DEPTH containers, and not below.
    let nest = |levels: usize| {
        let mut v = format!("<struct>{}</struct>", member("password", "pw"));
        for _ in 1..levels {
            v = format!("<array><data><value>{v}</value></data></array>");
        }
        call("host.call_plugin", &[v])
    };
    assert_eq!(xenapi::secret_spans(nest(xenapi::SECRET_DEPTH).as_bytes()).count(), 1);
    assert_eq!(xenapi::secret_spans(nest(xenapi::SECRET_DEPTH + 1).as_bytes()).count(), 0);
}
