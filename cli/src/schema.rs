//! The QMP shell's help from QEMU's live schema: completion of argument
//! names (nested `a.b=` keys too), enum values and union variants
//! ([`complete`]), and `help COMMAND` / `help EVENT` ([`describe`]).

use std::fmt::Write;

use vmwire_proto::qmp::schema::{JsonType, MetaType, SchemaRef, Type};

/// Completions for the word under the cursor at the end of `line` (`COMMAND
/// key=value …`): where the word (or, after `=`, its value) starts, and
/// the candidates. Command names first; then the argument names not given
/// yet (`file.driver=`, `file.` for members that take an object); after
/// `key=`, the enum values, union variants or booleans the member takes.
pub fn complete(schema: SchemaRef<'_>, line: &str) -> (usize, Vec<String>) {
    let start = line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let word = line.get(start..).unwrap_or_default();
    let mut words = line.get(..start).unwrap_or_default().split_whitespace();
    let Some(command) = words.next() else {
        let names = schema.commands().map(|c| c.name().to_string()).filter(|n| n.starts_with(word)).collect();
        return (start, sorted(names));
    };
    match schema.command(command).and_then(|c| c.arguments()) {
        Some(args) => complete_arguments(args, start, word, words),
        None => (start, Vec::new()),
    }
}

/// [`complete`] for a line inside `transaction(`: `ACTION key=value …`.
/// The action names first (the variants of `transaction`'s actions, and
/// `)`); then the members of that action's `data`, as a command's
/// arguments are completed.
pub fn complete_action(schema: SchemaRef<'_>, line: &str) -> (usize, Vec<String>) {
    let start = line.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let word = line.get(start..).unwrap_or_default();
    let mut words = line.get(..start).unwrap_or_default().split_whitespace();
    let actions = schema.command("transaction").and_then(|c| c.arguments()).and_then(|args| {
        let actions = args.members().find(|m| m.name() == "actions")?.ty()?;
        actions.element().and_then(object_of)
    });
    let Some(actions) = actions else { return (start, Vec::new()) };
    let Some(action) = words.next() else {
        let names = actions.variants().map(|v| v.name().to_string()).chain([")".to_string()]);
        return (start, sorted(names.filter(|n| n.starts_with(word)).collect()));
    };
    let data = actions.variants().find(|v| v.name() == action).and_then(|v| v.ty()).and_then(|variant| {
        let data = variant.members().find(|m| m.name() == "data")?.ty()?;
        object_of(data)
    });
    match data {
        Some(data) => complete_arguments(data, start, word, words),
        None => (start, Vec::new()),
    }
}

/// Completions for `word` (at `start`) among the members of `args`, the
/// `key=value` `words` before it given.
fn complete_arguments<'a>(
    args: Type<'_>,
    start: usize,
    word: &str,
    words: impl Iterator<Item = &'a str>,
) -> (usize, Vec<String>) {
    let given: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
    if let Some((key, prefix)) = word.split_once('=') {
        let values = resolve(args, key, &given).map(|t| values_of(t)).unwrap_or_default();
        let values = values.into_iter().filter(|v| v.starts_with(prefix)).collect();
        return (start + key.len() + 1, sorted(values));
    }
    let (parent, partial) = word.rsplit_once('.').map_or(("", word), |(p, rest)| (p, rest));
    let object = if parent.is_empty() { Some(args) } else { resolve(args, parent, &given).and_then(object_of) };
    let Some(object) = object else { return (start, Vec::new()) };
    let dotted = |name: &str| if parent.is_empty() { name.to_string() } else { format!("{parent}.{name}") };
    let mut names = Vec::new();
    for member in members_of(object, parent, &given) {
        let name = member.name().to_string();
        let key = dotted(&name);
        if !name.starts_with(partial) || given.iter().any(|(k, _)| *k == key) {
            continue;
        }
        names.push(format!("{key}="));
        if member.ty().and_then(object_of).is_some() {
            names.push(format!("{key}."));
        }
    }
    (start, sorted(names))
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names.dedup();
    names
}

/// The members `object` has at `path`, with those of the union variant
/// its tag picks when the tag is among the `given` pairs.
fn members_of<'s>(object: Type<'s>, path: &str, given: &[(&str, &str)]) -> Vec<vmwire_proto::qmp::schema::Member<'s>> {
    let mut out: Vec<_> = object.members().collect();
    let mut at = object;
    // A union's variant may be a union in turn; a schema that loops is cut short.
    for _ in 0..8 {
        let Some(tag) = at.tag() else { break };
        let key = if path.is_empty() { tag.name().to_string() } else { format!("{path}.{}", tag.name()) };
        let case = given.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let variant = case.and_then(|case| at.variants().find(|v| v.name() == case)).and_then(|v| v.ty());
        match variant.filter(|v| v.meta() == MetaType::Object) {
            Some(v) => {
                out.extend(v.members());
                at = v;
            }
            None => break,
        }
    }
    out
}

/// The object type a value of `ty` can be (an alternate's object branch).
fn object_of(ty: Type<'_>) -> Option<Type<'_>> {
    match ty.meta() {
        MetaType::Object => Some(ty),
        MetaType::Alternate => ty.branches().filter_map(|b| b.ty()).find(|t| t.meta() == MetaType::Object),
        _ => None,
    }
}

/// The type of the member at dotted `key` under `args`.
fn resolve<'s>(args: Type<'s>, key: &str, given: &[(&str, &str)]) -> Option<Type<'s>> {
    let mut object = args;
    let mut path = String::new();
    let mut steps = key.split('.').peekable();
    while let Some(step) = steps.next() {
        let member = members_of(object, &path, given).into_iter().find(|m| m.name() == step)?;
        let ty = member.ty()?;
        if steps.peek().is_none() {
            return Some(ty);
        }
        object = object_of(ty)?;
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(step);
    }
    None
}

/// The values a member of type `ty` can be completed with.
fn values_of(ty: Type<'_>) -> Vec<String> {
    match ty.meta() {
        MetaType::Enum => ty.values().map(|v| v.name().to_string()).collect(),
        MetaType::Builtin if ty.json_type() == Some(JsonType::Boolean) => vec!["true".into(), "false".into()],
        // QAPI alternates do not nest: only their direct branches count.
        MetaType::Alternate => ty
            .branches()
            .filter_map(|b| b.ty())
            .filter(|t| t.meta() != MetaType::Alternate)
            .flat_map(values_of)
            .collect(),
        _ => Vec::new(),
    }
}

/// `help NAME`: a command's arguments (name, type, optional or not, union
/// variants) and what it returns, or an event's data, from the schema.
pub fn describe(schema: SchemaRef<'_>, name: &str) -> String {
    let Some(entry) = schema.command(name).or_else(|| schema.event(name)) else {
        return format!("{name}: no such command or event");
    };
    let mut out = String::new();
    let kind = if entry.meta() == MetaType::Command { "command" } else { "event" };
    let mut notes: Vec<String> = entry.features().map(|f| f.to_string()).collect();
    if entry.allow_oob() {
        notes.push("allow-oob".into());
    }
    let notes = if notes.is_empty() { String::new() } else { format!(" [{}]", notes.join(", ")) };
    let _ = writeln!(out, "{name} ({kind}){notes}");
    let heading = if entry.meta() == MetaType::Command { "arguments" } else { "data" };
    match entry.arguments() {
        Some(args) if args.members().next().is_some() => {
            let _ = writeln!(out, "{heading}:");
            object_lines(&mut out, args, 1, 0);
        }
        _ => {
            let _ = writeln!(out, "{heading}: none");
        }
    }
    if let Some(ret) = entry.returns() {
        let _ = writeln!(out, "returns: {}", type_name(ret, 0));
    }
    out
}

/// How deep nested objects are spelt out in `describe`.
const DEPTH: usize = 2;

/// The members of `object` (and its variants), one line each, indented.
fn object_lines(out: &mut String, object: Type<'_>, indent: usize, depth: usize) {
    if depth > DEPTH {
        return; // a schema whose unions loop
    }
    let pad = "  ".repeat(indent);
    for m in object.members() {
        let mut notes = Vec::new();
        if m.optional() {
            notes.push("optional".to_string());
        }
        notes.extend(["deprecated", "unstable"].iter().filter(|f| m.has_feature(f)).map(|f| f.to_string()));
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join(", ")) };
        let ty = m.ty();
        let _ = writeln!(out, "{pad}{}: {}{notes}", m.name(), ty.map_or("?".into(), |t| type_name(t, depth)));
        if let Some(inner) = ty.and_then(object_of).filter(|o| depth < DEPTH && o.members().next().is_some()) {
            object_lines(out, inner, indent + 1, depth + 1);
        }
    }
    if let Some(tag) = object.tag() {
        let mut variants = object.variants().filter(|v| v.ty().is_some_and(|t| t.members().next().is_some()));
        if depth >= DEPTH {
            // Their members would not be spelt out: one line, not a heading each.
            if variants.next().is_some() {
                let _ = writeln!(out, "{pad}… and members by {} (too deep to show here)", tag.name());
            }
            return;
        }
        for v in variants {
            let Some(ty) = v.ty() else { continue };
            let _ = writeln!(out, "{pad}when {} is \"{}\":", tag.name(), v.name());
            object_lines(out, ty, indent + 1, depth + 1);
        }
    }
}

/// A type in a few words: `str`, `"a" | "b"`, `[int]`, `object`, `str | null`.
fn type_name(ty: Type<'_>, depth: usize) -> String {
    match ty.meta() {
        MetaType::Builtin => ty.name().to_string(),
        MetaType::Enum => ty.values().map(|v| format!("\"{}\"", v.name())).collect::<Vec<_>>().join(" | "),
        MetaType::Array => match ty.element() {
            Some(e) if depth < 8 => format!("[{}]", type_name(e, depth + 1)),
            _ => "[…]".into(),
        },
        MetaType::Object if ty.members().next().is_none() => "{}".into(),
        MetaType::Object => "object".into(),
        MetaType::Alternate if depth < 8 => {
            ty.branches().filter_map(|b| b.ty()).map(|t| type_name(t, depth + 1)).collect::<Vec<_>>().join(" | ")
        }
        _ => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmwire_proto::qmp::schema::HeapSchema;

    fn schema() -> HeapSchema<&'static [u8]> {
        let s2c: &[u8] = include_bytes!("../../fixtures/qmp/06_query_qmp_schema.s2c");
        let reply = s2c.split(|&b| b == b'\n').find(|l| l.starts_with(b"{\"return\": [")).unwrap();
        HeapSchema::read_heap(reply).unwrap()
    }

    #[test]
    fn completes_commands_names_values_and_variants() {
        let s = schema();
        let s = s.view();
        assert_eq!(complete(s, "blockdev-ad"), (0, vec!["blockdev-add".to_string()]));
        let (at, names) = complete(s, "blockdev-add ");
        assert_eq!(at, 13);
        assert!(names.contains(&"driver=".to_string()) && names.contains(&"node-name=".to_string()), "{names:?}");
        assert!(!names.contains(&"filename=".to_string()), "no variant chosen yet: {names:?}");
        // The variant the tag picks brings its members.
        let (_, names) = complete(s, "blockdev-add driver=file fi");
        assert_eq!(names, ["filename="]);
        let (at, values) = complete(s, "blockdev-add driver=file aio=");
        assert_eq!((at, values), (29, vec!["io_uring".to_string(), "native".into(), "threads".into()]));
        let (at, values) = complete(s, "blockdev-add driver=nu");
        assert_eq!((at, values), (20, vec!["null-aio".to_string(), "null-co".into()]));
        // Nested keys, through the alternate `file` (an object or a node name).
        let (_, names) = complete(s, "blockdev-add driver=qcow2 fi");
        assert_eq!(names, ["file.", "file="]);
        let (at, names) = complete(s, "blockdev-add driver=qcow2 file.driver=file file.f");
        assert_eq!((at, names), (43, vec!["file.filename=".to_string(), "file.force-share=".into()]));
        let (_, values) = complete(s, "blockdev-add driver=qcow2 file.driver=file file.aio=n");
        assert_eq!(values, ["native"]);
        let (_, values) = complete(s, "blockdev-add driver=file read-only=");
        assert_eq!(values, ["false", "true"]);
        // Given already: not offered again.
        let (_, names) = complete(s, "block-set-write-threshold node-name=a ");
        assert_eq!(names, ["write-threshold="]);
        assert_eq!(complete(s, "no-such-command x"), (16, vec![]));
    }

    #[test]
    fn a_schema_that_loops_is_cut_short() {
        let text = br#"[{"name": "c", "meta-type": "command", "arg-type": "0", "ret-type": "0"},
            {"name": "0", "meta-type": "object", "tag": "t", "variants": [{"case": "a", "type": "0"}],
             "members": [{"name": "t", "type": "1"}, {"name": "x", "type": "2", "default": null}]},
            {"name": "1", "meta-type": "enum", "values": ["a"]},
            {"name": "2", "meta-type": "alternate", "members": [{"type": "2"}, {"type": "0"}]}]"#;
        let s = HeapSchema::read_heap(&text[..]).unwrap();
        assert!(describe(s.view(), "c").contains("when t is \"a\":"));
        assert_eq!(complete(s.view(), "c t=a x=").1, Vec::<String>::new());
        assert_eq!(complete(s.view(), "c t=a x.t=").1, ["a"]);
        assert!(s.check("c", None).is_err());
    }

    #[test]
    fn completes_transaction_actions_and_their_data() {
        let s = schema();
        let (start, names) = complete_action(s.view(), "");
        assert_eq!(start, 0);
        assert!(names.contains(&"abort".to_string()) && names.contains(&")".to_string()), "{names:?}");
        assert!(!names.contains(&"query-status".to_string()), "{names:?}");
        assert_eq!(complete_action(s.view(), "block-dirty-bitmap-add n"), (23, vec!["name=".into(), "node=".into()]));
        assert_eq!(complete_action(s.view(), "no-such-action x"), (15, vec![]));
    }

    #[test]
    fn describes_commands_and_events() {
        let s = schema();
        let text = describe(s.view(), "block-set-write-threshold");
        assert_eq!(
            text,
            "block-set-write-threshold (command)\narguments:\n  node-name: str\n  write-threshold: int\nreturns: {}\n"
        );
        let text = describe(s.view(), "blockdev-add");
        assert!(text.contains("  driver: \"blkdebug\" | "), "{text}");
        assert!(text.contains("  node-name: str (optional)\n"), "{text}");
        assert!(text.contains("  when driver is \"file\":\n    filename: str\n"), "{text}");
        assert!(text.contains("    x-check-cache-dropped: bool (optional, unstable)\n"), "{text}");
        // Unions too deep to spell out: one line for all their variants, not an empty heading each.
        assert!(text.contains("      … and members by driver (too deep to show here)\n"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("      when ")), "{text}");
        assert!(describe(s.view(), "drive-backup").starts_with("drive-backup (command) [deprecated]\n"));
        let text = describe(s.view(), "SHUTDOWN");
        assert!(
            text.starts_with("SHUTDOWN (event)\ndata:\n  guest: bool\n  reason: \"none\" | \"host-error\" | "),
            "{text}"
        );
        assert_eq!(describe(s.view(), "nope"), "nope: no such command or event");
    }
}
