//! `vmwire qmp`: one command, an event stream, or a shell like qmp-shell.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vmwire_proto::json::Value;
use vmwire_std::qemu::Qemu;
use vmwire_std::qmp::{Error, Event, Options, Qmp, Schema};
use vmwire_std::text::escape;

use crate::shell::{self, Session};

/// Talk to QEMU over QMP.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target"))]
pub struct QmpArgs {
    /// QMP UNIX socket (`-qmp unix:PATH,server=on`).
    #[arg(long, group = "target", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// QMP TCP socket (`-qmp tcp:HOST:PORT,server=on`).
    #[arg(long, group = "target", value_name = "HOST:PORT")]
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
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    timeout: f64,
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
    /// Command to run; without one, an interactive shell starts.
    command: Option<String>,
    /// Its arguments: one JSON object, or `key=value` pairs (values are JSON
    /// where they parse as JSON, strings otherwise; `a.b=1` nests).
    args: Vec<String>,
}

pub fn run(args: QmpArgs) -> ExitCode {
    if let Some(code) = schema_offline(&args) {
        return code;
    }
    let timeout = (args.timeout > 0.0).then(|| Duration::from_secs_f64(args.timeout));
    let options = Options { timeout, oob: args.oob, ..Options::default() };
    let launched = if args.launch {
        match Qemu::builder().qmp().spawn() {
            Ok(q) => Some(q),
            Err(e) => return crate::fail(&e),
        }
    } else {
        None
    };
    let connected = match (&args.socket, &args.tcp, &launched) {
        (Some(path), _, _) => Qmp::connect_unix(path, options),
        (_, Some(addr), _) => Qmp::connect_tcp(addr.as_str(), options),
        (_, _, Some(qemu)) => Qmp::connect_unix(qemu.qmp_path().unwrap_or(std::path::Path::new("")), options),
        _ => return crate::usage(&"one of --socket, --tcp or --launch is needed (or --check with --schema)"),
    };
    let mut qmp = match connected {
        Ok(q) => q,
        Err(e) => return crate::fail(&e),
    };
    let code = if let Some(code) = schema_online(&mut qmp, &args) {
        code
    } else if args.events {
        print_events(&mut qmp, args.pretty)
    } else if let Some(command) = &args.command {
        one_shot(&mut qmp, command, &args.args, args.pretty)
    } else {
        match shell::interactive("qmp", "(QMP) ", QmpShell::new(qmp, args.pretty)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => crate::fail(&e),
        }
    };
    if let Some(mut qemu) = launched {
        // The shell owns its connection; quit through a fresh one.
        if let Some(path) = qemu.qmp_path() {
            if let Ok(mut q) = Qmp::connect_unix(path, Options::default()) {
                let _ = q.execute_raw("quit", None);
            }
        }
        let _ = qemu.wait_exit(Duration::from_secs(5));
    }
    code
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
    if let (Some(schema), Some(command), false) = (qmp.schema(), &args.command, args.no_check || args.events) {
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

fn print_events(qmp: &mut Qmp, pretty: bool) -> ExitCode {
    loop {
        match qmp.next_event(None) {
            Ok(Some(event)) => println!("{}", event_json(&event, pretty)),
            Ok(None) => {}
            Err(Error::Closed) => return ExitCode::SUCCESS,
            Err(e) => return crate::fail(&e),
        }
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

/// Command arguments from the command line: one JSON object, or `key=value` pairs.
pub fn arguments(words: &[String]) -> Result<Option<String>, String> {
    match words {
        [] => Ok(None),
        [one] if one.trim_start().starts_with('{') => {
            let v: serde_json::Value = serde_json::from_str(one).map_err(|e| format!("arguments: {e}"))?;
            if !v.is_object() {
                return Err("arguments must be a JSON object".into());
            }
            Ok(Some(v.to_string()))
        }
        pairs => {
            let mut args = serde_json::Map::new();
            for pair in pairs {
                let (key, value) = pair.split_once('=').ok_or_else(|| format!("expected key=value, got {pair:?}"))?;
                let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.into()));
                insert_dotted(&mut args, key, value)?;
            }
            Ok(Some(serde_json::Value::Object(args).to_string()))
        }
    }
}

fn insert_dotted(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    value: serde_json::Value,
) -> Result<(), String> {
    match key.split_once('.') {
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

/// Splits a shell line into words; `'…'` and `"…"` quote.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let (mut words, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

struct QmpShell {
    qmp: Qmp,
    commands: Vec<String>,
    pretty: bool,
    ended: bool,
}

impl QmpShell {
    fn new(mut qmp: Qmp, pretty: bool) -> Self {
        #[derive(serde::Deserialize)]
        struct Info {
            name: String,
        }
        let mut commands: Vec<String> = qmp
            .execute::<Vec<Info>>("query-commands", ())
            .map(|v| v.into_iter().map(|i| i.name).collect())
            .unwrap_or_default();
        commands.sort();
        QmpShell { qmp, commands, pretty, ended: false }
    }
}

impl Session for QmpShell {
    fn run(&mut self, line: &str) -> Result<String, String> {
        let trimmed = line.trim();
        let (name, args, oob) = if trimmed.starts_with('{') {
            // Raw JSON: {"execute"|"exec-oob": NAME, "arguments": {…}}
            let v: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| format!("JSON: {e}"))?;
            let (name, oob) = match (v.get("execute"), v.get("exec-oob")) {
                (Some(serde_json::Value::String(n)), None) => (n.clone(), false),
                (None, Some(serde_json::Value::String(n))) => (n.clone(), true),
                _ => return Err("expected {\"execute\": NAME, …} or {\"exec-oob\": NAME, …}".into()),
            };
            (name, v.get("arguments").map(|a| a.to_string()), oob)
        } else {
            let words = split_words(trimmed)?;
            let Some((name, rest)) = words.split_first() else { return Ok(String::new()) };
            (name.clone(), arguments(rest)?, false)
        };
        let result = if oob {
            self.qmp.execute_oob_raw(&name, args.as_deref())
        } else {
            self.qmp.execute_raw(&name, args.as_deref())
        };
        let mut out = String::new();
        for event in self.idle() {
            out.push_str(&event);
            out.push('\n');
        }
        match result {
            Ok(value) => out.push_str(&reply_json(Ok(&value), self.pretty)),
            Err(Error::Qemu(e)) => out.push_str(&reply_json(Err(&e), self.pretty)),
            Err(Error::Closed) => {
                self.ended = true;
                return Err("QMP: connection closed".into());
            }
            Err(e) => return Err(e.to_string()),
        }
        Ok(out)
    }

    fn complete(&mut self, line: &str) -> (usize, Vec<String>) {
        shell::complete_command(line, &self.commands)
    }

    fn idle(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.qmp.next_event(Some(Duration::ZERO)) {
                Ok(Some(event)) => lines.push(event_json(&event, self.pretty)),
                Ok(None) => break,
                Err(Error::Closed) => {
                    self.ended = true;
                    lines.push("QMP: connection closed".into());
                    break;
                }
                Err(e) => {
                    lines.push(e.to_string());
                    break;
                }
            }
        }
        lines
    }

    fn ended(&self) -> bool {
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthand_arguments() {
        let words: Vec<String> =
            ["device=ide0", "force=true", "a.b=1", "a.c=x y", "n=null"].iter().map(|s| s.to_string()).collect();
        let json = arguments(&words).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v, serde_json::json!({"device": "ide0", "force": true, "a": {"b": 1, "c": "x y"}, "n": null}));
        assert_eq!(arguments(&["{\"x\": 1}".into()]).unwrap().unwrap(), "{\"x\":1}");
        assert!(arguments(&["[1]".into()]).is_err());
        assert!(arguments(&["novalue".into()]).is_err());
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(
            split_words(r#"human-monitor-command command-line="info status" x='a b'"#).unwrap(),
            ["human-monitor-command", "command-line=info status", "x=a b"]
        );
        assert!(split_words("a \"b").is_err());
    }
}
