//! The blocking minimega client over a real UNIX socket, against a fake
//! daemon (`fake_minimega/`): minimega is not packaged in any registry these
//! machines reach, so no real daemon can run here. The fake is first proven
//! faithful to the real daemon's captures (`fixtures/minimega/`), byte for
//! byte; then the client is tested against it.

mod fake_minimega;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use fake_minimega::gojson::{self, Decoded, GoValue};
use fake_minimega::{Fake, World, lexer};
use proptest::prelude::*;
use vmwire_std::minimega::{CommandLine, Error, Minimega, Options, quote};

#[path = "../../proto/tests/common/minimega_captures.rs"]
mod captures;

use captures::{ALL, Capture, capture};

/// The captures whose connections interleaved with another's: replayed step by step.
const INTERLEAVED: [&str; 4] =
    ["pybind_namespace.c1", "pybind_namespace.c2", "raw_namespace_switch_global.A", "raw_namespace_switch_global.B"];

/// Every single-connection capture.
fn single() -> impl Iterator<Item = &'static Capture> {
    ALL.iter().filter(|c| !INTERLEAVED.contains(&c.0))
}

/// The command files the captured `read` commands read (their content shows
/// in the replies and in the daemon's history).
fn files(world: &mut World) {
    for (path, text) in [
        ("/tmp/mm-fixt/cmds.mm", "version\nhost name\necho hello world\necho <b>&\n"),
        ("/tmp/mm-fixt/cmds_err.mm", "echo first\nvm kill nosuchvm\necho third\n"),
        ("/tmp/mm-fixt/cmds_raw.mm", "echo one\nvm kill nosuchvm\necho two\n.columns name,state vm info\nnamespace\n"),
        ("/tmp/mm-fixt/cmds_raw2.mm", "echo r1\necho r2\necho r3\n"),
        ("/tmp/mm-fixt/cmds_raw_bad.mm", "echo before\nnot a command\necho never\n"),
    ] {
        world.files.insert(path.into(), text.into());
    }
}

fn frames(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

fn decode_frame(frame: &[u8]) -> GoValue {
    match gojson::decode(frame, true) {
        Decoded::Value(v, _) => v,
        other => panic!("{other:?}: {}", String::from_utf8_lossy(frame)),
    }
}

fn member<'v>(v: &'v GoValue, key: &str) -> Option<&'v GoValue> {
    match v {
        GoValue::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

/// A frame with each table's rows sorted: the daemon sends some tables in
/// Go's random map order (its `Rendered` text is sorted, and compared as it is).
fn canonical(frame: &[u8]) -> String {
    let mut v = decode_frame(frame);
    if let GoValue::Object(members) = &mut v {
        for (k, value) in members.iter_mut() {
            match (k.as_str(), value) {
                ("Resp", resps) => sort_tables(resps),
                // `.json true`: the rendering is the responses as JSON.
                ("Rendered", GoValue::String(text)) if text.starts_with("[{") => {
                    let Decoded::Value(mut resps, _) = gojson::decode(text.as_bytes(), true) else { continue };
                    sort_tables(&mut resps);
                    text.clear();
                    gojson::value(text, &resps);
                }
                _ => {}
            }
        }
    }
    let mut out = String::new();
    gojson::value(&mut out, &v);
    out + "\n"
}

fn sort_tables(resps: &mut GoValue) {
    let GoValue::Array(resps) = resps else { return };
    for r in resps {
        let GoValue::Object(fields) = r else { continue };
        for (k, t) in fields.iter_mut() {
            if let (true, GoValue::Array(rows)) = (k == "Tabular", t) {
                rows.sort_by_key(|row| format!("{row:?}"));
            }
        }
    }
}

/// Sets the fake's load figures to those the capture shows.
fn host_stats_from(world: &mut World, s2c: &[u8]) {
    for frame in frames(s2c) {
        let Some(GoValue::Array(resps)) = member(&decode_frame(frame), "Resp").cloned() else { continue };
        for r in &resps {
            let Some(data) = member(r, "Data") else { continue };
            let (Some(GoValue::Number(used)), Some(GoValue::String(load)), Some(GoValue::Number(uptime))) =
                (member(data, "MemUsed"), member(data, "Load"), member(data, "Uptime"))
            else {
                continue;
            };
            world.host.mem_used = used.parse().unwrap();
            world.host.load = load.clone();
            world.host.uptime_ns = uptime.parse().unwrap();
            return;
        }
    }
}

/// The daemon's history before the capture (it lists every command the
/// daemon ran since it started): all of the captured `history` reply but the
/// commands of the capture itself, which the fake records on its own.
fn history_from(world: &mut World, s2c: &[u8], own: usize) {
    for frame in frames(s2c) {
        let Some(GoValue::Array(resps)) = member(&decode_frame(frame), "Resp").cloned() else { continue };
        let Some(GoValue::String(text)) = resps.first().and_then(|r| member(r, "Response")) else { continue };
        if text.starts_with("version\nversion\n") {
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            world.history = lines[..lines.len() - own].to_vec();
        }
    }
}

/// What the fake sends back for `c2s` written `piece` bytes at a time, the
/// write side then closed, read to the end.
fn fake_reply(fake: &Fake, c2s: &[u8], piece: usize) -> Vec<u8> {
    let mut s = UnixStream::connect(fake.path()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for chunk in c2s.chunks(piece) {
        s.write_all(chunk).unwrap();
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

fn assert_same_frames(name: &str, got: &[u8], want: &[u8]) {
    let got: Vec<String> = frames(got).into_iter().map(canonical).collect();
    let want: Vec<String> = frames(want).into_iter().map(canonical).collect();
    assert_eq!(got, want, "{name}");
}

/// The requests in `c2s`, as byte ranges (split as Go's decoder reads them).
fn split_requests(c2s: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = c2s;
    while let Decoded::Value(_, n) = gojson::decode(rest, true) {
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// Sends one request and reads its reply: frames up to `More: false`.
fn exchange(conn: &mut BufReader<UnixStream>, request: &[u8]) -> Vec<u8> {
    conn.get_mut().write_all(request).unwrap();
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        assert!(conn.read_until(b'\n', &mut line).unwrap() > 0, "EOF");
        out.extend_from_slice(&line);
        if member(&decode_frame(&line), "More") == Some(&GoValue::Bool(false)) {
            return out;
        }
    }
}

#[test]
fn the_fakes_encoder_writes_every_captured_frame_byte_for_byte() {
    let mut n = 0;
    for (_, _, s2c) in ALL {
        for frame in frames(s2c) {
            let mut out = String::new();
            gojson::value(&mut out, &decode_frame(frame));
            out.push('\n');
            assert_eq!(out.as_bytes(), frame);
            n += 1;
        }
    }
    assert!(n > 100, "{n}");
}

#[test]
fn fake_is_faithful_to_every_capture() {
    // Whole, and one byte per write (requests split anywhere).
    for ((name, c2s, s2c), piece) in single().flat_map(|c| [(c, usize::MAX), (c, 1)]) {
        let fake = Fake::with(|world| {
            files(world);
            host_stats_from(world, s2c);
            if matches!(*name, "raw_namespace_prefix" | "raw_multi_read" | "raw_output_modes") {
                world.namespaces.extend([("pyns".into(), String::new()), ("pyns2".into(), String::new())]);
            }
            if *name == "goclient_e_read.c1" {
                world.namespaces.push(("gons".into(), String::new()));
            }
            if *name == "raw_various" {
                history_from(world, s2c, 4);
            }
        });
        assert_same_frames(name, &fake_reply(&fake, c2s, piece), s2c);
    }
}

#[test]
fn fake_is_faithful_to_interleaved_captures() {
    // Each step: which connection sends its next request.
    for (captures, steps, setup) in [
        ([capture(INTERLEAVED[0]), capture(INTERLEAVED[1])], &[0, 0, 0, 1, 0][..], false),
        ([capture(INTERLEAVED[2]), capture(INTERLEAVED[3])], &[0, 1, 0, 1, 0][..], true),
    ] {
        let fake = Fake::with(|world| {
            if setup {
                world.namespaces.extend([("pyns".into(), String::new()), ("pyns2".into(), String::new())]);
            }
        });
        let mut conns: Vec<BufReader<UnixStream>> =
            captures.iter().map(|_| BufReader::new(UnixStream::connect(fake.path()).unwrap())).collect();
        let mut requests: Vec<Vec<&[u8]>> = captures.iter().map(|c| split_requests(c.1)).collect();
        requests.iter_mut().for_each(|r| r.reverse());
        let mut got = vec![Vec::new(); captures.len()];
        for &c in steps {
            let request = requests[c].pop().unwrap();
            got[c].extend(exchange(&mut conns[c], request));
        }
        for (c, (name, _, s2c)) in captures.iter().enumerate() {
            assert!(requests[c].is_empty());
            assert_same_frames(name, &got[c], s2c);
        }
    }
}

fn options() -> Options {
    Options { timeout: Some(Duration::from_secs(20)), ..Options::default() }
}

fn connect(fake: &Fake) -> Minimega {
    Minimega::connect_with(fake.path(), options()).unwrap()
}

#[test]
fn runs_commands_and_reads_responses() {
    let fake = Fake::start();
    let mut mm = connect(&fake);
    let version = mm.run("version").unwrap();
    assert_eq!(version.rendered(), format!("mmpeer: {}", fake_minimega::VERSION));
    assert_eq!(version.frames.len(), 1);
    let r = &version.frames[0].responses[0];
    assert_eq!((r.host.as_str(), r.response.as_str(), r.error.as_deref()), ("mmpeer", fake_minimega::VERSION, None));

    #[derive(serde::Deserialize)]
    struct Host {
        #[serde(rename = "MemTotal")]
        mem_total: u64,
    }
    let host = mm.run("host name").unwrap();
    let data: Host = host.frames[0].responses[0].decode_data().unwrap().unwrap();
    assert_eq!(data.mem_total, 24105);
    // The client sends compact requests, one per line.
    assert_eq!(fake.world().requests, ["{\"Command\":\"version\"}", "{\"Command\":\"host name\"}"]);
    // Blank and comment lines: no responses.
    assert!(mm.run("# nothing").unwrap().is_empty());
}

#[test]
fn errors_are_raised_after_the_whole_stream_is_read() {
    let fake = Fake::with(files);
    let mut mm = connect(&fake);
    match mm.run("read /tmp/mm-fixt/cmds_err.mm") {
        Err(Error::Command(e)) => {
            assert_eq!(e.to_string(), "Error (mmpeer): vm not found: nosuchvm");
            let texts: Vec<&str> = e.responses.iter().map(|r| r.response.as_str()).collect();
            assert_eq!(texts, ["first", "", "third"]);
        }
        other => panic!("{other:?}"),
    }
    // The next command reads its own reply, not the rest of the last one
    // (what the PyPI bindings do).
    assert_eq!(mm.run("echo fresh").unwrap().rendered(), "mmpeer: fresh");

    mm.set_raise_errors(false);
    let r = mm.run("vm kill nosuchvm").unwrap();
    assert!(!r.is_ok());
    assert_eq!(r.errors().next().unwrap().error.as_deref(), Some("vm not found: nosuchvm"));
    // A line the daemon's lexer refuses is an error of the command, too.
    let r = mm.run("echo \"oops").unwrap();
    assert_eq!(r.errors().next().unwrap().error.as_deref(), Some("missing terminal \""));
}

#[test]
fn streams_frame_by_frame_with_status_messages_in_the_middle() {
    let fake = Fake::with(|w| {
        files(w);
        w.status_mid_stream = Some("launching 1/3".into());
    });
    let mut mm = Minimega::connect_with(fake.path(), Options { raise_errors: false, ..options() }).unwrap();
    let mut stream = mm.stream("read /tmp/mm-fixt/cmds_raw.mm").unwrap();
    let mut seen = Vec::new();
    for frame in stream.by_ref() {
        let frame = frame.unwrap();
        seen.push((frame.more, frame.responses[0].response.clone(), frame.responses[0].error.clone()));
    }
    let summary = stream.summary().unwrap();
    assert_eq!((summary.frames, summary.errors), (5, 1));
    assert_eq!(seen[0], (true, "one".into(), None));
    assert_eq!(seen[1], (true, String::new(), Some("vm not found: nosuchvm".into())));
    assert!(!seen[4].0);
    assert_eq!(mm.take_status(), ["launching 1/3"]);

    // Raising errors, a stream yields the failed frame as an error and goes on.
    mm.set_raise_errors(true);
    let items: Vec<Result<_, _>> = mm.stream("read /tmp/mm-fixt/cmds_err.mm").unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(matches!(&items[1], Err(Error::Command(_))));
    assert_eq!(items[2].as_ref().unwrap().responses[0].response, "third");

    // A stream dropped half way: the next command reads the rest first.
    let mut stream = mm.stream("read /tmp/mm-fixt/cmds_raw2.mm").unwrap();
    assert_eq!(stream.next().unwrap().unwrap().responses[0].response, "r1");
    drop(stream);
    assert_eq!(mm.run("echo after-read").unwrap().rendered(), "mmpeer: after-read");
}

#[test]
fn status_messages_between_commands() {
    let fake = Fake::start();
    let mut mm = connect(&fake);
    assert_eq!(mm.next_status(Some(Duration::ZERO)).unwrap(), None);
    mm.run("version").unwrap();
    // The daemon sends status to the connection that last ran a command.
    assert!(fake.status("3 VMs launched"));
    assert_eq!(mm.next_status(None).unwrap().as_deref(), Some("3 VMs launched"));
    assert!(fake.status("again"));
    // A status message that arrives before a reply is kept, not taken for it.
    assert_eq!(mm.run("echo x").unwrap().rendered(), "mmpeer: x");
    assert_eq!(mm.take_status(), ["again"]);
}

#[test]
fn suggestions() {
    let fake = Fake::start();
    let mut mm = connect(&fake);
    assert_eq!(mm.suggest("vm i").unwrap(), ["vm info "]);
    assert_eq!(mm.suggest("zzz").unwrap(), Vec::<String>::new());
    assert_eq!(mm.suggest("vm ").unwrap().len(), 17);
    assert_eq!(fake.world().requests[0], "{\"Suggest\":\"vm i\"}");
}

#[test]
fn a_namespace_handle_prefixes_every_command_and_never_switches() {
    let fake = Fake::start();
    let mut mm = connect(&fake);
    {
        let mut ns = mm.with_namespace("exp1").unwrap();
        assert!(ns.run("vm info").unwrap().is_ok());
        assert_eq!(ns.run("echo hi").unwrap().rendered(), "mmpeer: hi");
    }
    assert_eq!(fake.world().requests[0], "{\"Command\":\"namespace \\\"exp1\\\" vm info\"}");
    assert_eq!(fake.world().active, "minimega");
    let table = mm.run("namespace").unwrap().table().sorted();
    let names: Vec<&str> = table.records().map(|r| r.get("namespace").unwrap()).collect();
    assert_eq!(names, ["exp1", "minimega"]);
    assert_eq!(table.records().nth(1).unwrap().get("active"), Some("true"));
    assert_eq!(table.header, ["host", "namespace", "vlans", "active"]);
    // Minimega's rule for names.
    assert!(matches!(mm.with_namespace("bad/name"), Err(Error::Protocol(_))));
    // A connection-wide namespace.
    let mut other =
        Minimega::connect_with(fake.path(), Options { namespace: Some("exp2".into()), ..options() }).unwrap();
    other.run("echo x").unwrap();
    assert!(fake.world().namespaces.iter().any(|(n, _)| n == "exp2"));
}

#[test]
fn command_lines_keep_every_argument_one_word() {
    let fake = Fake::start();
    let mut mm = connect(&fake);
    let words = ["a b", "\"q\"", "it's", "#no comment", "back\\slash", "tab\there", "", "é\u{2028}x"];
    let line = CommandLine::new("echo").args(words).finish().unwrap();
    let echoed = mm.run(&line).unwrap();
    assert_eq!(echoed.frames[0].responses[0].response, words.join(" "));
    // The builder refuses what would change every client's state.
    assert!(CommandLine::new("namespace").arg("x").finish().is_err());
    assert!(CommandLine::new(".csv").arg("true").finish().is_err());
}

#[test]
fn pipes_carry_lines_both_ways() {
    let fake = Fake::start();
    let mut mm = connect(&fake);
    let mut pipe = mm.pipe("minimega//p1").unwrap();
    // Make sure the daemon has the reader before writing to the pipe.
    pipe.write_line("hello").unwrap();
    assert_eq!(pipe.read(None).unwrap().as_deref(), Some("hello\n"));
    mm.run("pipe p1 from-a-command").unwrap();
    assert_eq!(pipe.read(None).unwrap().as_deref(), Some("from-a-command"));
    assert_eq!(pipe.read(Some(Duration::ZERO)).unwrap(), None);
    let listing = mm.run("pipe").unwrap().table();
    assert_eq!(listing.records().next().unwrap().get("previous"), Some("from-a-command"));
    // Within a namespace the pipe is NAMESPACE//NAME.
    let ns = mm.with_namespace("minimega").unwrap();
    let mut same = ns.pipe("p1").unwrap();
    same.write("x").unwrap();
    assert_eq!(same.name(), "minimega//p1");
    assert_eq!(same.read(None).unwrap().as_deref(), Some("x"));
    assert_eq!(pipe.read(None).unwrap().as_deref(), Some("x"));
}

#[test]
fn the_daemon_closing_without_a_reply_is_reported_clearly() {
    // What the daemon does with input it cannot decode: it closes the connection.
    let fake = Fake::start();
    for bad in [&b"{\"Command\": version}"[..], b"\"version\"", b"{\"Command\":5}", b"[]"] {
        let mut raw = UnixStream::connect(fake.path()).unwrap();
        raw.write_all(bad).unwrap();
        let mut out = Vec::new();
        raw.read_to_end(&mut out).unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(bad));
    }
    // And with `quit`.
    let mut mm = connect(&fake);
    let e = mm.run("quit").unwrap_err();
    assert!(matches!(&e, Error::Closed { request: Some(r), frames: 0 } if r == "quit"), "{e:?}");
    assert_eq!(
        e.to_string(),
        "minimega closed the connection without replying to `quit` (it does so after `quit`, and on a request it cannot decode)"
    );
    assert!(matches!(mm.run("version"), Err(Error::Closed { .. })));
    assert!(fake.stopped());
    assert!(matches!(Minimega::connect(fake.path()), Err(Error::Connect { .. })));
}

#[test]
fn a_timeout_closes_the_connection() {
    let fake = Fake::start();
    let mut mm =
        Minimega::connect_with(fake.path(), Options { timeout: Some(Duration::from_millis(50)), ..options() }).unwrap();
    {
        // The daemon cannot answer while its state is locked.
        let _busy = fake.world();
        assert!(matches!(mm.run("version"), Err(Error::Timeout)));
    }
    // Without ids, the late reply could be taken for the next command's: the
    // connection is gone.
    assert!(matches!(mm.run("version"), Err(Error::Closed { .. })));
}

#[test]
fn an_oversized_frame_fails_the_command_at_once_and_closes_the_connection() {
    let fake = Fake::start();
    let mut config = vmwire_std::minimega::Options::default().config;
    config.limits.max_message = 4096;
    // No timeout: the command must fail on its own, not by timing out. The
    // thread and its channel only guard the test against a hang.
    let path = fake.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut mm = Minimega::connect_with(&path, Options { timeout: None, config, ..options() }).unwrap();
        let first = mm.run("shell seq 1 100000").map(|r| r.len());
        let after = mm.run("version").map(|r| r.len());
        tx.send((first, after)).unwrap();
    });
    let (first, after) = rx.recv_timeout(Duration::from_secs(120)).expect("the command hangs");
    let e = first.unwrap_err();
    assert!(matches!(e, Error::Protocol(vmwire_proto::minimega::Error::FrameTooLarge { limit: 4096 })), "{e:?}");
    assert!(e.to_string().contains("larger than the limit of 4096 bytes"), "{e}");
    // The connection was closed cleanly: later commands say so at once.
    assert!(matches!(after, Err(Error::Closed { .. })), "{after:?}");
    // The daemon is fine, and a frame under the limit is read as usual.
    let mut mm = Minimega::connect_with(fake.path(), Options { config, ..options() }).unwrap();
    assert_eq!(mm.run("shell seq 3").unwrap().iter().next().unwrap().response, "1\n2\n3\n");
}

#[test]
fn connecting_to_a_missing_socket_says_where() {
    let e = Minimega::connect("/nonexistent/minimega").unwrap_err();
    assert!(e.to_string().starts_with("minimega: cannot connect to /nonexistent/minimega: "), "{e}");
}

proptest! {
    /// The guard over a hand-written line (`check_line`, what `vmwire
    /// minimega` and its shell apply) reads a line as the fake's lexer,
    /// written independently from minimega's rules, splits it: it refuses
    /// exactly what the builder refuses for the same words.
    #[test]
    fn check_line_reads_lines_as_minimega_does(
        line in proptest::collection::vec(
            "namespace|NameSpace|exp2|\\.json|\\.annotate|true|false|\\.alias|v=vm|vm|info|echo|#|\"|'|\\\\|\\\\n|\\\\x| |\t|\u{a0}|namespaceeeeeeeeeeeeeeee",
            0..10,
        ).prop_map(|parts| parts.concat())
    ) {
        let expected = match lexer::lex(&line) {
            Err(_) => Ok(()),
            Ok(words) => CommandLine::new("").args(&words).finish().map(drop),
        };
        prop_assert_eq!(vmwire_proto::minimega::check_line(&line), expected, "{:?}", line);
    }

    /// The builder's quoting, read back by a lexer written from minimega's
    /// documented rules, gives the same word for any string.
    #[test]
    fn a_quoted_argument_lexes_back_to_itself(word in "\\PC*|[\"'\\\\# \t\n\r\u{b}\u{c}\u{85}\u{a0}\u{2028}a-z]*|.*") {
        let line = quote(&word);
        prop_assert_eq!(lexer::lex(&line).unwrap(), vec![word.clone()]);
    }

    #[test]
    fn a_built_line_lexes_back_to_its_words(words in proptest::collection::vec(".*", 0..6)) {
        let line = CommandLine::new("echo").args(&words).finish().unwrap();
        let mut expected = vec!["echo".to_string()];
        expected.extend(words);
        prop_assert_eq!(lexer::lex(&line).unwrap(), expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// End to end: arguments through the client, the JSON, the daemon's
    /// decoder and lexer, and back.
    #[test]
    fn any_arguments_survive_the_round_trip(words in proptest::collection::vec("\\PC{0,12}|[\"'\\\\# \t]{0,4}", 1..5)) {
        let fake = Fake::start();
        let mut mm = connect(&fake);
        let line = CommandLine::new("echo").args(&words).finish().unwrap();
        let reply = mm.run(&line).unwrap();
        prop_assert_eq!(&reply.frames[0].responses[0].response, &words.join(" "));
    }
}
