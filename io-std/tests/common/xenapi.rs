//! The XML-RPC and XenAPI peer: Python's `xmlrpc.server` serving
//! XenAPI-shaped methods (`tests/peers/xenapi_server.py`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `tests/peers/xenapi_server.py`, listening on a free port; killed on drop.
pub struct Peer {
    pub child: Child,
    pub port: u16,
}

impl Peer {
    /// Starts the peer with `args` (`--tls CERT KEY`, …), once it listens.
    pub fn start(args: &[&str]) -> Peer {
        let python = super::require_python_module("XenAPI");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../io-std/tests/peers/xenapi_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python peer");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
        Peer { child, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `localhost` written to `dir` as
/// `cert.pem` and `key.pem` (for the peer's `--tls`): their paths, and the
/// certificate (DER).
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path, cert.der().to_vec())
}
