//! vmwire-smol's XML-RPC client and XenAPI session against Python's
//! `xmlrpc.server` serving XenAPI-shaped methods (io-std's peer: HTTP/1.0
//! and 1.1, gzip, TLS), directly or through a relay that serves it on a
//! UNIX socket, cuts connections, or holds the answers back.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_io::Timer;
use futures_lite::future;
use vmwire_smol::xenapi::{self, PowerState, Ref, Session};
use vmwire_smol::xmlrpc::{self, Client, Fault};

use common::xenapi::Peer;

impl Peer {
    /// What the peer counted (`connections`, `accept_encoding`), asked on a
    /// connection of its own.
    async fn seen(&self) -> HashMap<String, serde_json::Value> {
        let mut rpc = Client::connect(&self.url()).await.unwrap();
        let v: serde_json::Value = rpc.call_json("debug.seen", ()).await.unwrap();
        serde_json::from_value(v["Value"].clone()).unwrap()
    }

    async fn connections(&self) -> i64 {
        self.seen().await["connections"].as_i64().unwrap()
    }

    /// Makes every session the peer knows invalid.
    async fn invalidate_sessions(&self) {
        Client::connect(&self.url()).await.unwrap().call_json("debug.invalidate_sessions", ()).await.unwrap();
    }
}

async fn login(session: &mut Session) -> String {
    session.login_with_password("root", "secret", "2.21", "vmwire-tests").await.unwrap()
}

/// A socket the relay serves clients on.
trait Duplex: Read + Write + Send + 'static {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Duplex>>;
    fn shut(&self, how: Shutdown);
}

impl Duplex for TcpStream {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shut(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

impl Duplex for UnixStream {
    fn try_clone_box(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn shut(&self, how: Shutdown) {
        let _ = self.shutdown(how);
    }
}

/// What the relay's threads share.
#[derive(Default)]
struct Shared {
    /// Both ends of every connection relayed, to cut them.
    open: Mutex<Vec<(Box<dyn Duplex>, TcpStream)>>,
    /// While true, the peer's answers are held back.
    held: Mutex<bool>,
    released: Condvar,
    /// Bytes passed from clients to the peer.
    forwarded: AtomicUsize,
}

/// A relay to a [`Peer`], on a TCP port or a UNIX socket: each connection
/// accepted is passed on to the peer on a connection of its own.
struct Relay {
    shared: Arc<Shared>,
    url: String,
}

impl Relay {
    fn tcp(peer: &Peer) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        Relay::serve(peer.addr(), url, move || listener.accept().map(|(s, _)| Box::new(s) as Box<dyn Duplex>))
    }

    fn unix(peer: &Peer, path: &Path) -> Relay {
        let listener = UnixListener::bind(path).unwrap();
        let url = format!("unix:{}", path.display());
        Relay::serve(peer.addr(), url, move || listener.accept().map(|(s, _)| Box::new(s) as Box<dyn Duplex>))
    }

    fn serve(
        upstream: SocketAddr,
        url: String,
        mut accept: impl FnMut() -> std::io::Result<Box<dyn Duplex>> + Send + 'static,
    ) -> Relay {
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        std::thread::spawn(move || {
            while let Ok(client) = accept() {
                let server = TcpStream::connect(upstream).unwrap();
                let (client_in, server_in) = (client.try_clone_box().unwrap(), server.try_clone().unwrap());
                state.open.lock().unwrap().push((client.try_clone_box().unwrap(), server.try_clone().unwrap()));
                let up = state.clone();
                std::thread::spawn(move || {
                    pump(client_in, Box::new(server), |n| {
                        up.forwarded.fetch_add(n, Ordering::SeqCst);
                    })
                });
                let down = state.clone();
                std::thread::spawn(move || {
                    pump(Box::new(server_in), client, |_| {
                        let mut held = down.held.lock().unwrap();
                        while *held {
                            held = down.released.wait(held).unwrap();
                        }
                    })
                });
            }
        });
        Relay { shared, url }
    }

    /// Closes every connection relayed so far, both ends.
    fn cut(&self) {
        for (client, server) in self.shared.open.lock().unwrap().drain(..) {
            client.shut(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Holds the peer's answers back (or lets them through again).
    fn hold(&self, held: bool) {
        *self.shared.held.lock().unwrap() = held;
        self.shared.released.notify_all();
    }

    fn forwarded(&self) -> usize {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// Waits until more than `bytes` have gone to the peer.
    async fn forwarded_beyond(&self, bytes: usize) {
        while self.forwarded() <= bytes {
            Timer::after(Duration::from_millis(5)).await;
        }
    }
}

/// Copies `from` to `to` until either ends, `each` told of every chunk
/// before it is passed on; then ends `to`'s writing side.
fn pump(mut from: Box<dyn Duplex>, mut to: Box<dyn Duplex>, mut each: impl FnMut(usize)) {
    let mut buf = [0u8; 16384];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        each(n);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    to.shut(Shutdown::Write);
}

#[test]
fn xmlrpc_client_calls_faults_and_scalars() {
    let peer = Peer::start(&[]);
    smol::block_on(async {
        let mut rpc = Client::connect(&peer.url()).await.unwrap();
        let login = rpc.call_json("session.login_with_password", ("root", "secret", "2.21", "t")).await.unwrap();
        assert_eq!(login["Status"], "Success");
        let session = login["Value"].as_str().unwrap().to_string();
        // A fault is the server's answer, with its code.
        match rpc.call::<_, serde_json::Value>("VM.crash", (&session,)).await {
            Err(xmlrpc::Error::Fault(f)) => assert_eq!(f, Fault::new(-32500, "explicit fault from VM.crash")),
            other => panic!("{other:?}"),
        }
        match rpc.call::<_, serde_json::Value>("VM.nosuch", (&session,)).await {
            Err(xmlrpc::Error::Fault(f)) => assert!(f.code == 1 && f.string.contains("VM.nosuch")),
            other => panic!("{other:?}"),
        }
        // nil both ways, base64, dateTime, the XenAPI's integers-as-strings.
        let vms: Vec<String> = rpc
            .call_with("VM.get_all", (&session,), |v| {
                v.get("Value").unwrap().as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect()
            })
            .await
            .unwrap();
        let nil = rpc
            .call_with("VM.set_name_description", (&session, &vms[0], None::<String>), |v| {
                v.get("Value").unwrap().is_nil()
            })
            .await;
        assert!(nil.unwrap());
        let blob = rpc
            .call_with("VM.get_blob", (&session, &vms[0]), |v| {
                v.get("Value").unwrap().as_base64().unwrap().to_vec().unwrap()
            })
            .await;
        assert_eq!(blob.unwrap(), b"\x00\x01\x02binary\xff\xfe");
        let when = rpc
            .call_with("VM.get_snapshot_time", (&session, &vms[0]), |v| {
                v.get("Value").unwrap().as_datetime().unwrap().parse()
            })
            .await;
        assert_eq!(when.unwrap().unwrap().to_string(), "19700101T00:00:00Z");
        let memory =
            rpc.call_with("VM.get_memory_static_max", (&session, &vms[0]), |v| v.get("Value").unwrap().as_i64()).await;
        assert_eq!(memory.unwrap(), Some(4294967296));
        let ratio: serde_json::Value = rpc.call("VM.get_HVM_shadow_multiplier", (&session, &vms[0])).await.unwrap();
        assert_eq!(ratio["Value"], 1.0);
        // What Python reads of what our writer writes (its repr of each param).
        let when = vmwire_proto::xmlrpc::Iso8601::parse("20240102T03:04:05").unwrap();
        let params = (
            &session,
            1i64 << 40,
            -7,
            0.1,
            true,
            "a<b&c\r\n",
            vec!["x"],
            HashMap::from([("k", "v")]),
            None::<i32>,
            when,
        );
        let echo = rpc.call_json("VM.echo", params).await.unwrap();
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
        let echoed = echo["Value"].as_array().unwrap();
        assert_eq!(echoed.len(), reprs.len());
        for (got, want) in echoed.iter().zip(reprs) {
            assert!(got.as_str().unwrap().starts_with(want), "{got} vs {want}");
        }
    });
}

#[test]
fn http_errors_and_a_wrong_path() {
    let peer = Peer::start(&[]);
    smol::block_on(async {
        let mut rpc = Client::connect(&format!("http://127.0.0.1:{}/nope", peer.port)).await.unwrap();
        match rpc.call::<_, serde_json::Value>("VM.get_all", ()).await {
            Err(xmlrpc::Error::HttpStatus { status: 404, body, .. }) => assert_eq!(body, "No such page"),
            other => panic!("{other:?}"),
        }
        // Nobody listening: a connection failure, typed.
        assert!(matches!(Client::connect("http://127.0.0.1:1/").await, Err(xmlrpc::Error::Io(_))));
        assert!(matches!(Client::connect("ftp://x/").await, Err(xmlrpc::Error::Url(_))));
    });
}

#[test]
fn xenapi_session_calls_failures_and_helpers() {
    let peer = Peer::start(&["--vms", "4"]);
    smol::block_on(async {
        let mut xapi = Session::connect(&peer.url()).await.unwrap();
        let session = login(&mut xapi).await;
        assert_eq!(xapi.session().as_deref(), Some(session.as_str()));
        let vms = xapi.vm().get_all().await.unwrap();
        assert_eq!(vms.len(), 4);
        let record = xapi.vm().get_record(&vms[2]).await.unwrap();
        assert_eq!(record.name_label, "café <&> ☃");
        assert_eq!((record.memory_static_max, record.vcpus_max), (4294967296, 4));
        assert_eq!(record.power_state, Some(PowerState::Running));
        assert_eq!(record.other_config["index"], "2");
        assert_eq!(xapi.vm().get_name_label(&vms[0]).await.unwrap(), "vm-0000");
        // A failure is data: code and params.
        match xapi.vm().start(&vms[0], false, false).await {
            Err(xenapi::Error::Failure(f)) => {
                assert_eq!(f.code, "VM_BAD_POWER_STATE");
                assert_eq!(f.params, [vms[0].as_str(), "halted", "running"]);
            }
            other => panic!("{other:?}"),
        }
        xapi.vm().start(&vms[1], false, false).await.unwrap();
        assert_eq!(xapi.vm().get_power_state(&vms[1]).await.unwrap(), PowerState::Running);
        xapi.vm().pause(&vms[1]).await.unwrap();
        assert_eq!(xapi.vm().get_power_state(&vms[1]).await.unwrap(), PowerState::Paused);
        xapi.vm().unpause(&vms[1]).await.unwrap();
        let metrics = xapi.vm().get_metrics(&vms[0]).await.unwrap();
        assert_eq!(xapi.vm_metrics().get_memory_actual(&metrics).await.unwrap(), 268435456);
        assert_eq!(
            xapi.vm_metrics().get_vcpus_utilisation(&metrics).await.unwrap(),
            HashMap::from([(0, 0.5), (1, 0.25)])
        );
        match xapi.vm().get_record(&Ref::from("OpaqueRef:bogus")).await {
            Err(xenapi::Error::Failure(f)) => assert_eq!((f.code.as_str(), f.params.len()), ("HANDLE_INVALID", 2)),
            other => panic!("{other:?}"),
        }
        match xapi.call::<_, ()>("VM.crash", ()).await {
            Err(xenapi::Error::Fault(f)) => assert_eq!(f.code, -32500),
            other => panic!("{other:?}"),
        }
        // Async: a task, polled to completion, then destroyed.
        xapi.vm().hard_shutdown(&vms[1]).await.unwrap_err();
        let task = xapi.call_async("VM.start", (&vms[0], false, false)).await.unwrap();
        match xapi.wait_task::<()>(&task, Duration::from_millis(10), Some(Duration::from_secs(10))).await {
            Err(xenapi::Error::Failure(f)) => assert_eq!(f.code, "VM_BAD_POWER_STATE"),
            other => panic!("{other:?}"),
        }
        let task = xapi.vm().start_async(&vms[3], false, false).await.unwrap();
        xapi.wait_task::<()>(&task, Duration::from_millis(10), Some(Duration::from_secs(10))).await.unwrap();
        assert_eq!(xapi.vm().get_power_state(&vms[3]).await.unwrap(), PowerState::Running);
        match xapi.call::<_, String>("task.get_status", (&task,)).await {
            Err(xenapi::Error::Failure(f)) => assert_eq!(f.code, "HANDLE_INVALID", "the task was destroyed"),
            other => panic!("{other:?}"),
        }
        let records = xapi.vm().get_all_records().await.unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(records[&vms[2]].name_label, "café <&> ☃");
        xapi.logout().await.unwrap();
        assert_eq!(xapi.session(), None);
        assert!(matches!(
            xapi.vm().get_all().await,
            Err(xenapi::Error::Protocol(vmwire_proto::xenapi::Error::NotLoggedIn))
        ));
        // A wrong password.
        let mut other = Session::connect(&peer.url()).await.unwrap();
        match other.login_with_password("root", "wrong", "2.21", "t").await {
            Err(xenapi::Error::Failure(f)) => assert_eq!(f.code, "SESSION_AUTHENTICATION_FAILED"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn session_invalid_then_success_relogs_in() {
    let peer = Peer::start(&[]);
    smol::block_on(async {
        let mut xapi = Session::connect(&peer.url()).await.unwrap();
        let first = login(&mut xapi).await;
        peer.invalidate_sessions().await;
        assert_eq!(xapi.vm().get_all().await.unwrap().len(), 3);
        assert_eq!(xapi.relogins(), 1);
        let events = xapi.take_events();
        assert!(matches!(&events[..], [xenapi::SessionEvent::Relogin { attempt: 1, session }] if *session != first));
        let second = xapi.session().unwrap();
        assert_ne!(second, first);
        // In the middle of a task wait too: the polls go on in the new session.
        let task = xapi.vm().start_async(&Ref::from("OpaqueRef:vm-0001"), false, false).await.unwrap();
        peer.invalidate_sessions().await;
        xapi.wait_task::<()>(&task, Duration::from_millis(10), Some(Duration::from_secs(10))).await.unwrap();
        assert_eq!(xapi.relogins(), 2);
        assert_ne!(xapi.session().unwrap(), second);
    });
}

#[test]
fn keep_alive_reuses_one_connection_and_http10_does_not() {
    smol::block_on(async {
        let peer = Peer::start(&["--http11"]);
        let mut xapi = Session::connect(&peer.url()).await.unwrap();
        login(&mut xapi).await;
        for _ in 0..5 {
            xapi.vm().get_all().await.unwrap();
        }
        assert_eq!(peer.connections().await, 2, "one connection for the session, one for asking");
        // HTTP/1.0: the server closes after each answer; the client connects again.
        let peer = Peer::start(&[]);
        let mut xapi = Session::connect(&peer.url()).await.unwrap();
        login(&mut xapi).await;
        for _ in 0..5 {
            xapi.vm().get_all().await.unwrap();
        }
        assert_eq!(peer.connections().await, 7, "HTTP/1.0: one per call");
    });
}

#[test]
fn a_kept_alive_connection_the_server_closed_is_replaced() {
    let peer = Peer::start(&["--http11"]);
    let relay = Relay::tcp(&peer);
    smol::block_on(async {
        let mut xapi = Session::connect(&relay.url).await.unwrap();
        login(&mut xapi).await;
        xapi.vm().get_all().await.unwrap();
        assert_eq!(peer.connections().await, 2);
        // Closed while idle: the next call goes out on a new connection.
        relay.cut();
        assert_eq!(xapi.vm().get_all().await.unwrap().len(), 3);
        assert_eq!(xapi.vm().get_name_label(&Ref::from("OpaqueRef:vm-0001")).await.unwrap(), "vm-0001");
        assert_eq!(peer.connections().await, 4, "one more for the session, one for asking");
        assert_eq!(xapi.relogins(), 0, "the session outlives its connections");
    });
}

#[test]
fn gzip_bodies_are_decoded() {
    let peer = Peer::start(&["--gzip", "--vms", "200"]);
    smol::block_on(async {
        let mut xapi = Session::connect(&peer.url()).await.unwrap();
        login(&mut xapi).await;
        let records = xapi.vm().get_all_records().await.unwrap();
        assert_eq!(records.len(), 200);
        assert_eq!(peer.seen().await["accept_encoding"], "gzip");
    });
}

/// HTTPS with a self-signed certificate made by rcgen.
#[cfg(feature = "tls")]
mod https {
    use vmwire_smol::http::TlsOptions;

    use super::*;
    use crate::common::xenapi::test_certificate;

    #[test]
    fn https_verifies_certificates_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = test_certificate(dir.path());
        let peer = Peer::start(&["--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
        let url = format!("https://localhost:{}/", peer.port);
        smol::block_on(async {
            // Not trusted: refused.
            let err = Session::connect(&url).await.unwrap_err();
            assert!(err.to_string().contains("certificate"), "{err}");
            // Trusted explicitly (from its PEM file): works, certificate and name checked.
            let trusted = vmwire_smol::http::pem_certificates(&cert).unwrap();
            assert_eq!(trusted, std::slice::from_ref(&der));
            let options = xenapi::Options { tls: TlsOptions { verify: true, trusted }, ..xenapi::Options::new() };
            let mut xapi = Session::connect_with(&url, options).await.unwrap();
            login(&mut xapi).await;
            assert_eq!(xapi.vm().get_all().await.unwrap().len(), 3);
            // HTTP/1.0: every call a new connection, each a new handshake.
            assert_eq!(xapi.vm().get_record(&Ref::from("OpaqueRef:vm-0002")).await.unwrap().name_label, "café <&> ☃");
            // The right certificate for the wrong name: refused.
            let options =
                xmlrpc::Options { tls: TlsOptions { verify: true, trusted: vec![der] }, ..xmlrpc::Options::new() };
            let wrong_name = format!("https://127.0.0.1:{}/", peer.port);
            let err = Client::connect_with(&wrong_name, options).await.unwrap_err();
            assert!(matches!(err, xmlrpc::Error::Io(_)), "{err:?}");
            // Verification off, knowingly.
            let options =
                xmlrpc::Options { tls: TlsOptions { verify: false, trusted: vec![] }, ..xmlrpc::Options::new() };
            let mut rpc = Client::connect_with(&wrong_name, options).await.unwrap();
            let answer = rpc.call_json("VM.get_all", ("nobody",)).await.unwrap();
            assert_eq!(answer["ErrorDescription"][0], "SESSION_INVALID");
        });
    }

    #[test]
    fn https_keeps_a_connection_alive() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = test_certificate(dir.path());
        let peer = Peer::start(&["--http11", "--tls", cert.to_str().unwrap(), key.to_str().unwrap()]);
        let url = format!("https://localhost:{}/", peer.port);
        smol::block_on(async {
            let options =
                xenapi::Options { tls: TlsOptions { verify: true, trusted: vec![der] }, ..xenapi::Options::new() };
            let mut xapi = Session::connect_with(&url, options).await.unwrap();
            login(&mut xapi).await;
            for _ in 0..5 {
                assert_eq!(xapi.vm().get_all().await.unwrap().len(), 3);
            }
            let records = xapi.vm().get_all_records().await.unwrap();
            assert_eq!(records.len(), 3);
            let seen = xapi.call_json("debug.seen", ()).await.unwrap();
            assert_eq!(seen["connections"], 1, "one connection, one handshake");
            xapi.logout().await.unwrap();
        });
    }
}

#[cfg(not(feature = "tls"))]
#[test]
fn https_needs_the_tls_feature() {
    smol::block_on(async {
        match Client::connect("https://127.0.0.1:1/").await {
            Err(xmlrpc::Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn xenapi_over_a_unix_socket() {
    let peer = Peer::start(&["--http11"]);
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::unix(&peer, &dir.path().join("xapi.sock"));
    smol::block_on(async {
        let mut xapi = Session::connect(&relay.url).await.unwrap();
        assert_eq!(xapi.url().to_string(), relay.url);
        login(&mut xapi).await;
        for _ in 0..3 {
            assert_eq!(xapi.vm().get_all().await.unwrap().len(), 3);
        }
        assert_eq!(peer.connections().await, 2, "one connection, kept alive");
        // Invalidated behind its back: the session logs in again and retries.
        let mut plain = Client::connect(&relay.url).await.unwrap();
        plain.call_json("debug.invalidate_sessions", ()).await.unwrap();
        assert_eq!(xapi.vm().get_record(&Ref::from("OpaqueRef:vm-0002")).await.unwrap().name_label, "café <&> ☃");
        assert_eq!(xapi.relogins(), 1);
        match xapi.call::<_, ()>("VM.crash", ()).await {
            Err(xenapi::Error::Fault(f)) => assert_eq!(f.code, -32500),
            other => panic!("{other:?}"),
        }
        // The socket closed under it: connected again, on the next call.
        relay.cut();
        assert_eq!(xapi.vm().get_name_label(&Ref::from("OpaqueRef:vm-0000")).await.unwrap(), "vm-0000");
        xapi.logout().await.unwrap();
    });
}

/// Runs `work` until `enough` is ready, then drops it: whether it was
/// dropped before it ended.
async fn given_up<T>(work: impl Future<Output = T>, enough: impl Future) -> bool {
    future::or(async { work.await.into() }, async {
        enough.await;
        None
    })
    .await
    .is_none()
}

#[test]
fn a_call_dropped_mid_wait_leaves_the_client_usable() {
    let peer = Peer::start(&["--http11", "--vms", "4"]);
    let relay = Relay::tcp(&peer);
    smol::block_on(async {
        let mut rpc = Client::connect(&relay.url).await.unwrap();
        let answer = rpc.call_json("session.login_with_password", ("root", "secret", "2.21", "t")).await.unwrap();
        let session = answer["Value"].as_str().unwrap().to_string();
        // The call goes out; its answer is held back; the caller gives up.
        relay.hold(true);
        let before = relay.forwarded();
        {
            let call = rpc.call_json("VM.get_name_label", (&session, "OpaqueRef:vm-0000"));
            assert!(given_up(call, relay.forwarded_beyond(before)).await, "the answer was held back");
        }
        relay.hold(false);
        // The next call gets its own answer, not the one left behind.
        let label = rpc.call_json("VM.get_name_label", (&session, "OpaqueRef:vm-0001")).await.unwrap();
        assert_eq!(label["Value"], "vm-0001");
        let label = rpc.call_json("VM.get_name_label", (&session, "OpaqueRef:vm-0002")).await.unwrap();
        assert_eq!(label["Value"], "café <&> ☃");

        // A XenAPI session: a call dropped mid-wait, then a task wait
        // dropped in its pause; the session stays logged in and in step.
        let mut xapi = Session::connect(&relay.url).await.unwrap();
        let session = login(&mut xapi).await;
        relay.hold(true);
        let before = relay.forwarded();
        {
            let call = xapi.call::<_, Vec<Ref>>("VM.get_all", ());
            assert!(given_up(call, relay.forwarded_beyond(before)).await, "the answer was held back");
        }
        relay.hold(false);
        assert_eq!(xapi.session().as_deref(), Some(session.as_str()));
        assert_eq!(xapi.vm().get_all().await.unwrap().len(), 4);
        let task = xapi.vm().start_async(&Ref::from("OpaqueRef:vm-0001"), false, false).await.unwrap();
        {
            // Polled once an hour: it cannot end before the caller gives up.
            let wait = xapi.wait_task::<()>(&task, Duration::from_secs(3600), None);
            assert!(given_up(wait, Timer::after(Duration::from_millis(200))).await);
        }
        assert_eq!(xapi.vm().get_name_label(&Ref::from("OpaqueRef:vm-0003")).await.unwrap(), "vm-0003");
        xapi.wait_task::<()>(&task, Duration::from_millis(10), Some(Duration::from_secs(10))).await.unwrap();
        assert_eq!(xapi.vm().get_power_state(&Ref::from("OpaqueRef:vm-0001")).await.unwrap(), PowerState::Running);
        assert_eq!(xapi.relogins(), 0);
        xapi.logout().await.unwrap();
    });
}

#[test]
fn calls_are_futures_another_thread_can_run() {
    let peer = Peer::start(&[]);
    let url = peer.url();
    // Made here, run on another thread: `Send`, as a multi-threaded executor wants.
    let work = async move {
        let mut xapi = Session::connect(&url).await?;
        xapi.login_with_password("root", "secret", "2.21", "t").await?;
        let task = xapi.vm().start_async(&Ref::from("OpaqueRef:vm-0001"), false, false).await?;
        xapi.wait_task::<()>(&task, Duration::from_millis(10), None).await?;
        xapi.vm().get_power_state(&Ref::from("OpaqueRef:vm-0001")).await
    };
    let state = std::thread::spawn(move || smol::block_on(work)).join().unwrap();
    assert_eq!(state.unwrap(), PowerState::Running);
}

#[test]
fn header_fields_that_frame_the_request_are_refused() {
    smol::block_on(async {
        let options =
            xmlrpc::Options { headers: vec![("Content-Length".into(), "0".into())], ..xmlrpc::Options::new() };
        let err = Client::connect_with("http://127.0.0.1:1/", options).await.unwrap_err();
        assert_eq!(err.to_string(), "HTTP: the Content-Length field is the framing's own and cannot be given");
        let err = Client::connect("http://root:S3cret@[::1").await.unwrap_err().to_string();
        assert!(err.contains("bad URL") && !err.contains("S3"), "{err}");
    });
}
