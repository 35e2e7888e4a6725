//! An async XML-RPC client (HTTP over TCP, HTTPS with rustls, HTTP over a
//! UNIX socket): the twin of `vmwire_std::xmlrpc::Client`, with its
//! options, errors and names.
//!
//! ```no_run
//! use vmwire_smol::xmlrpc::Client;
//!
//! # smol::block_on(async {
//! let mut rpc = Client::connect("http://127.0.0.1:8000/RPC2").await?;
//! let sum: i64 = rpc.call("add", (2, 3)).await?;
//! let methods: Vec<String> = rpc.call("system.listMethods", ()).await?;
//! # Ok::<(), vmwire_smol::xmlrpc::Error>(())
//! # });
//! ```
//!
//! A call whose future is dropped before its answer (cancelled) abandons
//! the connection it went out on: the next call goes out on a new one.

use serde::Serialize;
use serde::de::DeserializeOwned;
use vmwire_proto::buf::Heap;
use vmwire_proto::xmlrpc::{self as proto, Event, Value, ser};
use vmwire_std::xmlrpc::answer;
pub use vmwire_std::xmlrpc::{Error, Fault, Options, to_json};

use crate::http::{Link, Url};

/// An async XML-RPC client. Calls go one at a time; the HTTP connection is
/// kept alive when the server allows it and reopened when it does not.
#[derive(Debug)]
pub struct Client {
    link: Link<proto::Client<Heap>>,
    url: Url,
}

impl Client {
    /// Connects to `url` (see [`Url`]) with [`Options::new`].
    pub async fn connect(url: &str) -> Result<Self, Error> {
        Self::connect_with(url, Options::new()).await
    }

    /// Connects to `url` with `options`.
    pub async fn connect_with(url: &str, options: Options) -> Result<Self, Error> {
        let (link, url) = Link::connect(url, &options.headers, &options.tls, options.timeout, |endpoint| {
            proto::Client::new(options.config, endpoint)
        })
        .await?;
        Ok(Client { link, url })
    }

    /// The endpoint.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Calls `method` with `params` (a tuple or a `Vec`: one param each;
    /// `()`: none; anything else: one param) and decodes the result into `R`.
    pub async fn call<P: Serialize, R: DeserializeOwned>(&mut self, method: &str, params: P) -> Result<R, Error> {
        self.call_with(method, params, |v| v.deserialize::<R>()).await?.map_err(Error::Decode)
    }

    /// Calls `method` and hands the result, borrowed where it lies in the
    /// response, to `read`.
    pub async fn call_with<P: Serialize, T>(
        &mut self,
        method: &str,
        params: P,
        read: impl FnOnce(Value<'_>) -> T,
    ) -> Result<T, Error> {
        self.link.machine().call(method, |p| ser::to_params(p, &params))?;
        let mut response = proto::Response::new(|event: Event<'_>| answer(event, read));
        self.link.run(&mut response, &mut |_: Event<'_>| {}, None).await.map_err(Error::from)?
    }

    /// Calls `method` and returns the result as JSON ([`to_json`]).
    pub async fn call_json<P: Serialize>(&mut self, method: &str, params: P) -> Result<serde_json::Value, Error> {
        self.call_with(method, params, to_json).await
    }
}
