//! QMP and the human monitor on a QEMU running a real Linux guest (see
//! `tests/guest/mod.rs`); events are read by a listener on the second QMP
//! socket while commands go through the first.

#[path = "../../io-std/tests/common/mod.rs"]
mod common;
mod guest;

use std::time::{Duration, Instant};

use guest::{Guest, Shared, own, shared};
use serde_json::{Value, json};
use vmwire_std::qmp::{Event, Qmp};

fn main() {
    let vm = Shared::default();
    let trials = vec![
        shared("query_status_running", &vm, query_status_running),
        shared("stop_and_cont_with_events", &vm, stop_and_cont_with_events),
        shared("async_shared_connection_with_subscribers", &vm, async_shared_connection_with_subscribers),
        shared("device_add_and_del_acknowledged_by_the_guest", &vm, device_add_and_del_acknowledged_by_the_guest),
        shared("hmp_info_on_the_running_machine", &vm, hmp_info_on_the_running_machine),
        shared("system_reset_boots_the_guest_again", &vm, system_reset_boots_the_guest_again),
        own("system_powerdown_then_shutdown", system_powerdown_then_shutdown),
    ];
    guest::run(vm, trials);
}

/// vmwire-smol's shared connection on the running guest's QMP socket: tasks
/// query while one stops and continues the machine, and two subscribers
/// with different filters see what they asked for.
fn async_shared_connection_with_subscribers(guest: &Guest) {
    use vmwire_smol::qmp::{Filter, Options, Qmp as AsyncQmp};
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let (qmp, driver) = AsyncQmp::connect_unix(guest.qmp_path(), Options::default()).await.unwrap().share();
        let driver = ex.spawn(driver);
        let mut stops = qmp.subscribe(Filter::names(["STOP"]), 8);
        let mut both = qmp.subscribe(Filter::predicate(|e| e.name == "STOP" || e.name == "RESUME"), 8);
        let queries: Vec<_> = (0..8)
            .map(|_| {
                let qmp = qmp.clone();
                ex.spawn(async move {
                    for _ in 0..10 {
                        let status: Value = qmp.execute("query-status", ()).await.unwrap();
                        assert!(status["status"] == "running" || status["status"] == "paused", "{status}");
                    }
                })
            })
            .collect();
        qmp.execute::<Value>("stop", ()).await.unwrap();
        qmp.execute::<Value>("cont", ()).await.unwrap();
        for query in queries {
            query.await;
        }
        assert_eq!(stops.next().await.unwrap().name, "STOP");
        assert_eq!(both.next().await.unwrap().name, "STOP");
        assert_eq!(both.next().await.unwrap().name, "RESUME");
        let status: Value = qmp.execute("query-status", ()).await.unwrap();
        assert_eq!(status["status"], "running");
        drop((qmp, stops, both));
        driver.await.unwrap();
    }));
}

/// A hang guard for an event the guest causes (generous: TCG on a loaded
/// machine).
const EVENT_LIMIT: Duration = Duration::from_secs(60);

/// Waits for the event `name` on `listener`, skipping others; fails the test
/// (listing what came) after [`EVENT_LIMIT`].
fn wait_event(listener: &mut Qmp, name: &str) -> Event {
    let give_up = Instant::now() + EVENT_LIMIT;
    let mut seen = Vec::new();
    loop {
        let left = give_up.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {name} event within {EVENT_LIMIT:?}; got {seen:?}");
        match listener.next_event(Some(left)).unwrap() {
            Some(event) if event.name == name => return event,
            Some(event) => seen.push(event.name),
            None => {}
        }
    }
}

/// Runs a command whose reply does not matter beyond being a success.
fn run(qmp: &mut Qmp, name: &str, args: Value) -> Value {
    let args = if args.is_null() { None } else { Some(args.to_string()) };
    let reply = qmp.execute_raw(name, args.as_deref()).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&reply).unwrap()
}

/// The guest runs.
fn query_status_running(guest: &Guest) {
    let status = run(&mut guest.qmp(), "query-status", Value::Null);
    assert_eq!(status["status"], "running", "{status}");
}

/// `stop` and `cont`: the run state follows, and the listener on the other
/// socket gets `STOP` and `RESUME`.
fn stop_and_cont_with_events(guest: &Guest) {
    let mut listener = guest.qmp_events();
    let mut qmp = guest.qmp();
    run(&mut qmp, "stop", Value::Null);
    wait_event(&mut listener, "STOP");
    assert_eq!(run(&mut qmp, "query-status", Value::Null)["status"], "paused");
    run(&mut qmp, "cont", Value::Null);
    wait_event(&mut listener, "RESUME");
    assert_eq!(run(&mut qmp, "query-status", Value::Null)["status"], "running");
    // The guest went on where it was.
    guest.qga().ping().unwrap();
}

/// Whether a device with QOM id `id` is on the PCI bus (`query-pci`).
fn on_pci_bus(qmp: &mut Qmp, id: &str) -> bool {
    let buses = run(qmp, "query-pci", Value::Null);
    buses
        .as_array()
        .into_iter()
        .flatten()
        .any(|bus| bus["devices"].as_array().into_iter().flatten().any(|device| device["qdev_id"] == id))
}

/// `device_add` of a virtio device appears in the guest; `device_del` takes
/// effect only when the guest acknowledges the unplug (ACPI hotplug), which
/// the listener learns from `DEVICE_DELETED`.
fn device_add_and_del_acknowledged_by_the_guest(guest: &Guest) {
    let mut listener = guest.qmp_events();
    let mut qmp = guest.qmp();
    let mut agent = guest.qga();
    // virtio-rng-pci, transitional on the PCI bus: 1af4:1005.
    let count_rng = "grep -l 0x1005 /sys/bus/pci/devices/*/device | wc -l";
    let before = agent.exec("/bin/sh", &["-c", count_rng], &[], None).unwrap();
    run(&mut qmp, "device_add", json!({"driver": "virtio-rng-pci", "id": "hotrng"}));
    assert!(on_pci_bus(&mut qmp, "hotrng"));
    // The guest sees it (ACPI hotplug), then gives it back.
    common::eventually("the guest to see the added device", EVENT_LIMIT, || {
        let now = agent.exec("/bin/sh", &["-c", count_rng], &[], None).unwrap();
        (now.stdout != before.stdout).then_some(())
    });
    run(&mut qmp, "device_del", json!({"id": "hotrng"}));
    // First for its virtio backend (a path, no device id), then for it.
    let deleted = wait_event(&mut listener, "DEVICE_DELETED");
    assert_eq!(deleted.data["path"], "/machine/peripheral/hotrng/virtio-backend", "{deleted:?}");
    let deleted = wait_event(&mut listener, "DEVICE_DELETED");
    assert_eq!(deleted.data["device"], "hotrng", "{deleted:?}");
    assert!(!on_pci_bus(&mut qmp, "hotrng"));
    let after = agent.exec("/bin/sh", &["-c", count_rng], &[], None).unwrap();
    assert_eq!(after.stdout, before.stdout);
}

/// The human monitor on the running machine: `info status`, `info pci`,
/// `info registers`.
fn hmp_info_on_the_running_machine(guest: &Guest) {
    let mut hmp = guest.hmp();
    let status = hmp.status().unwrap();
    assert!(status.running && status.state == "running", "{status:?}");
    let pci = hmp.info("pci").unwrap();
    // The virtio-serial controller and the NIC, by vendor:device.
    for device in ["1af4:1003", "1af4:1000"] {
        assert!(pci.contains(device), "no {device} in info pci:\n{pci}");
    }
    let registers = hmp.info("registers").unwrap();
    for register in ["RAX=", "RIP=", "CR0=", "EFER="] {
        assert!(registers.contains(register), "no {register} in info registers:\n{registers}");
    }
}

/// `system_reset`: the listener gets `RESET` and the guest boots again, its
/// agent answering.
fn system_reset_boots_the_guest_again(guest: &Guest) {
    let mut listener = guest.qmp_events();
    let boots = guest.boots();
    run(&mut guest.qmp(), "system_reset", Value::Null);
    let reset = wait_event(&mut listener, "RESET");
    assert_eq!(reset.data["guest"], false, "{reset:?}");
    guest.wait_rebooted(boots);
    guest.qga().ping().unwrap();
}

/// `system_powerdown` presses the ACPI power button: the guest's acpid powers
/// off, the listener gets `POWERDOWN` then `SHUTDOWN`, and QEMU exits.
fn system_powerdown_then_shutdown(guest: &Guest) {
    let mut listener = guest.qmp_events();
    run(&mut guest.qmp(), "system_powerdown", Value::Null);
    wait_event(&mut listener, "POWERDOWN");
    let shutdown = wait_event(&mut listener, "SHUTDOWN");
    assert_eq!(shutdown.data["guest"], true, "{shutdown:?}");
    assert_eq!(shutdown.data["reason"], "guest-shutdown", "{shutdown:?}");
    let status = guest.wait_exit(EVENT_LIMIT);
    assert!(status.is_some_and(|s| s.success()), "QEMU did not exit: {status:?}");
}
