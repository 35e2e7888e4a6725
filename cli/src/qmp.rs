//! `vmwire qmp`: one command, an event stream, or a shell like qmp-shell.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use vmwire_proto::json::{Kind, Value};
use vmwire_proto::qmp::{Command, Id, MAX_ID_LEN};
use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Error, Event, Options, Qmp, Schema, Stray};
use vmwire_std::text::escape;

use crate::shell::{self, Ended, Interrupt, Printed, Session};

/// Talk to QEMU over QMP.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target"))]
pub struct QmpArgs {
    /// QMP UNIX socket (`-qmp unix:PATH,server=on`).
    #[arg(long, group = "target", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// QMP TCP socket (`-qmp tcp:HOST:PORT,server=on`).
    #[arg(long, group = "target", value_name = "HOST:PORT", value_parser = crate::tcp_address)]
    tcp: Option<String>,
    /// Start a throwaway QEMU (`-machine none -S`), use it, and shut it down.
    #[arg(long, group = "target")]
    launch: bool,
    /// Print events as JSON lines until interrupted.
    #[arg(long, conflicts_with = "command")]
    events: bool,
    /// Ask for out-of-band execution.
    #[arg(long)]
    oob: bool,
    /// Seconds to wait for each reply (0: forever).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    timeout: crate::Seconds,
    /// Indent JSON output.
    #[arg(long)]
    pretty: bool,
    /// Check the command against QEMU's schema and print the verdict,
    /// without sending it (with `--schema`, no QEMU is needed).
    #[arg(long, requires = "command", conflicts_with = "no_check")]
    check: bool,
    /// Check commands against this saved schema (a `query-qmp-schema`
    /// reply, as `--schema-out` writes it) instead of QEMU's own.
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
    /// Write QEMU's schema (`query-qmp-schema`) to FILE.
    #[arg(long, value_name = "FILE")]
    schema_out: Option<PathBuf>,
    /// Send commands without checking them against the schema first.
    #[arg(long)]
    no_check: bool,
    /// Shell: print each JSON message sent and received (as qmp-shell's `-v`).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Shell: append every JSON message sent and received to FILE (as qmp-shell's `-l`).
    #[arg(short = 'l', long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Command to run, or a whole command as JSON (`{"execute": …}`, its
    /// `id` kept); without one, an interactive shell starts.
    command: Option<String>,
    /// Its arguments: one JSON object, or `key=value` pairs (numbers, true,
    /// false, null, and values starting with `{`, `[` or `"` are JSON; other
    /// words are strings; `a.b=1` nests).
    args: Vec<String>,
}

pub fn run(args: QmpArgs) -> ExitCode {
    if let Some(code) = schema_offline(&args) {
        return code;
    }
    if !args.launch {
        return session(&args, None).0;
    }
    let launched = match crate::Launched::start(Qemu::builder().qmp()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let (code, qmp) = session(&args, launched.qemu.qmp_path());
    launched.finish(qmp);
    code
}

/// Connects (to `launched`, the socket of a QEMU started for this run, if
/// any) and does what the arguments ask; returns the exit status and the
/// connection, if it is still open.
fn session(args: &QmpArgs, launched: Option<&std::path::Path>) -> (ExitCode, Option<Qmp>) {
    let timeout = args.timeout.0;
    let options = Options { timeout, oob: args.oob, ..Options::default() };
    let connected = match (&args.socket, &args.tcp, launched) {
        (Some(path), _, _) => Qmp::connect_unix(path, options),
        (_, Some(addr), _) => Qmp::connect_tcp(addr.as_str(), options),
        (_, _, Some(path)) => Qmp::connect_unix(path, options),
        _ => return (crate::usage(&"one of --socket, --tcp or --launch is needed (or --check with --schema)"), None),
    };
    let mut qmp = match connected {
        Ok(q) => q,
        Err(e) => return (crate::fail(&e), None),
    };
    if let Some(code) = schema_online(&mut qmp, args) {
        (code, Some(qmp))
    } else if args.events {
        (print_events(&mut qmp, args.pretty), Some(qmp))
    } else if let Some(command) = args.command.as_deref().filter(|c| is_json_command(c)) {
        (one_shot_json(&mut qmp, command, args), Some(qmp))
    } else if let Some(command) = &args.command {
        (one_shot(&mut qmp, command, &args.args, args.pretty), Some(qmp))
    } else {
        // The shell owns its connection, and closes it when it ends.
        (shell(qmp, args), None)
    }
}

/// After a command refused by the check.
const NOT_SENT: &str = "; not sent (--no-check sends it anyway)";

/// `--check` with `--schema` and no QEMU: checks offline. `None`: not this case.
fn schema_offline(args: &QmpArgs) -> Option<ExitCode> {
    let offline = args.socket.is_none() && args.tcp.is_none() && !args.launch;
    if !(offline && args.check && args.schema.is_some()) {
        return None;
    }
    let schema = match args.schema.as_deref().map(load_schema) {
        Some(Ok(schema)) => schema,
        Some(Err(e)) => return Some(crate::fail(&e)),
        None => return None,
    };
    Some(check_only(&schema, args))
}

/// The schema options on a connection: keeps the schema to check against
/// (`--schema`, or QEMU's own unless `--no-check` or `--events`), writes it
/// (`--schema-out`), checks without sending (`--check`). `Some` when that
/// was all there was to do.
fn schema_online(qmp: &mut Qmp, args: &QmpArgs) -> Option<ExitCode> {
    let wanted = args.check || args.schema_out.is_some() || !(args.no_check || args.events);
    if let Some(path) = &args.schema {
        match load_schema(path) {
            Ok(schema) => qmp.set_schema(schema),
            Err(e) => return Some(crate::fail(&e)),
        }
    } else if wanted {
        if let Err(e) = qmp.fetch_schema() {
            return Some(crate::fail(&e));
        }
    }
    if let Some(out) = &args.schema_out {
        let text = qmp.schema().map(|s| s.text().as_slice()).unwrap_or_default();
        if let Err(e) = std::fs::write(out, text) {
            return Some(crate::fail(&format!("{}: {e}", out.display())));
        }
    }
    if args.check {
        return Some(qmp.schema().map_or(ExitCode::from(3), |schema| check_only(schema, args)));
    }
    qmp.set_check(!args.no_check);
    let named = args.command.as_ref().filter(|c| !is_json_command(c));
    if let (Some(schema), Some(command), false) = (qmp.schema(), named, args.no_check || args.events) {
        // The client checks again as it sends; this shows the warnings.
        if let Err(code) = check_arguments(schema, command, &args.args, true) {
            return Some(code);
        }
    }
    (args.schema_out.is_some() && args.command.is_none() && !args.events).then_some(ExitCode::SUCCESS)
}

fn load_schema(path: &std::path::Path) -> Result<Schema, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Schema::read_heap(text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `--check`: prints `ok` (and any warnings) or what is wrong; exit 0 or 2.
fn check_only(schema: &Schema, args: &QmpArgs) -> ExitCode {
    let Some(command) = &args.command else { return crate::usage(&"--check needs a command") };
    match check_arguments(schema, command, &args.args, false) {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Checks `command` with its command-line arguments against `schema`:
/// warnings (`deprecated`, `unstable`) to stderr; what is wrong, exit 2
/// (saying it is not sent, when it was to be `sending`).
fn check_arguments(schema: &Schema, command: &str, words: &[String], sending: bool) -> Result<(), ExitCode> {
    let text = arguments(words).map_err(|e| crate::usage(&e))?;
    let value = text.as_deref().map(|t| Value::parse(t.as_bytes())).transpose().map_err(|e| crate::usage(&e))?;
    match vmwire_std::qmp::check(schema, command, value) {
        Ok(warnings) => {
            for w in warnings {
                eprintln!("vmwire: warning: {}", escape(&w));
            }
            Ok(())
        }
        Err(Error::Refused(e)) => Err(crate::usage(&format!("{}{}", escape(&e), if sending { NOT_SENT } else { "" }))),
        Err(e) => Err(crate::fail(&e)),
    }
}

fn one_shot(qmp: &mut Qmp, command: &str, args: &[String], pretty: bool) -> ExitCode {
    let args = match arguments(args) {
        Ok(a) => a,
        Err(e) => return crate::usage(&e),
    };
    match qmp.execute_raw(command, args.as_deref()) {
        Ok(value) => {
            println!("{}", reply_json(Ok(&value), pretty));
            ExitCode::SUCCESS
        }
        Err(Error::Qemu(e)) => {
            println!("{}", reply_json(Err(&e), pretty));
            ExitCode::from(1)
        }
        Err(Error::Refused(e)) => crate::usage(&format!("{}{NOT_SENT}", escape(&e))),
        Err(e) => crate::fail(&e),
    }
}

/// Prints events until the connection closes: exit 0 after `SHUTDOWN` (a
/// clean end), 3 if it closed without one (QEMU killed, or crashed).
/// Messages that could not be read are reported on stderr, and the stream
/// goes on.
fn print_events(qmp: &mut Qmp, pretty: bool) -> ExitCode {
    let mut shut_down = false;
    loop {
        let next = qmp.next_event(None);
        for stray in qmp.take_strays() {
            warn_stray(&stray);
        }
        match next {
            Ok(Some(event)) => {
                shut_down |= event.name == "SHUTDOWN";
                println!("{}", event_json(&event, pretty));
            }
            Ok(None) => {}
            Err(Error::Closed) if shut_down => return ExitCode::SUCCESS,
            Err(Error::Closed) => return crate::fail(&"QMP: the connection closed without a SHUTDOWN event"),
            Err(e) => return crate::fail(&e),
        }
    }
}

/// Reports on stderr a message that belonged to no command.
fn warn_stray(stray: &Stray) {
    use vmwire_std::text::escape;
    match stray {
        Stray::Malformed(what) => eprintln!("vmwire: skipped a message: {}", escape(what)),
        Stray::UntaggedError(e) => eprintln!("vmwire: QEMU error without an id: {}", escape(&e.to_string())),
        Stray::Unmatched(raw) => eprintln!("vmwire: a reply to no command: {}", escape(raw)),
        Stray::Stale { id, reply } => eprintln!("vmwire: a late reply to command {id}: {}", escape(reply)),
    }
}

/// `{"return": …}` or `{"error": {"class", "desc"}}`, as QEMU shapes a reply;
/// a return value keeps QEMU's member order and escapes.
pub fn reply_json(reply: Result<&str, &vmwire_std::qmp::QemuError>, pretty: bool) -> String {
    match reply {
        Ok(raw) => {
            let text = format!("{{\"return\": {raw}}}");
            match Value::parse(text.as_bytes()) {
                Ok(v) if pretty => v.pretty(4).to_string(),
                Ok(v) => v.compact().to_string(),
                Err(_) => text,
            }
        }
        Err(e) => to_json(&serde_json::json!({ "error": { "class": e.class, "desc": e.desc } }), pretty),
    }
}

/// An event as QEMU shapes it: timestamp, event, data.
fn event_json(event: &Event, pretty: bool) -> String {
    let name = serde_json::Value::String(event.name.clone());
    let (seconds, micros) = (event.timestamp.seconds, event.timestamp.microseconds);
    let mut text =
        format!("{{\"timestamp\": {{\"seconds\": {seconds}, \"microseconds\": {micros}}}, \"event\": {name}");
    if !event.data.is_null() {
        text.push_str(&format!(", \"data\": {}", event.data));
    }
    text.push('}');
    match Value::parse(text.as_bytes()) {
        Ok(v) if pretty => v.pretty(4).to_string(),
        Ok(v) => v.compact().to_string(),
        Err(_) => text,
    }
}

fn to_json(value: &serde_json::Value, pretty: bool) -> String {
    if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) }.unwrap_or_default()
}

/// Whether a command line's first word is a whole command written as JSON.
fn is_json_command(word: &str) -> bool {
    word.trim_start().starts_with('{')
}

/// `vmwire qmp '{"execute": …}'`: one command written as JSON, sent as
/// typed (its `id` kept, and shown in the reply).
fn one_shot_json(qmp: &mut Qmp, text: &str, args: &QmpArgs) -> ExitCode {
    if !args.args.is_empty() {
        return crate::usage(&"a command written as JSON takes no further arguments");
    }
    let command = match json_command(text) {
        Ok(c) => c,
        Err(e) => return crate::usage(&e),
    };
    let timeout = args.timeout.0;
    let reply = qmp.send_command(command.build()).and_then(|id| await_reply(qmp, &id, timeout, &|| false));
    match reply {
        Ok(Some(value)) => {
            println!("{}", reply_message(Ok(&value), command.id.as_ref(), args.pretty));
            ExitCode::SUCCESS
        }
        Err(Error::Qemu(e)) => {
            println!("{}", reply_message(Err(&e), command.id.as_ref(), args.pretty));
            ExitCode::from(1)
        }
        Ok(None) => crate::fail(&Error::Timeout),
        Err(Error::Refused(e)) => crate::usage(&format!("{}{NOT_SENT}", escape(&e))),
        Err(e) => crate::fail(&e),
    }
}

/// Waits for the reply to `id` until `timeout`, a tenth of a second at a
/// time; forgets the command (its late reply is then discarded) when the
/// time is up or `interrupted` says the user gave up (`Ok(None)`).
fn await_reply(
    qmp: &mut Qmp,
    id: &Id,
    timeout: Option<Duration>,
    interrupted: &dyn Fn() -> bool,
) -> Result<Option<String>, Error> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(TICK),
            None => TICK,
        };
        match qmp.reply_raw(id, Some(slice))? {
            Some(value) => return Ok(Some(value)),
            None if interrupted() => {
                qmp.forget(id);
                return Ok(None);
            }
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                qmp.forget(id);
                return Err(Error::Timeout);
            }
            None => {}
        }
    }
}

/// How often a wait for a reply looks whether the user gave up.
const TICK: Duration = Duration::from_millis(100);

/// A command with everything the shell needs to send and show it.
#[derive(Debug)]
struct ShellCommand<'a> {
    name: String,
    /// A JSON object, as typed or as built from `key=value` words.
    arguments: Option<Value<'a>>,
    /// The caller's own id (a whole command typed as JSON).
    id: Option<Id>,
    oob: bool,
}

impl<'a> ShellCommand<'a> {
    fn build(&self) -> Command<'_> {
        let mut command = Command::new(&self.name);
        if let Some(arguments) = self.arguments {
            command = command.arguments(arguments);
        }
        if let Some(id) = &self.id {
            command = command.id(id.clone());
        }
        if self.oob {
            command = command.oob();
        }
        command
    }

    /// The message as the client writes it (for `-v` and `-l`).
    fn message(&self, id: &Id) -> String {
        let verb = if self.oob { "exec-oob" } else { "execute" };
        let name = serde_json::Value::String(self.name.clone());
        let arguments = self.arguments.map(|a| format!(",\"arguments\":{}", a.raw_str())).unwrap_or_default();
        format!("{{\"{verb}\":{name}{arguments},\"id\":{}}}", id_json(id))
    }
}

fn id_json(id: &Id) -> String {
    match id {
        Id::Number(n) => n.to_string(),
        Id::String(s) => serde_json::Value::String(s.to_string()).to_string(),
    }
}

/// A whole command written as JSON: `{"execute"|"exec-oob": NAME,
/// "arguments": {…}, "id": ID}`, taken as typed. The id must be a string (at
/// most 64 bytes) or a non-negative integer: the ids QEMU echoes and this
/// client can match.
fn json_command(text: &str) -> Result<ShellCommand<'_>, String> {
    let value = Value::parse(text.trim().as_bytes()).map_err(|e| format!("command is not valid JSON: {e}"))?;
    let object = value.as_object().ok_or("a command written as JSON must be an object")?;
    let mut command = ShellCommand { name: String::new(), arguments: None, id: None, oob: false };
    let mut named = false;
    for (key, value) in object.members() {
        let verb = key == "execute" || key == "exec-oob";
        match key.to_cow().as_ref() {
            _ if verb => {
                let name = value.as_str().ok_or(format!("\"{key}\" must be a string"))?;
                if std::mem::replace(&mut named, true) {
                    return Err("one of \"execute\" or \"exec-oob\", once".into());
                }
                command.name = name.to_string();
                command.oob = key == "exec-oob";
            }
            "arguments" if value.kind() == Kind::Object => command.arguments = Some(value),
            "arguments" => return Err("\"arguments\" must be an object".into()),
            "id" => {
                let id = match (value.as_u64(), value.as_str()) {
                    (Some(n), _) => Some(Id::Number(n)),
                    (_, Some(s)) => Id::string(&s.to_cow()),
                    _ => None,
                };
                command.id = Some(id.ok_or(format!(
                    "\"id\" must be a string of at most {MAX_ID_LEN} bytes or a non-negative integer, not {}",
                    value.raw_str()
                ))?);
            }
            other => {
                return Err(format!("unknown member {:?} (a command has execute or exec-oob, arguments, id)", other));
            }
        }
    }
    if !named {
        return Err("expected {\"execute\": NAME, …} or {\"exec-oob\": NAME, …}".into());
    }
    Ok(command)
}

/// Whether the command a shell line sends (typed as JSON, or as `NAME
/// key=value …`) carries a password or a key
/// ([`vmwire_proto::qmp::secret_spans`]): the QMP and guest agent shells keep
/// no such line in their history.
pub fn carries_secret(line: &str) -> bool {
    let line = line.trim();
    let command = if is_json_command(line) {
        line.to_owned()
    } else {
        let Ok(words) = split_words(line) else { return false };
        let Some((name, rest)) = words.split_first() else { return false };
        let arguments = arguments(rest).ok().flatten().unwrap_or_else(|| "{}".into());
        format!("{{\"execute\":{},\"arguments\":{arguments}}}", serde_json::Value::String(unquote(name)))
    };
    vmwire_proto::qmp::secret_spans(command.as_bytes()).next().is_some()
}

/// A reply as QEMU shapes it, `{"return": …}` or `{"error": …}`, with `"id"`
/// when there is one to show.
fn reply_message(reply: Result<&str, &vmwire_std::qmp::QemuError>, id: Option<&Id>, pretty: bool) -> String {
    let Some(id) = id else { return reply_json(reply, pretty) };
    let body = match reply {
        Ok(raw) => format!("\"return\": {raw}"),
        Err(e) => format!("\"error\": {}", serde_json::json!({ "class": e.class, "desc": e.desc })),
    };
    let text = format!("{{{body}, \"id\": {}}}", id_json(id));
    match Value::parse(text.as_bytes()) {
        Ok(v) if pretty => v.pretty(4).to_string(),
        Ok(v) => v.compact().to_string(),
        Err(_) => text,
    }
}

/// Command arguments from the command line: one JSON object (taken as
/// typed), or `key=value` pairs. A value is JSON when it starts with `{`,
/// `[` or `"` (and must then be valid JSON) or is a number, `true`, `false`
/// or `null`; `'…'` is the string between the quotes; any other word is a
/// string as written. Dotted keys nest: `a.b=1` is `{"a": {"b": 1}}`.
pub fn arguments(words: &[String]) -> Result<Option<String>, String> {
    match words {
        [] => Ok(None),
        [one] if one.trim_start().starts_with('{') => {
            let v = Value::parse(one.trim().as_bytes()).map_err(|e| format!("arguments are not valid JSON: {e}"))?;
            if v.kind() != Kind::Object {
                return Err("arguments must be a JSON object".into());
            }
            Ok(Some(one.trim().to_owned()))
        }
        pairs => {
            let mut args = serde_json::Map::new();
            for pair in pairs {
                let (key, value) = pair.split_once('=').ok_or_else(|| format!("expected key=value, got {pair:?}"))?;
                if key.is_empty() || key.split('.').any(str::is_empty) {
                    return Err(format!("{pair:?}: empty key"));
                }
                insert_dotted(&mut args, key, argument_value(key, value)?)?;
            }
            Ok(Some(serde_json::Value::Object(args).to_string()))
        }
    }
}

/// One `key=value` value, as [`arguments`] reads it (and `vmwire xmlrpc`
/// its params); `key` names it in an error.
pub fn argument_value(key: &str, text: &str) -> Result<serde_json::Value, String> {
    if let Some(quoted) = text.strip_prefix('\'') {
        return match quoted.strip_suffix('\'') {
            Some(s) => Ok(serde_json::Value::String(s.into())),
            None => Err(format!("{key}: unterminated quote in {text:?}")),
        };
    }
    if text.starts_with(['{', '[', '"']) {
        return serde_json::from_str(text).map_err(|e| format!("{key}: {text} is not valid JSON: {e}"));
    }
    let number = || Value::parse(text.as_bytes()).is_ok_and(|v| v.kind() == Kind::Number);
    match serde_json::from_str(text) {
        // An integer past 64 bits would go as the nearest double: not what was typed.
        Ok(serde_json::Value::Number(n)) if n.is_f64() && !text.contains(['.', 'e', 'E']) => {
            Err(format!("{key}: {text} does not fit in 64 bits"))
        }
        Ok(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Null)) => Ok(v),
        // A number, but past what a double holds (`1e400`): not a string either.
        Err(_) if number() => Err(format!("{key}: {text} is past what a double holds")),
        _ => Ok(serde_json::Value::String(text.into())),
    }
}

fn insert_dotted(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    value: serde_json::Value,
) -> Result<(), String> {
    match key.split_once('.') {
        None if map.contains_key(key) => Err(format!("{key} is given twice")),
        None => {
            map.insert(key.into(), value);
            Ok(())
        }
        Some((head, rest)) => {
            let inner = map.entry(head).or_insert_with(|| serde_json::Value::Object(Default::default()));
            match inner {
                serde_json::Value::Object(m) => insert_dotted(m, rest, value),
                _ => Err(format!("{head} is both a value and an object")),
            }
        }
    }
}

/// Splits a shell line into words at white space, except inside quotes
/// (`'…'`, `"…"` with `\` escapes) and inside `{…}` and `[…]`. The words
/// keep their quotes and brackets, for [`arguments`] to read; [`unquote`]
/// takes a word's quotes off.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let (mut quote, mut escaped, mut depth) = (None, false, 0usize);
    for c in line.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '{' || c == '[' => depth += 1,
            None if c == '}' || c == ']' => depth = depth.saturating_sub(1),
            None if c.is_whitespace() && depth == 0 => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                continue;
            }
            None => {}
        }
        word.push(c);
        in_word = true;
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A word from [`split_words`] without its quotes, as a POSIX shell reads it.
pub fn unquote(word: &str) -> String {
    shlex::split(word).map(|w| w.concat()).unwrap_or_else(|| word.to_owned())
}

/// `vmwire qmp` without a command: the shell.
fn shell(qmp: Qmp, args: &QmpArgs) -> ExitCode {
    let log = match &args.log {
        None => None,
        Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => Some(f),
            Err(e) => return crate::usage(&format!("--log {}: {e}", path.display())),
        },
    };
    let timeout = args.timeout.0;
    let session = QmpShell::new(qmp, args.pretty, args.verbose, log, timeout);
    shell::interactive("qmp", PROMPT, session)
}

const PROMPT: &str = "(QMP) ";
/// The prompt between `transaction(` and `)`, as qmp-shell has it.
const TRANSACTION_PROMPT: &str = "TRANS> ";

/// What `help` says: the shell's own commands and how arguments are written.
const HELP: &str = r#"Lines are QEMU's commands (Tab completes their names; `query-commands` lists them):
  COMMAND [KEY=VALUE ...]    arguments as key=value words
  COMMAND {JSON object}      arguments as one JSON object
  {"execute": COMMAND, "arguments": {...}, "id": ID}
                             a whole command as JSON, sent as typed (its id kept)
Values: numbers, true, false, null are JSON; a value starting with {, [ or " must
be valid JSON (file={"driver":"null-co"}); 'text' is the text between the quotes;
any other word is a string. Dotted keys nest: a.b=1 sends {"a": {"b": 1}}.
The shell's own commands (not sent to QEMU):
  help [COMMAND]             this text
  transaction(               start a transaction: each following line is one action,
                             ACTION [KEY=VALUE ...] (its type and data)
  )                          send the actions as one `transaction` command
Ctrl-C abandons a command still waiting for its reply; Ctrl-D leaves the shell."#;

struct QmpShell {
    qmp: Qmp,
    commands: Vec<String>,
    pretty: bool,
    /// Show every message sent and received (`-v`).
    verbose: bool,
    /// Where every message sent and received is appended (`-l`).
    log: Option<std::fs::File>,
    timeout: Option<Duration>,
    /// The actions gathered since `transaction(`.
    transaction: Option<Vec<serde_json::Value>>,
    ended: Option<Ended>,
}

impl QmpShell {
    fn new(mut qmp: Qmp, pretty: bool, verbose: bool, log: Option<std::fs::File>, timeout: Option<Duration>) -> Self {
        #[derive(serde::Deserialize)]
        struct Info {
            name: String,
        }
        let mut commands: Vec<String> = qmp
            .execute::<Vec<Info>>("query-commands", ())
            .map(|v| v.into_iter().map(|i| i.name).collect())
            .unwrap_or_default();
        commands.extend(["help".to_owned(), "transaction(".to_owned()]);
        commands.sort();
        QmpShell { qmp, commands, pretty, verbose, log, timeout, transaction: None, ended: None }
    }

    /// `help`, or `help NAME`: a command's arguments or an event's data,
    /// from QEMU's schema when the shell has it.
    fn help(&self, name: Option<&str>) -> Printed {
        match (name, self.qmp.schema()) {
            (None, _) => Printed::ok(HELP),
            (Some(name), Some(schema)) => {
                let view = schema.view();
                if view.command(name).is_some() || view.event(name).is_some() {
                    Printed::ok(crate::schema::describe(view, name))
                } else {
                    Printed::error(format!("{name}: QEMU has no such command or event"))
                }
            }
            (Some(name), None) if self.commands.iter().any(|c| c == name) => {
                Printed::ok(format!("{name}: a QEMU command (its schema was not fetched: --no-check)"))
            }
            (Some(name), None) => Printed::error(format!("{name}: QEMU has no such command")),
        }
    }

    /// Appends `message` (one JSON message, sent or received) to the log.
    fn transcript(&mut self, message: &str) {
        if let Some(log) = &mut self.log {
            use std::io::Write;
            let _ = writeln!(log, "{}", vmwire_std::text::escape(message));
        }
    }

    /// Events and late replies that arrived, logged, as lines to print; and
    /// whether the connection ended (its message then on `err`).
    fn arrivals(&mut self) -> Printed {
        let mut lines = Vec::new();
        let mut err = String::new();
        loop {
            match self.qmp.next_event(Some(Duration::ZERO)) {
                Ok(Some(event)) => {
                    self.transcript(&event_json(&event, false));
                    lines.push(event_json(&event, self.pretty));
                }
                Ok(None) => break,
                Err(e @ (Error::Closed | Error::Io(_))) => {
                    self.ended = Some(Ended::PeerGone);
                    err = match e {
                        Error::Closed => "vmwire: QEMU closed the connection; the shell ends".into(),
                        e => format!("vmwire: {e}; the shell ends"),
                    };
                    break;
                }
                Err(e) => {
                    err = format!("vmwire: {e}");
                    break;
                }
            }
        }
        for stray in self.qmp.take_strays() {
            let text = match stray {
                Stray::Stale { id, reply } => format!("late reply to abandoned command {id}, discarded: {reply}"),
                Stray::Unmatched(m) => format!("reply to no command, discarded: {m}"),
                Stray::UntaggedError(e) => format!("error without an id: {e}"),
                Stray::Malformed(m) => format!("malformed message skipped: {m}"),
            };
            self.transcript(&text);
            if self.verbose {
                lines.push(text);
            }
        }
        Printed { out: shell::lines(lines), err, ..Printed::default() }
    }

    /// Sends `command`, waits for its reply, and prints it after whatever
    /// arrived first.
    fn execute(&mut self, command: &ShellCommand<'_>, interrupt: &Interrupt) -> Printed {
        let mut out = String::new();
        let sent = self.qmp.send_command(command.build());
        let shown_id = match &sent {
            Ok(id) if self.verbose => Some(id.clone()),
            _ => command.id.clone(),
        };
        let reply = sent.and_then(|id| {
            let message = command.message(&id);
            // The log keeps no password (`set_password`, a secret's key).
            let mut logged = message.clone().into_bytes();
            vmwire_proto::qmp::blank_secrets(&mut logged);
            self.transcript(&String::from_utf8_lossy(&logged));
            if self.verbose {
                out.push_str(&message);
                out.push('\n');
            }
            let reply = await_reply(&mut self.qmp, &id, self.timeout, &|| interrupt.raised());
            match &reply {
                Ok(Some(value)) => self.transcript(&reply_message(Ok(value), Some(&id), false)),
                Err(Error::Qemu(e)) => self.transcript(&reply_message(Err(e), Some(&id), false)),
                _ => {}
            }
            reply
        });
        let reply = match reply {
            // Abandoned (Ctrl-C): nobody reads this.
            Ok(None) => return Printed::error("interrupted"),
            Ok(Some(value)) => Ok(value),
            Err(e) => Err(e),
        };
        if let (Ok(value), "quit") = (&reply, command.name.as_str()) {
            out.push_str(&reply_message(Ok(value), shown_id.as_ref(), self.pretty));
            out.push('\n');
            return self.quit(out);
        }
        // Events that came first are printed first.
        let arrived = self.arrivals();
        out.push_str(&String::from_utf8_lossy(&arrived.out));
        let mut printed = Printed { err: arrived.err, ..Printed::default() };
        match reply {
            Ok(value) => {
                out.push_str(&reply_message(Ok(&value), shown_id.as_ref(), self.pretty));
            }
            Err(Error::Qemu(e)) => {
                out.push_str(&reply_message(Err(&e), shown_id.as_ref(), self.pretty));
                printed.failed = true;
            }
            Err(e @ (Error::Closed | Error::Io(_))) => {
                self.ended = Some(Ended::PeerGone);
                printed.err = format!("vmwire: {e}; the shell ends");
                printed.failed = true;
            }
            Err(e) => {
                printed.err = format!("vmwire: {e}");
                printed.failed = true;
            }
        }
        printed.out = out.into_bytes();
        printed
    }

    /// After `quit` was accepted: QEMU sends `SHUTDOWN` and closes. The
    /// shell waits for the close and ends (status 0).
    fn quit(&mut self, mut out: String) -> Printed {
        loop {
            match self.qmp.next_event(self.timeout) {
                Ok(Some(event)) => {
                    self.transcript(&event_json(&event, false));
                    out.push_str(&event_json(&event, self.pretty));
                    out.push('\n');
                }
                Ok(None) => {
                    let err = "vmwire: QEMU accepted quit but did not close the connection";
                    return Printed { out: out.into_bytes(), err: err.into(), failed: true, ..Printed::default() };
                }
                Err(_) => break,
            }
        }
        self.ended = Some(Ended::Asked);
        Printed { out: out.into_bytes(), err: "vmwire: QEMU quit; the shell ends".into(), ..Printed::default() }
    }

    /// One line inside `transaction(` … `)`: an action, or the end.
    fn action(&mut self, words: &[String], interrupt: &Interrupt) -> Printed {
        let (words, last) = match words.split_last() {
            Some((end, rest)) if end == ")" => (rest, true),
            _ => (words, false),
        };
        if let Some((name, rest)) = words.split_first() {
            let data = match arguments(rest) {
                Ok(a) => a.unwrap_or_else(|| "{}".into()),
                Err(e) => return Printed::error(e),
            };
            let data: serde_json::Value = serde_json::from_str(&data).unwrap_or_default();
            if let Some(actions) = &mut self.transaction {
                actions.push(serde_json::json!({ "type": unquote(name), "data": data }));
            }
        }
        if !last {
            return Printed::default();
        }
        let actions = self.transaction.take().unwrap_or_default();
        let arguments = serde_json::json!({ "actions": actions }).to_string();
        match Value::parse(arguments.as_bytes()) {
            Ok(args) => {
                let command = ShellCommand { name: "transaction".into(), arguments: Some(args), id: None, oob: false };
                self.execute(&command, interrupt)
            }
            Err(e) => Printed::error(e),
        }
    }
}

impl Session for QmpShell {
    fn run(&mut self, line: &str, interrupt: &Interrupt) -> Printed {
        let line = line.trim();
        if self.transaction.is_none() && is_json_command(line) {
            return match json_command(line) {
                Ok(command) => self.execute(&command, interrupt),
                Err(e) => Printed::error(e),
            };
        }
        let words = match split_words(line) {
            Ok(w) => w,
            Err(e) => return Printed::error(e),
        };
        let Some((first, rest)) = words.split_first() else { return Printed::default() };
        match first.as_str() {
            "help" => match rest {
                [] => self.help(None),
                [command] => self.help(Some(&unquote(command))),
                _ => Printed::error("usage: help [COMMAND]"),
            },
            "transaction(" if self.transaction.is_none() => {
                self.transaction = Some(Vec::new());
                self.action(rest, interrupt)
            }
            _ if self.transaction.is_some() => self.action(&words, interrupt),
            name => {
                let args = match arguments(rest) {
                    Ok(a) => a,
                    Err(e) => return Printed::error(e),
                };
                let args = args.as_deref().map(|a| Value::parse(a.as_bytes()));
                let arguments = match args.transpose() {
                    Ok(a) => a,
                    Err(e) => return Printed::error(e),
                };
                self.execute(&ShellCommand { name: unquote(name), arguments, id: None, oob: false }, interrupt)
            }
        }
    }

    /// Command names (QEMU's and the shell's own); after a command, its
    /// argument names and values from the schema.
    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        match self.qmp.schema() {
            Some(schema) if self.transaction.is_some() => {
                let trimmed = line.trim_start();
                let (start, found) = crate::schema::complete_action(schema.view(), trimmed);
                (start + line.len() - trimmed.len(), found)
            }
            Some(schema) if line.trim_start().contains(char::is_whitespace) => {
                let trimmed = line.trim_start();
                let (start, found) = crate::schema::complete(schema.view(), trimmed);
                (start + line.len() - trimmed.len(), found)
            }
            _ => shell::complete_command(line, &self.commands),
        }
    }

    fn idle(&mut self) -> Printed {
        self.arrivals()
    }

    fn ended(&self) -> Option<Ended> {
        self.ended
    }

    fn prompt(&self) -> Option<String> {
        Some(if self.transaction.is_some() { TRANSACTION_PROMPT } else { PROMPT }.to_owned())
    }

    fn carries_secret(line: &str) -> bool {
        carries_secret(line)
    }

    fn banner(&self) -> Option<String> {
        let greeting = self.qmp.greeting();
        let (major, minor, micro) = greeting.version;
        Some(format!(
            "Welcome to the QMP low-level shell!\nConnected to QEMU {major}.{minor}.{micro} {}\nType `help` for the shell's own commands.",
            greeting.package.trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_that_carry_secrets() {
        for line in [
            "set_password protocol=vnc password=s3cret",
            "object-add qom-type=secret id=k data=s3cret",
            r#"{"execute": "change-vnc-password", "arguments": {"password": "pw"}}"#,
            "guest-set-user-password username=root password=cHc= crypted=false",
            "  set_password   protocol=vnc password='s 3'",
        ] {
            assert!(carries_secret(line), "{line}");
        }
        for line in [
            "query-status",
            "set_password protocol=vnc",
            "object-add qom-type=memory-backend-ram id=m size=1M",
            "help",
            "'unterminated",
        ] {
            assert!(!carries_secret(line), "{line}");
        }
    }

    fn json(words: &[&str]) -> serde_json::Value {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        serde_json::from_str(&arguments(&words).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn shorthand_arguments() {
        assert_eq!(
            json(&["device=ide0", "force=true", "a.b=1", "a.c=x y", "n=null", "f=1.5", "h=0x10"]),
            serde_json::json!({"device": "ide0", "force": true, "a": {"b": 1, "c": "x y"}, "n": null, "f": 1.5, "h": "0x10"})
        );
        // JSON values as typed: objects, arrays, strings (quotes and all).
        assert_eq!(
            json(&[r#"file={"driver":"null-co"}"#, r#"l=[1, "2"]"#, r#"s="true""#, "q='a b'", "e="]),
            serde_json::json!({"file": {"driver": "null-co"}, "l": [1, "2"], "s": "true", "q": "a b", "e": ""})
        );
        // One JSON object: passed as typed.
        assert_eq!(arguments(&["{\"x\": 1}".into()]).unwrap().unwrap(), "{\"x\": 1}");
        assert!(arguments(&["[1]".into()]).is_err());
        assert!(arguments(&["novalue".into()]).is_err());
        assert!(arguments(&["=1".into()]).is_err());
        assert!(arguments(&["a..b=1".into()]).is_err());
        // Looks like JSON, is not: an error naming the key.
        for bad in ["file={driver:null-co}", "x=[1,", "x=\"open", "x='open"] {
            let e = arguments(&[bad.into()]).unwrap_err();
            assert!(e.starts_with(bad.split('=').next().unwrap()), "{e}");
        }
        // Numbers that would not reach QEMU as typed, and a key given twice.
        for (bad, said) in [
            (&["n=1e400"][..], "n: 1e400 is past what a double holds"),
            (&["n=123456789012345678901"], "n: 123456789012345678901 does not fit in 64 bits"),
            (&["a=1", "a=2"], "a is given twice"),
            (&["a.b=1", "a.b=2"], "b is given twice"),
        ] {
            let words: Vec<String> = bad.iter().map(|w| w.to_string()).collect();
            assert_eq!(arguments(&words).unwrap_err(), said, "{bad:?}");
        }
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"human-monitor-command command-line="info status" x='a b'"#).unwrap(),
            ["human-monitor-command", "command-line=\"info status\"", "x='a b'"]
        );
        assert_eq!(
            split_words(r#"blockdev-add file={"driver": "null-co", "a": [1, 2]} x="a \" b""#).unwrap(),
            ["blockdev-add", r#"file={"driver": "null-co", "a": [1, 2]}"#, r#"x="a \" b""#]
        );
        assert!(split_words("a \"b").is_err());
        assert_eq!(unquote("'a b'"), "a b");
        assert_eq!(unquote("query-status"), "query-status");
    }

    #[test]
    fn commands_written_as_json() {
        let c = json_command(r#"{"execute": "query-status", "id": "mine"}"#).unwrap();
        assert_eq!((c.name.as_str(), c.id, c.oob), ("query-status", Id::string("mine"), false));
        let c = json_command(r#"{"exec-oob": "x", "arguments": {"a": 1}, "id": 7}"#).unwrap();
        assert_eq!((&c.id, c.oob, c.arguments.map(|a| a.raw_str())), (&Some(Id::Number(7)), true, Some(r#"{"a": 1}"#)));
        assert_eq!(c.message(&Id::Number(7)), r#"{"exec-oob":"x","arguments":{"a": 1},"id":7}"#);
        for bad in [
            r#"{"id": 1}"#,
            r#"{"execute": 1}"#,
            r#"{"execute": "a", "exec-oob": "b"}"#,
            r#"{"execute": "a", "arguments": []}"#,
            r#"{"execute": "a", "id": -1}"#,
            r#"{"execute": "a", "id": {"x": 1}}"#,
            r#"{"execute": "a", "other": 1}"#,
            r#"{"execute": "a""#,
        ] {
            assert!(json_command(bad).is_err(), "{bad}");
        }
    }
}
