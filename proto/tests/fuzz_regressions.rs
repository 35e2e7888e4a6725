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
