//! The guest agent client against qemu-ga running in a real Linux guest,
//! reached through QEMU's virtio-serial port (see `tests/guest/mod.rs`).

#[path = "../../io-std/tests/common/mod.rs"]
mod common;
mod guest;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use guest::{Guest, Shared, own, shared};
use vmwire_std::qga::{Error, ExitStatus, Options, Shutdown};

fn main() {
    let vm = Shared::default();
    let trials = vec![
        shared("ping", &vm, ping),
        shared("info_lists_enabled_commands", &vm, info_lists_enabled_commands),
        shared("osinfo_names_the_booted_kernel", &vm, osinfo_names_the_booted_kernel),
        shared("network_interfaces_show_the_nic", &vm, network_interfaces_show_the_nic),
        shared("exec_reports_exit_codes_and_output", &vm, exec_reports_exit_codes_and_output),
        shared("exec_reports_signals", &vm, exec_reports_signals),
        shared("exec_feeds_input_and_environment", &vm, exec_feeds_input_and_environment),
        shared("file_of_several_mib_each_way", &vm, file_of_several_mib_each_way),
        shared("half_request_of_an_earlier_client", &vm, half_request_of_an_earlier_client),
        shared("twenty_connections_in_a_row", &vm, twenty_connections_in_a_row),
        shared("timeout_while_paused_then_recovery", &vm, timeout_while_paused_then_recovery),
        shared("connect_times_out_while_the_port_is_taken", &vm, connect_times_out_while_the_port_is_taken),
        shared("cli_exec_as_a_process", &vm, cli_exec_as_a_process),
        shared(
            "async_agent_exec_and_files_with_a_cancelled_call",
            &vm,
            async_agent_exec_and_files_with_a_cancelled_call,
        ),
        shared("shutdown_reboot_comes_back", &vm, shutdown_reboot_comes_back),
        own("shutdown_ends_the_guest", shutdown_ends_the_guest),
    ];
    guest::run(vm, trials);
}

/// The agent answers over the virtio-serial port.
fn ping(guest: &Guest) {
    let mut agent = guest.qga();
    agent.ping().unwrap();
    agent.close();
}

/// `guest-info`: the installed qemu-ga's version, its commands enabled.
fn info_lists_enabled_commands(guest: &Guest) {
    let info = guest.qga().info().unwrap();
    let installed = Command::new("/usr/sbin/qemu-ga").arg("--version").output().unwrap();
    let installed = String::from_utf8_lossy(&installed.stdout);
    assert!(installed.contains(&info.version), "guest-info says {:?}; the package: {installed}", info.version);
    for name in ["guest-ping", "guest-exec", "guest-file-open", "guest-shutdown"] {
        let command = info.supported_commands.iter().find(|c| c.name == name);
        assert!(command.is_some_and(|c| c.enabled), "{name}: {command:?}");
    }
    let shutdown = info.supported_commands.iter().find(|c| c.name == "guest-shutdown").unwrap();
    assert!(!shutdown.success_response, "guest-shutdown does not answer when it succeeds");
}

/// `guest-get-osinfo`: the kernel the test booted.
fn osinfo_names_the_booted_kernel(guest: &Guest) {
    let os = guest.qga().osinfo().unwrap();
    assert_eq!(os.kernel_release.as_deref(), Some(guest.kernel_release()), "{os:?}");
    assert_eq!(os.machine.as_deref(), Some("x86_64"), "{os:?}");
    assert!(os.id.is_some(), "os-release is in the image: {os:?}");
}

/// `guest-network-get-interfaces`: the loopback and the virtio NIC with the
/// MAC address QEMU gave it and the address init set.
fn network_interfaces_show_the_nic(guest: &Guest) {
    let interfaces: serde_json::Value = guest.qga().execute("guest-network-get-interfaces", ()).unwrap();
    let list = interfaces.as_array().expect("a list of interfaces");
    let find =
        |name: &str| list.iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("no {name} in {interfaces}"));
    let has_ipv4 = |interface: &serde_json::Value, address: &str, prefix: u64| {
        interface["ip-addresses"].as_array().is_some_and(|addresses| {
            addresses
                .iter()
                .any(|a| a["ip-address-type"] == "ipv4" && a["ip-address"] == address && a["prefix"] == prefix)
        })
    };
    assert!(has_ipv4(find("lo"), "127.0.0.1", 8), "{interfaces}");
    let eth0 = find("eth0");
    assert_eq!(eth0["hardware-address"], guest::MAC, "{interfaces}");
    assert!(has_ipv4(eth0, guest::IPV4, 24), "{interfaces}");
}

/// `guest-exec`: exit codes, standard output and error kept apart.
fn exec_reports_exit_codes_and_output(guest: &Guest) {
    let mut agent = guest.qga();
    let out = agent.exec("/bin/sh", &["-c", "echo out; echo err >&2; exit 7"], &[], None).unwrap();
    assert_eq!(out.status, ExitStatus::Code(7));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    let out = agent.exec("/bin/true", &[], &[], None).unwrap();
    assert!(out.status.success(), "{out:?}");
    // A program that does not exist: the agent's error, and the session goes on.
    let missing = agent.exec("/no/such/program", &[], &[], None);
    assert!(matches!(missing, Err(Error::Agent(_))), "{missing:?}");
    agent.ping().unwrap();
}

/// `guest-exec`: a program killed by a signal.
fn exec_reports_signals(guest: &Guest) {
    let mut agent = guest.qga();
    let out = agent.exec("/bin/sh", &["-c", "kill -TERM $$"], &[], None).unwrap();
    assert_eq!(out.status, ExitStatus::Signal(15), "{out:?}");
    let out = agent.exec("/bin/sh", &["-c", "kill -KILL $$"], &[], None).unwrap();
    assert_eq!(out.status, ExitStatus::Signal(9), "{out:?}");
}

/// `guest-exec`: standard input and environment reach the program.
fn exec_feeds_input_and_environment(guest: &Guest) {
    let mut agent = guest.qga();
    let text = "Grüße\nline two\n";
    let out = agent.exec("/bin/cat", &[], &[], Some(text.as_bytes())).unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), text);
    let out = agent.exec("/bin/sh", &["-c", "echo \"$GREETING\""], &["GREETING=hello guest"], None).unwrap();
    assert_eq!(out.stdout, b"hello guest\n");
}

/// The SHA-256 of `bytes` in hex, by the host's `sha256sum`.
fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// The SHA-256 of a guest file, by the guest's `sha256sum`.
fn guest_sha256(agent: &mut vmwire_std::qga::Agent, path: &str) -> String {
    let out = agent.exec("/usr/bin/sha256sum", &[path], &[], None).unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned()
}

/// 4 MiB written into the guest and 4 MiB read back out, in the agent's
/// chunks, each compared by checksum on both sides.
fn file_of_several_mib_each_way(guest: &Guest) {
    const SIZE: usize = 4 << 20;
    let mut agent = guest.qga();
    // Bytes of every value (xorshift), not text.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    agent.write_file("/tmp/from-host", &bytes).unwrap();
    assert_eq!(guest_sha256(&mut agent, "/tmp/from-host"), sha256(&bytes));

    let made = agent.exec("/bin/sh", &["-c", "head -c 4194304 /dev/urandom >/tmp/from-guest"], &[], None).unwrap();
    assert!(made.status.success(), "{made:?}");
    let read = agent.read_file("/tmp/from-guest").unwrap();
    assert_eq!(read.len(), SIZE);
    assert_eq!(sha256(&read), guest_sha256(&mut agent, "/tmp/from-guest"));
    let removed = agent.exec("/bin/rm", &["/tmp/from-host", "/tmp/from-guest"], &[], None).unwrap();
    assert!(removed.status.success(), "{removed:?}");
}

/// vmwire-smol's agent over the same virtio-serial port: exec, a file each
/// way, and an exec whose future is dropped while the program runs, after
/// which the agent answers the next call with its own reply.
fn async_agent_exec_and_files_with_a_cancelled_call(guest: &Guest) {
    use vmwire_smol::qga::Agent;
    smol::block_on(async {
        let mut agent = Agent::connect_unix(guest.qga_path(), Options::default()).await.unwrap();
        agent.ping().await.unwrap();
        let out = agent.exec("/bin/sh", &["-c", "printf %s \"$X\"; exit 4"], &["X=async"], None).await.unwrap();
        assert_eq!((out.stdout.as_slice(), out.status.code()), (&b"async"[..], Some(4)), "{out:?}");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        agent.write_file("/tmp/async-file", &bytes).await.unwrap();
        assert_eq!(agent.read_file("/tmp/async-file").await.unwrap(), bytes);
        let slow = agent.exec("/bin/sleep", &["2"], &[], None);
        let gave_up = smol::future::or(async { Some(slow.await) }, async {
            smol::Timer::after(Duration::from_millis(300)).await;
            None
        });
        assert!(gave_up.await.is_none());
        let out = agent.exec("/bin/cat", &["/tmp/async-file"], &[], None).await.unwrap();
        assert_eq!(out.stdout, bytes);
        agent.exec("/bin/rm", &["/tmp/async-file"], &[], None).await.unwrap();
        agent.close();
    });
}

/// A client that sent half a request and went away: the next session
/// resynchronises (0xFF resets the agent's parser) and works.
fn half_request_of_an_earlier_client(guest: &Guest) {
    let mut earlier = UnixStream::connect(guest.qga_path()).unwrap();
    earlier.write_all(br#"{"execute": "guest-exec", "arguments": {"path": "/bin/t"#).unwrap();
    drop(earlier);
    let mut agent = guest.qga();
    agent.ping().unwrap();
    let out = agent.exec("/bin/echo", &["after"], &[], None).unwrap();
    assert_eq!(out.stdout, b"after\n");
}

/// Twenty sessions one after the other, each synced and answered.
fn twenty_connections_in_a_row(guest: &Guest) {
    for round in 0..20 {
        let mut agent = guest.qga();
        agent.ping().unwrap_or_else(|e| panic!("session {round}: {e}"));
        agent.close();
    }
}

/// A paused machine does not answer: the command times out; after `cont`
/// the same session answers again.
fn timeout_while_paused_then_recovery(guest: &Guest) {
    let mut qmp = guest.qmp();
    let mut agent = guest.qga();
    agent.ping().unwrap();
    let _: serde_json::Value = qmp.execute("stop", ()).unwrap();
    agent.set_timeout(Some(Duration::from_secs(2)));
    let paused = agent.ping();
    let _: serde_json::Value = qmp.execute("cont", ()).unwrap();
    assert!(matches!(paused, Err(Error::Timeout)), "{paused:?}");
    agent.set_timeout(Some(Duration::from_secs(30)));
    agent.ping().unwrap();
    let out = agent.exec("/bin/echo", &["back"], &[], None).unwrap();
    assert_eq!(out.stdout, b"back\n");
}

/// QEMU serves one connection to a port at a time and queues few more (a
/// listen backlog of 1): a client that comes while the port is taken and the
/// queue is full waits in `connect` itself. The connection's time limit
/// holds there too; once the port is free, a session works again.
fn connect_times_out_while_the_port_is_taken(guest: &Guest) {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let holder = guest.qga();
    // Fill the queue: connect until a non-blocking connect would block.
    let addr = SocketAddrUnix::new(guest.qga_path()).unwrap();
    let mut queued = Vec::new();
    loop {
        let fd =
            rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, SocketFlags::NONBLOCK, None).unwrap();
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => queued.push(fd),
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => panic!("connecting to the queue: {e}"),
        }
        assert!(queued.len() < 64, "QEMU queues more than 64 connections");
    }
    let path = guest.qga_path();
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let options = Options { timeout: Some(Duration::from_secs(2)), ..Options::default() };
        let _ = done.send(vmwire_std::qga::Agent::connect_unix(path, options).map(drop));
    });
    // A hang guard, not a timing: the client's own limit is 2 s.
    let waited = outcome.recv_timeout(Duration::from_secs(60));
    drop(queued);
    drop(holder);
    let waited = waited.expect("connect_unix ignored its time limit (blocked in connect)");
    assert!(matches!(&waited, Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut), "{waited:?}");
    guest.qga().ping().unwrap();
}

/// `vmwire qga --socket … exec -- …` as a user runs it: the program's
/// output, and its exit code as vmwire's.
fn cli_exec_as_a_process(guest: &Guest) {
    let out = Command::new(env!("CARGO_BIN_EXE_vmwire"))
        .arg("qga")
        .arg("--socket")
        .arg(guest.qga_path())
        .args(["exec", "--", "/bin/sh", "-c", "echo to stdout; echo to stderr >&2; exit 3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!((out.status.code(), &*stdout, &*stderr), (Some(3), "to stdout\n", "to stderr\n"));
}

/// `guest-shutdown`: the agent sends no reply when it complies; the guest
/// powers off and QEMU exits.
fn shutdown_ends_the_guest(guest: &Guest) {
    let mut agent = guest.qga_with(Options { timeout: Some(Duration::from_secs(60)), ..Options::default() });
    let result = agent.shutdown(Shutdown::Powerdown);
    let status = guest.wait_exit(Duration::from_secs(60));
    assert!(status.is_some_and(|s| s.success()), "QEMU did not exit: {status:?}");
    assert!(result.is_ok(), "{result:?}");
}

/// `guest-shutdown` with mode `reboot`: the guest boots again (QEMU stays)
/// and a new session finds its agent.
fn shutdown_reboot_comes_back(guest: &Guest) {
    let boots = guest.boots();
    let mut agent = guest.qga_with(Options { timeout: Some(Duration::from_secs(60)), ..Options::default() });
    let started = std::time::Instant::now();
    let result = agent.shutdown(Shutdown::Reboot);
    let took = started.elapsed();
    // The port is QEMU's: it stays connected across the reboot until we close it.
    drop(agent);
    guest.wait_rebooted(boots);
    assert!(result.is_ok(), "{result:?} after {took:?}");
    guest.qga().ping().unwrap();
}
