//! The daemon's frames, read in place.
//!
//! A frame is `{"Resp": [...], "Rendered": "...", "More": bool, "Status": bool}`
//! plus `"Suggest": [...]` in a reply to a suggestion request. The machine
//! checks every member's type once, when the frame arrives, in one pass over
//! its bytes, and records where each response's members are; the accessors
//! here then cost nothing to reach a member and cannot fail.
//!
//! Keys are matched as the daemon's and minimega's own client's Go decoder
//! matches them: exactly or case-insensitively (Unicode simple folding, so
//! `ſ` matches `s` and the Kelvin sign `K` matches `k`), the last of
//! duplicates winning. A `null` where a string is expected reads as `""`, a
//! `null` array as an empty one, and a missing member as its zero value, as
//! Go's decoder has them. Anything else of the wrong type makes the frame
//! [`Error::BadFrame`].

use core::fmt;

use super::Error;
use crate::buf::Buf;
use crate::json::{JsonStr, Kind, Message, Value, skip_string, skip_value, skip_ws};

/// Where a member's value lies in its frame: `start..end`, or nothing
/// (`end == 0`) for a member that is absent or `null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        Span { start: start as u32, end: end as u32 }
    }

    fn is_some(self) -> bool {
        self.end != 0
    }

    fn get(self, raw: &[u8]) -> Option<&[u8]> {
        if self.is_some() { raw.get(self.start as usize..self.end as usize) } else { None }
    }
}

/// Where one response's members lie in its frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spans {
    host: Span,
    response: Span,
    header: Span,
    tabular: Span,
    error: Span,
    data: Span,
}

/// A frame's top-level members, checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fields {
    resp: Span,
    rendered: Span,
    suggest: Span,
    pub(crate) more: bool,
    pub(crate) status: Option<bool>,
    /// Responses in `Resp`, and how many of them carry an error.
    pub(crate) responses: u32,
    pub(crate) errors: u32,
}

/// The frame members the client reads.
#[derive(Clone, Copy)]
enum Top {
    Resp,
    Rendered,
    More,
    Status,
    Suggest,
}

/// The response members.
#[derive(Clone, Copy)]
enum Member {
    Host,
    Response,
    Header,
    Tabular,
    Error,
    Data,
}

const TOP: [(&str, Top); 5] = [
    ("Resp", Top::Resp),
    ("Rendered", Top::Rendered),
    ("More", Top::More),
    ("Status", Top::Status),
    ("Suggest", Top::Suggest),
];

const MEMBERS: [(&str, Member); 6] = [
    ("Host", Member::Host),
    ("Response", Member::Response),
    ("Header", Member::Header),
    ("Tabular", Member::Tabular),
    ("Error", Member::Error),
    ("Data", Member::Data),
];

/// Go's folding for the letters of the names above: ASCII case, plus the two
/// non-ASCII characters whose fold sets hold an ASCII letter.
fn fold(c: char) -> char {
    match c {
        '\u{17F}' => 'S',
        '\u{212A}' => 'K',
        c => c.to_ascii_uppercase(),
    }
}

/// Whether the key `key` names `name` (ASCII) the way Go's decoder matches it.
pub(crate) fn key_is(key: JsonStr<'_>, name: &str) -> bool {
    let raw = key.raw();
    if raw.len() == name.len() && raw.eq_ignore_ascii_case(name.as_bytes()) {
        return true;
    }
    if raw.is_ascii() && !key.has_escapes() {
        return false;
    }
    let mut expected = name.chars();
    for chunk in key.chunks() {
        let mut one = [0u8; 4];
        let piece = match chunk {
            crate::json::Chunk::Str(s) => s,
            crate::json::Chunk::Char(c) => c.encode_utf8(&mut one),
        };
        for c in piece.chars() {
            if expected.next().map(fold) != Some(fold(c)) {
                return false;
            }
        }
    }
    expected.next().is_none()
}

fn lookup<T: Copy>(key: JsonStr<'_>, table: &[(&str, T)]) -> Option<T> {
    table.iter().find(|(name, _)| key_is(key, name)).map(|&(_, t)| t)
}

/// A cursor over a frame's (already validated) JSON text.
struct Walk<'a> {
    d: &'a [u8],
    i: usize,
}

impl<'a> Walk<'a> {
    fn peek(&mut self) -> u8 {
        self.i = skip_ws(self.d, self.i);
        self.d.get(self.i).copied().unwrap_or(0)
    }

    fn bad(what: &'static str) -> Error {
        Error::BadFrame { what }
    }

    /// Steps over `null`, if that is what comes next.
    fn null(&mut self) -> bool {
        if self.peek() == b'n' {
            self.i += 4;
            return true;
        }
        false
    }

    /// A string (its span, quotes included) or `null` (no span).
    fn string(&mut self, what: &'static str) -> Result<Span, Error> {
        match self.peek() {
            b'"' => {
                let start = self.i;
                self.i = skip_string(self.d, start);
                Ok(Span::new(start, self.i))
            }
            b'n' => {
                self.i += 4;
                Ok(Span::default())
            }
            _ => Err(Self::bad(what)),
        }
    }

    /// Any value: its span, or none for `null`.
    fn any(&mut self) -> Span {
        if self.null() {
            return Span::default();
        }
        let start = self.i;
        self.i = skip_value(self.d, start);
        Span::new(start, self.i)
    }

    /// An array (its span) whose elements `each` reads, or `null` (no span).
    fn array(
        &mut self,
        what: &'static str,
        mut each: impl FnMut(&mut Self) -> Result<(), Error>,
    ) -> Result<Span, Error> {
        if self.null() {
            return Ok(Span::default());
        }
        if self.peek() != b'[' {
            return Err(Self::bad(what));
        }
        let start = self.i;
        self.i += 1;
        if self.peek() == b']' {
            self.i += 1;
            return Ok(Span::new(start, self.i));
        }
        loop {
            each(self)?;
            match self.peek() {
                b',' => self.i += 1,
                _ => {
                    // `]`: the framer has validated the text.
                    self.i += 1;
                    return Ok(Span::new(start, self.i));
                }
            }
        }
    }

    /// An object's members, each handed to `each` with its key (the cursor
    /// then on the value, which `each` must read). `Ok(false)` for `null`.
    fn object(
        &mut self,
        what: &'static str,
        mut each: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), Error>,
    ) -> Result<bool, Error> {
        if self.null() {
            return Ok(false);
        }
        if self.peek() != b'{' {
            return Err(Self::bad(what));
        }
        self.i += 1;
        if self.peek() == b'}' {
            self.i += 1;
            return Ok(true);
        }
        loop {
            self.peek();
            let start = self.i;
            self.i = skip_string(self.d, start);
            let key = Value::trusted(self.d.get(start..self.i).unwrap_or_default()).as_str().unwrap_or_default();
            self.peek(); // `:`
            self.i += 1;
            each(self, key)?;
            match self.peek() {
                b',' => self.i += 1,
                _ => {
                    self.i += 1;
                    return Ok(true);
                }
            }
        }
    }

    fn strings(&mut self, what: &'static str) -> Result<Span, Error> {
        self.array(what, |w| w.string(what).map(drop))
    }
}

const NOT_AN_OBJECT: Error = Error::BadFrame { what: "a frame is not a JSON object" };
const NO_FRAME_MEMBER: Error = Error::BadFrame { what: "none of Resp, Rendered, More, Status and Suggest" };

/// Whether `e` says the message is no frame at all (not a JSON object, or
/// one without any of a frame's members), rather than a frame gone wrong.
pub(crate) fn is_foreign(e: &Error) -> bool {
    *e == NOT_AN_OBJECT || *e == NO_FRAME_MEMBER
}

/// Checks a framed message as a frame, recording where each response's
/// members are in `spans` (cleared first).
pub(crate) fn read_frame<T: Buf<Spans>>(msg: &Message<'_>, spans: &mut T) -> Result<Fields, Error> {
    spans.truncate(0);
    let raw = msg.raw();
    let obj = msg.object().ok_or(NOT_AN_OBJECT)?;
    let mut fields = Fields::default();
    let mut known = false;
    for (key, value) in obj.members() {
        let Some(top) = lookup(key, &TOP) else { continue };
        known = true;
        let place = crate::span_in(raw, value.raw()).unwrap_or_default();
        let at = place.start;
        let span = || Span::new(place.start, place.end);
        match (top, value.kind()) {
            (Top::Resp, Kind::Null) => fields.resp = Span::default(),
            (Top::Resp, Kind::Array) => fields.resp = span(),
            (Top::Rendered, Kind::String) => fields.rendered = span(),
            (Top::Rendered, Kind::Null) => fields.rendered = Span::default(),
            (Top::More, Kind::Bool | Kind::Null) => fields.more = value.as_bool() == Some(true),
            (Top::Status, Kind::Bool | Kind::Null) => fields.status = Some(value.as_bool() == Some(true)),
            (Top::Suggest, Kind::Null) => fields.suggest = Span::default(),
            (Top::Suggest, Kind::Array) => {
                let mut walk = Walk { d: raw, i: at };
                fields.suggest = walk.strings("Suggest is not an array of strings")?;
            }
            (Top::Resp, _) => return Err(Error::BadFrame { what: "Resp is not an array" }),
            (Top::Rendered, _) => return Err(Error::BadFrame { what: "Rendered is not a string" }),
            (Top::More, _) => return Err(Error::BadFrame { what: "More is not a boolean" }),
            (Top::Status, _) => return Err(Error::BadFrame { what: "Status is not a boolean" }),
            (Top::Suggest, _) => return Err(Error::BadFrame { what: "Suggest is not an array of strings" }),
        }
    }
    if !known {
        return Err(NO_FRAME_MEMBER);
    }
    if fields.resp.is_some() {
        let mut walk = Walk { d: raw, i: fields.resp.start as usize };
        let (mut count, mut errors) = (0u32, 0u32);
        walk.array("Resp is not an array", |w| {
            let mut s = Spans::default();
            w.object("a response is not a JSON object", |w, key| {
                let Some(member) = lookup(key, &MEMBERS) else {
                    w.any();
                    return Ok(());
                };
                match member {
                    Member::Host => s.host = w.string("Host is not a string")?,
                    Member::Response => s.response = w.string("Response is not a string")?,
                    Member::Error => s.error = w.string("Error is not a string")?,
                    Member::Header => s.header = w.strings("Header is not an array of strings")?,
                    Member::Tabular => {
                        const WHAT: &str = "Tabular is not an array of arrays of strings";
                        s.tabular = w.array(WHAT, |w| w.strings(WHAT).map(drop))?;
                    }
                    Member::Data => s.data = w.any(),
                }
                Ok(())
            })?;
            spans.try_push(s).map_err(|full| Error::TooManyResponses { limit: full.limit })?;
            count += 1;
            // `""` is two bytes: an error is anything longer.
            if s.error.end.saturating_sub(s.error.start) > 2 {
                errors += 1;
            }
            Ok(())
        })?;
        fields.responses = count;
        fields.errors = errors;
    }
    Ok(fields)
}

fn string_at(raw: &[u8], span: Span) -> JsonStr<'_> {
    span.get(raw).and_then(|s| Value::trusted(s).as_str()).unwrap_or_default()
}

/// A frame from the daemon, borrowed from the machine's buffer.
///
/// ```
/// use vmwire_proto::{Machine, buf::Heap, minimega::{Client, Config, Event}};
///
/// let mut mm = Client::<Heap>::new(Config::default());
/// mm.command("namespace")?;
/// mm.receive(br#"{"Resp":[{"Host":"mmpeer","Response":"","Header":["namespace","vlans","active"],"Tabular":[["minimega","101-4096","true"]],"Error":"","Data":null}],"Rendered":"host   | namespace | vlans    | active\nmmpeer | minimega  | 101-4096 | true","More":false,"Status":false}
/// "#)?;
/// let Some(Event::Frame(frame)) = mm.poll()? else { panic!() };
/// let response = frame.responses().next().unwrap();
/// assert!(response.host() == "mmpeer");
/// let row = response.rows().next().unwrap();
/// assert!(row.get("vlans").unwrap() == "101-4096");
/// # Ok::<(), vmwire_proto::minimega::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    raw: &'a [u8],
    fields: Fields,
    spans: &'a [Spans],
}

impl<'a> Frame<'a> {
    pub(crate) fn new(raw: &'a [u8], fields: Fields, spans: &'a [Spans]) -> Self {
        Frame { raw, fields, spans }
    }

    /// The frame's JSON text, exactly as received (without the line end).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether more frames of the same reply follow (`More`).
    pub fn more(&self) -> bool {
        self.fields.more
    }

    /// `Status`: `Some(true)` for a status message, `None` when the member is
    /// absent (daemons before 2.8 do not send it).
    pub fn status(&self) -> Option<bool> {
        self.fields.status
    }

    /// The daemon's own rendering of the responses (`Rendered`): host names
    /// annotated, tables aligned and sorted, in its current output mode.
    /// Errors are never in it; they are in [`Response::error`].
    pub fn rendered(&self) -> JsonStr<'a> {
        string_at(self.raw, self.fields.rendered)
    }

    /// The `Resp` array as sent; `None` when it is `null` (a blank or comment
    /// line, a suggestion, a status message).
    pub fn resp(&self) -> Option<Value<'a>> {
        self.fields.resp.get(self.raw).map(Value::trusted)
    }

    /// The responses, one per host that answered.
    pub fn responses(&self) -> ResponseIter<'a> {
        ResponseIter { raw: self.raw, spans: self.spans.iter() }
    }

    /// How many responses carry an error.
    pub fn error_count(&self) -> usize {
        self.fields.errors as usize
    }

    /// The responses that carry an error.
    pub fn errors(&self) -> impl Iterator<Item = Response<'a>> + use<'a> {
        self.responses().filter(|r| r.error().is_some())
    }

    /// The completions in a reply to a suggestion request (`Suggest`): whole
    /// lines, each ending in a space, sorted. Empty when there are none.
    pub fn suggestions(&self) -> Strings<'a> {
        Strings::new(self.fields.suggest.get(self.raw))
    }
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("responses", &self.responses())
            .field("rendered", &self.rendered())
            .field("more", &self.more())
            .field("status", &self.status())
            .finish()
    }
}

/// Iterator over a frame's responses.
#[derive(Clone)]
pub struct ResponseIter<'a> {
    raw: &'a [u8],
    spans: core::slice::Iter<'a, Spans>,
}

impl<'a> Iterator for ResponseIter<'a> {
    type Item = Response<'a>;

    fn next(&mut self) -> Option<Response<'a>> {
        self.spans.next().map(|&spans| Response { raw: self.raw, spans })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.spans.size_hint()
    }
}

impl ExactSizeIterator for ResponseIter<'_> {}

impl fmt::Debug for ResponseIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// One host's answer to a command: `{Host, Response, Header, Tabular, Error, Data}`.
#[derive(Clone, Copy)]
pub struct Response<'a> {
    raw: &'a [u8],
    spans: Spans,
}

impl<'a> Response<'a> {
    /// The host that answered (`""` for errors of the daemon's command preprocessor).
    pub fn host(&self) -> JsonStr<'a> {
        string_at(self.raw, self.spans.host)
    }

    /// The plain-text answer (`Response`), `""` for tables and errors.
    pub fn response(&self) -> JsonStr<'a> {
        string_at(self.raw, self.spans.response)
    }

    /// The error, if the command failed on this host.
    pub fn error(&self) -> Option<JsonStr<'a>> {
        Some(string_at(self.raw, self.spans.error)).filter(|e| !e.raw().is_empty())
    }

    /// The column names, when the answer is a table (`Header`; it can be
    /// present with no rows).
    pub fn header(&self) -> Option<Strings<'a>> {
        self.spans.header.get(self.raw).map(|h| Strings::new(Some(h)))
    }

    /// Whether `Header` is present.
    pub fn is_tabular(&self) -> bool {
        self.spans.header.is_some()
    }

    /// The position of column `name` in the header.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header()?.position(|h| h == name)
    }

    /// The table's rows (`Tabular`), in the order the daemon sent them (which
    /// can differ from call to call: see [`compare_rows`](super::compare_rows)
    /// for the order minimega displays).
    pub fn rows(&self) -> Rows<'a> {
        Rows { cells: Strings::new(self.spans.tabular.get(self.raw)), header: self.spans.header.get(self.raw) }
    }

    /// The table's rows as sent: `None` when `Tabular` is `null` (as for
    /// `vm info` with no VMs: a header and no rows), rather than `[]`.
    pub fn tabular(&self) -> Option<Rows<'a>> {
        self.spans.tabular.is_some().then(|| self.rows())
    }

    /// The command's structured result (`Data`), as a raw JSON span; `None`
    /// when it is `null`. Its shape depends on the command.
    pub fn data(&self) -> Option<Value<'a>> {
        self.spans.data.get(self.raw).map(Value::trusted)
    }
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("host", &self.host())
            .field("response", &self.response())
            .field("header", &self.header())
            .field("rows", &self.rows())
            .field("error", &self.error())
            .field("data", &self.data())
            .finish()
    }
}

/// Iterator over an array of strings (a `null` element reads as `""`).
///
/// Also used, one level up, to walk a table's rows.
#[derive(Clone)]
pub struct Strings<'a> {
    raw: &'a [u8],
    i: usize,
}

impl<'a> Strings<'a> {
    fn new(array: Option<&'a [u8]>) -> Self {
        Strings { raw: array.unwrap_or_default(), i: 1 }
    }

    /// The next element's span, if any.
    fn next_span(&mut self) -> Option<&'a [u8]> {
        let raw = self.raw;
        let mut i = skip_ws(raw, self.i);
        if raw.get(i) == Some(&b',') {
            i = skip_ws(raw, i + 1);
        }
        if matches!(raw.get(i), Some(b']') | None) {
            self.i = raw.len();
            return None;
        }
        let end = skip_value(raw, i);
        self.i = end;
        raw.get(i..end)
    }
}

impl<'a> Iterator for Strings<'a> {
    type Item = JsonStr<'a>;

    fn next(&mut self) -> Option<JsonStr<'a>> {
        self.next_span().map(|s| Value::trusted(s).as_str().unwrap_or_default())
    }
}

impl fmt::Debug for Strings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// Iterator over a table's rows.
#[derive(Clone)]
pub struct Rows<'a> {
    cells: Strings<'a>,
    header: Option<&'a [u8]>,
}

impl<'a> Iterator for Rows<'a> {
    type Item = Row<'a>;

    fn next(&mut self) -> Option<Row<'a>> {
        let cells = self.cells.next_span()?;
        Some(Row { cells: (cells.first() == Some(&b'[')).then_some(cells), header: self.header })
    }
}

impl fmt::Debug for Rows<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// One row of a table: its cells, and each cell under its column's name.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    cells: Option<&'a [u8]>,
    header: Option<&'a [u8]>,
}

impl<'a> Row<'a> {
    /// The cells, in column order.
    pub fn cells(&self) -> Strings<'a> {
        Strings::new(self.cells)
    }

    /// The cell in column `index`.
    pub fn cell(&self, index: usize) -> Option<JsonStr<'a>> {
        self.cells().nth(index)
    }

    /// The cell under the column named `column`.
    pub fn get(&self, column: &str) -> Option<JsonStr<'a>> {
        let index = Strings::new(self.header).position(|h| h == column)?;
        self.cell(index)
    }

    /// `(column name, cell)` pairs: the row as a map from header to cell.
    pub fn fields(&self) -> impl Iterator<Item = (JsonStr<'a>, JsonStr<'a>)> + use<'a> {
        Strings::new(self.header).zip(self.cells())
    }
}

impl fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.cells()).finish()
    }
}
