//! Inputs the fuzz targets (`fuzz/`) found, kept as tests: each names the
//! target and the seed it left in `fuzz/seeds/`.

use vmwire_proto::json::{ErrorKind, Framer, Limits};

/// Every outcome of framing `data` fed in pieces of `chunk` bytes.
fn frame(data: &[u8], chunk: usize) -> Vec<Result<Vec<u8>, ErrorKind>> {
    let mut framer = Framer::new(heapless::Vec::<u8, 64>::new(), Limits { max_message: 8, max_depth: 16 });
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        let mut fed = 0;
        while fed < piece.len() {
            fed += framer.receive(&piece[fed..]);
            while let Some(msg) = framer.next() {
                out.push(msg.map(|m| m.raw().to_vec()).map_err(|e| e.kind));
            }
        }
    }
    if let Some(msg) = framer.finish() {
        out.push(msg.map(|m| m.raw().to_vec()).map_err(|e| e.kind));
    }
    out
}

/// json_framer: a value that turns invalid at the very byte where it passes
/// `max_message` was reported as `TooLarge` and then as the syntax error
/// when its bytes arrived one by one, but as the syntax error alone when
/// they arrived at once. The events must not depend on the chunking.
#[test]
fn json_framer_too_large_and_invalid_at_the_same_byte() {
    let data = b"[1,2,3,{\n[]\n";
    for chunk in 1..=data.len() {
        assert_eq!(frame(data, chunk), frame(data, data.len()), "chunks of {chunk}");
    }
    assert!(matches!(frame(data, data.len()).first(), Some(Err(ErrorKind::TooLarge { limit: 8 }))));
}

/// json_framer (seed `limit-reached-inside-an-escape`): a value whose
/// limit is reached inside an escape or a UTF-8 sequence that then turns
/// out invalid was `TooLarge` and the error when the bytes trickled in, the
/// error alone when they came at once (the error is placed at the
/// sequence's first byte, before the limit). Now `TooLarge` comes first
/// either way; a sequence decided within the limit is the error alone.
#[test]
fn json_framer_limit_reached_inside_a_sequence_that_turns_invalid() {
    let too_large = Err(ErrorKind::TooLarge { limit: 8 });
    let cases: [(&[u8], _); 5] = [
        // The low half of a surrogate pair is missing; decided at byte 13.
        (br#"["\uD83D\u0041"]"#, Some(ErrorKind::LoneSurrogate)),
        // A bad hex digit at byte 9, past the limit.
        (br#"["abc\u00G0"]"#, Some(ErrorKind::InvalidEscape)),
        // A bad continuation byte at byte 8.
        (b"[\"abcde\xE2\x82x\"]", Some(ErrorKind::InvalidUtf8)),
        // Decided at byte 5, within the limit: the error alone.
        (br#"["a\q"]"#, None),
        (b"[\"\xE2x\"]", None),
    ];
    for (data, after_limit) in cases {
        let whole = frame(data, data.len());
        for chunk in 1..=data.len() {
            assert_eq!(frame(data, chunk), whole, "{} in chunks of {chunk}", data.escape_ascii());
        }
        match after_limit {
            Some(kind) => assert_eq!(whole[..2], [too_large.clone(), Err(kind)], "{}", data.escape_ascii()),
            None => assert!(!whole.contains(&too_large), "{}", data.escape_ascii()),
        }
    }
}

/// json_framer (seed `number-as-long-as-the-limit`): a top-level number
/// exactly `max_message` long was `TooLarge` when its bytes trickled in
/// (its end is known only from the byte after it, past the limit) but a
/// value when that byte came with it. It is `TooLarge` either way now.
#[test]
fn json_framer_top_level_number_as_long_as_the_limit() {
    for (data, over) in [(&b"12345678 [1]"[..], true), (b"-1234567\n[1]", true), (b"1234567 [1]", false)] {
        let whole = frame(data, data.len());
        for chunk in 1..=data.len() {
            assert_eq!(frame(data, chunk), whole, "{} in chunks of {chunk}", data.escape_ascii());
        }
        assert_eq!(whole[0] == Err(ErrorKind::TooLarge { limit: 8 }), over, "{}", data.escape_ascii());
        assert_eq!(whole.last(), Some(&Ok(b"[1]".to_vec())), "{}", data.escape_ascii());
    }
}

/// What an HTTP server reports for `request` fed in pieces of `chunk` bytes.
fn serve(request: &[u8], chunk: usize) -> Vec<String> {
    use vmwire_proto::Machine;
    use vmwire_proto::buf::Heap;
    use vmwire_proto::http::{Server, ServerConfig, ServerEvent};
    let mut http = Server::<Heap>::new(ServerConfig::default());
    let mut events = Vec::new();
    for piece in request.chunks(chunk) {
        http.receive(piece).unwrap();
        while let Some(event) = http.poll().unwrap() {
            events.push(match event {
                ServerEvent::Request(r) => format!("request {:?}", r.body),
                other => format!("{other:?}"),
            });
        }
    }
    events
}

/// http_response (seed `regress_long_chunk_size_line`): a chunk-size line
/// (extensions and all) longer than the 1024 bytes waited for was refused
/// when its bytes trickled in, but accepted when more than 1024 of them
/// arrived at once. Now the limit holds however they arrive.
#[test]
fn http_chunk_size_line_limit_does_not_depend_on_the_chunking() {
    let head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (extension, accepted) in [(1020, true), (1021, false), (1100, false)] {
        let mut request = head.clone();
        request.extend_from_slice(b"0;");
        request.extend(std::iter::repeat_n(b'x', extension));
        request.extend_from_slice(b"\r\n\r\n");
        let whole = serve(&request, request.len());
        assert_eq!(whole, serve(&request, 1), "extension of {extension} bytes");
        assert_eq!(whole, serve(&request, 7), "extension of {extension} bytes");
        let want = if accepted {
            "request []".to_string()
        } else {
            format!("Malformed(BadChunk {{ offset: {} }})", head.len())
        };
        assert_eq!(whole, [want], "extension of {extension} bytes");
    }
}

/// xmlrpc_call (seed `regress_datetime_with_reference`): a dateTime whose
/// text holds a reference was written back with the reference escaped
/// again (`&lt;` became `&amp;lt;`), so the rewrite read as other text.
#[test]
fn xmlrpc_datetime_is_written_back_as_it_reads() {
    use vmwire_proto::xmlrpc::{self, Options};
    let doc = b"<methodCall><methodName>x</methodName><params><param><value>\
        <dateTime.iso8601>2024&#45;01&lt;</dateTime.iso8601></value></param></params></methodCall>";
    let call = xmlrpc::parse_call(doc).unwrap();
    let mut out = Vec::new();
    xmlrpc::write_call(&mut out, "x", Options::default(), |p| {
        for v in call.params.iter() {
            p.param(|w| w.value(&v))?;
        }
        Ok(())
    })
    .unwrap();
    let again = xmlrpc::parse_call(&out).unwrap();
    let text = |c: &xmlrpc::MethodCall<'_>| c.params.first().and_then(|v| v.as_datetime()).unwrap().text().to_string();
    assert_eq!(text(&again), "2024-01<");
    assert_eq!(text(&again), text(&call));
}

/// A QMP server, greeted and negotiated, its greeting and reply taken.
fn qmp_server<S: vmwire_proto::buf::Storage>(
    config: vmwire_proto::qmp::server::ServerConfig,
) -> vmwire_proto::qmp::server::Server<S> {
    use vmwire_proto::Machine;
    use vmwire_proto::qmp::server::{Event, Server};
    let mut server = Server::<S>::new(config);
    server.greet((7, 2, 22), "", &[]).unwrap();
    server.receive(b"{\"execute\": \"qmp_capabilities\"}\r\n").unwrap();
    assert!(matches!(server.poll().unwrap(), Some(Event::Negotiated { oob: false })));
    let n = server.transmit().len();
    server.transmitted(n);
    server
}

/// qmp_server (seed `regress_id_with_line_break`): a client's id was given
/// back as it was written, line breaks between its tokens and all, so the
/// reply (or the refusal) spanned two lines; QMP clients read QEMU's
/// messages a line at a time. Line breaks are now written as spaces.
#[test]
fn qmp_server_writes_an_id_with_a_line_break_on_one_line() {
    use vmwire_proto::Machine;
    use vmwire_proto::buf::Heap;
    use vmwire_proto::json::Value;
    use vmwire_proto::qmp::server::{Event, ServerConfig};
    let mut server = qmp_server::<Heap>(ServerConfig::default());
    server.receive(b"{\"execute\": \"stop\", \"id\": [1,\r\n2]}\r\n{\"id\": {\"a\":\n\"\\n\"}}\r\n").unwrap();
    let Some(Event::Command(c)) = server.poll().unwrap() else { panic!("no command") };
    let id = c.id.map(|id| id.raw().to_vec());
    let id = id.as_deref().map(|id| Value::parse(id).unwrap());
    let value = Value::parse(b"{\"a\": [\n]}").unwrap();
    server.send_return(id, false, value).unwrap();
    assert!(matches!(server.poll().unwrap(), Some(Event::Refused { class: "GenericError" })));
    assert_eq!(
        std::str::from_utf8(server.transmit()).unwrap(),
        concat!(
            "{\"return\": {\"a\": [ ]}, \"id\": [1,  2]}\r\n",
            "{\"id\": {\"a\": \"\\n\"}, \"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}\r\n",
        )
    );
}

/// qmp_server (seed `regress_answer_releases_a_refusal_without_room`): an
/// answer that fit was queued, but the refusal it released (held behind
/// the command) did not fit beside it, and `send_return` said
/// `TransmitFull` though the answer had gone out and the command was no
/// longer in flight; the refusal stayed held, and the machine read nothing
/// more. Now the answer is `Ok`, and the refusal follows once there is room.
#[test]
fn qmp_server_answer_that_releases_a_refusal_without_room() {
    use vmwire_proto::Machine;
    use vmwire_proto::buf::Heap;
    use vmwire_proto::json::Value;
    use vmwire_proto::qmp::server::{Event, ServerConfig};
    let mut server = qmp_server::<Heap>(ServerConfig { max_transmit: 256, ..ServerConfig::default() });
    let long = "x".repeat(150);
    server
        .receive(format!("{{\"execute\": \"stop\", \"id\": \"{long}\"}}\r\n{{\"id\": \"{long}\"}}\r\n").as_bytes())
        .unwrap();
    let Some(Event::Command(c)) = server.poll().unwrap() else { panic!("no command") };
    let id = c.id.map(|id| id.raw().to_vec());
    assert!(matches!(server.poll().unwrap(), Some(Event::Refused { class: "GenericError" })));
    assert!(server.poll().unwrap().is_none(), "the refusal waits for stop's reply");
    let id = id.as_deref().map(|id| Value::parse(id).unwrap());
    server.send_return(id, false, Value::parse(b"{}").unwrap()).unwrap();
    assert_eq!(server.in_flight(), 0);
    assert_eq!(server.transmit(), format!("{{\"return\": {{}}, \"id\": \"{long}\"}}\r\n").as_bytes());
    let n = server.transmit().len();
    server.transmitted(n);
    assert!(server.poll().unwrap().is_none());
    assert_eq!(
        server.transmit(),
        format!(
            "{{\"id\": \"{long}\", \"error\": {{\"class\": \"GenericError\", \"desc\": \"QMP input lacks member 'execute'\"}}}}\r\n"
        )
        .as_bytes()
    );
    server.recv_eof();
    assert!(matches!(server.poll().unwrap(), Some(Event::Closed)));
}

/// qmp_server (seed `regress_answer_after_close`): `close()` says nothing
/// more is written, but an answer to a command still in flight was queued
/// after it. Now it is dropped (and the command no longer counts as in
/// flight).
#[test]
fn qmp_server_writes_nothing_after_close() {
    use vmwire_proto::Machine;
    use vmwire_proto::buf::Heap;
    use vmwire_proto::json::Value;
    use vmwire_proto::qmp::server::{Event, ServerConfig};
    let mut server = qmp_server::<Heap>(ServerConfig::default());
    server.receive(b"{\"execute\": \"stop\", \"id\": 1}\r\n{\"exec-oob\": \"x\"}\r\n").unwrap();
    assert!(matches!(server.poll().unwrap(), Some(Event::Command(_))));
    assert!(matches!(server.poll().unwrap(), Some(Event::Refused { .. })));
    server.close();
    assert!(matches!(server.poll().unwrap(), Some(Event::Closed)));
    server.send_return(Some(Value::parse(b"1").unwrap()), false, Value::parse(b"{}").unwrap()).unwrap();
    assert_eq!(server.in_flight(), 0);
    assert!(server.transmit().is_empty(), "{:?}", String::from_utf8_lossy(server.transmit()));
    assert!(server.poll().unwrap().is_none());
}

/// A minimega client closed because the peer is not minimega still takes
/// bytes (and drops them): a closed machine's `recv_buf` drops what it had
/// buffered, so the receive buffer does not stay full and a feeding loop
/// does not spin (found by fuzz target minimega_client; seed
/// regress_not_minimega_then_a_full_buffer).
#[test]
fn minimega_closed_as_not_minimega_still_takes_bytes() {
    use vmwire_proto::Machine;
    use vmwire_proto::minimega::{Client, Config, Error, Event};
    let mut mm = Client::<vmwire_proto::buf::Fixed<64, 256, 4>>::new(Config::default());
    mm.command("version").unwrap();
    let mut first = b"[1]\n{\"Resp\":[".to_vec();
    first.resize(64, b' ');
    assert_eq!(mm.receive(&first).unwrap(), 64);
    assert!(matches!(mm.poll().unwrap(), Some(Event::Malformed(Error::NotMinimega))));
    assert!(matches!(mm.poll().unwrap(), Some(Event::Failed(_))));
    assert!(matches!(mm.poll().unwrap(), Some(Event::Closed)));
    assert!(mm.poll().unwrap().is_none());
    assert_eq!(mm.receive(b"more of the same peer").unwrap(), 21, "bytes after the close are taken and dropped");
    assert!(mm.poll().unwrap().is_none());
}

/// The same for the QMP client closed on a peer that does not greet: its
/// receive buffer, full when it closed, takes (and drops) what comes next.
#[test]
fn qmp_closed_on_a_full_buffer_still_takes_bytes() {
    use vmwire_proto::Machine;
    use vmwire_proto::qmp::{Client, Event, State};
    let mut c = Client::<vmwire_proto::buf::Fixed<64, 256, 4>>::new(Default::default());
    let mut first = b"[1]\n[".to_vec();
    first.resize(64, b' ');
    assert_eq!(c.receive(&first).unwrap(), 64);
    assert!(matches!(c.poll().unwrap(), Some(Event::NotGreeting { .. })));
    assert!(matches!(c.poll().unwrap(), Some(Event::Closed)));
    assert_eq!(c.state(), State::Closed);
    assert_eq!(c.receive(b"more of the same peer").unwrap(), 21, "bytes after the close are taken and dropped");
    assert!(c.poll().unwrap().is_none());
}
