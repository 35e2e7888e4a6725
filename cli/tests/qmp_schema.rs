//! Differential testing of the schema checker against QEMU's own argument
//! validation, on the schema of a real QEMU (`-machine none -S`).
//!
//! For every command with arguments, calls invalid by construction (a
//! required member missing, an unknown member, a wrong JSON type, a bad enum
//! value) must be refused by the checker and by QEMU, which validates
//! arguments before it acts. For the commands safe to run here (the
//! `query-*` family and a few other readers), calls generated from the
//! schema must pass both. The counts are printed (`--nocapture`).

#[path = "../../io-std/tests/common/mod.rs"]
mod common;

#[path = "../../proto/tests/common/schema_gen.rs"]
mod schema_gen;

use schema_gen::{Gen, Kind, expected_path, mutate, rng};
use vmwire_proto::json::Value;
use vmwire_proto::qmp::schema::{self, HeapSchema};
use vmwire_std::qemu::{QEMU_BINARY, QEMU_PACKAGE, Qemu};
use vmwire_std::qmp::{Error, Options, Qmp};

fn launch() -> (Qemu, Qmp) {
    let qemu = common::qemu_builder().qmp().spawn().expect("QEMU starts");
    let qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), Options::default()).expect("connect");
    (qemu, qmp)
}

/// Whether QEMU's error is its input visitor refusing the arguments (as
/// opposed to the command failing once it ran).
fn validation_message(desc: &str) -> bool {
    desc.starts_with("Parameter '") || desc.starts_with("Invalid parameter type for '")
}

/// The member QEMU names in a validation message: `Parameter 'file.driver' …`.
fn named(desc: &str) -> Option<&str> {
    let rest = desc.strip_prefix("Parameter '").or_else(|| desc.strip_prefix("Invalid parameter type for '"))?;
    rest.split_once('\'').map(|(name, _)| name)
}

/// Commands without side effects on a `-machine none -S` QEMU.
fn safe(name: &str) -> bool {
    name.starts_with("query-")
        || name.starts_with("x-query-")
        || matches!(name, "qom-list" | "qom-get" | "qom-list-types" | "qom-list-properties" | "device-list-properties")
}

#[derive(Debug, Default)]
struct Counts {
    commands: usize,
    invalid: usize,
    refused_by_validation: usize,
    refused_otherwise: usize,
    same_member_named: usize,
    safe_commands: usize,
    valid: usize,
    valid_returned: usize,
    valid_failed_after_validation: usize,
    disagreements: Vec<String>,
}

#[test]
fn checker_agrees_with_qemus_validation() {
    let (_qemu, mut qmp) = launch();
    let text = qmp.execute_raw("query-qmp-schema", None).expect("query-qmp-schema");
    let schema = HeapSchema::read_heap(text.into_bytes()).expect("the live schema reads");
    let s = schema.view();
    let mut counts = Counts::default();
    let names: Vec<String> = s.commands().map(|c| c.name().to_string()).collect();
    for name in &names {
        let args_ty = s.command(name).and_then(|c| c.arguments()).unwrap();
        let has_arguments = args_ty.members().next().is_some();
        if has_arguments {
            counts.commands += 1;
            // Minimal arguments, and two more with optional members, each mutated once per site.
            for seed in [None, Some(1), Some(2)] {
                let mut pick: Box<dyn FnMut(usize) -> usize> = match seed {
                    None => Box::new(|_| 0),
                    Some(seed) => Box::new(rng(seed)),
                };
                let mut generator = Gen::new(&mut *pick);
                let Some(args) = generator.arguments(s, name) else { continue };
                let mut kinds_done = std::collections::HashSet::new();
                for site in &generator.sites {
                    let open = site.kind == Kind::Unknown
                        && site.path.is_empty()
                        && schema::OPEN_COMMANDS.contains(&name.as_str());
                    // Each kind of mutation once per path and seed: enough to cover, few enough to be quick.
                    if open || !kinds_done.insert((site.kind as u8, expected_path(site))) {
                        continue;
                    }
                    let bad = mutate(&args, site).to_string();
                    let ours = s.check(name, Some(Value::parse(bad.as_bytes()).unwrap()));
                    let Err(ours) = ours else {
                        counts.disagreements.push(format!("checker accepted invalid {name} {bad}"));
                        continue;
                    };
                    counts.invalid += 1;
                    match qmp.execute_raw(name, Some(&bad)) {
                        Ok(r) => counts.disagreements.push(format!("QEMU accepted invalid {name} {bad}: {r}")),
                        Err(Error::Qemu(e)) if validation_message(&e.desc) => {
                            counts.refused_by_validation += 1;
                            if named(&e.desc) == Some(ours.path.to_string().as_str()) {
                                counts.same_member_named += 1;
                            } else {
                                eprintln!("named differently: {name} {bad}: QEMU: {}; vmwire: {ours}", e.desc);
                            }
                        }
                        Err(Error::Qemu(e)) => {
                            counts.refused_otherwise += 1;
                            eprintln!("refused after validation: {name} {bad}: {}", e.desc);
                        }
                        Err(e) => panic!("{name} {bad}: {e}"),
                    }
                }
            }
        }
        if safe(name) {
            counts.safe_commands += 1;
            for seed in [None, Some(1), Some(2), Some(3)] {
                let mut pick: Box<dyn FnMut(usize) -> usize> = match seed {
                    None => Box::new(|_| 0),
                    Some(seed) => Box::new(rng(seed)),
                };
                let Some(args) = Gen::new(&mut *pick).arguments(s, name) else { continue };
                let args = args.to_string();
                if let Err(e) = s.check(name, Some(Value::parse(args.as_bytes()).unwrap())) {
                    counts.disagreements.push(format!("checker refused generated {name} {args}: {e}"));
                    continue;
                }
                counts.valid += 1;
                match qmp.execute_raw(name, Some(&args)) {
                    Ok(_) => counts.valid_returned += 1,
                    Err(Error::Qemu(e)) if validation_message(&e.desc) => {
                        counts.disagreements.push(format!("QEMU refused valid {name} {args}: {}", e.desc))
                    }
                    Err(Error::Qemu(_)) => counts.valid_failed_after_validation += 1,
                    Err(e) => panic!("{name} {args}: {e}"),
                }
                if !has_arguments {
                    break;
                }
            }
        }
    }
    eprintln!("{counts:#?}");
    assert!(counts.disagreements.is_empty(), "{:#?}", counts.disagreements);
    assert!(counts.commands > 100 && counts.invalid > 1000 && counts.valid > 100, "{counts:?}");
    assert_eq!(counts.refused_by_validation + counts.refused_otherwise, counts.invalid);
}

#[test]
fn client_checks_before_sending_when_asked() {
    let qemu = common::qemu_builder().qmp().spawn().expect("QEMU starts");
    let options = Options { check: true, ..Options::default() };
    let mut qmp = Qmp::connect_unix(qemu.qmp_path().unwrap(), options).expect("connect");
    assert_eq!(qmp.schema().unwrap().view().len(), 1051);
    match qmp.execute_raw("blockdev-add", Some(r#"{"driver": "qcow2", "file": {"driver": "nul-co"}}"#)) {
        Err(Error::Refused(e)) => {
            assert!(e.starts_with("blockdev-add: file.driver: expected one of \"blkdebug\""), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A schema in which query-status needs an argument: the command is
    // refused here, and QEMU, which would have answered it, never sees it.
    let text = String::from_utf8(qmp.schema().unwrap().text().clone()).unwrap();
    let needs =
        qmp.schema().unwrap().command("block-set-write-threshold").unwrap().arguments().unwrap().name().to_string();
    let entry = r#"{"name": "query-status", "ret-type": "1", "meta-type": "command", "arg-type": "0"}"#;
    assert!(text.contains(entry));
    let doctored = text.replace(entry, &entry.replace(r#""arg-type": "0""#, &format!(r#""arg-type": "{needs}""#)));
    qmp.set_schema(vmwire_std::qmp::Schema::read_heap(doctored.into_bytes()).unwrap());
    match qmp.execute_raw("query-status", None) {
        Err(Error::Refused(e)) => assert_eq!(e, "query-status: node-name: missing; expected a string"),
        other => panic!("{other:?}"),
    }
    qmp.set_check(false);
    assert!(qmp.execute_raw("query-status", None).unwrap().contains("prelaunch"));
    assert!(qmp.take_strays().is_empty(), "a reply to a command that should not have been sent");
    // Off by default. (QEMU serves one QMP client at a time.)
    qmp.close();
    let mut plain = Qmp::connect_unix(qemu.qmp_path().unwrap(), Options::default()).expect("connect");
    assert!(plain.schema().is_none());
    assert!(matches!(plain.execute_raw("blockdev-add", Some(r#"{"driver": "nul-co"}"#)), Err(Error::Qemu(_))));
}

/// Runs `vmwire` with `args`: exit status, stdout, stderr.
fn vmwire(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmwire")).args(args).output().expect("vmwire runs");
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[test]
fn cli_saves_the_schema_and_checks_offline_and_before_sending() {
    common::require_binary(QEMU_BINARY, QEMU_PACKAGE);
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("schema.json");
    let saved = saved.to_str().unwrap();
    let qemu = Qemu::builder().qmp().spawn().expect("QEMU starts");
    let socket = qemu.qmp_path().unwrap().to_str().unwrap().to_string();

    let (code, out, err) = vmwire(&["qmp", "--socket", &socket, "--schema-out", saved]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""));
    assert_eq!(HeapSchema::read_heap(std::fs::read(saved).unwrap()).unwrap().view().len(), 1051);

    // Offline: no QEMU needed.
    let (code, out, err) =
        vmwire(&["qmp", "--schema", saved, "--check", "blockdev-add", "driver=qcow2", "file.driver=nul-co"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.starts_with("vmwire: blockdev-add: file.driver: expected one of \"blkdebug\""), "{err}");
    assert!(err.trim_end().ends_with("got \"nul-co\""), "{err}");
    let (code, out, err) =
        vmwire(&["qmp", "--schema", saved, "--check", "drive-backup", "device=d", "target=/t", "sync=full"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "ok\n", "vmwire: warning: drive-backup: deprecated\n"));
    let (code, _, err) = vmwire(&["qmp", "--check", "query-status"]);
    assert_eq!(code, 2, "{err}");

    // Online: checked by default, and the refused command is not sent.
    let bad = ["blockdev-add", "driver=file", "filename=/nonexistent", "bogus=1"];
    let (code, out, err) = vmwire(&[&["qmp", "--socket", &socket][..], &bad].concat());
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(err, "vmwire: blockdev-add: bogus: no such member; not sent (--no-check sends it anyway)\n");
    // Warnings are shown, and the command is sent.
    let deprecated = ["drive-backup", "device=nodev", "target=/nonexistent", "sync=full"];
    let (code, out, err) = vmwire(&[&["qmp", "--socket", &socket][..], &deprecated].concat());
    assert_eq!((code, err.as_str()), (1, "vmwire: warning: drive-backup: deprecated\n"));
    assert!(out.contains("\"error\""), "{out}");
    let (code, out, _) = vmwire(&[&["qmp", "--socket", &socket, "--no-check"][..], &bad].concat());
    assert_eq!(code, 1);
    assert!(out.contains("Parameter 'bogus' is unexpected"), "{out}");
    let (code, out, _) = vmwire(&["qmp", "--socket", &socket, "--check", "query-status"]);
    assert_eq!((code, out.as_str()), (0, "ok\n"));
    let (code, out, _) = vmwire(&["qmp", "--socket", &socket, "--schema", saved, "query-status"]);
    assert_eq!(code, 0);
    assert!(out.contains("prelaunch"), "{out}");
}
