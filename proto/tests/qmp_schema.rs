//! The QMP schema reader, questions and checker, on the `query-qmp-schema`
//! reply captured from a real QEMU 7.2.22 (`fixtures/qmp/06_query_qmp_schema`).

#[path = "common/schema_gen.rs"]
mod schema_gen;

use proptest::prelude::*;
use schema_gen::{Gen, Kind, expected_path, mutate, rng};
use vmwire_proto::json::Value;
use vmwire_proto::qmp::schema::{self, Error, FixedSchema, HeapSchema, MetaType, Mismatch, Schema, SchemaRef};

/// Counts this thread's allocations, to show that fixed storage needs none.
struct Counting;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded as received.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded as received.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The reply line of the capture: `{"return": [...]}`.
fn reply() -> &'static [u8] {
    let s2c: &[u8] = include_bytes!("../../fixtures/qmp/06_query_qmp_schema.s2c");
    s2c.split(|&b| b == b'\n').find(|l| l.starts_with(b"{\"return\": [")).expect("the schema reply")
}

fn schema() -> &'static HeapSchema<&'static [u8]> {
    static SCHEMA: std::sync::OnceLock<HeapSchema<&'static [u8]>> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| HeapSchema::read_heap(reply()).expect("QEMU 7.2's schema reads"))
}

fn check(command: &str, args: &str) -> Result<Vec<String>, String> {
    let args = Value::parse(args.as_bytes()).unwrap();
    match schema().check(command, Some(args)) {
        Ok(w) => Ok(w.first.iter().map(|w| w.to_string()).collect()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn reads_qemu_7_2s_schema() {
    let s = schema().view();
    assert_eq!(s.len(), 1051);
    assert_eq!(s.commands().count(), 216);
    assert_eq!(s.events().count(), 52);
    assert_eq!(s.entries().filter(|t| t.meta() == MetaType::Alternate).count(), 6);
    let status = s.command("query-status").unwrap();
    assert_eq!(status.arguments().unwrap().members().count(), 0);
    let ret: Vec<String> = status.returns().unwrap().members().map(|m| m.name().to_string()).collect();
    assert_eq!(ret, ["running", "singlestep", "status"]);
    assert!(s.command("SHUTDOWN").is_none() && s.event("SHUTDOWN").is_some());
    assert!(s.command("x-query-irq").unwrap().unstable());
    assert!(s.command("drive-backup").unwrap().deprecated());
    assert!(s.command("migrate-recover").unwrap().allow_oob());
}

#[test]
fn arguments_with_types_and_optionality() {
    let s = schema().view();
    let args = s.command("block-set-write-threshold").unwrap().arguments().unwrap();
    let described: Vec<(String, Option<&str>, bool)> = args
        .members()
        .map(|m| (m.name().to_string(), m.ty().unwrap().json_type().map(|j| j.name()), m.optional()))
        .collect();
    assert_eq!(
        described,
        [("node-name".to_string(), Some("string"), false), ("write-threshold".to_string(), Some("int"), false)]
    );
    let add = s.command("blockdev-add").unwrap().arguments().unwrap();
    assert_eq!(add.tag().unwrap().name(), "driver");
    assert!(add.variants().any(|v| v.name() == "null-co"));
    let node_name = add.members().find(|m| m.name() == "node-name").unwrap();
    assert!(node_name.optional() && node_name.default().unwrap().is_null());
}

#[test]
fn libvirt_path_queries() {
    let s = schema();
    for yes in [
        "blockdev-add/arg-type/+file/aio/^io_uring",
        "blockdev-add/arg-type/+file/$dynamic-auto-read-only",
        "blockdev-add/arg-type/+qcow2/file/+file/filename",
        "blockdev-add/arg-type/*node-name",
        "blockdev-add/arg-type/node-name/!string",
        "object-add/arg-type/qom-type/^secret",
        "drive-backup/$deprecated",
        "query-cpus-fast/ret-type/props/socket-id",
        "migrate-set-capabilities/arg-type/capabilities/capability/^x-colo",
        "block-set-write-threshold/arg-type/write-threshold/!int",
        "SHUTDOWN/arg-type/reason",
        "query-status",
    ] {
        assert!(s.has(yes), "{yes}");
    }
    for no in [
        "blockdev-add/arg-type/+file/aio/^nope",
        "blockdev-add/arg-type/+nul-co",
        "blockdev-add/arg-type/*driver",
        "blockdev-add/arg-type/node-name/!int",
        "drive-backup/$unstable",
        "no-such-command",
        "blockdev-add/nope",
        "49/members",
        "",
        "blockdev-add/arg-type/^driver",
    ] {
        assert!(!s.has(no), "{no}");
    }
}

#[test]
fn checks_arguments_as_qemu_does() {
    let ok = r#"{"driver": "qcow2", "node-name": "n", "file": {"driver": "file", "filename": "/x", "aio": "native"}}"#;
    assert_eq!(check("blockdev-add", ok), Ok(vec![]));
    // The file member is an alternate: a node name (string) is just as good.
    assert_eq!(check("blockdev-add", r#"{"driver": "qcow2", "file": "n0"}"#), Ok(vec![]));
    let cases = [
        (
            r#"{"driver": "qcow2", "file": {"driver": "nul-co"}}"#,
            "blockdev-add: file.driver: expected one of \"blkdebug\", \"blklogwrites\", ",
        ),
        (r#"{"driver": "file"}"#, "blockdev-add: filename: missing; expected a string"),
        (
            r#"{"driver": "file", "filename": "/x", "aio": 1}"#,
            "blockdev-add: aio: expected one of \"threads\", \"native\", \"io_uring\", got 1",
        ),
        (r#"{"driver": "file", "filename": "/x", "bogus": 1}"#, "blockdev-add: bogus: no such member"),
        (r#"{"filename": "/x"}"#, "blockdev-add: driver: missing; expected one of"),
        (r#"{"driver": 7}"#, "blockdev-add: driver: expected one of"),
        (
            r#"{"driver": "file", "filename": "/x", "aio-max-batch": 1.5}"#,
            "blockdev-add: aio-max-batch: expected an integer, got 1.5",
        ),
        (r#"{"driver": "qcow2", "file": 3}"#, "blockdev-add: file: expected an object or a string, got 3"),
        (
            r#"{"driver": "quorum", "vote-threshold": 1, "children": ["a", 2]}"#,
            "blockdev-add: children[1]: expected an object or a string, got 2",
        ),
    ];
    for (args, message) in cases {
        let got = check("blockdev-add", args).unwrap_err();
        assert!(got.starts_with(message), "{args}: {got}");
    }
    assert_eq!(check("nope", "{}").unwrap_err(), "nope: no such command");
    assert_eq!(check("query-status", "[]").unwrap_err(), "query-status: expected an object, got []");
    assert_eq!(check("query-status", r#"{"a": 1, "a": 2}"#).unwrap_err(), "query-status: a: no such member");
    assert_eq!(
        check("block-set-write-threshold", r#"{"node-name": "a", "write-threshold": 1, "node-name": "b"}"#)
            .unwrap_err(),
        "block-set-write-threshold: node-name: member given twice"
    );
    // `number` takes integers; `int` takes u64 and i64 but not beyond.
    assert!(
        check("block-set-write-threshold", r#"{"node-name": "a", "write-threshold": 18446744073709551615}"#).is_ok()
    );
    assert!(
        check("block-set-write-threshold", r#"{"node-name": "a", "write-threshold": -9223372036854775808}"#).is_ok()
    );
    assert!(
        check("block-set-write-threshold", r#"{"node-name": "a", "write-threshold": 18446744073709551616}"#).is_err()
    );
    assert!(check("block-set-write-threshold", r#"{"node-name": "a", "write-threshold": 1e3}"#).is_err());
    // device_add reads its other members itself.
    assert!(check("device_add", r#"{"driver": "virtio-net-pci", "netdev": "n0"}"#).is_ok());
    assert_eq!(
        check("device_add", r#"{"netdev": "n0"}"#).unwrap_err(),
        "device_add: driver: missing; expected a string"
    );
    // No arguments at all is `{}`.
    assert!(schema().check("query-status", None).is_ok());
    assert_eq!(schema().check("block-set-write-threshold", None).unwrap_err().path.to_string(), "node-name");
}

#[test]
fn deprecated_is_a_warning() {
    let args = r#"{"device": "d", "target": "/t", "sync": "full"}"#;
    assert_eq!(check("drive-backup", args), Ok(vec!["drive-backup: deprecated".to_string()]));
    let args = r#"{"actions": [{"type": "drive-backup", "data": {"device": "d", "target": "/t", "sync": "full"}}]}"#;
    assert_eq!(check("transaction", args), Ok(vec!["transaction: actions[0].type: deprecated".to_string()]));
    let args = r#"{"driver": "file", "filename": "/x", "x-check-cache-dropped": true}"#;
    assert_eq!(check("blockdev-add", args), Ok(vec!["blockdev-add: x-check-cache-dropped: unstable".to_string()]));
}

#[test]
fn fixed_storage_and_its_limits() {
    let s: FixedSchema<&[u8], 1100, 5000> = Schema::read(reply(), heapless::Vec::new(), heapless::Vec::new()).unwrap();
    assert!(s.has("blockdev-add/arg-type/+file/aio/^io_uring"));
    let small: Result<FixedSchema<&[u8], 1000, 5000>, _> =
        Schema::read(reply(), heapless::Vec::new(), heapless::Vec::new());
    assert_eq!(small.unwrap_err(), Error::Full { table: "entries", limit: 1000 });
    let small: Result<FixedSchema<&[u8], 1100, 100>, _> =
        Schema::read(reply(), heapless::Vec::new(), heapless::Vec::new());
    assert_eq!(small.unwrap_err(), Error::Full { table: "items", limit: 100 });
}

#[test]
fn fixed_storage_reads_and_checks_without_allocating() {
    let text = reply();
    let args = br#"{"driver": "qcow2", "file": {"driver": "file", "filename": "/x", "aio": "native"}}"#;
    let bad = br#"{"driver": "qcow2", "file": {"driver": "nul-co"}}"#;
    let before = ALLOCATIONS.with(|n| n.get());
    let s: FixedSchema<&[u8], 1100, 4500> = Schema::read(text, heapless::Vec::new(), heapless::Vec::new()).unwrap();
    assert!(s.check("blockdev-add", Some(Value::parse(args).unwrap())).is_ok());
    let err = s.check("blockdev-add", Some(Value::parse(bad).unwrap())).unwrap_err();
    assert!(s.has("blockdev-add/arg-type/+file/aio/^io_uring"));
    assert_eq!(ALLOCATIONS.with(|n| n.get()), before);
    assert_eq!(err.path.to_string(), "file.driver");
}

#[test]
fn malformed_schemas_are_errors() {
    let read = |text: &str| HeapSchema::read_heap(text.as_bytes().to_vec()).map(|_| ()).map_err(|e| e.to_string());
    assert!(read("[]").is_ok());
    assert!(read(r#"{"return": []}"#).is_ok());
    assert!(read(r#"{"return": [}"#).unwrap_err().contains("invalid JSON"));
    assert!(read("{}").unwrap_err().contains("expected an array of SchemaInfo"));
    assert!(read(r#"[{"name": "x"}]"#).unwrap_err().contains("name and meta-type"));
    assert!(
        read(r#"[{"name": "c", "meta-type": "command", "arg-type": "0", "ret-type": "0"}]"#)
            .unwrap_err()
            .contains("no entry has this type name")
    );
    assert!(
        read(r#"[{"name": "0", "meta-type": "enum", "values": []}, {"name": "0", "meta-type": "enum", "values": []}]"#)
            .unwrap_err()
            .contains("a second entry")
    );
    assert!(
        read(r#"[{"name": "0", "meta-type": "object", "members": [], "tag": "t", "variants": []}]"#)
            .unwrap_err()
            .contains("a tag that names a member")
    );
    // A meta-type from a newer QEMU is kept, and anything goes for it.
    assert!(read(r#"[{"name": "0", "meta-type": "hologram"}]"#).is_ok());
}

fn commands_with_arguments(s: SchemaRef<'_>) -> Vec<String> {
    s.commands()
        .filter(|c| c.arguments().is_some_and(|a| a.members().next().is_some()))
        .map(|c| c.name().to_string())
        .collect()
}

#[test]
fn minimal_arguments_of_every_command_pass() {
    let s = schema().view();
    let names = commands_with_arguments(s);
    assert!(names.len() > 100);
    for name in names {
        let mut pick = |_| 0;
        let args = Gen::new(&mut pick).arguments(s, &name).unwrap();
        let text = args.to_string();
        let r = s.check(&name, Some(Value::parse(text.as_bytes()).unwrap()));
        assert!(r.is_ok(), "{name} {text}: {}", r.unwrap_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arguments that follow the schema pass; any one mutation fails, naming its path.
    #[test]
    fn generated_pass_and_mutated_fail(command in 0usize..1000, seed in any::<u64>(), which in any::<usize>()) {
        let s = schema().view();
        let names = commands_with_arguments(s);
        let name = &names[command % names.len()];
        let mut pick = rng(seed);
        let mut generator = Gen::new(&mut pick);
        let args = generator.arguments(s, name);
        prop_assume!(args.is_some());
        let args = args.unwrap();
        let text = args.to_string();
        let r = s.check(name, Some(Value::parse(text.as_bytes()).unwrap()));
        prop_assert!(r.is_ok(), "{} {}: {}", name, text, r.unwrap_err());

        let sites: Vec<_> = generator.sites.iter()
            .filter(|site| !(site.kind == Kind::Unknown && site.path.is_empty() && schema::OPEN_COMMANDS.contains(&name.as_str())))
            .collect();
        prop_assume!(!sites.is_empty());
        let site = sites[which % sites.len()];
        let bad = mutate(&args, site).to_string();
        let err = s.check(name, Some(Value::parse(bad.as_bytes()).unwrap()));
        prop_assert!(err.is_err(), "{} {}: {:?} passed", name, bad, site);
        let err = err.unwrap_err();
        prop_assert_eq!(err.path.to_string(), expected_path(site), "{} {}: {}", name, bad, err);
        let kind_matches = match site.kind {
            Kind::Missing => matches!(err.mismatch, Mismatch::MissingMember { .. }),
            Kind::Unknown => matches!(err.mismatch, Mismatch::UnknownMember),
            Kind::WrongType | Kind::BadEnum => matches!(err.mismatch, Mismatch::WrongValue { .. }),
        };
        prop_assert!(kind_matches, "{} {}: {}", name, bad, err);
    }

    /// Any bytes: the reader returns a schema or an error, never panics.
    #[test]
    fn arbitrary_text_never_panics(text in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(s) = HeapSchema::read_heap(&text[..]) {
            let _ = s.has("a/arg-type/b");
        }
    }
}
