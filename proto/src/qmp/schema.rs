//! The QAPI schema of the QEMU at the other end, read from its
//! `query-qmp-schema` reply: questions about it, and checking a command's
//! arguments against it before they are sent.
//!
//! The reply is read in place: the [`Schema`] keeps the bytes (borrowed or
//! owned) and an index of borrowed spans into them, in two tables the
//! embedder supplies (fixed `heapless` storage, or growable up to a limit
//! with `alloc`). A schema that does not fit is an [`Error`], never a panic.
//!
//! Type references are resolved once, when the index is built, so a check
//! costs a few lookups per member and no scanning of the schema text.
//!
//! ```
//! use vmwire_proto::qmp::schema::{FixedSchema, Schema};
//! use vmwire_proto::json::Value;
//!
//! let text = br#"[
//!   {"name": "blockdev-del", "meta-type": "command", "arg-type": "0", "ret-type": "1"},
//!   {"name": "0", "meta-type": "object", "members": [{"name": "node-name", "type": "str"}]},
//!   {"name": "1", "meta-type": "object", "members": []},
//!   {"name": "str", "meta-type": "builtin", "json-type": "string"}
//! ]"#;
//! let schema: FixedSchema<&[u8], 8, 8> = Schema::read(&text[..], heapless::Vec::new(), heapless::Vec::new())?;
//! assert!(schema.has("blockdev-del/arg-type/node-name"));
//! let args = Value::parse(br#"{"node-name": 7}"#).unwrap();
//! let err = schema.check("blockdev-del", Some(args)).unwrap_err();
//! assert_eq!(err.to_string(), "blockdev-del: node-name: expected a string, got 7");
//! # Ok::<(), vmwire_proto::qmp::schema::Error>(())
//! ```
//!
//! # Path queries
//!
//! [`SchemaRef::has`] answers libvirt's capability probes
//! (`virQEMUQAPISchemaPathGet`) with the same syntax: a command or event,
//! then `/`-separated steps: `arg-type` or `ret-type`; `name` a member;
//! `*name` an optional member; `+name` a union variant; `^name` an enum
//! value; `$name` a feature; `!type` a builtin's JSON type. Arrays are looked
//! through, and each branch of an alternate is tried.

use core::fmt;

use crate::buf::{Buf, Full};
use crate::json::{self, JsonStr, Kind, Value};

/// Arguments of these commands are checked for the members the schema
/// names, but other members are let through: QEMU declares them with
/// `'gen': false` and reads the rest itself (`device_add`'s device
/// properties). Introspection does not say so, hence the list.
pub const OPEN_COMMANDS: &[&str] = &["device_add"];

/// How deep a check follows nested arguments before giving up.
pub const MAX_CHECK_DEPTH: usize = 64;

/// Path segments kept in a [`Path`]; deeper paths are shown cut short.
pub const MAX_PATH: usize = 16;

/// No type: an entry or item field that does not apply.
const NONE: u16 = u16::MAX;

const DEPRECATED: u8 = 1;
const UNSTABLE: u8 = 2;
const OPTIONAL: u8 = 4;
const ALLOW_OOB: u8 = 8;
/// An object's variants come before its members in the item table.
const VARIANTS_FIRST: u8 = 16;

/// A byte range of the schema text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn get(self, text: &[u8]) -> &[u8] {
        text.get(self.start as usize..self.end as usize).unwrap_or_default()
    }

    fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }
}

/// What a schema entry describes (introspection's `meta-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MetaType {
    /// A built-in type (`str`, `int`, `number`, `bool`, `null`, `any`).
    #[default]
    Builtin,
    /// An enumeration of strings.
    Enum,
    /// An array of one element type.
    Array,
    /// An object: members, and for a union a tag and variants.
    Object,
    /// One of several types, told apart by JSON type.
    Alternate,
    /// A command.
    Command,
    /// An event.
    Event,
    /// A meta-type this reader does not know (a newer QEMU): anything goes.
    Other,
}

/// A builtin's JSON type (introspection's `json-type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JsonType {
    /// `string`
    String,
    /// `number` (integers too)
    Number,
    /// `int` (an integer, no fraction or exponent)
    Int,
    /// `boolean`
    Boolean,
    /// `null`
    Null,
    /// `object`
    Object,
    /// `array`
    Array,
    /// `value`: any JSON value.
    #[default]
    Value,
}

impl JsonType {
    fn from_name(name: JsonStr<'_>) -> Option<Self> {
        Some(match name.raw() {
            b"string" => JsonType::String,
            b"number" => JsonType::Number,
            b"int" => JsonType::Int,
            b"boolean" => JsonType::Boolean,
            b"null" => JsonType::Null,
            b"object" => JsonType::Object,
            b"array" => JsonType::Array,
            b"value" => JsonType::Value,
            _ => return None,
        })
    }

    /// Introspection's name for it.
    pub fn name(self) -> &'static str {
        match self {
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Int => "int",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::Value => "value",
        }
    }

    /// Whether `value` is of this type, as QEMU's input visitor decides
    /// (`int` takes integers only, in `i64` or `u64` range; `number` takes
    /// integers too).
    pub fn accepts(self, value: Value<'_>) -> bool {
        match self {
            JsonType::String => value.kind() == Kind::String,
            JsonType::Number => value.kind() == Kind::Number,
            JsonType::Int => value.as_i64().is_some() || value.as_u64().is_some(),
            JsonType::Boolean => value.kind() == Kind::Bool,
            JsonType::Null => value.kind() == Kind::Null,
            JsonType::Object => value.kind() == Kind::Object,
            JsonType::Array => value.kind() == Kind::Array,
            JsonType::Value => true,
        }
    }
}

/// One schema entry in the index (what the entry table holds; its fields
/// are the reader's business).
#[derive(Debug, Clone, Copy, Default)]
pub struct Entry {
    /// The name's first eight bytes, big-endian: most comparisons end here.
    key: u64,
    name: Span,
    raw: Span,
    meta: MetaType,
    json: JsonType,
    /// Array: element type. Command, event: `arg-type`. Object: tag member (index into its members).
    a: u16,
    /// Command: `ret-type`.
    b: u16,
    /// First item in the item table.
    items: u32,
    /// Members (object), values (enum), branches (alternate).
    members: u16,
    /// Variants (object), after the members.
    variants: u16,
    flags: u8,
}

/// One member, enum value, variant or alternate branch in the index (what
/// the item table holds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Item {
    /// The name's first eight bytes, big-endian (see [`prefix`]).
    key: u64,
    name: Span,
    raw: Span,
    ty: u16,
    /// While reading: where the type's name is within `raw`, and its length.
    ty_at: u16,
    ty_len: u8,
    flags: u8,
}

/// What was wrong with a `query-qmp-schema` reply, or why it did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The text is not JSON.
    Json(json::Error),
    /// Something is not shaped as introspection describes (`SchemaInfo`).
    Shape {
        /// Byte offset of the offending value.
        offset: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// A type name that no entry defines.
    UnknownType {
        /// Byte offset of the name.
        offset: usize,
    },
    /// Two entries with the same name.
    Duplicate {
        /// Byte offset of the second entry's name.
        offset: usize,
    },
    /// A table of the index is full.
    Full {
        /// `"entries"` or `"items"`.
        table: &'static str,
        /// Its limit.
        limit: usize,
    },
    /// The text or the index is larger than the index can address
    /// (4 GiB of text, 65,535 entries, 4 Gi items, 65,535 items per entry).
    TooLarge,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Json(e) => write!(f, "QMP schema: {e}"),
            Error::Shape { offset, expected } => write!(f, "QMP schema: at byte {offset}: expected {expected}"),
            Error::UnknownType { offset } => write!(f, "QMP schema: at byte {offset}: no entry has this type name"),
            Error::Duplicate { offset } => write!(f, "QMP schema: at byte {offset}: a second entry with this name"),
            Error::Full { table, limit } => write!(f, "QMP schema: the {table} table is full (limit {limit})"),
            Error::TooLarge => f.write_str("QMP schema: too large for the index"),
        }
    }
}

impl core::error::Error for Error {}

impl From<json::Error> for Error {
    fn from(e: json::Error) -> Self {
        Error::Json(e)
    }
}

/// A QAPI schema read from `query-qmp-schema`: the text `T` (borrowed or
/// owned bytes) and its index, in an entry table `E` and an item table `I`.
///
/// The questions and the checker are on [`SchemaRef`] ([`Schema::view`]);
/// the common ones are forwarded here.
#[derive(Debug, Clone)]
pub struct Schema<T, E, I> {
    text: T,
    entries: E,
    items: I,
}

/// A schema on fixed storage: at most `E` entries and `I` items (QEMU
/// 7.2's needs 1,051 and about 4,000).
pub type FixedSchema<T, const E: usize, const I: usize> = Schema<T, heapless::Vec<Entry, E>, heapless::Vec<Item, I>>;

/// A schema on growable storage.
#[cfg(feature = "alloc")]
pub type HeapSchema<T> = Schema<T, crate::buf::Bounded<Entry>, crate::buf::Bounded<Item>>;

#[cfg(feature = "alloc")]
impl<T: AsRef<[u8]>> HeapSchema<T> {
    /// Reads `text` into growable tables (up to 65,535 entries and 1 Mi items).
    pub fn read_heap(text: T) -> Result<Self, Error> {
        Schema::read(text, crate::buf::Bounded::new(usize::from(NONE)), crate::buf::Bounded::new(1 << 20))
    }
}

/// Offset of `part` (a sub-slice of `whole`) in `whole`.
fn offset(whole: &[u8], part: &[u8]) -> usize {
    crate::span_in(whole, part).map_or(0, |span| span.start)
}

fn span(whole: &[u8], part: &[u8]) -> Span {
    let start = offset(whole, part);
    // The text is at most u32::MAX bytes long (checked on entry).
    Span { start: start as u32, end: (start + part.len()) as u32 }
}

fn shape(whole: &[u8], at: &[u8], expected: &'static str) -> Error {
    Error::Shape { offset: offset(whole, at), expected }
}

/// Whether a `features` array names `feature`.
fn features_name(features: Option<Value<'_>>, feature: &str) -> bool {
    features.and_then(|f| f.as_array()).into_iter().flatten().any(|f| f.as_str().is_some_and(|s| s == feature))
}

fn feature_flags(features: Option<Value<'_>>) -> u8 {
    let mut flags = 0;
    for f in features.and_then(|f| f.as_array()).into_iter().flatten() {
        match f.as_str().map(|s| s.raw()) {
            Some(b"deprecated") => flags |= DEPRECATED,
            Some(b"unstable") => flags |= UNSTABLE,
            _ => {}
        }
    }
    flags
}

impl<T: AsRef<[u8]>, E: Buf<Entry>, I: Buf<Item>> Schema<T, E, I> {
    /// Reads a `query-qmp-schema` reply (`{"return": [...]}`, or the array
    /// alone) into the index, in the tables given.
    pub fn read(text: T, mut entries: E, mut items: I) -> Result<Self, Error> {
        let bytes = text.as_ref();
        if u32::try_from(bytes.len()).is_err() {
            return Err(Error::TooLarge);
        }
        let value = Value::parse_limited(bytes, 32)?;
        let list = match value.kind() {
            Kind::Object => value.get("return").unwrap_or(value),
            _ => value,
        };
        if list.kind() != Kind::Array {
            return Err(shape(bytes, list.raw(), "an array of SchemaInfo"));
        }
        entries.truncate(0);
        items.truncate(0);
        // One pass over the text: every entry and item but the type references.
        let mut walk = Walk { whole: bytes, raw: list.raw(), pos: 1 };
        while let Some(at) = walk.element() {
            if entries.as_slice().len() >= usize::from(NONE) {
                return Err(Error::TooLarge);
            }
            let (entry, end) = describe(bytes, list.raw(), at, &mut items)?;
            walk.pos = end;
            entries.try_push(entry).map_err(|Full { limit }| Error::Full { table: "entries", limit })?;
        }
        entries.as_mut_slice().sort_unstable_by(|x, y| order(bytes, x, y.key, y.name.get(bytes)));
        if let Some(pair) = entries
            .as_slice()
            .windows(2)
            .find(|w| w.first().map(|e| e.name.get(bytes)) == w.get(1).map(|e| e.name.get(bytes)))
        {
            let second = pair.get(1).map_or(0, |e| e.name.start as usize);
            return Err(Error::Duplicate { offset: second });
        }
        // Then the type references, by name among the sorted entries,
        // looking again only at the small objects that hold them.
        resolve(bytes, entries.as_mut_slice(), items.as_mut_slice())?;
        Ok(Schema { text, entries, items })
    }

    /// The view the questions are asked of.
    pub fn view(&self) -> SchemaRef<'_> {
        SchemaRef { text: self.text.as_ref(), entries: self.entries.as_slice(), items: self.items.as_slice() }
    }

    /// The schema text, as read.
    pub fn text(&self) -> &T {
        &self.text
    }

    /// See [`SchemaRef::has`].
    pub fn has(&self, path: &str) -> bool {
        self.view().has(path)
    }

    /// See [`SchemaRef::command`].
    pub fn command(&self, name: &str) -> Option<Type<'_>> {
        self.view().command(name)
    }

    /// See [`SchemaRef::check`].
    // The error carries its path inline: there is no allocator to box it in.
    #[allow(clippy::result_large_err)]
    pub fn check<'a>(&'a self, command: &'a str, arguments: Option<Value<'a>>) -> Result<Warnings<'a>, CheckError<'a>> {
        self.view().check(command, arguments)
    }
}

/// The first eight bytes of `name`, big-endian, zero-padded: sorting by
/// this and then by the whole name is sorting by name.
fn prefix(name: &[u8]) -> u64 {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(name) {
        *k = *b;
    }
    u64::from_be_bytes(key)
}

/// How `entry` sorts against the name `name` whose prefix is `key`.
fn order(text: &[u8], entry: &Entry, key: u64, name: &[u8]) -> core::cmp::Ordering {
    entry.key.cmp(&key).then_with(|| entry.name.get(text).cmp(name))
}

/// Looks up `name` among the sorted `entries`.
fn find(text: &[u8], entries: &[Entry], name: &[u8]) -> Option<u16> {
    let key = prefix(name);
    let i = entries.binary_search_by(|e| order(text, e, key, name)).ok()?;
    u16::try_from(i).ok()
}

/// The members of `object` named by `keys`, in one pass (the first of each;
/// keys compared as sent, and QAPI's have no escapes).
fn fields<'a, const N: usize>(object: Value<'a>, keys: [&str; N]) -> [Option<Value<'a>>; N] {
    let mut found = [None; N];
    for (key, value) in object.as_object().into_iter().flat_map(|o| o.members()) {
        if let Some(slot) = keys.iter().position(|k| k.as_bytes() == key.raw()).and_then(|i| found.get_mut(i)) {
            slot.get_or_insert(value);
        }
    }
    found
}

/// Walks the members of a (validated) object or the elements of an array
/// once: for the big entries, reading while skipping is what costs.
struct Walk<'a> {
    /// The whole schema text, for offsets in errors.
    whole: &'a [u8],
    raw: &'a [u8],
    pos: usize,
}

impl<'a> Walk<'a> {
    /// The next member's key (as sent) and where its value starts.
    fn member(&mut self) -> Option<(&'a [u8], usize)> {
        let raw = self.raw;
        let mut i = json::skip_ws(raw, self.pos);
        if raw.get(i) == Some(&b',') {
            i = json::skip_ws(raw, i + 1);
        }
        if raw.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = json::skip_string(raw, i);
        let key = raw.get(i + 1..key_end.saturating_sub(1))?;
        let colon = json::skip_ws(raw, key_end);
        let start = json::skip_ws(raw, colon + 1);
        self.pos = start;
        Some((key, start))
    }

    /// The next element's start.
    fn element(&mut self) -> Option<usize> {
        let raw = self.raw;
        let mut i = json::skip_ws(raw, self.pos);
        if raw.get(i) == Some(&b',') {
            i = json::skip_ws(raw, i + 1);
        }
        if matches!(raw.get(i), Some(b']' | b'}') | None) {
            return None;
        }
        self.pos = i;
        Some(i)
    }

    /// The value at `start`, skipped.
    fn skip(&mut self, start: usize) -> Value<'a> {
        let end = json::skip_value(self.raw, start);
        self.pos = end;
        Value::trusted(self.raw.get(start..end).unwrap_or_default())
    }

    /// The array at `start`, its elements handed to `each`.
    fn array(&mut self, start: usize, mut each: impl FnMut(Value<'a>) -> Result<(), Error>) -> Result<(), Error> {
        self.array_walk(start, |walk, at| {
            let v = walk.skip(at);
            each(v)
        })
    }

    /// The array at `start`: `each` gets a walk positioned at each element
    /// (and where it starts), and leaves the walk's position past it.
    fn array_walk(
        &mut self,
        start: usize,
        mut each: impl FnMut(&mut Walk<'a>, usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.raw.get(start) != Some(&b'[') {
            let v = self.skip(start);
            return Err(Error::Shape { offset: offset(self.whole, v.raw()), expected: "an array" });
        }
        let mut inner = Walk { whole: self.whole, raw: self.raw, pos: start + 1 };
        while let Some(at) = inner.element() {
            each(&mut inner, at)?;
        }
        let close = json::skip_ws(self.raw, inner.pos);
        self.pos = close + 1;
        Ok(())
    }

    /// The object at `start`, walked once: the values of `keys` (the
    /// first of each), and the object itself. Not an object: skipped, no values.
    fn object<const N: usize>(&mut self, start: usize, keys: [&str; N]) -> ([Option<Value<'a>>; N], Value<'a>) {
        let mut found = [None; N];
        if self.raw.get(start) != Some(&b'{') {
            let v = self.skip(start);
            return (found, v);
        }
        self.pos = start + 1;
        while let Some((key, at)) = self.member() {
            let v = self.skip(at);
            if let Some(slot) = keys.iter().position(|k| k.as_bytes() == key).and_then(|i| found.get_mut(i)) {
                slot.get_or_insert(v);
            }
        }
        let end = json::skip_ws(self.raw, self.pos) + 1;
        self.pos = end;
        (found, Value::trusted(self.raw.get(start..end).unwrap_or_default()))
    }
}

/// One `SchemaInfo` as an entry, its members, values, variants or branches
/// pushed to `items`, in one walk over its text; type references are left
/// for [`resolve`].
/// The entry starts at `start` in `raw` (a validated array); returns it and where it ends.
fn describe<'a, I: Buf<Item>>(
    text: &'a [u8],
    raw: &'a [u8],
    start: usize,
    items: &mut I,
) -> Result<(Entry, usize), Error> {
    let here = raw.get(start..).unwrap_or_default();
    if here.first() != Some(&b'{') {
        return Err(shape(text, here, "a SchemaInfo object with name and meta-type"));
    }
    let first = items.as_slice().len();
    let mut entry =
        Entry { items: u32::try_from(first).map_err(|_| Error::TooLarge)?, a: NONE, b: NONE, ..Entry::default() };
    let (mut name, mut meta, mut json_type, mut tag, mut values) = (None, None, None, None, None);
    let (mut members, mut variants, mut nameless) = (None::<u16>, None::<u16>, None);
    let push = |items: &mut I, name: &[u8], raw: &[u8], flags: u8| -> Result<(), Error> {
        let item = Item {
            key: prefix(name),
            name: span(text, name),
            raw: span(text, raw),
            ty: NONE,
            flags,
            ..Item::default()
        };
        items.try_push(item).map_err(|Full { limit }| Error::Full { table: "items", limit })
    };
    let count = |items: &I, from: usize| u16::try_from(items.as_slice().len() - from).map_err(|_| Error::TooLarge);
    let mut walk = Walk { whole: text, raw, pos: start + 1 };
    while let Some((key, at)) = walk.member() {
        match key {
            b"members" | b"variants" => {
                let is_variants = key == b"variants";
                if values.is_some() && !is_variants {
                    // An enum's values came first: its members say more.
                    items.truncate(first);
                    values = None;
                }
                let from = items.as_slice().len();
                walk.array_walk(at, |walk, at| {
                    let ([n, case, ty, default, features], m) =
                        walk.object(at, ["name", "case", "type", "default", "features"]);
                    let n = if is_variants { case } else { n };
                    let n = n.and_then(|n| n.as_str());
                    if n.is_none() && nameless.is_none() {
                        nameless = Some(m);
                    }
                    let optional = if default.is_some() { OPTIONAL } else { 0 };
                    // Where the type's name is, for `resolve` (0: look it up again).
                    let ty = ty.and_then(|t| t.as_str()).map(|t| t.raw());
                    let ty_at = ty.and_then(|t| u16::try_from(offset(m.raw(), t)).ok());
                    let ty_len = ty.and_then(|t| u8::try_from(t.len()).ok());
                    let (ty_at, ty_len) = ty_at.zip(ty_len).unwrap_or((0, 0));
                    let name = n.map_or(&[][..], |n| n.raw());
                    let item = Item {
                        key: prefix(name),
                        name: span(text, name),
                        raw: span(text, m.raw()),
                        ty: NONE,
                        ty_at,
                        ty_len,
                        flags: optional | feature_flags(features),
                    };
                    items.try_push(item).map_err(|Full { limit }| Error::Full { table: "items", limit })
                })?;
                let n = Some(count(items, from)?);
                if is_variants {
                    variants = n;
                    if members.is_none() {
                        entry.flags |= VARIANTS_FIRST;
                    }
                } else {
                    members = n;
                }
            }
            b"values" if members.is_none() => {
                let from = items.as_slice().len();
                walk.array(at, |v| match v.as_str() {
                    Some(s) => push(items, s.raw(), v.raw(), 0),
                    None => Err(shape(text, v.raw(), "an enum value (a string)")),
                })?;
                values = Some(count(items, from)?);
            }
            _ => {
                let v = walk.skip(at);
                match key {
                    b"name" => name = v.as_str(),
                    b"meta-type" => meta = v.as_str(),
                    b"json-type" => json_type = v.as_str(),
                    b"tag" => tag = Some(v),
                    b"features" => entry.flags |= feature_flags(Some(v)),
                    b"allow-oob" if v.as_bool() == Some(true) => entry.flags |= ALLOW_OOB,
                    _ => {}
                }
            }
        }
    }
    let end = json::skip_ws(raw, walk.pos) + 1;
    let info = raw.get(start..end).unwrap_or_default();
    entry.raw = span(text, info);
    let (Some(name), Some(meta)) = (name, meta) else {
        return Err(shape(text, info, "a SchemaInfo object with name and meta-type"));
    };
    entry.name = span(text, name.raw());
    entry.key = prefix(name.raw());
    entry.meta = match meta.raw() {
        b"builtin" => MetaType::Builtin,
        b"enum" => MetaType::Enum,
        b"array" => MetaType::Array,
        b"object" => MetaType::Object,
        b"alternate" => MetaType::Alternate,
        b"command" => MetaType::Command,
        b"event" => MetaType::Event,
        _ => MetaType::Other,
    };
    let need = |ok: bool, what: &'static str| if ok { Ok(()) } else { Err(shape(text, info, what)) };
    match entry.meta {
        MetaType::Builtin => {
            let json = json_type.and_then(JsonType::from_name);
            entry.json = json.ok_or_else(|| shape(text, info, "a builtin with a json-type"))?;
        }
        MetaType::Enum => {
            need(members.is_some() || values.is_some(), "an enum with values")?;
            if let Some(m) = nameless {
                return Err(shape(text, m.raw(), "an enum member with a name"));
            }
            entry.members = members.or(values).unwrap_or(0);
        }
        MetaType::Object => {
            need(members.is_some(), "an object with members")?;
            if let Some(m) = nameless {
                return Err(shape(text, m.raw(), "a member with a name"));
            }
            entry.members = members.unwrap_or(0);
            entry.variants = variants.unwrap_or(0);
            if let Some(tag) = tag {
                need(variants.is_some(), "a union with variants")?;
                let tag = tag.as_str().ok_or_else(|| shape(text, tag.raw(), "a tag (a member name)"))?;
                let at = member_items(&entry, items.as_slice()).iter().position(|m| m.name.get(text) == tag.raw());
                entry.a = at
                    .and_then(|i| u16::try_from(i).ok())
                    .ok_or(Error::Shape { offset: offset(text, tag.raw()), expected: "a tag that names a member" })?;
            }
        }
        MetaType::Alternate => {
            need(members.is_some(), "an alternate with members")?;
            entry.members = members.unwrap_or(0);
        }
        MetaType::Array | MetaType::Command | MetaType::Event | MetaType::Other => {
            // Items of keys this meta-type does not have: not kept.
            items.truncate(first);
        }
    }
    Ok((entry, end))
}

/// Where an entry's members (or values, or branches) start among its items.
fn members_skip(entry: &Entry) -> u16 {
    if entry.flags & VARIANTS_FIRST != 0 { entry.variants } else { 0 }
}

/// Where an object's variants start among its items.
fn variants_skip(entry: &Entry) -> u16 {
    if entry.flags & VARIANTS_FIRST != 0 { 0 } else { entry.members }
}

/// An entry's members (values, branches) in the item table.
fn member_items<'i>(entry: &Entry, items: &'i [Item]) -> &'i [Item] {
    let start = entry.items as usize + usize::from(members_skip(entry));
    items.get(start..start + usize::from(entry.members)).unwrap_or_default()
}

/// An object's variants in the item table.
fn variant_items<'i>(entry: &Entry, items: &'i [Item]) -> &'i [Item] {
    let start = entry.items as usize + usize::from(variants_skip(entry));
    items.get(start..start + usize::from(entry.variants)).unwrap_or_default()
}

/// Where among `items` the one named `key` is: by prefix and length first,
/// decoding escapes only when nothing matched as sent.
fn position(items: &[Item], text: &[u8], key: JsonStr<'_>) -> Option<usize> {
    let raw = key.raw();
    let (p, len) = (prefix(raw), raw.len());
    let found = items
        .iter()
        .position(|item| item.key == p && item.name.len() == len && (len <= 8 || item.name.get(text) == raw));
    if found.is_some() || !key.has_escapes() {
        return found;
    }
    items.iter().position(|item| core::str::from_utf8(item.name.get(text)).is_ok_and(|n| key == n))
}

/// Resolves the type references of every entry and item.
fn resolve(text: &[u8], entries: &mut [Entry], items: &mut [Item]) -> Result<(), Error> {
    let lookup = |entries: &[Entry], at: Value<'_>, v: Option<Value<'_>>, what: &'static str| -> Result<u16, Error> {
        let Some(name) = v.and_then(|v| v.as_str()) else {
            return Err(shape(text, v.map_or(at.raw(), |v| v.raw()), what));
        };
        find(text, entries, name.raw()).ok_or(Error::UnknownType { offset: offset(text, name.raw()) })
    };
    for i in 0..entries.len() {
        let Some(&entry) = entries.get(i) else { break };
        let info = Value::trusted(entry.raw.get(text));
        let (a, b) = match entry.meta {
            MetaType::Array => {
                (lookup(entries, info, info.get("element-type"), "an array with an element-type")?, NONE)
            }
            MetaType::Event => (lookup(entries, info, info.get("arg-type"), "an event with an arg-type")?, NONE),
            MetaType::Command => {
                let [arg, ret] = fields(info, ["arg-type", "ret-type"]);
                (
                    lookup(entries, info, arg, "a command with an arg-type")?,
                    lookup(entries, info, ret, "a command with a ret-type")?,
                )
            }
            MetaType::Object | MetaType::Alternate => {
                let start = entry.items as usize;
                let n = usize::from(entry.members) + usize::from(entry.variants);
                for item in items.get_mut(start..start + n).unwrap_or_default() {
                    let raw = item.raw.get(text);
                    let at = usize::from(item.ty_at);
                    item.ty = match raw.get(at..at + usize::from(item.ty_len)) {
                        Some(name) if item.ty_len > 0 => {
                            find(text, entries, name).ok_or(Error::UnknownType { offset: offset(text, name) })?
                        }
                        _ => lookup(
                            entries,
                            Value::trusted(raw),
                            Value::trusted(raw).get("type"),
                            "a member with a type",
                        )?,
                    };
                }
                continue;
            }
            _ => continue,
        };
        if let Some(slot) = entries.get_mut(i) {
            slot.a = a;
            slot.b = b;
        }
    }
    Ok(())
}

/// A read schema, borrowed: the questions and the checker.
#[derive(Debug, Clone, Copy)]
pub struct SchemaRef<'s> {
    text: &'s [u8],
    entries: &'s [Entry],
    items: &'s [Item],
}

impl<'s> SchemaRef<'s> {
    /// How many entries the schema has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = Type<'s>> + use<'s> {
        let s = *self;
        (0..self.entries.len()).filter_map(move |i| s.ty(u16::try_from(i).ok()?))
    }

    /// The commands, sorted by name.
    pub fn commands(&self) -> impl Iterator<Item = Type<'s>> + use<'s> {
        self.entries().filter(|t| t.meta() == MetaType::Command)
    }

    /// The events, sorted by name.
    pub fn events(&self) -> impl Iterator<Item = Type<'s>> + use<'s> {
        self.entries().filter(|t| t.meta() == MetaType::Event)
    }

    fn ty(&self, index: u16) -> Option<Type<'s>> {
        let entry = self.entries.get(usize::from(index))?;
        Some(Type { schema: *self, entry, index })
    }

    /// The entry named `name` (a command, an event, or a type by its
    /// name as introspection shows it: builtins by name, others masked as numbers).
    pub fn get(&self, name: &str) -> Option<Type<'s>> {
        self.ty(find(self.text, self.entries, name.as_bytes())?)
    }

    /// The command named `name`.
    pub fn command(&self, name: &str) -> Option<Type<'s>> {
        self.get(name).filter(|t| t.meta() == MetaType::Command)
    }

    /// The event named `name`.
    pub fn event(&self, name: &str) -> Option<Type<'s>> {
        self.get(name).filter(|t| t.meta() == MetaType::Event)
    }

    /// Answers a libvirt-style path query (see the [module](self) docs):
    /// `blockdev-add/arg-type/+file/aio/^io_uring`, `query-cpus-fast/ret-type/target`,
    /// `drive-backup/$deprecated`, `object-add/arg-type/qom-type/^secret`.
    pub fn has(&self, path: &str) -> bool {
        let (top, rest) = match path.split_once('/') {
            Some((top, rest)) => (top, Some(rest)),
            None => (path, None),
        };
        let Some(top) = self.get(top) else { return false };
        matches!(top.meta(), MetaType::Command | MetaType::Event) && self.walk(top, None, rest, 0)
    }

    /// Follows the steps `rest` (`None`: no more) from `at`, reached through member `via`.
    fn walk(&self, at: Type<'s>, via: Option<Member<'s>>, rest: Option<&str>, depth: usize) -> bool {
        let Some(rest) = rest else { return true };
        if depth > 32 {
            return false;
        }
        let (step, next) = match rest.split_once('/') {
            Some((step, next)) => (step, Some(next)),
            None => (rest, None),
        };
        let (modifier, name) = match step.as_bytes().first() {
            Some(&c) if !c.is_ascii_alphabetic() => (c, step.get(1..).unwrap_or_default()),
            _ => (b' ', step),
        };
        if modifier == b'$' {
            return next.is_none() && (at.has_feature(name) || via.is_some_and(|m| m.has_feature(name)));
        }
        match at.meta() {
            MetaType::Command | MetaType::Event => {
                let to = match step {
                    "arg-type" => at.arguments(),
                    "ret-type" => at.returns(),
                    _ => None,
                };
                to.is_some_and(|t| self.walk(t, None, next, depth + 1))
            }
            MetaType::Object => {
                let member = match modifier {
                    b'+' => at.variants().find(|v| v.name() == name),
                    b'*' => at.members().find(|m| m.name() == name && m.optional()),
                    b' ' => at.members().find(|m| m.name() == name),
                    _ => None,
                };
                member.and_then(|m| Some((m, m.ty()?))).is_some_and(|(m, t)| self.walk(t, Some(m), next, depth + 1))
            }
            // Arrays are looked through; each branch of an alternate is tried.
            MetaType::Array => at.element().is_some_and(|t| self.walk(t, via, Some(rest), depth + 1)),
            MetaType::Alternate => {
                at.branches().filter_map(|b| b.ty()).any(|t| self.walk(t, via, Some(rest), depth + 1))
            }
            MetaType::Enum => modifier == b'^' && next.is_none() && at.values().any(|v| v.name() == name),
            MetaType::Builtin => modifier == b'!' && next.is_none() && at.json_type().is_some_and(|j| j.name() == name),
            MetaType::Other => false,
        }
    }
}

/// An entry of the schema: a type, a command or an event.
#[derive(Clone, Copy)]
pub struct Type<'s> {
    schema: SchemaRef<'s>,
    entry: &'s Entry,
    index: u16,
}

impl PartialEq for Type<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && core::ptr::eq(self.entry, other.entry)
    }
}

impl fmt::Debug for Type<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}", self.meta(), self.name())
    }
}

impl<'s> Type<'s> {
    /// Its name (masked as a number, for types other than builtins).
    pub fn name(&self) -> JsonStr<'s> {
        JsonStr::from_raw(self.entry.name.get(self.schema.text))
    }

    /// What it is.
    pub fn meta(&self) -> MetaType {
        self.entry.meta
    }

    /// Its `SchemaInfo` object, as QEMU sent it.
    pub fn info(&self) -> Value<'s> {
        Value::trusted(self.entry.raw.get(self.schema.text))
    }

    /// A builtin's JSON type.
    pub fn json_type(&self) -> Option<JsonType> {
        (self.meta() == MetaType::Builtin).then_some(self.entry.json)
    }

    fn items(&self, skip: u16, take: u16) -> impl Iterator<Item = Member<'s>> + use<'s> {
        let start = self.entry.items as usize + usize::from(skip);
        let items = self.schema.items.get(start..start + usize::from(take)).unwrap_or_default();
        let schema = self.schema;
        items.iter().map(move |item| Member { schema, item })
    }

    /// An object's members (also a command's or event's, through
    /// [`Type::arguments`]), in schema order.
    pub fn members(&self) -> impl Iterator<Item = Member<'s>> + use<'s> {
        let n = if self.meta() == MetaType::Object { self.entry.members } else { 0 };
        self.items(members_skip(self.entry), n)
    }

    /// A union's tag member.
    pub fn tag(&self) -> Option<Member<'s>> {
        if self.meta() != MetaType::Object || self.entry.a == NONE {
            return None;
        }
        self.items(members_skip(self.entry).saturating_add(self.entry.a), 1).next()
    }

    /// A union's variants: [`Member::name`] is the case, [`Member::ty`] its type.
    pub fn variants(&self) -> impl Iterator<Item = Member<'s>> + use<'s> {
        let union = self.meta() == MetaType::Object && self.entry.a != NONE;
        self.items(variants_skip(self.entry), if union { self.entry.variants } else { 0 })
    }

    /// The member (value, for an enum) named `key`, and its index.
    fn find_member(&self, key: JsonStr<'_>) -> Option<(usize, Member<'s>)> {
        let items = member_items(self.entry, self.schema.items);
        let i = position(items, self.schema.text, key)?;
        Some((i, Member { schema: self.schema, item: items.get(i)? }))
    }

    /// The union variant for case `case`.
    fn find_variant(&self, case: JsonStr<'_>) -> Option<Member<'s>> {
        if self.meta() != MetaType::Object || self.entry.a == NONE {
            return None;
        }
        let items = variant_items(self.entry, self.schema.items);
        Some(Member { schema: self.schema, item: items.get(position(items, self.schema.text, case)?)? })
    }

    /// An enum's values, in schema order.
    pub fn values(&self) -> impl Iterator<Item = Member<'s>> + use<'s> {
        let n = if self.meta() == MetaType::Enum { self.entry.members } else { 0 };
        self.items(members_skip(self.entry), n)
    }

    /// An alternate's branches ([`Member::ty`]).
    pub fn branches(&self) -> impl Iterator<Item = Member<'s>> + use<'s> {
        let n = if self.meta() == MetaType::Alternate { self.entry.members } else { 0 };
        self.items(members_skip(self.entry), n)
    }

    /// An array's element type.
    pub fn element(&self) -> Option<Type<'s>> {
        (self.meta() == MetaType::Array).then_some(())?;
        self.schema.ty(self.entry.a)
    }

    /// A command's or event's argument type (an object).
    pub fn arguments(&self) -> Option<Type<'s>> {
        matches!(self.meta(), MetaType::Command | MetaType::Event).then_some(())?;
        self.schema.ty(self.entry.a)
    }

    /// A command's return type.
    pub fn returns(&self) -> Option<Type<'s>> {
        (self.meta() == MetaType::Command).then_some(())?;
        self.schema.ty(self.entry.b)
    }

    /// Whether a command may be run out of band (`allow-oob`).
    pub fn allow_oob(&self) -> bool {
        self.entry.flags & ALLOW_OOB != 0
    }

    /// Whether it has the feature `deprecated`.
    pub fn deprecated(&self) -> bool {
        self.entry.flags & DEPRECATED != 0
    }

    /// Whether it has the feature `unstable`.
    pub fn unstable(&self) -> bool {
        self.entry.flags & UNSTABLE != 0
    }

    /// Whether it has the feature `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        features_name(self.info().get("features"), feature)
    }

    /// Its features, as named.
    pub fn features(&self) -> impl Iterator<Item = JsonStr<'s>> + use<'s> {
        self.info().get("features").and_then(|f| f.as_array()).into_iter().flatten().filter_map(|f| f.as_str())
    }

    /// What a value of this type must be, in words: `a string`, `one of
    /// "a", "b"`, `an integer or null`.
    pub fn expected(&self) -> Expected<'s> {
        Expected { ty: *self }
    }
}

/// A member of an object, a value of an enum, a variant of a union or a
/// branch of an alternate.
#[derive(Clone, Copy)]
pub struct Member<'s> {
    schema: SchemaRef<'s>,
    item: &'s Item,
}

impl fmt::Debug for Member<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Member({}: {:?})", self.name(), self.ty())
    }
}

impl<'s> Member<'s> {
    /// Its name (a variant's case; empty for an alternate's branch).
    pub fn name(&self) -> JsonStr<'s> {
        JsonStr::from_raw(self.item.name.get(self.schema.text))
    }

    /// Its type (none for an enum value).
    pub fn ty(&self) -> Option<Type<'s>> {
        self.schema.ty(self.item.ty)
    }

    /// Whether a member may be left out (it has a `default`).
    pub fn optional(&self) -> bool {
        self.item.flags & OPTIONAL != 0
    }

    /// A member's `default`, if introspection gives one (QEMU gives `null`:
    /// optional, with a default it does not say).
    pub fn default(&self) -> Option<Value<'s>> {
        self.info().get("default")
    }

    /// Whether it has the feature `deprecated`.
    pub fn deprecated(&self) -> bool {
        self.item.flags & DEPRECATED != 0
    }

    /// Whether it has the feature `unstable`.
    pub fn unstable(&self) -> bool {
        self.item.flags & UNSTABLE != 0
    }

    /// Whether it has the feature `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        features_name(self.info().get("features"), feature)
    }

    /// Its JSON text as QEMU sent it (`{"name": …, "type": …}`, or an enum value's string).
    pub fn info(&self) -> Value<'s> {
        Value::trusted(self.item.raw.get(self.schema.text))
    }

    fn is(&self, key: JsonStr<'_>) -> bool {
        let name = self.item.name.get(self.schema.text);
        // An escape makes the key longer than what it decodes to: only
        // then is decoding worth a look.
        let raw = key.raw();
        // Lengths and first bytes settle most comparisons without a call to memcmp.
        (raw.len() == name.len() && raw.first() == name.first() && raw == name)
            || (raw.len() > name.len() && key.has_escapes() && core::str::from_utf8(name).is_ok_and(|n| key == n))
    }
}

/// What a value of a type must be, in words (see [`Type::expected`]).
#[derive(Debug, Clone, Copy)]
pub struct Expected<'s> {
    ty: Type<'s>,
}

impl fmt::Display for Expected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = self.ty;
        match ty.meta() {
            MetaType::Builtin => f.write_str(match ty.entry.json {
                JsonType::String => "a string",
                JsonType::Number => "a number",
                JsonType::Int => "an integer",
                JsonType::Boolean => "a boolean",
                JsonType::Null => "null",
                JsonType::Object => "an object",
                JsonType::Array => "an array",
                JsonType::Value => "any value",
            }),
            MetaType::Enum => {
                f.write_str("one of ")?;
                for (i, v) in ty.values().enumerate() {
                    write!(f, "{}\"{}\"", if i > 0 { ", " } else { "" }, v.name())?;
                }
                Ok(())
            }
            MetaType::Array => f.write_str("an array"),
            MetaType::Object => f.write_str("an object"),
            MetaType::Alternate => {
                for (i, b) in ty.branches().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    match b.ty() {
                        Some(t) if t.meta() != MetaType::Alternate => write!(f, "{}", t.expected())?,
                        _ => f.write_str("?")?,
                    }
                }
                Ok(())
            }
            MetaType::Command | MetaType::Event | MetaType::Other => f.write_str("any value"),
        }
    }
}

/// One step of a [`Path`]: a member's name or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// A member.
    Key(JsonStr<'a>),
    /// An array element.
    Index(usize),
}

/// Where in the arguments something is: `file.driver`, `children[1].node`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path<'a> {
    steps: heapless::Vec<Step<'a>, MAX_PATH>,
    /// Steps below the last one kept.
    cut: usize,
}

impl<'a> Path<'a> {
    fn push(&mut self, step: Step<'a>) {
        if self.cut > 0 || self.steps.push(step).is_err() {
            self.cut += 1;
        }
    }

    fn pop(&mut self) {
        if self.cut > 0 {
            self.cut -= 1;
        } else {
            self.steps.pop();
        }
    }

    fn with(&self, step: Step<'a>) -> Self {
        let mut path = self.clone();
        path.push(step);
        path
    }

    /// The steps, outermost first (at most [`MAX_PATH`]).
    pub fn steps(&self) -> &[Step<'a>] {
        &self.steps
    }

    /// Whether this is the arguments object itself.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Key(k) if i > 0 => write!(f, ".{k}")?,
                Step::Key(k) => write!(f, "{k}")?,
                Step::Index(n) => write!(f, "[{n}]")?,
            }
        }
        if self.cut > 0 {
            f.write_str(".…")?;
        }
        Ok(())
    }
}

/// What was wrong with a command's arguments.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Mismatch<'a> {
    /// The schema has no such command.
    NoSuchCommand,
    /// A member the type does not have.
    UnknownMember,
    /// A member given twice.
    DuplicateMember,
    /// A required member left out.
    MissingMember {
        /// Its type.
        expected: Option<Type<'a>>,
    },
    /// A value of the wrong JSON type, or not one of an enum's values.
    WrongValue {
        /// The type it should have.
        expected: Type<'a>,
        /// What it is.
        got: Value<'a>,
    },
    /// Nested deeper than [`MAX_CHECK_DEPTH`].
    TooDeep,
}

/// A command's arguments do not match the schema: where and why.
#[derive(Debug, Clone)]
pub struct CheckError<'a> {
    /// The command.
    pub command: &'a str,
    /// Where in the arguments (for a missing member, the member's own path).
    pub path: Path<'a>,
    /// What is wrong.
    pub mismatch: Mismatch<'a>,
}

/// A value shown in a message: compact, cut at 60 bytes.
struct Shown<'a>(Value<'a>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let raw = self.0.raw_str();
        if raw.len() <= 60 && !raw.contains(['\n', '\r', '\t']) {
            return f.write_str(raw);
        }
        let mut cut = 60.min(raw.len());
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        let head = raw.get(..cut).unwrap_or_default();
        if head.contains(['\n', '\r', '\t']) {
            let mut out = heapless::String::<64>::new();
            for c in head.chars() {
                let _ = out.push(if c.is_whitespace() { ' ' } else { c });
            }
            return write!(f, "{out}{}", if cut < raw.len() { "…" } else { "" });
        }
        write!(f, "{head}{}", if cut < raw.len() { "…" } else { "" })
    }
}

impl fmt::Display for CheckError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.command)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        match self.mismatch {
            Mismatch::NoSuchCommand => f.write_str("no such command"),
            Mismatch::UnknownMember => f.write_str("no such member"),
            Mismatch::DuplicateMember => f.write_str("member given twice"),
            Mismatch::MissingMember { expected: Some(t) } => write!(f, "missing; expected {}", t.expected()),
            Mismatch::MissingMember { expected: None } => f.write_str("missing"),
            Mismatch::WrongValue { expected, got } => write!(f, "expected {}, got {}", expected.expected(), Shown(got)),
            Mismatch::TooDeep => write!(f, "nested deeper than {MAX_CHECK_DEPTH} levels"),
        }
    }
}

impl core::error::Error for CheckError<'_> {}

/// Something used that the schema marks `deprecated` (or `unstable`).
#[derive(Debug, Clone)]
pub struct Warning<'a> {
    /// The command.
    pub command: &'a str,
    /// Where in the arguments (empty: the command itself).
    pub path: Path<'a>,
    /// `"deprecated"` or `"unstable"`.
    pub feature: &'static str,
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.command)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.feature)
    }
}

/// The warnings of a check that passed: the first few, and how many more.
#[derive(Debug, Clone, Default)]
pub struct Warnings<'a> {
    /// The first warnings.
    pub first: heapless::Vec<Warning<'a>, 4>,
    /// How many more there were.
    pub more: usize,
}

impl<'s> SchemaRef<'s> {
    /// Checks `arguments` (`None`: none given) for `command` as QEMU's input
    /// visitor would: unknown members, missing required members, JSON types
    /// (`int` takes integers only, `number` integers too), enum values,
    /// union variants chosen by their tag, alternates by JSON type, arrays
    /// and nested objects. What is `deprecated` or `unstable` comes back as
    /// warnings.
    // The error carries its path inline: there is no allocator to box it in.
    #[allow(clippy::result_large_err)]
    pub fn check<'a>(&self, command: &'a str, arguments: Option<Value<'a>>) -> Result<Warnings<'a>, CheckError<'a>>
    where
        's: 'a,
    {
        let mut warnings = Warnings::default();
        self.check_with(command, arguments, &mut |w| {
            if warnings.first.push(w).is_err() {
                warnings.more += 1;
            }
        })?;
        Ok(warnings)
    }

    /// [`SchemaRef::check`], handing each warning to `warn`.
    // The error carries its path inline: there is no allocator to box it in.
    #[allow(clippy::result_large_err)]
    pub fn check_with<'a>(
        &self,
        command: &'a str,
        arguments: Option<Value<'a>>,
        warn: &mut dyn FnMut(Warning<'a>),
    ) -> Result<(), CheckError<'a>>
    where
        's: 'a,
    {
        let fail = |mismatch| CheckError { command, path: Path::default(), mismatch };
        let cmd = self.command(command).ok_or(fail(Mismatch::NoSuchCommand))?;
        let args_ty = cmd.arguments().ok_or(fail(Mismatch::NoSuchCommand))?;
        let mut checker = Checker { command, path: Path::default(), warn, depth: 0 };
        for feature in [(cmd.deprecated(), "deprecated"), (cmd.unstable(), "unstable")] {
            if feature.0 {
                checker.warning(feature.1);
            }
        }
        let empty = Value::trusted(b"{}");
        let open = OPEN_COMMANDS.contains(&command);
        let result = match arguments.unwrap_or(empty) {
            args if args.kind() == Kind::Object => checker.object(args_ty, args, open),
            args => Err(Mismatch::WrongValue { expected: args_ty, got: args }),
        };
        result.map_err(|mismatch| CheckError { command, path: checker.path, mismatch })
    }
}

/// A check in progress: the path to where it is.
struct Checker<'a, 'w> {
    command: &'a str,
    path: Path<'a>,
    warn: &'w mut dyn FnMut(Warning<'a>),
    depth: usize,
}

impl<'a> Checker<'a, '_> {
    fn warning(&mut self, feature: &'static str) {
        (self.warn)(Warning { command: self.command, path: self.path.clone(), feature });
    }

    fn member_flags(&mut self, m: Member<'_>) {
        if m.deprecated() {
            self.warning("deprecated");
        }
        if m.unstable() {
            self.warning("unstable");
        }
    }

    fn value(&mut self, ty: Type<'a>, value: Value<'a>) -> Result<(), Mismatch<'a>> {
        let wrong = Err(Mismatch::WrongValue { expected: ty, got: value });
        match ty.meta() {
            MetaType::Builtin => {
                if !ty.entry.json.accepts(value) {
                    return wrong;
                }
            }
            MetaType::Enum => {
                let Some(s) = value.as_str() else { return wrong };
                let Some((_, v)) = ty.find_member(s) else { return wrong };
                self.member_flags(v);
            }
            MetaType::Array => {
                let (Some(elements), Some(element)) = (value.as_array(), ty.element()) else { return wrong };
                self.descend()?;
                for (i, e) in elements.enumerate() {
                    self.path.push(Step::Index(i));
                    self.value(element, e)?;
                    self.path.pop();
                }
                self.depth -= 1;
            }
            MetaType::Object => {
                if value.kind() != Kind::Object {
                    return wrong;
                }
                self.descend()?;
                self.object(ty, value, false)?;
                self.depth -= 1;
            }
            MetaType::Alternate => {
                // QEMU picks the branch by JSON type; strings go to an enum
                // branch that has the value, else to `str`.
                let kind = value.kind();
                let fits = |t: &Type<'_>| match t.meta() {
                    MetaType::Builtin => match t.entry.json {
                        JsonType::Int | JsonType::Number => kind == Kind::Number,
                        json => json.accepts(value),
                    },
                    MetaType::Enum => kind == Kind::String,
                    MetaType::Array => kind == Kind::Array,
                    MetaType::Object => kind == Kind::Object,
                    _ => false,
                };
                let by_string = |t: &Type<'_>| {
                    t.meta() != MetaType::Enum || value.as_str().is_some_and(|s| t.find_member(s).is_some())
                };
                let mut fitting = ty.branches().filter_map(|b| b.ty()).filter(fits);
                let Some(first) = fitting.next() else { return wrong };
                let chosen = core::iter::once(first).chain(fitting).find(by_string).unwrap_or(first);
                self.value(chosen, value)?;
            }
            MetaType::Command | MetaType::Event | MetaType::Other => {}
        }
        Ok(())
    }

    fn descend(&mut self) -> Result<(), Mismatch<'a>> {
        if self.depth >= MAX_CHECK_DEPTH {
            return Err(Mismatch::TooDeep);
        }
        self.depth += 1;
        Ok(())
    }

    /// Checks `value` (an object) against object type `ty`, a union's
    /// variant members included; `open` lets unknown members through.
    fn object(&mut self, ty: Type<'a>, value: Value<'a>, open: bool) -> Result<(), Mismatch<'a>> {
        const LEVELS: usize = 4;
        let object = value.as_object().ok_or(Mismatch::WrongValue { expected: ty, got: value })?;
        // The type, then the variant its tag picks, and so on down.
        let mut levels: heapless::Vec<Type<'a>, LEVELS> = heapless::Vec::new();
        let mut at = Some(ty);
        while let Some(t) = at.take() {
            if levels.push(t).is_err() {
                return Err(Mismatch::TooDeep);
            }
            let Some(tag) = t.tag() else { continue };
            // The tag first, as QEMU does: without it the variant's members
            // would all look unknown.
            let Some((key, case)) = object.members().find(|(k, _)| tag.is(*k)) else {
                self.path.push(Step::Key(tag.name()));
                return Err(Mismatch::MissingMember { expected: tag.ty() });
            };
            if let Some(tag_ty) = tag.ty() {
                self.path.push(Step::Key(key));
                self.value(tag_ty, case)?;
                self.path.pop();
            }
            if let Some(case) = case.as_str() {
                at = t.find_variant(case).and_then(|v| v.ty()).filter(|v| v.meta() == MetaType::Object);
            }
        }
        // Members seen, per level: a bit per member (members past 256 are not tracked).
        let mut seen = [[0u64; 4]; LEVELS];
        for (key, v) in object.members() {
            let found = levels.iter().enumerate().find_map(|(l, t)| Some((l, t.find_member(key)?)));
            let Some((level, (index, member))) = found else {
                if open {
                    continue;
                }
                self.path.push(Step::Key(key));
                return Err(Mismatch::UnknownMember);
            };
            let Some(bits) = seen.get_mut(level) else { continue };
            self.path.push(Step::Key(key));
            if let Some(word) = bits.get_mut(index / 64) {
                let bit = 1u64 << (index % 64);
                if *word & bit != 0 {
                    return Err(Mismatch::DuplicateMember);
                }
                *word |= bit;
            }
            let is_tag = levels.get(level).is_some_and(|t| t.tag().is_some() && usize::from(t.entry.a) == index);
            if let (false, Some(member_ty)) = (is_tag, member.ty()) {
                self.member_flags(member);
                self.value(member_ty, v)?;
            }
            self.path.pop();
        }
        for (level, t) in levels.iter().enumerate() {
            for (index, m) in t.members().enumerate() {
                let word = seen.get(level).and_then(|bits| bits.get(index / 64)).copied();
                let missing = word.is_some_and(|w| w & (1u64 << (index % 64)) == 0);
                if missing && !m.optional() {
                    self.path = self.path.with(Step::Key(m.name()));
                    return Err(Mismatch::MissingMember { expected: m.ty() });
                }
            }
        }
        Ok(())
    }
}
