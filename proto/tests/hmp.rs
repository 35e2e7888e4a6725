//! The HMP machine on transcripts captured from a real QEMU 7.2.22 readline monitor.

mod common;

use common::{Record, transcript};
use proptest::prelude::*;
use vmwire_proto::Machine;
use vmwire_proto::buf::{Fixed, Heap};
use vmwire_proto::hmp::{Client, Config, Error, Event, MAX_LINE, State, check_line};

/// One line per event, for comparing whole sessions.
fn describe(e: Event<'_>) -> String {
    let text = |t: &[u8]| {
        String::from_utf8_lossy(t)
            .chars()
            .map(|c| match c {
                '\r' => "\\r".into(),
                '\n' => "\\n".into(),
                c if c.is_control() => format!("\\x{:02x}", c as u32),
                c => c.to_string(),
            })
            .collect::<String>()
    };
    match e {
        Event::Banner(b) => format!("banner {:?} {}", b.version(), text(b.text)),
        Event::Output { id, text: t } => format!("output {id} {}", text(t)),
        Event::TooLarge { id, limit } => format!("too large {id} {limit}"),
        Event::Unsolicited(t) => format!("unsolicited {}", text(t)),
        Event::BadBanner { error, text: t } => format!("bad banner {error}: {}", text(t)),
        Event::Malformed(e) => format!("malformed {e}"),
        Event::Failed { id, output } => format!("failed {id} {:?}", output.map(text)),
        Event::Closed => "closed".into(),
    }
}

/// Polls until nothing is left, writing out (to nowhere) whatever the
/// machine queues after each event, as an adapter does.
fn drain<S: vmwire_proto::buf::Storage>(m: &mut Client<S>, log: &mut Vec<String>) {
    loop {
        let n = m.transmit().len();
        m.transmitted(n);
        match m.poll().expect("poll") {
            Some(e) => log.push(describe(e)),
            None => break,
        }
    }
    let n = m.transmit().len();
    m.transmitted(n);
}

/// Feeds `bytes` in pieces of the given sizes (cycled; empty = end of
/// stream), writing out what the machine queues as an adapter does.
fn feed<S: vmwire_proto::buf::Storage + 'static>(
    m: &mut Client<S>,
    bytes: &[u8],
    sizes: &[usize],
    log: &mut Vec<String>,
) {
    common::feed_flushing(m, bytes, sizes, |e| log.push(describe(e)));
    let n = m.transmit().len();
    m.transmitted(n);
}

/// The complete lines a captured client wrote (CR and LF each end one).
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = bytes.split(|&b| b == b'\r' || b == b'\n').collect();
    out.pop(); // after the last line end: a partial line, or nothing
    out
}

fn replay_with(txn: &[u8], sizes: &[usize], config: Config) -> Vec<String> {
    let mut m = Client::<Heap>::new(config);
    let mut log = Vec::new();
    for record in transcript(txn) {
        match record {
            Record::ClientToServer(bytes) => {
                for line in lines(&bytes) {
                    if check_line(line).is_ok() {
                        m.command(line).unwrap();
                    }
                }
                drain(&mut m, &mut log);
            }
            Record::ServerToClient(bytes) => feed(&mut m, &bytes, sizes, &mut log),
            Record::Note(_) => {}
        }
    }
    log
}

fn replay(txn: &[u8], sizes: &[usize]) -> Vec<String> {
    replay_with(txn, sizes, Config::default())
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../fixtures/hmp/", $name, ".txn"))
    };
}

const BANNER: &str = r"banner Some((7, 2, 22)) QEMU 7.2.22 monitor - type 'help' for more information\r\n";
const PRELAUNCH: &str = r"VM status: paused (prelaunch)\r\n";
const VERSION: &str = r"7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\r\n";

#[test]
fn banner_and_info_status() {
    assert_eq!(
        replay(fixture!("01_banner_info_status"), &[usize::MAX]),
        [BANNER.into(), format!("output 0 {PRELAUNCH}")]
    );
    assert_eq!(replay(fixture!("02_info_version"), &[usize::MAX]), [BANNER.into(), format!("output 0 {VERSION}")]);
}

#[test]
fn the_chardev_mon_form_is_the_same_monitor() {
    let log = replay(fixture!("11_chardev_mon_readline"), &[usize::MAX]);
    assert_eq!(log, [BANNER.into(), format!("output 0 {PRELAUNCH}"), format!("output 1 {VERSION}")]);
}

#[test]
fn errors_are_output_and_empty_lines_have_none() {
    let log = replay(fixture!("04_bad_command"), &[usize::MAX]);
    assert_eq!(
        log,
        [
            BANNER,
            r"output 0 unknown command: 'nosuch'\r\n",
            r"output 1 unknown command: 'info nosuch'\r\n",
            r#"output 2 stop|s: extraneous characters at the end of line\r\nTry "help stop" for more information\r\n"#,
            r#"output 3 unexpected end of expression\r\nTry "help memsave" for more information\r\n"#,
            "output 4 ",
            "output 5 ",
            "output 6 ",
            r"output 7 VM status: running\r\n",
        ]
    );
}

#[test]
fn help_is_output_whole() {
    let log = replay(fixture!("03_help"), &[usize::MAX]);
    assert_eq!(log.len(), 3);
    assert!(log[1].starts_with(r"output 0 announce_self [interfaces] [id] -- Trigger GARP/RARP announcements\r\n"));
    assert!(log[1].ends_with(r"xp /fmt addr -- physical memory dump starting at 'addr'\r\n"));
    assert!(log[2].starts_with(r"output 1 info balloon  -- show balloon information\r\n"));
    assert!(log[2].ends_with(r"info vnc  -- show the vnc server status\r\n"));
    // Every line QEMU printed, and not one byte of echo.
    let s2c = include_bytes!("../../fixtures/hmp/03_help.s2c");
    let lines = s2c.windows(2).filter(|w| w == b"\r\n").count();
    let banner_and_echoes = 3;
    assert_eq!(log[1].matches(r"\r\n").count() + log[2].matches(r"\r\n").count(), lines - banner_and_echoes);
    assert!(!log.iter().any(|l| l.contains(r"\x1b")));
}

#[test]
fn a_long_line_echoes_131_kb_and_is_stripped_exactly() {
    let txn = fixture!("05_long_line");
    let line = format!("info {}", "x".repeat(251));
    let expected = [BANNER.to_string(), format!(r"output 0 unknown command: '{line}'\r\n")];
    for sizes in [&[usize::MAX][..], &[1], &[2], &[3], &[4096], &[7, 1, 13]] {
        assert_eq!(replay(txn, sizes), expected, "pieces of {sizes:?}");
    }
}

#[test]
fn commands_written_together_run_one_at_a_time() {
    let log = replay(fixture!("06_multi_in_one_write"), &[usize::MAX]);
    assert_eq!(
        log,
        [
            BANNER.to_string(),
            format!("output 0 {VERSION}"),
            format!("output 1 {PRELAUNCH}"),
            r"output 2 unknown command: 'nosuch'\r\n".into(),
            "output 3 ".into(),
        ]
    );
}

#[test]
fn cr_and_lf_each_end_a_line() {
    // "info status\r\n" is two lines for readline: the status, then an empty one.
    let log = replay(fixture!("07_line_endings"), &[usize::MAX]);
    let status = PRELAUNCH;
    assert_eq!(
        log,
        [
            BANNER.to_string(),
            format!("output 0 {status}"),
            format!("output 1 {status}"),
            "output 2 ".into(),
            format!("output 3 {status}"),
            format!("output 4 {status}"),
            "output 5 ".into(),
        ]
    );
}

#[test]
fn non_ascii_and_invalid_utf8_pass_through() {
    let log = replay(fixture!("09_nonascii"), &[usize::MAX]);
    assert_eq!(
        log,
        [
            BANNER.to_string(),
            r"output 0 unknown command: 'info café'\r\n".into(),
            r"output 1 unknown command: 'info ��'\r\n".into(),
            format!("output 2 {PRELAUNCH}"),
        ]
    );
}

#[test]
fn quit_ends_the_session_after_the_command_ran() {
    let log = replay(fixture!("10_quit"), &[usize::MAX]);
    assert_eq!(log, [BANNER, r#"failed 0 Some("")"#, "closed"]);
}

#[test]
fn a_reconnect_drops_the_partial_line() {
    // The first client leaves "info stat" unfinished: its echo is nobody's.
    let first = replay(fixture!("12_reconnect_1"), &[usize::MAX]);
    assert_eq!(first, [BANNER]);
    let second = replay(fixture!("12_reconnect_2"), &[usize::MAX]);
    assert_eq!(
        second,
        [BANNER.to_string(), r"output 0 unknown command: 'us'\r\n".into(), format!("output 1 {PRELAUNCH}")]
    );
}

#[test]
fn two_monitors_are_two_sessions() {
    assert_eq!(replay(fixture!("13_two_monitors_A"), &[usize::MAX]), [BANNER, "output 0 "]);
    assert_eq!(replay(fixture!("13_two_monitors_B"), &[1]), [BANNER, r"output 0 VM status: running\r\n"]);
}

#[test]
fn lf_newlines_on_request() {
    let config = Config { lf_newlines: true, ..Config::default() };
    let log = replay_with(fixture!("04_bad_command"), &[5], config);
    assert_eq!(
        log[3],
        r#"output 2 stop|s: extraneous characters at the end of line\nTry "help stop" for more information\n"#
    );
    // A CR alone is text, not a line end.
    let mut m = ready(config);
    let id = m.command("x").unwrap();
    let log = run(&mut m, b"x\x1b[K\r\nprogress 50 %\rdone\r\n\r\n(qemu) ");
    assert_eq!(log, [format!(r"output {id} progress 50 %\rdone\n\n")]);
}

/// A client past the banner.
fn ready(config: Config) -> Client<Heap> {
    let mut m = Client::<Heap>::new(config);
    let mut log = Vec::new();
    feed(&mut m, b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ", &[usize::MAX], &mut log);
    assert_eq!(log, [BANNER]);
    m
}

fn run<S: vmwire_proto::buf::Storage + 'static>(m: &mut Client<S>, bytes: &[u8]) -> Vec<String> {
    let mut log = Vec::new();
    drain(m, &mut log);
    feed(m, bytes, &[usize::MAX], &mut log);
    log
}

/// What QEMU 7.2's readline prints while `line` is typed and entered.
fn echo(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for k in 1..=line.len() {
        out.extend(b"\x1b[D".repeat(k - 1));
        out.extend(&line[..k]);
        out.extend(b"\x1b[K");
    }
    out.extend(b"\r\n");
    out
}

#[test]
fn commands_queue_and_go_out_one_at_a_time() {
    let mut m = Client::<Heap>::new(Config::default());
    let ids: Vec<u64> = ["info status", "stop", "info version"].iter().map(|c| m.command(c).unwrap()).collect();
    assert_eq!(ids, [0, 1, 2]);
    assert_eq!(m.state(), State::AwaitingPrompt);
    assert_eq!(m.transmit(), b"", "nothing goes out before the prompt");
    m.receive(b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ").unwrap();
    assert!(matches!(m.poll().unwrap(), Some(Event::Banner(_))));
    assert_eq!(m.transmit(), b"info status\n");
    m.transmitted(5);
    assert_eq!(m.transmit(), b"status\n");
    m.transmitted(7);
    assert_eq!(m.transmit(), b"");
    assert_eq!(m.state(), State::Busy);
    let mut bytes = echo(b"info status");
    bytes.extend(b"VM status: running\r\n(qemu) ");
    m.receive(&bytes).unwrap();
    assert_eq!(m.poll().unwrap(), Some(Event::Output { id: 0, text: b"VM status: running\r\n" }));
    assert_eq!(m.transmit(), b"stop\n");
    assert_eq!(m.queued(), 2);
}

#[test]
fn lines_readline_would_not_take_as_they_are_are_refused() {
    let mut m = ready(Config::default());
    assert_eq!(m.command("stop\ncont"), Err(Error::LineBreak { offset: 4 }));
    assert_eq!(m.command("info statux\x7fs"), Err(Error::ControlCharacter { byte: 0x7f, offset: 11 }));
    assert_eq!(m.command("x".repeat(MAX_LINE + 1)), Err(Error::LineTooLong { len: MAX_LINE + 1, limit: MAX_LINE }));
    assert_eq!(m.queued(), 0);
    assert_eq!(m.transmit(), b"");
    // The longest line there is goes through, echo and all (32 MB of it).
    let line = "x".repeat(MAX_LINE);
    let id = m.command(&line).unwrap();
    assert_eq!(m.transmit().len(), MAX_LINE + 1);
    let mut bytes = echo(line.as_bytes());
    assert!(bytes.len() > 33_000_000);
    bytes.extend(format!("unknown command: '{line}'\r\n(qemu) ").as_bytes());
    let log = run(&mut m, &bytes);
    assert_eq!(log, [format!("output {id} unknown command: '{line}'\\r\\n")]);
}

#[test]
fn output_over_the_limit_is_dropped_and_said_so() {
    let mut m = ready(Config { max_output: 100, ..Config::default() });
    let a = m.command("help").unwrap();
    let b = m.command("info status").unwrap();
    let mut bytes = echo(b"help");
    bytes.extend("a line of help\r\n".repeat(50).as_bytes());
    bytes.extend(b"(qemu) ");
    let mut log = run(&mut m, &bytes);
    let mut more = echo(b"info status");
    more.extend(b"VM status: running\r\n(qemu) ");
    log.extend(run(&mut m, &more));
    assert_eq!(log, [format!("too large {a} 100"), format!(r"output {b} VM status: running\r\n")]);
}

#[test]
fn fixed_storage_bounds_the_output_and_reads_the_prompt_after_it() {
    let mut m = Client::<Fixed<256, 128>>::new(Config::default());
    let mut log = Vec::new();
    feed(&mut m, b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ", &[9], &mut log);
    let id = m.command("help").unwrap();
    let mut bytes = echo(b"help");
    bytes.extend("(qemu (qemu) help line\r\n".repeat(40).as_bytes());
    bytes.extend(b"(qemu) ");
    log.extend(run(&mut m, &bytes));
    assert_eq!(log, [BANNER.to_string(), format!("too large {id} 185")]);
    assert!(m.recv_buf().len() <= 256);
}

#[test]
fn bytes_between_prompt_and_echo_are_not_the_command() {
    let mut m = ready(Config::default());
    // Something printed while idle, ended by a prompt; then more before the command goes out.
    let log = run(&mut m, b"guest says hi\r\n(qemu) late");
    assert_eq!(log, [r"unsolicited guest says hi\r\n"]);
    let id = m.command("cont").unwrap();
    let log = run(&mut m, &[&echo(b"cont")[..], b"(qemu) "].concat());
    assert_eq!(log, ["unsolicited late".to_string(), format!("output {id} ")]);
}

#[test]
fn output_with_a_false_prompt_shows_in_the_next_echo() {
    let mut m = ready(Config::default());
    let a = m.command("info qtree").unwrap();
    let b = m.command("info status").unwrap();
    // A device named "(qemu) x" cuts the first output short...
    let mut bytes = echo(b"info qtree");
    bytes.extend(b"bus: main\r\n(qemu) x\r\nmore\r\n(qemu) ");
    let mut log = run(&mut m, &bytes);
    // ... and the rest of it is where the second command's echo should be.
    let mut more = echo(b"info status");
    more.extend(b"VM status: running\r\n(qemu) ");
    log.extend(run(&mut m, &more));
    let x = 63 + echo(b"info qtree").len() + "bus: main\r\n(qemu) ".len();
    assert_eq!(log.len(), 4, "{log:#?}");
    assert_eq!(log[0], format!(r"output {a} bus: main\r\n"));
    assert_eq!(log[1], format!("malformed HMP: the echo at byte {x} is not the command sent"));
    assert_eq!(log[2], format!(r"output {b} more\r\n"));
    // The second command's own echo and output then come while nothing runs.
    assert!(log[3].starts_with(r"unsolicited i\x1b[K") && log[3].ends_with(r"VM status: running\r\n"));
}

#[test]
fn end_of_stream_fails_what_is_not_finished() {
    let mut m = ready(Config::default());
    let a = m.command("info status").unwrap();
    let b = m.command("stop").unwrap();
    let mut log = run(&mut m, &echo(b"info st")[..40]);
    feed(&mut m, b"", &[1], &mut log);
    assert_eq!(log, [format!("failed {a} None"), format!("failed {b} None"), "closed".into()]);
    assert_eq!(m.state(), State::Closed);
    assert!(m.poll().unwrap().is_none());
    assert!(matches!(m.command("cont"), Err(Error::WrongState { .. })));
    // A closed machine still takes bytes, and drops them.
    assert!(m.receive(b"(qemu) ").unwrap() > 0);
    assert!(m.poll().unwrap().is_none());
}

proptest! {
    #[test]
    fn any_chunking_gives_the_same_events_at_the_start(
        opening in prop_oneof![Just(&b"{\""[..]), Just(&b" {\n \""[..]), Just(&b""[..]), Just(&b"QEMU "[..])],
        junk in proptest::collection::vec(prop_oneof![Just(b'x'), Just(b'\n'), Just(b'"'), any::<u8>()], 0..700),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let data = [opening, &junk[..]].concat();
        let events = |sizes: &[usize]| {
            let mut m = Client::<Fixed<256, 128>>::new(Config::default());
            let _ = m.command("info status");
            let mut log = Vec::new();
            feed(&mut m, &data, sizes, &mut log);
            feed(&mut m, b"", &[1], &mut log);
            log
        };
        prop_assert_eq!(events(&sizes), events(&[usize::MAX]));
    }

    #[test]
    fn any_chunking_gives_the_same_events(sizes in proptest::collection::vec(1usize..400, 1..20)) {
        for txn in [&fixture!("06_multi_in_one_write")[..], fixture!("04_bad_command"), fixture!("09_nonascii"), fixture!("10_quit")] {
            prop_assert_eq!(replay(txn, &sizes), replay(txn, &[usize::MAX]));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overflow(
        junk in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..64, 1..8),
        commands in proptest::collection::vec("[ -~]{0,20}", 0..4),
    ) {
        let mut m = Client::<Fixed<512, 128>>::new(Config::default());
        let mut log = Vec::new();
        for c in &commands {
            let _ = m.command(c);
        }
        feed(&mut m, b"(qemu) ", &[3], &mut log);
        feed(&mut m, &junk, &sizes, &mut log);
        prop_assert!(m.recv_buf().len() <= 512);
        feed(&mut m, b"", &[1], &mut log);
        prop_assert_eq!(log.last().map(String::as_str), Some("closed"));
        prop_assert_eq!(log.iter().filter(|l| *l == "closed").count(), 1);
    }
}

#[test]
fn closing_from_this_side_fails_what_is_queued_and_sends_nothing_more() {
    let mut m = ready(Config::default());
    let a = m.command("info status").unwrap();
    let b = m.command("stop").unwrap();
    assert_eq!(m.transmit(), b"info status\n");
    m.transmitted(12);
    m.receive(&echo(b"info status")).unwrap();
    m.receive(b"VM status: ru").unwrap();
    let mut log = Vec::new();
    drain(&mut m, &mut log);
    assert!(log.is_empty());
    m.close();
    assert_eq!(m.transmit(), b"");
    drain(&mut m, &mut log);
    assert_eq!(log, [format!(r#"failed {a} Some("VM status: ru")"#), format!("failed {b} None"), "closed".into()]);
    assert_eq!(m.transmit(), b"", "the queued command never goes out");
    assert!(m.receive(b"nning\r\n(qemu) ").unwrap() > 0);
    assert!(m.poll().unwrap().is_none());
}

#[test]
fn a_json_peer_is_not_a_monitor() {
    // QMP's greeting, as QEMU 7.2 sends it at once on a QMP socket.
    let greeting = br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}"#;
    for sizes in [&[usize::MAX][..], &[1]] {
        let mut m = Client::<Heap>::new(Config::default());
        let id = m.command("info status").unwrap();
        let mut log = Vec::new();
        feed(&mut m, &[&greeting[..], b"\r\n"].concat(), sizes, &mut log);
        let prefix = "bad banner HMP: expected the monitor's banner and `(qemu) ` prompt, got JSON (a QMP or guest agent socket?): ";
        let shown = log[0].strip_prefix(prefix).unwrap_or_else(|| panic!("{log:?}"));
        // Its first line, whatever the chunking.
        assert_eq!(shown, format!(r"{}\r\n", String::from_utf8_lossy(greeting)));
        assert_eq!(log[1..], [format!("failed {id} None"), "closed".into()]);
        assert_eq!(m.state(), State::Closed);
        assert_eq!(m.transmit(), b"", "the command never went out");
    }
}

#[test]
fn text_before_the_first_prompt_is_bounded() {
    let mut m = Client::<Heap>::new(Config { max_banner: 1000, ..Config::default() });
    let mut log = Vec::new();
    // A megabyte with no prompt, in pieces: it is refused once past the limit.
    let mut fed = 0;
    while log.is_empty() && fed < 1_000_000 {
        feed(&mut m, &[b'x'; 100], &[usize::MAX], &mut log);
        fed += 100;
    }
    assert_eq!(fed, 1100);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(
        log[0],
        format!("bad banner HMP: more than 1000 bytes came before the first `(qemu) ` prompt: {}", "x".repeat(256))
    );
    assert_eq!(log[1], "closed");
    // A banner within the limit is fine; a prompt just past it is not.
    let mut m = Client::<Heap>::new(Config { max_banner: 10, ..Config::default() });
    let log = run(&mut m, b"012345678\n(qemu) ");
    assert!(log[0].starts_with("banner"), "{log:?}");
    let mut m = Client::<Heap>::new(Config { max_banner: 10, ..Config::default() });
    let log = run(&mut m, b"0123456789\n(qemu) ");
    assert!(log[0].starts_with("bad banner HMP: more than 10 bytes"), "{log:?}");
}
