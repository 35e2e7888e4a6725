//! `vmwire xmlrpc` (any XML-RPC server) and `vmwire xenapi` (xapi: a
//! session, one call, the reply as JSON).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use vmwire_std::http::TlsOptions;
use vmwire_std::xenapi::{self, Session};
use vmwire_std::xmlrpc::{self, Client};

use crate::qmp;

/// How to reach the server: time limit and TLS.
#[derive(Debug, Args)]
pub struct Connection {
    /// Seconds to wait for connecting and for the reply (0: forever).
    #[arg(long, default_value = "60", value_name = "SECONDS")]
    timeout: crate::Seconds,
    /// Accept any TLS certificate (xapi's own is self-signed; prefer --ca).
    #[arg(long)]
    insecure: bool,
    /// Also trust the certificates in this PEM file.
    #[arg(long, value_name = "PEM")]
    ca: Option<PathBuf>,
    /// A request field, `Name: value` (repeatable), such as `traceparent: …`.
    /// The fields that frame the request or manage the connection (`Host`,
    /// `Content-Length`, `Transfer-Encoding`, `Connection`, …) are vmwire's own
    /// and refused, as are control characters.
    #[arg(long = "header", short = 'H', value_name = "FIELD")]
    headers: Vec<String>,
    /// Indent the JSON output.
    #[arg(long)]
    pretty: bool,
}

impl Connection {
    fn timeout(&self) -> Option<Duration> {
        self.timeout.0
    }

    fn tls(&self) -> Result<TlsOptions, String> {
        let trusted = match &self.ca {
            Some(path) => vmwire_std::http::pem_certificates(path).map_err(|e| format!("{}: {e}", path.display()))?,
            None => Vec::new(),
        };
        Ok(TlsOptions { verify: !self.insecure, trusted })
    }

    fn headers(&self) -> Result<Vec<(String, String)>, String> {
        self.headers
            .iter()
            .map(|h| {
                let (name, value) = h.split_once(':').ok_or_else(|| format!("expected `Name: value`, got {h:?}"))?;
                let (name, value) = (name.trim(), value.trim());
                vmwire_proto::http::check_field(name, value.as_bytes()).map_err(|e| format!("-H {h:?}: {e}"))?;
                Ok((name.to_string(), value.to_string()))
            })
            .collect()
    }

    /// A fault: printed as its struct on stdout, named on stderr (as a
    /// XenAPI failure is); status 1.
    fn fault(&self, fault: &xmlrpc::Fault) -> ExitCode {
        self.print(&serde_json::json!({ "faultCode": fault.code, "faultString": fault.string }));
        eprintln!("vmwire: XML-RPC fault {}", fault.code);
        ExitCode::from(1)
    }

    fn print(&self, value: &Value) {
        let text = if self.pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) };
        println!("{}", text.unwrap_or_default());
    }
}

/// Call a method on any XML-RPC server; the reply is printed as JSON.
#[derive(Debug, Args)]
pub struct XmlrpcArgs {
    /// The server: `http://host:port/path`, `https://…`, `unix:/path/to/socket`.
    url: String,
    /// The method, such as `system.listMethods`.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    method: String,
    /// Its params, in order, each read as a `key=value` value is (numbers,
    /// `true`, `false`, `null` as JSON; a word starting with `{`, `[` or `"`
    /// JSON that must be valid; `'…'` the text between the quotes; any other
    /// word a string); `key=value` words together make one struct param, last.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Log in to xapi, make one call (the session goes first by itself), print
/// the `Value` as JSON, log out. A XenAPI failure prints its
/// `ErrorDescription` and exits with status 1.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true))]
pub struct XenapiArgs {
    /// xapi's address: `https://host`, `http://host:port`, `unix:/path`.
    #[arg(long, group = "target")]
    url: Option<String>,
    /// xapi's local socket (/var/lib/xcp/xapi), as the SDK's `xapi_local()`.
    #[arg(long, group = "target")]
    local: bool,
    /// The user to log in as.
    #[arg(long, default_value = "root")]
    user: String,
    /// Read the password from this file: all of it less one trailing line
    /// end, at most 4096 bytes, not empty (a warning if others can read it).
    #[arg(long, value_name = "FILE", conflicts_with = "password_env")]
    password_file: Option<PathBuf>,
    /// Read the password from this environment variable.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// The API version sent with the login.
    #[arg(long, default_value = "1.0")]
    api_version: String,
    /// Who is asking (xapi logs it).
    #[arg(long, default_value = "vmwire")]
    originator: String,
    /// Log in with `slave_local_login_with_password` (a pool member on its own).
    #[arg(long)]
    slave_local: bool,
    /// The method, such as `VM.get_all_records`.
    #[arg(value_parser = clap::builder::NonEmptyStringValueParser::new())]
    method: String,
    /// Its params after the session, each read as a `key=value` value is
    /// (numbers, `true`, `false`, `null` as JSON; a word starting with `{`,
    /// `[` or `"` JSON that must be valid; `'…'` the text between the quotes;
    /// any other word a string); `key=value` words together make one struct
    /// param, last.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Params from the command line.
fn params(words: &[String]) -> Result<Vec<Value>, String> {
    let is_pair = |w: &&String| {
        !w.starts_with(['{', '[', '"'])
            && w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            })
    };
    let (pairs, positional): (Vec<&String>, Vec<&String>) = words.iter().partition(is_pair);
    let mut params: Vec<Value> = positional
        .iter()
        .enumerate()
        .map(|(n, w)| qmp::argument_value(&format!("param {}", n + 1), w))
        .collect::<Result<_, _>>()?;
    if !pairs.is_empty() {
        let pairs: Vec<String> = pairs.into_iter().cloned().collect();
        if let Some(object) = qmp::arguments(&pairs)? {
            params.push(serde_json::from_str(&object).map_err(|e| e.to_string())?);
        }
    }
    Ok(params)
}

pub fn run_xmlrpc(args: XmlrpcArgs) -> ExitCode {
    let c = &args.connection;
    let (params, tls, headers) = match (params(&args.args), c.tls(), c.headers()) {
        (Ok(p), Ok(t), Ok(h)) => (p, t, h),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return crate::usage(&e),
    };
    let options = xmlrpc::Options { timeout: c.timeout(), tls, headers, ..xmlrpc::Options::new() };
    let mut rpc = match Client::connect_with(&args.url, options) {
        Ok(rpc) => rpc,
        Err(e @ xmlrpc::Error::Url(_)) => return crate::usage(&e),
        Err(e) => return crate::fail(&e),
    };
    match rpc.call_json(&args.method, params) {
        Ok(v) => {
            c.print(&v);
            ExitCode::SUCCESS
        }
        Err(xmlrpc::Error::Fault(f)) => c.fault(&f),
        // Params the call cannot carry (text XML cannot hold): the command line's to change.
        Err(e @ xmlrpc::Error::Encode(_)) => crate::usage(&e),
        Err(e) => crate::fail(&e),
    }
}

/// How long a logout on a signal may take before `vmwire` ends anyway.
const LOGOUT_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The most a password file may hold: a password and its line end.
const MAX_PASSWORD_FILE: u64 = 4096;

/// The password in `path`: the whole file less one trailing line end, at
/// most [`MAX_PASSWORD_FILE`] bytes, not empty. A file others may read is
/// used, with a warning, as ssh-style tools do.
fn password_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: {e}"))?;
    let metadata = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    let mode = metadata.permissions().mode();
    if metadata.is_file() && mode & 0o077 != 0 {
        eprintln!("vmwire: warning: {shown} can be read by others (mode {:03o}); chmod 600 it", mode & 0o777);
    }
    let mut bytes = Vec::new();
    file.take(MAX_PASSWORD_FILE + 1).read_to_end(&mut bytes).map_err(|e| format!("{shown}: {e}"))?;
    if bytes.len() as u64 > MAX_PASSWORD_FILE {
        return Err(format!("{shown}: longer than {MAX_PASSWORD_FILE} bytes: not a password file"));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown}: the password is not UTF-8"))?;
    let line = text.strip_suffix('\n').map_or(text.as_str(), |t| t.strip_suffix('\r').unwrap_or(t));
    if line.contains(['\n', '\r']) {
        return Err(format!("{shown}: more than one line (a password file holds the password and one line end)"));
    }
    if line.is_empty() {
        return Err(format!("{shown}: the password is empty"));
    }
    Ok(line.to_owned())
}

fn password(args: &XenapiArgs) -> Result<String, String> {
    if let Some(path) = &args.password_file {
        return password_file(path);
    }
    if let Some(var) = &args.password_env {
        return match std::env::var(var) {
            Ok(pw) if pw.is_empty() => Err(format!("${var} is empty")),
            Ok(pw) => Ok(pw),
            Err(_) => Err(format!("${var} is not set")),
        };
    }
    if args.local {
        // The local socket is for root on the host itself.
        return Ok(String::new());
    }
    Err("give the password with --password-file or --password-env (never on the command line)".into())
}

pub fn run_xenapi(args: XenapiArgs) -> ExitCode {
    let c = &args.connection;
    let (params, tls, headers, password) = match (params(&args.args), c.tls(), c.headers(), password(&args)) {
        (Ok(p), Ok(t), Ok(h), Ok(pw)) => (p, t, h, pw),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => return crate::usage(&e),
    };
    let url = match &args.url {
        Some(url) => url.clone(),
        None => format!("unix:{}", xenapi::XAPI_LOCAL),
    };
    let logout_options = xmlrpc::Options {
        timeout: Some(LOGOUT_LIMIT),
        tls: tls.clone(),
        headers: headers.clone(),
        ..xmlrpc::Options::new()
    };
    let options = xenapi::Options { timeout: c.timeout(), tls, headers, ..xenapi::Options::new() };
    let mut xapi = match Session::connect_with(&url, options) {
        Ok(x) => x,
        Err(e @ xenapi::Error::Url(_)) => return crate::usage(&e),
        Err(e) => return crate::fail(&e),
    };
    let login = if args.slave_local {
        xapi.slave_local_login_with_password(&args.user, &password)
    } else {
        xapi.login_with_password(&args.user, &password, &args.api_version, &args.originator)
    };
    drop(password);
    // Ctrl-C (or SIGTERM, SIGHUP) during the call: the session is logged
    // out on a connection of its own, as the SDK's `finally:
    // session.logout()` does, before vmwire ends as the signal would.
    if let Some((method, session)) = xapi.logout_call() {
        let url = url.clone();
        crate::on_signal(move || {
            if let Ok(mut rpc) = Client::connect_with(&url, logout_options) {
                let _ = rpc.call_json(method, (session,));
            }
        });
    }
    let result = login.and_then(|_| xapi.call_json(&args.method, params));
    // Logged out before anything is printed: a reader that stops early
    // (`| head`) ends `vmwire` with SIGPIPE, and the session would stay.
    if xapi.session().is_some() {
        let _ = xapi.logout();
    }
    match result {
        Ok(v) => {
            c.print(&v);
            ExitCode::SUCCESS
        }
        Err(xenapi::Error::Failure(f)) => {
            let mut description = vec![Value::String(f.code.clone())];
            description.extend(f.params.iter().cloned().map(Value::String));
            c.print(&serde_json::json!({ "ErrorDescription": description }));
            eprintln!("vmwire: XenAPI failure {}", f.code);
            ExitCode::from(1)
        }
        Err(xenapi::Error::Fault(f)) => c.fault(&f),
        Err(e @ xenapi::Error::Encode(_)) => crate::usage(&e),
        Err(e @ xenapi::Error::SessionInvalid { .. }) => {
            eprintln!("vmwire: {e}");
            ExitCode::from(1)
        }
        Err(e) => crate::fail(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_json_words_and_one_struct_of_pairs() {
        let words: Vec<String> = ["OpaqueRef:1", "false", "12", "name=web", "\"a=b\"", "memory.max=1024"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            params(&words).unwrap(),
            [
                Value::from("OpaqueRef:1"),
                Value::from(false),
                Value::from(12),
                Value::from("a=b"),
                serde_json::json!({"name": "web", "memory": {"max": 1024}}),
            ]
        );
        // As key=value values are read: the quotes' text; JSON that must be valid.
        let words = ["-5", "'x y'", "[1]"].map(String::from);
        assert_eq!(params(&words).unwrap(), [Value::from(-5), Value::from("x y"), serde_json::json!([1])]);
        let refused = params(&["ok".into(), "{bad json".into()]).unwrap_err();
        assert!(refused.starts_with("param 2: {bad json is not valid JSON"), "{refused}");
    }
}
