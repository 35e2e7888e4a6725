//! The minimega machine on every capture of a real minimega 3.1.0 daemon in
//! `fixtures/minimega/`: the captured client's requests are sent through the
//! machine (in order, each once the previous reply has ended, as the machine
//! requires) and the daemon's bytes are fed back in.

use proptest::prelude::*;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Bounded, Fixed, Heap};
use vmwire_proto::json::{Framer, JsonStr, Limits, Value};
use vmwire_proto::minimega::{Client, Config, Error, Event, Frame, Namespace, State, Table};

#[path = "common/minimega_captures.rs"]
mod captures;

use captures::{ALL, capture};

/// What the captured client asked, as the daemon read it.
#[derive(Debug, Clone, PartialEq)]
enum Request {
    Command(String),
    Suggest(String),
    /// Neither or both of Command and Suggest: the daemon answers with an error frame.
    Invalid,
    PlumbPipe(String),
    PipeWrite(String),
}

/// The requests in a `.c2s`, up to the first one the daemon closes the
/// connection on (not JSON, not an object, a member of the wrong type).
fn requests(c2s: &[u8]) -> Vec<Request> {
    let mut framer = Framer::new(Bounded::new(1 << 16), Limits::default());
    // The daemon reads invalid UTF-8 in a string as U+FFFD.
    framer.receive(String::from_utf8_lossy(c2s).as_bytes());
    let mut out = Vec::new();
    let mut pipe = false;
    'messages: while let Some(msg) = framer.next() {
        let Ok(msg) = msg else { break };
        if pipe {
            match msg.value().as_str() {
                Some(s) => out.push(Request::PipeWrite(s.to_string())),
                None => break,
            }
            continue;
        }
        if msg.value().is_null() {
            out.push(Request::Invalid);
            continue;
        }
        let Some(obj) = msg.object() else { break };
        let (mut command, mut suggest, mut plumb) = (String::new(), String::new(), String::new());
        for (key, value) in obj.members() {
            let key = key.to_string();
            let field = match key.to_ascii_lowercase().as_str() {
                "command" => &mut command,
                "suggest" => &mut suggest,
                "plumbpipe" => &mut plumb,
                _ => continue,
            };
            match value.as_str() {
                Some(s) => *field = s.to_string(),
                None if value.is_null() => {}
                None => break 'messages,
            }
        }
        out.push(if !plumb.is_empty() {
            pipe = true;
            Request::PlumbPipe(plumb)
        } else if command.is_empty() == suggest.is_empty() {
            Request::Invalid
        } else if suggest.is_empty() {
            Request::Command(command)
        } else {
            Request::Suggest(suggest)
        });
    }
    out
}

fn cells(s: vmwire_proto::minimega::Strings<'_>) -> String {
    s.map(|c| c.to_string()).collect::<Vec<_>>().join(",")
}

fn describe_frame(f: &Frame<'_>) -> String {
    let mut out = String::new();
    for r in f.responses() {
        out.push_str(&format!(" [{}", r.host()));
        if let Some(e) = r.error() {
            out.push_str(&format!(" error={e}"));
        }
        if !r.response().raw().is_empty() {
            out.push_str(&format!(" {:?}", r.response().to_string()));
        }
        if let Some(h) = r.header() {
            out.push_str(&format!(" header={}", h.count()));
            let rows: Vec<String> = r.rows().map(|row| cells(row.cells())).collect();
            out.push_str(&format!(" rows={}", rows.len()));
        }
        if let Some(d) = r.data() {
            let text = d.to_string();
            out.push_str(&format!(" data={}", if text.len() > 12 { &text[..12] } else { &text }));
        }
        out.push(']');
    }
    format!("frame{}{}", if f.more() { "+" } else { "" }, out)
}

fn describe(e: Event<'_>) -> String {
    match e {
        Event::Frame(f) => describe_frame(&f),
        Event::End(s) => format!("end frames={} responses={} errors={}", s.frames, s.responses, s.errors),
        Event::Status(text) => format!("status {text}"),
        Event::Suggestions(s) => format!("suggest [{}]", cells(s)),
        Event::Pipe(s) => format!("pipe {s:?}"),
        Event::Unsolicited(f) => format!("unsolicited {}", describe_frame(&f)),
        Event::Malformed(e) => format!("malformed {e}"),
        Event::Failed(s) => format!("failed after {} frames", s.frames),
        Event::Closed => "closed".into(),
    }
}

/// Replays a capture: requests through the machine, the daemon's bytes fed
/// in pieces of `sizes` (cycled), then end of stream.
fn replay(c2s: &[u8], s2c: &[u8], sizes: &[usize]) -> Vec<String> {
    let mut log = Vec::new();
    replay_with(c2s, s2c, sizes, |e| log.push(describe(e)));
    log
}

/// [`replay`], handing every event to `on_event`.
fn replay_with(c2s: &[u8], s2c: &[u8], sizes: &[usize], mut on_event: impl FnMut(Event<'_>)) {
    let mut mm = Client::<Heap>::new(Config::default());
    let mut pending: Vec<Request> = requests(c2s);
    pending.reverse();
    // Sends the next request as soon as the machine takes it.
    let issue = |mm: &mut Client<Heap>, pending: &mut Vec<Request>| {
        while let Some(r) = pending.last() {
            let sent = match (mm.state(), r) {
                (State::Pipe, Request::PipeWrite(_)) => Ok(()),
                (State::Idle, Request::PipeWrite(_))
                | (State::Pipe | State::Command | State::Suggest | State::Closed, _) => {
                    return;
                }
                (State::Idle, Request::Suggest(s)) => mm.suggest(s),
                (State::Idle, Request::PlumbPipe(p)) => mm.plumb_pipe(p),
                (State::Idle, Request::Command(c)) => mm.command(c),
                (State::Idle, Request::Invalid) => mm.command("<invalid request>"),
            };
            match sent {
                Ok(()) => {}
                // The last frame is in but its End is still to be reported.
                Err(Error::Busy { .. }) => return,
                Err(e) => panic!("{e}"),
            }
            if let Some(Request::PipeWrite(s)) = pending.last() {
                mm.pipe_write(s).expect("pipe write");
            }
            let n = mm.transmit().len();
            mm.transmitted(n);
            pending.pop();
        }
    };
    issue(&mut mm, &mut pending);
    let mut fed = 0;
    let mut k = 0;
    while fed < s2c.len() {
        let want = sizes[k % sizes.len()].max(1).min(s2c.len() - fed);
        k += 1;
        let mut taken = 0;
        while taken < want {
            taken += mm.receive(&s2c[fed + taken..fed + want]).expect("receive");
            while let Some(e) = mm.poll().expect("poll") {
                on_event(e);
                issue(&mut mm, &mut pending);
            }
        }
        fed += want;
    }
    mm.recv_eof();
    while let Some(e) = mm.poll().expect("poll") {
        on_event(e);
    }
    assert!(mm.poll().unwrap().is_none());
}

fn replay_named(name: &str) -> Vec<String> {
    let (_, c2s, s2c) = capture(name);
    replay(c2s, s2c, &[usize::MAX])
}

const VERSION: &str = "frame [mmpeer \"minimega 3.1.0 04636ffde53212479924deaaed3819065b144976 2026-11-21\"]";
const ONE_FRAME: &str = "end frames=1 responses=1 errors=0";

#[test]
fn a_reply_is_one_frame_with_or_without_a_newline_in_the_request() {
    for name in ["raw_no_newline", "raw_newline_terminated", "goclient_e_version.c1", "raw_split_request"] {
        let log = replay_named(name);
        assert_eq!(log.len(), 3, "{name}: {log:#?}");
        assert_eq!(log[1], ONE_FRAME);
        assert_eq!(log[2], "closed");
    }
    assert_eq!(replay_named("raw_no_newline")[0], VERSION);
}

#[test]
fn errors_mid_stream_are_counted_and_the_stream_is_read_to_its_end() {
    // The PyPI bindings stop at the error frame and then read "third" as the
    // reply to `echo fresh`.
    assert_eq!(
        replay_named("pybind_stream_error_desync.c1"),
        [
            "frame+ [mmpeer \"first\"]",
            "frame+ [mmpeer error=vm not found: nosuchvm]",
            "frame [mmpeer \"third\"]",
            "end frames=3 responses=3 errors=1",
            "frame [mmpeer \"fresh\"]",
            ONE_FRAME,
            "closed"
        ]
    );
    assert_eq!(
        replay_named("raw_multi_read"),
        [
            "frame+ [mmpeer \"one\"]",
            "frame+ [mmpeer error=vm not found: nosuchvm]",
            "frame+ [mmpeer \"two\"]",
            "frame+ [mmpeer header=2 rows=0 data=[]]",
            "frame [mmpeer header=3 rows=3]",
            "end frames=5 responses=5 errors=1",
            "frame [mmpeer \"next command on same connection\"]",
            ONE_FRAME,
            "closed"
        ]
    );
    // `read` stops at a line that is not a command: the error frame is the last.
    assert_eq!(
        replay_named("raw_multi_read_stop_on_invalid"),
        [
            "frame+ [mmpeer \"before\"]",
            "frame [mmpeer error=cmds_raw_bad.mm:2 invalid command: `not a command`]",
            "end frames=2 responses=2 errors=1",
            "closed"
        ]
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let log = replay_named("raw_pipelined_while_streaming");
    assert_eq!(
        log,
        [
            "frame+ [mmpeer \"r1\"]",
            "frame+ [mmpeer \"r2\"]",
            "frame [mmpeer \"r3\"]",
            "end frames=3 responses=3 errors=0",
            "frame [mmpeer \"after-read\"]",
            ONE_FRAME,
            "closed"
        ]
    );
    let log = replay_named("raw_pipelined_one_write");
    assert_eq!(log[0], VERSION);
    assert_eq!(log[2], "frame [mmpeer \"mmpeer\" data={\"Name\":\"mmp]");
    assert_eq!(log[4], "frame [mmpeer \"third\"]");
}

#[test]
fn blank_and_comment_lines_get_a_null_resp() {
    for name in ["raw_whitespace_command", "pybind_null_resp.c1", "goclient_e_comment.c1"] {
        for line in replay_named(name) {
            assert!(
                ["frame", "end frames=1 responses=0 errors=0", "closed"].contains(&line.as_str()),
                "{name}: {line}"
            );
        }
    }
}

#[test]
fn command_errors_never_close_the_connection() {
    assert_eq!(
        replay_named("raw_errors"),
        [
            "frame [mmpeer error=invalid command: `bogus`]",
            "end frames=1 responses=1 errors=1",
            "frame [mmpeer error=vm not found: nosuchvm]",
            "end frames=1 responses=1 errors=1",
            "frame [mmpeer error=invalid name; must only include letters, numbers, hyphens and underscores]",
            "end frames=1 responses=1 errors=1",
            // `mesh send all` with no peers: an empty Resp.
            "frame",
            "end frames=1 responses=0 errors=0",
            "frame [mmpeer error=open /nonexistent/file: no such file or directory]",
            "end frames=1 responses=1 errors=1",
            "frame [mmpeer \"ok after errors\"]",
            ONE_FRAME,
            "closed"
        ]
    );
    let log = replay_named("pybind_error_noraise.c1");
    assert_eq!(log.iter().filter(|l| *l == "end frames=1 responses=1 errors=1").count(), 4, "{log:#?}");
    assert!(log.contains(&"frame [mmpeer error=missing terminal \"]".to_string()));
    assert!(
        log.contains(&"frame [mmpeer error=strconv.ParseUint: parsing \"notanumber\": invalid syntax]".to_string())
    );
}

#[test]
fn invalid_requests_get_an_error_frame() {
    for name in ["raw_empty_object", "raw_json_null", "raw_original_field", "raw_both_command_and_suggest"] {
        let log = replay_named(name);
        assert_eq!(log[0], "frame [mmpeer error=must specify either command or suggest]", "{name}");
        assert_eq!(log.last().unwrap(), "closed");
    }
    assert_eq!(replay_named("raw_json_null")[2], "frame [mmpeer \"still open\"]");
    // Unknown members are ignored; keys match whatever their case.
    assert_eq!(replay_named("raw_extra_fields")[0], "frame [mmpeer \"x\"]");
    let log = replay_named("raw_lowercase_field");
    assert_eq!((log[0].as_str(), log[2].as_str()), ("frame [mmpeer \"lower\"]", "frame [mmpeer \"upper\"]"));
}

#[test]
fn the_daemon_closes_without_a_reply_on_what_it_cannot_decode_and_on_quit() {
    for name in ["raw_bare_string", "raw_malformed_json", "raw_type_mismatch", "raw_quit"] {
        let (_, c2s, s2c) = capture(name);
        assert!(s2c.is_empty());
        // The machine can only send `quit` of these; the harness stands the
        // others in with a command, which the daemon never answers either.
        let mut mm = Client::<Heap>::new(Config::default());
        mm.command(if name == "raw_quit" { "quit" } else { std::str::from_utf8(c2s).unwrap() }).unwrap();
        mm.recv_eof();
        let log: Vec<String> = std::iter::from_fn(|| mm.poll().unwrap().map(describe)).collect();
        assert_eq!(log, ["failed after 0 frames", "closed"], "{name}");
    }
    // Garbage after a valid request: that one is answered, then the connection closes.
    assert_eq!(replay_named("raw_trailing_garbage"), ["frame [mmpeer \"a\"]", ONE_FRAME, "closed"]);
    // `quit N` answers, then closes N seconds later.
    assert_eq!(replay_named("raw_quit_delay")[0], "frame [mmpeer \"quitting after 1 seconds\"]");
}

#[test]
fn suggestions_are_whole_lines() {
    assert_eq!(
        replay_named("raw_suggest"),
        [
            "suggest [vm info ]",
            "suggest [namespace ]",
            "suggest []",
            "suggest [vm cdrom ,vm config ,vm flush ,vm hotplug ,vm info ,vm kill ,vm launch ,vm migrate ,vm net ,vm qmp ,vm save ,vm screenshot ,vm snapshot ,vm start ,vm stop ,vm tag ,vm top ]",
            "closed"
        ]
    );
    let log = replay_named("goclient_attach_tab.c1");
    assert_eq!(log[0], "suggest [vm info ]");
    assert_eq!(log[1], "frame [mmpeer header=44 rows=0 data=[]]");
}

#[test]
fn strings_decode_escapes_and_replacement_characters() {
    let (_, c2s, s2c) = capture("pybind_help_escaping.c1");
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command(
        &requests(c2s)
            .iter()
            .find_map(|r| match r {
                Request::Command(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap(),
    )
    .unwrap();
    mm.receive(s2c).unwrap();
    let Some(Event::Frame(f)) = mm.poll().unwrap() else { panic!() };
    let r = f.responses().next().unwrap();
    assert!(r.response().to_string().contains("\tnamespace <name> (command)\n"));
    assert!(f.rendered().to_string().starts_with("mmpeer: Usage:\n"));

    let log = replay_named("raw_utf8");
    assert_eq!(log[0], "frame [mmpeer \"héllo ☃\"]");
    // U+2028 is white space to minimega's lexer.
    assert_eq!(log[2], "frame [mmpeer \"é\"]");
    // Invalid UTF-8 in a request comes back as U+FFFD, one per bad byte.
    assert_eq!(log[4], "frame [mmpeer \"\u{FFFD}\u{FFFD} bad\"]");
    let log = replay_named("pybind_multi_read.c1");
    assert_eq!(log[3], "frame [mmpeer \"<b>&\"]");
}

#[test]
fn data_is_a_raw_span_of_any_kind() {
    let (_, c2s, s2c) = capture("raw_various");
    let mut data = Vec::new();
    replay_with(c2s, s2c, &[usize::MAX], |e| {
        if let Event::Frame(f) = e {
            data.extend(f.responses().map(|r| r.data().map(|d| (d.kind(), d.raw().len()))));
        }
    });
    use vmwire_proto::json::Kind;
    assert_eq!(data.len(), 9);
    assert_eq!(data[0].map(|d| d.0), Some(Kind::Object));
    assert_eq!(data[5], Some((Kind::Number, 1)));
    assert_eq!(data[1], None);
}

#[test]
fn host_data_decodes_into_a_type() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "PascalCase")]
    struct Host {
        name: String,
        #[serde(rename = "CPUs")]
        cpus: u32,
        mem_total: u64,
        limit: i64,
    }
    let (_, _, s2c) = capture("pybind_host.c1");
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command("host").unwrap();
    mm.receive(s2c).unwrap();
    let Some(Event::Frame(f)) = mm.poll().unwrap() else { panic!() };
    let r = f.responses().next().unwrap();
    let host: Host = r.data().unwrap().deserialize().unwrap();
    assert_eq!((host.name.as_str(), host.cpus, host.mem_total, host.limit), ("mmpeer", 2, 24105, -1));
    let row = r.rows().next().unwrap();
    assert!(row.get("load").unwrap() == "2.20 2.21 1.19");
    assert!(row.get("nope").is_none());
    assert_eq!(r.column("memtotal"), Some(3));
    let map: Vec<(String, String)> = row.fields().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(map[0], ("cpus".into(), "2".into()));
    assert_eq!(map.len(), 13);
}

/// Every frame whose `Rendered` is the daemon's default table rendering
/// (host column, headers, ` | ` separators, rows sorted) lists its rows in the
/// order that `Table::annotated(…).sorted()` puts them in, though `Tabular`
/// itself comes in Go's random map order.
#[test]
fn tables_sort_for_display_as_the_daemon_renders_them() {
    let mut checked = 0;
    for (name, c2s, s2c) in ALL {
        replay_with(c2s, s2c, &[usize::MAX], |e| {
            let Event::Frame(f) = e else { return };
            let rendered = f.rendered().to_string();
            if !rendered.starts_with("host ") {
                return;
            }
            let table = Table::annotated(f.responses()).sorted();
            let lines: Vec<Vec<String>> =
                rendered.lines().map(|l| l.split('|').map(|c| c.trim().to_string()).collect()).collect();
            assert_eq!(lines[0], table.header, "{name}");
            assert_eq!(&lines[1..], &table.rows[..], "{name}");
            checked += 1;
        });
    }
    assert!(checked >= 15, "{checked}");
}

#[test]
fn namespace_replies_and_prefixes() {
    let log = replay_named("raw_namespace_prefix");
    assert_eq!(log[0], "frame [mmpeer header=3 rows=3]");
    assert_eq!(log[4], "frame [mmpeer \"quoted-name\"]");
    assert_eq!(log[10], "frame [mmpeer error=invalid command: `namespace rawns bogus`]");
    // What the machine sends for a namespace, as minimega's -attach does.
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command_in(&Namespace::new("rawns").unwrap(), "echo quoted-name").unwrap();
    assert_eq!(mm.transmit(), b"{\"Command\":\"namespace \\\"rawns\\\" echo quoted-name\"}\n");
}

#[test]
fn output_modes_change_rendered_only() {
    let log = replay_named("raw_output_modes");
    for i in [0, 2, 4, 6] {
        assert_eq!(log[i], "frame [mmpeer header=3 rows=3]", "{i}");
    }
    // .columns namespace,active; .filter active=true.
    assert_eq!(log[8], "frame [mmpeer header=2 rows=3]");
    assert_eq!(log[10], "frame [mmpeer header=3 rows=1]");
    // .json true: Rendered is the Resp array as JSON, byte for byte.
    let (_, _, s2c) = capture("raw_output_modes");
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command(".json true namespace").unwrap();
    mm.receive(s2c).unwrap();
    let Some(Event::Frame(f)) = mm.poll().unwrap() else { panic!() };
    assert_eq!(f.rendered().to_string().as_bytes(), f.resp().unwrap().raw());
}

#[test]
fn a_pipe_carries_strings() {
    assert_eq!(replay_named("raw_plumb_pipe.reader"), ["pipe \"written-by-plumb-client\\n\"", "closed"]);
    let mut mm = Client::<Heap>::new(Config::default());
    mm.plumb_pipe("p").unwrap();
    mm.pipe_write("a \"line\"\n").unwrap();
    assert_eq!(mm.transmit(), b"{\"PlumbPipe\":\"p\"}\n\"a \\\"line\\\"\\n\"\n");
    assert_eq!(mm.command("version"), Err(Error::WrongState { state: State::Pipe, operation: "command" }));
}

#[test]
fn status_frames_are_events_not_replies() {
    // No capture holds one (the daemon sends them while long commands run);
    // their shape is `{"Resp":null,"Rendered":TEXT,"More":false,"Status":true}`.
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command("read big.mm").unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"{\"Resp\":null,\"Rendered\":\"before\",\"More\":false,\"Status\":true}\n");
    bytes.extend_from_slice(b"{\"Resp\":[{\"Host\":\"h\",\"Response\":\"1\",\"Header\":null,\"Tabular\":null,\"Error\":\"\",\"Data\":null}],\"Rendered\":\"h: 1\",\"More\":true,\"Status\":false}\n");
    bytes.extend_from_slice(b"{\"Resp\":null,\"Rendered\":\"launching 3/5\",\"More\":false,\"Status\":true}\n");
    bytes.extend_from_slice(b"{\"Resp\":[{\"Host\":\"h\",\"Response\":\"2\",\"Header\":null,\"Tabular\":null,\"Error\":\"\",\"Data\":null}],\"Rendered\":\"h: 2\",\"More\":false,\"Status\":false}\n");
    bytes.extend_from_slice(b"{\"Resp\":null,\"Rendered\":\"idle now\",\"More\":false,\"Status\":true}\n");
    let mut log = Vec::new();
    common::feed(&mut mm, &bytes, &[7], |e| log.push(describe(e)));
    assert_eq!(
        log,
        [
            "status before",
            "frame+ [h \"1\"]",
            "status launching 3/5",
            "frame [h \"2\"]",
            "end frames=2 responses=2 errors=0",
            "status idle now"
        ]
    );
}

#[test]
fn old_daemons_without_status_decode_the_same() {
    // Before 2.8 frames had no Status member (and before that, Responses no Data).
    let mut mm = Client::<Fixed<1024, 256, 4>>::new(Config::default());
    mm.command("version").unwrap();
    mm.receive(b"{\"Resp\":[{\"Host\":\"old\",\"Response\":\"minimega 2.7\",\"Header\":null,\"Tabular\":null,\"Error\":\"\"}],\"Rendered\":\"old: minimega 2.7\",\"More\":false}\n").unwrap();
    let Some(Event::Frame(f)) = mm.poll().unwrap() else { panic!() };
    assert_eq!(f.status(), None);
    assert!(f.responses().next().unwrap().response() == "minimega 2.7");
    assert!(matches!(mm.poll().unwrap(), Some(Event::End(s)) if s.frames == 1));
}

#[test]
fn keys_match_as_go_matches_them() {
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command("x").unwrap();
    // Lower case, escapes, the long s (folds to S) and the Kelvin sign; the
    // last of duplicate keys wins; nulls read as zero values.
    mm.receive("{\"resp\":[{\"HOST\":\"a\",\"\\u0052esponse\":\"r\",\"error\":null,\"Data\":1,\"Data\":null}],\"rendered\":null,\"ſtatus\":false,\"More\":true,\"more\":false}\n".as_bytes()).unwrap();
    let Some(Event::Frame(f)) = mm.poll().unwrap() else { panic!() };
    assert!(!f.more());
    assert_eq!(f.status(), Some(false));
    let r = f.responses().next().unwrap();
    assert!(r.host() == "a" && r.response() == "r" && r.error().is_none() && r.data().is_none());
    assert!(f.rendered() == "");
}

#[test]
fn frames_of_the_wrong_shape_are_malformed_and_counted() {
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command("x").unwrap();
    let bad = [
        &b"{\"Resp\":{},\"More\":true}\n"[..],
        b"{\"Resp\":[1],\"More\":true}\n",
        b"{\"Resp\":[{\"Tabular\":[[1]]}],\"More\":true}\n",
        b"{\"Resp\":[{\"Header\":\"h\"}],\"More\":true}\n",
        b"{\"More\":\"yes\"}\n",
        b"{\"Resp\":null,\"Rendered\":\"x\",\"More\": tru\n",
        b"[1]\n",
    ];
    let mut log = Vec::new();
    for b in bad {
        common::feed(&mut mm, b, &[5], |e| log.push(describe(e)));
    }
    common::feed(&mut mm, b"{\"Resp\":[],\"More\":false}\n", &[5], |e| log.push(describe(e)));
    assert_eq!(
        log,
        [
            "malformed minimega: bad frame: Resp is not an array",
            "malformed minimega: bad frame: a response is not a JSON object",
            "malformed minimega: bad frame: Tabular is not an array of arrays of strings",
            "malformed minimega: bad frame: Header is not an array of strings",
            "malformed minimega: bad frame: More is not a boolean",
            "malformed minimega: invalid JSON at byte 182: invalid literal (not true, false or null)",
            "malformed minimega: bad frame: a frame is not a JSON object",
            "frame",
            "end frames=1 responses=0 errors=0",
        ]
    );
}

#[test]
fn a_new_request_waits_for_the_end_of_the_reply() {
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command("read x").unwrap();
    assert_eq!(mm.command("version"), Err(Error::Busy { state: State::Command }));
    mm.receive(b"{\"Resp\":null,\"Rendered\":\"\",\"More\":false,\"Status\":false}\n").unwrap();
    assert!(matches!(mm.poll().unwrap(), Some(Event::Frame(_))));
    // The last frame is in, but End has not been reported yet.
    assert_eq!(mm.command("version"), Err(Error::Busy { state: State::Command }));
    assert!(matches!(mm.poll().unwrap(), Some(Event::End(_))));
    mm.command("version").unwrap();
    // A frame while nothing is asked is nobody's.
    let mut mm = Client::<Heap>::new(Config::default());
    mm.receive(b"{\"Resp\":null,\"Rendered\":\"\",\"More\":false,\"Status\":false}\n").unwrap();
    assert!(matches!(mm.poll().unwrap(), Some(Event::Unsolicited(_))));
}

#[test]
fn eof_mid_stream_fails_the_reply() {
    let (_, _, s2c) = capture("pybind_multi_read.c1");
    let mut mm = Client::<Heap>::new(Config::default());
    mm.command("read /tmp/mm-fixt/cmds.mm").unwrap();
    let cut = s2c.len() - 40;
    let mut log = Vec::new();
    common::feed(&mut mm, &s2c[..cut], &[64], |e| log.push(describe(e)));
    common::feed(&mut mm, b"", &[1], |e| log.push(describe(e)));
    assert_eq!(log.len(), 6, "{log:#?}");
    assert!(log[3].starts_with("malformed minimega: invalid JSON"), "{}", log[3]);
    assert_eq!(&log[4..], ["failed after 3 frames", "closed"]);
}

#[test]
fn an_oversized_frame_of_a_reply_fails_it_at_once_and_closes() {
    // `shell seq 1 5000000` at a small scale: the reply's only frame is over
    // the limit, and its `More: false` comes after the limit is reached.
    let limits = Limits { max_message: 256, max_depth: 64 };
    let numbers: Vec<String> = (1..200).map(|n| n.to_string()).collect();
    let response = numbers.join("\\n");
    let frame = format!(
        "{{\"Resp\":[{{\"Host\":\"mmpeer\",\"Response\":\"{response}\",\"Header\":null,\"Tabular\":null,\"Error\":\"\",\"Data\":null}}],\"Rendered\":\"mmpeer: {response}\",\"More\":false,\"Status\":false}}\n"
    );
    for sizes in [&[usize::MAX][..], &[1], &[7, 64]] {
        let mut mm = Client::<Heap>::new(Config { limits, ..Config::default() });
        mm.command("shell seq 1 199").unwrap();
        let mut log = Vec::new();
        // Only the bytes up to the limit are needed to fail the reply.
        common::feed(&mut mm, &frame.as_bytes()[..300], sizes, |e| log.push(describe(e)));
        assert_eq!(
            log,
            [
                "malformed minimega: a frame of the reply is larger than the limit of 256 bytes; the connection is closed, as the rest of the reply could not be told from the next",
                "failed after 0 frames",
                "closed"
            ],
            "{sizes:?}"
        );
        assert_eq!(mm.state(), State::Closed);
        // The rest of the frame, and anything after it, is dropped unread.
        common::feed(&mut mm, &frame.as_bytes()[300..], sizes, |e| log.push(describe(e)));
        assert_eq!(log.len(), 3);
    }
    // An oversized frame while nothing is asked (a status message) is skipped,
    // and the session goes on.
    let mut mm = Client::<Heap>::new(Config { limits, ..Config::default() });
    let status = format!("{{\"Resp\":null,\"Rendered\":\"{response}\",\"More\":false,\"Status\":true}}\n");
    let mut log = Vec::new();
    common::feed(&mut mm, status.as_bytes(), &[64], |e| log.push(describe(e)));
    assert_eq!(log, ["malformed minimega: JSON at byte 256: value larger than the limit of 256 bytes"]);
    mm.command("version").unwrap();
    common::feed(&mut mm, b"{\"Resp\":null,\"Rendered\":\"\",\"More\":false}\n", &[64], |e| log.push(describe(e)));
    assert_eq!(&log[1..], ["frame", "end frames=1 responses=0 errors=0"]);
}

#[test]
fn too_many_responses_is_a_typed_limit() {
    let mut mm = Client::<Fixed<2048, 256, 2>>::new(Config::default());
    mm.command("mesh send all version").unwrap();
    mm.receive(b"{\"Resp\":[{\"Host\":\"a\"},{\"Host\":\"b\"},{\"Host\":\"c\"}],\"More\":false}\n").unwrap();
    assert!(matches!(mm.poll().unwrap(), Some(Event::Malformed(Error::TooManyResponses { limit: 2 }))));
}

#[test]
fn every_capture_replays_the_same_in_any_chunking() {
    for (name, c2s, s2c) in ALL {
        let whole = replay(c2s, s2c, &[usize::MAX]);
        assert!(
            !whole.iter().any(|l| l.starts_with("malformed") || l.starts_with("unsolicited")),
            "{name}: {whole:#?}"
        );
        for sizes in [&[1][..], &[2, 3, 5, 7], &[13, 1, 64]] {
            assert_eq!(replay(c2s, s2c, sizes), whole, "{name} {sizes:?}");
        }
    }
}

mod common;

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events(index in 0..ALL.len(), sizes in proptest::collection::vec(1usize..200, 1..16)) {
        let (_, c2s, s2c) = ALL[index];
        prop_assert_eq!(replay(c2s, s2c, &sizes), replay(c2s, s2c, &[usize::MAX]));
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overflow(
        junk in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let mut mm = Client::<Fixed<512, 256, 4>>::new(Config::default());
        mm.command("vm info").unwrap();
        let mut closed = 0;
        // (`feed` takes no bytes as the end of the stream.)
        if !junk.is_empty() {
        common::feed(&mut mm, &junk, &sizes, |e| {
            // Junk that is no frame at all ends the session at once (not minimega).
            closed += usize::from(matches!(e, Event::Closed));
            if let Event::Frame(f) = e {
                for r in f.responses() {
                    for row in r.rows() {
                        let _ = row.fields().count();
                    }
                    let _ = (r.host(), r.error(), r.data(), r.header().map(Iterator::count));
                }
            }
        });
        }
        common::feed(&mut mm, b"", &[1], |e| closed += usize::from(matches!(e, Event::Closed)));
        prop_assert_eq!(closed, 1, "Closed once");
        prop_assert!(mm.recv_buf().len() <= 512);
    }

    #[test]
    fn any_frame_serde_json_reads_as_the_machine_does(
        hosts in proptest::collection::vec(("[a-z]{1,8}", "\\PC{0,12}", "\\PC{0,6}"), 0..4),
        rows in proptest::collection::vec(proptest::collection::vec("\\PC{0,6}", 2), 0..4),
        more in any::<bool>(),
    ) {
        // Frames written by serde_json (as Go's encoder would, modulo escaping)
        // read back the same through the machine.
        let resp: Vec<serde_json::Value> = hosts.iter().map(|(h, r, e)| serde_json::json!({
            "Host": h, "Response": r, "Header": ["a", "b"], "Tabular": rows, "Error": e, "Data": {"n": [1, 2]}
        })).collect();
        let frame = serde_json::json!({"Resp": resp, "Rendered": "", "More": more, "Status": false});
        let mut text = serde_json::to_vec(&frame).unwrap();
        text.push(b'\n');
        let mut mm = Client::<Heap>::new(Config::default());
        mm.command("x").unwrap();
        mm.receive(&text).unwrap();
        let Some(Event::Frame(f)) = mm.poll().unwrap() else { panic!() };
        prop_assert_eq!(f.more(), more);
        prop_assert_eq!(f.responses().len(), hosts.len());
        for (r, (h, resp, e)) in f.responses().zip(&hosts) {
            prop_assert!(r.host() == h.as_str());
            prop_assert!(r.response() == resp.as_str());
            prop_assert_eq!(r.error().map(|e| e.to_string()), Some(e.clone()).filter(|e| !e.is_empty()));
            let got: Vec<Vec<String>> = r.rows().map(|row| row.cells().map(|c| c.to_string()).collect()).collect();
            prop_assert_eq!(&got, &rows);
            prop_assert_eq!(r.data().map(|d| d.raw()), Some(&b"{\"n\":[1,2]}"[..]));
        }
        let _ = (Value::parse(b"1"), JsonStr::default());
    }
}

/// A peer that is not minimega (QEMU's QMP greeting, HMP's banner) fails
/// the first reply at once and closes: nothing it sends would end it.
#[test]
fn a_peer_that_is_not_minimega_fails_the_first_reply_at_once() {
    for foreign in [
        &br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#[..],
        b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ",
        b"[1, 2]\n",
    ] {
        let mut mm = Client::<Heap>::new(Config::default());
        mm.command("version").unwrap();
        mm.receive(foreign).unwrap();
        let mut events = Vec::new();
        while let Some(e) = mm.poll().unwrap() {
            events.push(match e {
                Event::Malformed(e) => e.to_string(),
                Event::Failed(_) => "failed".into(),
                Event::Closed => "closed".into(),
                other => format!("{other:?}"),
            });
        }
        assert_eq!(
            events,
            [
                "minimega: the peer is not a minimega daemon: the first message of its reply is not a minimega frame",
                "failed",
                "closed"
            ],
            "{}",
            String::from_utf8_lossy(foreign)
        );
    }
}
