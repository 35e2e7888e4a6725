//! vmwire's XML-RPC client and XenAPI session against Python's
//! `xmlrpc.server` serving XenAPI-shaped methods (HTTP/1.0 and 1.1, gzip,
//! TLS), and the official XenAPI Python SDK against vmwire's server.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vmwire_std::http::TlsOptions;
use vmwire_std::xenapi::{self, PowerState, Ref, Session, XenResult};
use vmwire_std::xmlrpc::{self, Client, Fault, Server};

use common::xenapi::{Peer, test_certificate};

impl Peer {
    fn seen(&self) -> HashMap<String, serde_json::Value> {
        let mut rpc = Client::connect(&self.url()).unwrap();
        let v: serde_json::Value = rpc.call_json("debug.seen", ()).unwrap();
        serde_json::from_value(v["Value"].clone()).unwrap()
    }
}

fn login(session: &mut Session) -> String {
    session.login_with_password("root", "secret", "2.21", "vmwire-tests").unwrap()
}

#[test]
fn xmlrpc_client_calls_faults_and_scalars() {
    let peer = Peer::start(&[]);
    let mut rpc = Client::connect(&peer.url()).unwrap();
    let login = rpc.call_json("session.login_with_password", ("root", "secret", "2.21", "t")).unwrap();
    assert_eq!(login["Status"], "Success");
    let session = login["Value"].as_str().unwrap().to_string();
    // A fault is the server's answer, with its code.
    match rpc.call::<_, serde_json::Value>("VM.crash", (&session,)) {
        Err(xmlrpc::Error::Fault(f)) => assert_eq!(f, Fault::new(-32500, "explicit fault from VM.crash")),
        other => panic!("{other:?}"),
    }
    match rpc.call::<_, serde_json::Value>("VM.nosuch", (&session,)) {
        Err(xmlrpc::Error::Fault(f)) => assert!(f.code == 1 && f.string.contains("VM.nosuch")),
        other => panic!("{other:?}"),
    }
    // nil both ways, base64, dateTime, the XenAPI's integers-as-strings.
    let vms: Vec<String> = rpc
        .call_with("VM.get_all", (&session,), |v| {
            v.get("Value").unwrap().as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
        })
        .unwrap();
    let nil = rpc.call_with("VM.set_name_description", (&session, &vms[0], None::<String>), |v| {
        v.get("Value").unwrap().is_nil()
    });
    assert!(nil.unwrap());
    let blob = rpc.call_with("VM.get_blob", (&session, &vms[0]), |v| {
        v.get("Value").unwrap().as_base64().unwrap().to_vec().unwrap()
    });
    assert_eq!(blob.unwrap(), b"\x00\x01\x02binary\xff\xfe");
    let when = rpc.call_with("VM.get_snapshot_time", (&session, &vms[0]), |v| {
        v.get("Value").unwrap().as_datetime().unwrap().parse()
    });
    assert_eq!(when.unwrap().unwrap().to_string(), "19700101T00:00:00Z");
    let memory = rpc.call_with("VM.get_memory_static_max", (&session, &vms[0]), |v| v.get("Value").unwrap().as_i64());
    assert_eq!(memory.unwrap(), Some(4294967296));
    // What Python reads of what our writer writes (its repr of each param).
    let when = vmwire_proto::xmlrpc::Iso8601::parse("20240102T03:04:05").unwrap();
    let params =
        (&session, 1i64 << 40, -7, 0.1, true, "a<b&c\r\n", vec!["x"], HashMap::from([("k", "v")]), None::<i32>, when);
    let echo = rpc.call_json("VM.echo", params).unwrap();
    let reprs = [
        "1099511627776",
        "-7",
        "0.1",
        "True",
        "'a<b&c\\r\\n'",
        "['x']",
        "{'k': 'v'}",
        "None",
        "<DateTime '20240102T03:04:05' at",
    ];
    for (got, want) in echo["Value"].as_array().unwrap().iter().zip(reprs) {
        assert!(got.as_str().unwrap().starts_with(want), "{got} vs {want}");
    }
}

#[test]
fn http_errors_and_a_wrong_path() {
    let peer = Peer::start(&[]);
    let mut rpc = Client::connect(&format!("http://127.0.0.1:{}/nope", peer.port)).unwrap();
    match rpc.call::<_, serde_json::Value>("VM.get_all", ()) {
        Err(xmlrpc::Error::HttpStatus { status: 404, body, .. }) => assert_eq!(body, "No such page"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn xenapi_session_calls_failures_and_helpers() {
    let peer = Peer::start(&["--vms", "4"]);
    let mut xapi = Session::connect(&peer.url()).unwrap();
    let session = login(&mut xapi);
    assert_eq!(xapi.session().as_deref(), Some(session.as_str()));
    let vms = xapi.vm().get_all().unwrap();
    assert_eq!(vms.len(), 4);
    let record = xapi.vm().get_record(&vms[2]).unwrap();
    assert_eq!(record.name_label, "café <&> ☃");
    assert_eq!((record.memory_static_max, record.vcpus_max), (4294967296, 4));
    assert_eq!(record.power_state, Some(PowerState::Running));
    assert_eq!(record.other_config["index"], "2");
    assert_eq!(xapi.vm().get_name_label(&vms[0]).unwrap(), "vm-0000");
    // A failure is data: code and params.
    match xapi.vm().start(&vms[0], false, false) {
        Err(xenapi::Error::Failure(f)) => {
            assert_eq!(f.code, "VM_BAD_POWER_STATE");
            assert_eq!(f.params, [vms[0].as_str(), "halted", "running"]);
        }
        other => panic!("{other:?}"),
    }
    xapi.vm().start(&vms[1], false, false).unwrap();
    assert_eq!(xapi.vm().get_power_state(&vms[1]).unwrap(), PowerState::Running);
    xapi.vm().pause(&vms[1]).unwrap();
    assert_eq!(xapi.vm().get_power_state(&vms[1]).unwrap(), PowerState::Paused);
    xapi.vm().unpause(&vms[1]).unwrap();
    let metrics = xapi.vm().get_metrics(&vms[0]).unwrap();
    assert_eq!(xapi.vm_metrics().get_memory_actual(&metrics).unwrap(), 268435456);
    assert_eq!(xapi.vm_metrics().get_vcpus_utilisation(&metrics).unwrap(), HashMap::from([(0, 0.5), (1, 0.25)]));
    match xapi.vm().get_record(&Ref::from("OpaqueRef:bogus")) {
        Err(xenapi::Error::Failure(f)) => assert_eq!((f.code.as_str(), f.params.len()), ("HANDLE_INVALID", 2)),
        other => panic!("{other:?}"),
    }
    // Async: a task, polled to completion, then destroyed.
    xapi.vm().hard_shutdown(&vms[1]).unwrap_err();
    let task = xapi.call_async("VM.start", (&vms[0], false, false)).unwrap();
    match xapi.wait_task::<()>(&task, Duration::from_millis(10), Some(Duration::from_secs(10))) {
        Err(xenapi::Error::Failure(f)) => assert_eq!(f.code, "VM_BAD_POWER_STATE"),
        other => panic!("{other:?}"),
    }
    let task = xapi.vm().start_async(&vms[3], false, false).unwrap();
    xapi.wait_task::<()>(&task, Duration::from_millis(10), Some(Duration::from_secs(10))).unwrap();
    assert_eq!(xapi.vm().get_power_state(&vms[3]).unwrap(), PowerState::Running);
    match xapi.call::<_, String>("task.get_status", (&task,)) {
        Err(xenapi::Error::Failure(f)) => assert_eq!(f.code, "HANDLE_INVALID", "the task was destroyed"),
        other => panic!("{other:?}"),
    }
    let records: serde_json::Value = xapi.call_json("VM.get_all_records", ()).unwrap();
    assert_eq!(records.as_object().unwrap().len(), 4);
    xapi.logout().unwrap();
    assert!(matches!(xapi.vm().get_all(), Err(xenapi::Error::Protocol(vmwire_proto::xenapi::Error::NotLoggedIn))));
    // A wrong password.
    match Session::connect(&peer.url()).unwrap().login_with_password("root", "wrong", "2.21", "t") {
        Err(xenapi::Error::Failure(f)) => assert_eq!(f.code, "SESSION_AUTHENTICATION_FAILED"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn session_invalid_then_success_relogs_in() {
    let peer = Peer::start(&[]);
    let mut xapi = Session::connect(&peer.url()).unwrap();
    let first = login(&mut xapi);
    Client::connect(&peer.url()).unwrap().call_json("debug.invalidate_sessions", ()).unwrap();
    assert_eq!(xapi.vm().get_all().unwrap().len(), 3);
    assert_eq!(xapi.relogins(), 1);
    let events = xapi.take_events();
    assert!(matches!(&events[..], [xenapi::SessionEvent::Relogin { attempt: 1, session }] if *session != first));
    assert_ne!(xapi.session().unwrap(), first);
}

#[test]
fn keep_alive_reuses_one_connection_and_http10_does_not() {
    let peer = Peer::start(&["--http11"]);
    let mut xapi = Session::connect(&peer.url()).unwrap();
    login(&mut xapi);
    for _ in 0..5 {
        xapi.vm().get_all().unwrap();
    }
    let before = peer.seen()["connections"].as_i64().unwrap();
    assert_eq!(before, 2, "one connection for the session, one for asking");
    let peer = Peer::start(&[]);
    let mut xapi = Session::connect(&peer.url()).unwrap();
    login(&mut xapi);
    for _ in 0..5 {
        xapi.vm().get_all().unwrap();
    }
    assert_eq!(peer.seen()["connections"].as_i64().unwrap(), 7, "HTTP/1.0: one per call");
}

#[test]
fn gzip_bodies_are_decoded() {
    let peer = Peer::start(&["--gzip", "--vms", "200"]);
    let mut xapi = Session::connect(&peer.url()).unwrap();
    login(&mut xapi);
    let records = xapi.vm().get_all_records().unwrap();
    assert_eq!(records.len(), 200);
    assert_eq!(peer.seen()["accept_encoding"], "gzip");
}

#[test]
fn https_verifies_certificates_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = test_certificate(dir.path());
    let peer = Peer::start(&["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
    let url = format!("https://localhost:{}/", peer.port);
    // Not trusted: refused.
    let err = Session::connect(&url).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // Trusted explicitly (from its PEM file): works, certificate and name checked.
    let trusted = vmwire_std::http::pem_certificates(&cert).unwrap();
    assert_eq!(trusted, std::slice::from_ref(&der));
    let options = xenapi::Options { tls: TlsOptions { verify: true, trusted }, ..xenapi::Options::new() };
    let mut xapi = Session::connect_with(&url, options).unwrap();
    login(&mut xapi);
    assert_eq!(xapi.vm().get_all().unwrap().len(), 3);
    // The right certificate for the wrong name: refused.
    let options = xmlrpc::Options { tls: TlsOptions { verify: true, trusted: vec![der] }, ..xmlrpc::Options::new() };
    let wrong_name = format!("https://127.0.0.1:{}/", peer.port);
    assert!(Client::connect_with(&wrong_name, options).is_err());
    // Verification off, knowingly.
    let options = xmlrpc::Options { tls: TlsOptions { verify: false, trusted: vec![] }, ..xmlrpc::Options::new() };
    let mut rpc = Client::connect_with(&wrong_name, options).unwrap();
    assert_eq!(rpc.call_json("VM.get_all", ("nobody",)).unwrap()["ErrorDescription"][0], "SESSION_INVALID");
    // `https://` to a plain HTTP server: said so, not as a corrupt message.
    let plain = Peer::start(&[]);
    let err = Session::connect(&format!("https://127.0.0.1:{}/", plain.port)).unwrap_err();
    assert!(err.to_string().contains("did not answer in TLS"), "{err}");
}

/// A XenAPI-shaped mock of xapi on vmwire's own server.
fn mock_xapi(server: &mut Server) {
    let sessions = Arc::new(Mutex::new(Vec::<String>::new()));
    let vms = Arc::new(Mutex::new(vec![("OpaqueRef:a", "Running"), ("OpaqueRef:b", "Halted")]));
    let valid = {
        let sessions = sessions.clone();
        move |s: &str| sessions.lock().unwrap().iter().any(|x| x == s)
    };
    let invalid = |s: &str| XenResult::<()>::failure("SESSION_INVALID", [s]);
    {
        let sessions = sessions.clone();
        server.method(
            "session.login_with_password",
            move |(user, password, _v, _o): (String, String, String, String)| {
                if password != "secret" {
                    return Ok::<_, Fault>(XenResult::failure(
                        "SESSION_AUTHENTICATION_FAILED",
                        [user.as_str(), "Authentication failure"],
                    ));
                }
                let mut s = sessions.lock().unwrap();
                let session = format!("OpaqueRef:session-{}", s.len() + 1);
                s.push(session.clone());
                Ok(XenResult::Success(session))
            },
        );
    }
    {
        let sessions = sessions.clone();
        server.method("session.logout", move |(s,): (String,)| {
            sessions.lock().unwrap().retain(|x| *x != s);
            Ok::<_, Fault>(XenResult::Success(""))
        });
    }
    {
        let sessions = sessions.clone();
        server.method("debug.invalidate_sessions", move |(): ()| {
            sessions.lock().unwrap().clear();
            Ok::<_, Fault>(XenResult::Success(""))
        });
    }
    {
        let (valid, vms) = (valid.clone(), vms.clone());
        server.method("VM.get_all", move |(s,): (String,)| {
            if !valid(&s) {
                return Ok::<_, Fault>(XenResult::Failure(match invalid(&s) {
                    XenResult::Failure(d) => d,
                    XenResult::Success(()) => vec![],
                }));
            }
            Ok(XenResult::Success(vms.lock().unwrap().iter().map(|(r, _)| r.to_string()).collect::<Vec<_>>()))
        });
    }
    {
        let (valid, vms) = (valid.clone(), vms.clone());
        server.method("VM.get_record", move |(s, vm): (String, String)| {
            if !valid(&s) {
                return Ok::<_, Fault>(XenResult::failure("SESSION_INVALID", [s.as_str()]));
            }
            let vms = vms.lock().unwrap();
            let Some((_, state)) = vms.iter().find(|(r, _)| *r == vm) else {
                return Ok(XenResult::failure("HANDLE_INVALID", ["VM", vm.as_str()]));
            };
            let record = serde_json::json!({"uuid": "u-1", "name_label": "café <&>", "power_state": state,
                "memory_static_max": "4294967296", "tags": ["x"], "other_config": {}});
            Ok(XenResult::Success(record))
        });
    }
    {
        let (valid, vms) = (valid.clone(), vms.clone());
        server.method("VM.start", move |(s, vm, _paused, _force): (String, String, bool, bool)| {
            if !valid(&s) {
                return Ok::<_, Fault>(XenResult::failure("SESSION_INVALID", [s.as_str()]));
            }
            let mut vms = vms.lock().unwrap();
            let Some(entry) = vms.iter_mut().find(|(r, _)| *r == vm) else {
                return Ok(XenResult::failure("HANDLE_INVALID", ["VM", vm.as_str()]));
            };
            if entry.1 != "Halted" {
                return Ok(XenResult::failure("VM_BAD_POWER_STATE", [vm.as_str(), "halted", "running"]));
            }
            entry.1 = "Running";
            Ok(XenResult::Success(""))
        });
    }
    server.method("VM.get_metrics", |(_s, vm): (String, String)| {
        Ok::<_, Fault>(XenResult::Success(format!("{vm}-metrics")))
    });
    server.method("VM_metrics.get_memory_actual", |(_s, _m): (String, String)| {
        Ok::<_, Fault>(XenResult::Success("268435456"))
    });
    server.method("VM.set_name_description", |(_s, _vm, d): (String, String, Option<String>)| {
        Ok::<_, Fault>(XenResult::Success(d))
    });
    server.method("VM.get_blob", |(_s, _vm): (String, String)| {
        Ok::<_, Fault>(XenResult::Success(serde_bytes_like(b"\x00\x01binary")))
    });
    server.method("VM.crash", |(_s,): (String,)| Err::<(), _>(Fault::new(-32500, "explicit fault from VM.crash")));
}

/// Bytes that serialize as bytes (`<base64>`), not as a sequence.
fn serde_bytes_like(b: &'static [u8]) -> Bytes {
    Bytes(b)
}

struct Bytes(&'static [u8]);

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[test]
fn the_xenapi_sdk_talks_to_our_server() {
    let python = common::require_python_module("XenAPI");
    let mut server = Server::bind("127.0.0.1:0").unwrap();
    mock_xapi(&mut server);
    let running = server.spawn().unwrap();
    let url = format!("http://{}/", running.addr().unwrap());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../io-std/tests/peers/sdk_client.py");
    let out = Command::new(python).arg(script).arg(&url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps: HashMap<String, serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let ok = |name: &str| steps[name].get("ok").cloned().unwrap_or_else(|| panic!("{name}: {:?}", steps[name]));
    assert_eq!(ok("login"), serde_json::Value::Null);
    assert_eq!(steps["bad login"]["failure"][0], "SESSION_AUTHENTICATION_FAILED");
    assert_eq!(ok("get_all"), serde_json::json!(["OpaqueRef:a", "OpaqueRef:b"]));
    assert_eq!(ok("get_record")["name_label"], "café <&>");
    assert_eq!(
        steps["start running"]["failure"],
        serde_json::json!(["VM_BAD_POWER_STATE", "OpaqueRef:a", "halted", "running"])
    );
    assert_eq!(ok("start halted"), "");
    assert_eq!(ok("memory"), "268435456");
    assert_eq!(ok("nil"), serde_json::Value::Null);
    assert_eq!(ok("blob"), "000162696e617279");
    assert!(steps["crash"]["error"].as_str().unwrap().contains("-32500"));
    assert_eq!(ok("after invalidation"), 2, "the SDK logged in again and retried");
    assert_eq!(ok("logout"), serde_json::Value::Null);
}

#[test]
fn client_and_server_over_a_unix_socket_with_keep_alive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xapi.sock");
    let mut server = Server::bind_unix(&path).unwrap();
    mock_xapi(&mut server);
    let running = server.spawn().unwrap();
    let mut xapi = Session::connect(&format!("unix:{}", path.display())).unwrap();
    login(&mut xapi);
    for _ in 0..3 {
        assert_eq!(xapi.vm().get_all().unwrap().len(), 2);
    }
    // Invalidated behind its back: the session logs in again and retries.
    let mut plain = Client::connect(&format!("unix:{}", path.display())).unwrap();
    plain.call_json("debug.invalidate_sessions", ()).unwrap();
    assert_eq!(xapi.vm().get_record(&Ref::from("OpaqueRef:b")).unwrap().name_label, "café <&>");
    assert_eq!(xapi.relogins(), 1);
    match xapi.call::<_, ()>("VM.crash", ()) {
        Err(xenapi::Error::Fault(f)) => assert_eq!(f.code, -32500),
        other => panic!("{other:?}"),
    }
    match xapi.call::<_, ()>("VM.nosuch", ()) {
        Err(xenapi::Error::Fault(f)) => assert_eq!(f.code, xmlrpc::METHOD_NOT_FOUND),
        other => panic!("{other:?}"),
    }
    match xapi.call::<_, ()>("VM.get_metrics", (1, 2, 3)) {
        Err(xenapi::Error::Fault(f)) => assert_eq!(f.code, xmlrpc::INVALID_PARAMS),
        other => panic!("{other:?}"),
    }
    running.stop();
    assert!(!path.exists());
}

#[test]
fn the_cli_calls_xmlrpc_and_xenapi() {
    let peer = Peer::start(&[]);
    let vmwire = env!("CARGO_BIN_EXE_vmwire");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(vmwire).args(args).envs(env.iter().copied()).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        (out.status.code(), stdout, String::from_utf8_lossy(&out.stderr).to_string())
    };
    let url = peer.url();
    let (code, out, _) = run(&["xmlrpc", &url, "session.login_with_password", "root", "secret", "2.21", "cli"], &[]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Status"], "Success");
    let (code, out, _) = run(&["xmlrpc", &url, "VM.crash", "x"], &[]);
    assert_eq!(code, Some(0), "a XenAPI-shaped SESSION_INVALID is a value to plain XML-RPC: {out}");

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "secret\n").unwrap();
    let (code, out, _) =
        run(&["xenapi", "--url", &url, "--password-file", secret.to_str().unwrap(), "VM.get_all"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().len(), 3);
    let (code, out, err) = run(
        &[
            "xenapi",
            "--url",
            &url,
            "--password-env",
            "VMWIRE_TEST_PW",
            "VM.start",
            "OpaqueRef:vm-0000",
            "false",
            "false",
        ],
        &[("VMWIRE_TEST_PW", "secret")],
    );
    assert_eq!(code, Some(1), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["ErrorDescription"],
        serde_json::json!(["VM_BAD_POWER_STATE", "OpaqueRef:vm-0000", "halted", "running"])
    );
    let (code, out, err) = run(
        &["xenapi", "--url", &url, "--password-env", "VMWIRE_TEST_PW", "VM.crash"],
        &[("VMWIRE_TEST_PW", "secret")],
    );
    assert_eq!((code, out.trim()), (Some(1), r#"{"faultCode":-32500,"faultString":"explicit fault from VM.crash"}"#));
    assert_eq!(err, "vmwire: XML-RPC fault -32500\n");
    // No password on the command line: a usage error.
    let (code, _, err) = run(&["xenapi", "--url", &url, "VM.get_all"], &[]);
    assert_eq!(code, Some(2), "{err}");
    // Nobody listening: a connection failure.
    let (code, _, _) = run(&["xmlrpc", "http://127.0.0.1:1/", "x"], &[]);
    assert_eq!(code, Some(3));
    // Text XML 1.0 cannot carry, even as a reference (ESC): refused here, a usage error.
    let (code, _, err) = run(&["xmlrpc", &url, "VM.echo", "a\u{1b}[2Jb"], &[]);
    assert_eq!((code, err.as_str()), (Some(2), "vmwire: XML-RPC: U+001B cannot be written in XML 1.0 text\n"));
    // A path that is not the XML-RPC server's: its HTTP status, a protocol failure (not a fault).
    let (code, out, err) = run(&["xmlrpc", &format!("{url}nope"), "VM.get_all"], &[]);
    assert_eq!((code, out.as_str(), err.as_str()), (Some(3), "", "vmwire: XML-RPC: HTTP 404 Not Found\n"));
}

#[test]
fn a_reader_that_stops_early_leaves_no_session() {
    let peer = Peer::start(&["--vms", "3000"]);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pw");
    std::fs::write(&secret, "secret\n").unwrap();
    let sessions = || Client::connect(&peer.url()).unwrap().call_json("debug.sessions", ()).unwrap();
    // `| head -c 5`: the reader is gone before the value is printed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["xenapi", "--url", &peer.url(), "--password-file", secret.to_str().unwrap(), "VM.get_all_records"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    assert!(!status.success());
    assert_eq!(sessions()["Value"], 0, "the session was left logged in");

    // Ctrl-C during a long call: logged out all the same, then ended by the signal.
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .args(["xenapi", "--url", &peer.url(), "--password-file", secret.to_str().unwrap(), "VM.sleep", "20"])
        .spawn()
        .unwrap();
    common::eventually("the call's session", Duration::from_secs(30), || (sessions()["Value"] == 1).then_some(()));
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(2), "{status:?}");
    assert_eq!(sessions()["Value"], 0, "Ctrl-C left the session logged in");
}

/// Runs `vmwire ARGS…`; its exit status, standard output and standard error.
fn vmwire(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmwire")).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A password file holding `secret` with the permissions `mode`.
fn password_file(dir: &Path, name: &str, contents: &[u8], mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_self_signed_ca_certificate_given_with_ca_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    // As `openssl req -x509` makes them: CA:TRUE, the server's name as SAN.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("ca.pem"), dir.path().join("ca.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut pairs = vec![(cert_path, key_path)];
    // And one from openssl itself, where it is installed.
    let (ossl_cert, ossl_key) = (dir.path().join("ossl.pem"), dir.path().join("ossl.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(&ossl_key)
        .arg("-out")
        .arg(&ossl_cert)
        .stderr(Stdio::null())
        .status();
    if made.is_ok_and(|s| s.success()) {
        pairs.push((ossl_cert, ossl_key));
    } else {
        eprintln!("openssl is not installed: testing with rcgen's certificate only");
    }
    let pw = password_file(dir.path(), "pw", b"secret\n", 0o600);
    for (cert, key) in pairs {
        let peer = Peer::start(&["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
        let url = format!("https://localhost:{}/", peer.port);
        let ca = cert.to_str().unwrap();
        let (code, stdout, stderr) =
            vmwire(&["xenapi", "--url", &url, "--ca", ca, "--password-file", &pw, "VM.get_all"]);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap().as_array().unwrap().len(), 3);
        // Verification stays on: not trusted without --ca, nor under another name.
        let (code, _, stderr) = vmwire(&["xenapi", "--url", &url, "--password-file", &pw, "VM.get_all"]);
        assert_eq!(code, Some(3), "{stderr}");
        assert!(
            stderr.contains("the server's certificate is not trusted (CaUsedAsEndEntity); to trust a self-signed")
                && stderr.contains("--ca FILE"),
            "{stderr}"
        );
        // A --ca file that holds no certificate (its key, here) is said at once.
        let (code, _, stderr) =
            vmwire(&["xenapi", "--url", &url, "--ca", key.to_str().unwrap(), "--password-file", &pw, "VM.get_all"]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("no PEM certificate"), "{stderr}");
        let wrong_name = format!("https://127.0.0.1:{}/", peer.port);
        let (code, _, stderr) =
            vmwire(&["xenapi", "--url", &wrong_name, "--ca", ca, "--password-file", &pw, "VM.get_all"]);
        assert_eq!(code, Some(3), "{stderr}");
        assert!(stderr.contains("not trusted (it is not for 127.0.0.1: it names "), "{stderr}");
    }
}

#[test]
fn header_fields_that_frame_the_request_are_refused() {
    for field in
        ["Content-Length: 0", "transfer-encoding: chunked", "Host: x", "Connection: close", "X-A: b\u{1}c", "X\nY: z"]
    {
        let (code, stdout, stderr) = vmwire(&["xmlrpc", "-H", field, "http://127.0.0.1:1/", "system.listMethods"]);
        assert_eq!((code, stdout.as_str()), (Some(2), ""), "{field:?}: {stderr}");
        assert!(stderr.starts_with("vmwire: -H "), "{stderr}");
    }
    // In the library too, for any caller.
    let options = xmlrpc::Options { headers: vec![("Content-Length".into(), "0".into())], ..xmlrpc::Options::new() };
    let err = Client::connect_with("http://127.0.0.1:1/", options).unwrap_err();
    assert_eq!(err.to_string(), "HTTP: the Content-Length field is the framing's own and cannot be given");
    // Any other field goes through, once.
    let peer = Peer::start(&[]);
    let (code, _, stderr) = vmwire(&["xmlrpc", "-H", "traceparent: 00-1-2-01", &peer.url(), "system.listMethods"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_password_in_a_url_is_never_shown() {
    // A bad URL is a usage error (status 2), as a bad argument is.
    let (code, _, stderr) = vmwire(&["xmlrpc", "http://root:S3cret@[::1", "system.listMethods"]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr, "vmwire: bad URL: \"http://root:***@[::1\": unclosed [\n");
    for url in ["root:S3cret@host", "http://root:S3%zzcret@host/", "https://root:S3cret@host:x/"] {
        let (_, _, stderr) = vmwire(&["xmlrpc", url, "system.listMethods"]);
        assert!(stderr.contains("bad URL") && !stderr.contains("S3"), "{stderr}");
        let err = Client::connect(url).unwrap_err().to_string();
        assert!(!err.contains("S3"), "{err}");
    }
    // A host and port without a scheme is named as such.
    let (code, _, stderr) = vmwire(&["xenapi", "--url", "127.0.0.1:8765", "--password-env", "PATH", "host.get_all"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("the scheme must be http, https, http+unix or unix"), "{stderr}");
}

#[test]
fn password_files_are_bounded_and_checked() {
    let peer = Peer::start(&[]);
    let url = peer.url();
    let dir = tempfile::tempdir().unwrap();
    let call = |file: &str| vmwire(&["xenapi", "--url", &url, "--password-file", file, "VM.get_all"]);
    // Endless: refused at the limit, not read to the end.
    let (code, _, stderr) = call("/dev/zero");
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr, "vmwire: /dev/zero: longer than 4096 bytes: not a password file\n");
    // Empty: refused, rather than logging in with no password.
    let empty = password_file(dir.path(), "empty", b"", 0o600);
    let (code, _, stderr) = call(&empty);
    assert_eq!((code, stderr), (Some(2), format!("vmwire: {empty}: the password is empty\n")));
    let (code, _, _) = call(&password_file(dir.path(), "newline", b"\n", 0o600));
    assert_eq!(code, Some(2));
    // One line end goes; the password is the rest, as it is.
    for (name, contents) in [("lf", &b"secret\n"[..]), ("crlf", b"secret\r\n"), ("bare", b"secret")] {
        let (code, _, stderr) = call(&password_file(dir.path(), name, contents, 0o600));
        assert_eq!((code, stderr.as_str()), (Some(0), ""), "{name}");
    }
    let (code, _, stderr) = call(&password_file(dir.path(), "spaces", b"secret \n", 0o600));
    assert_eq!(code, Some(1), "not trimmed: {stderr}");
    // Readable by others: used, with a warning.
    let open = password_file(dir.path(), "open", b"secret\n", 0o644);
    let (code, _, stderr) = call(&open);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr, format!("vmwire: warning: {open} can be read by others (mode 644); chmod 600 it\n"));
}
