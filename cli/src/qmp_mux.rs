//! `vmwire qmp-mux`: many clients on one QEMU monitor (vmwire-smol's
//! [`Mux`]), on a UNIX or TCP socket of its own. Prints nothing but errors;
//! exits when QEMU goes away, or on SIGTERM, SIGINT or SIGHUP (its UNIX
//! socket removed either way).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use futures_lite::future;
use vmwire_smol::qmp::mux::{Listener, Mux, Options, Slow};
use vmwire_smol::qmp::{Error, Options as QmpOptions, Qmp};

/// `vmwire qmp-mux`'s arguments.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("qemu").required(true), group = clap::ArgGroup::new("listen_on").required(true))]
pub struct QmpMuxArgs {
    /// QEMU's QMP UNIX socket (`-qmp unix:PATH,server=on`).
    #[arg(long, group = "qemu", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// QEMU's QMP TCP socket (`-qmp tcp:HOST:PORT,server=on`).
    #[arg(long, group = "qemu", value_name = "HOST:PORT", value_parser = crate::tcp_address)]
    tcp: Option<String>,
    /// Serve clients on a UNIX socket at PATH (created; removed on exit).
    #[arg(long, group = "listen_on", value_name = "PATH")]
    listen: Option<PathBuf>,
    /// Serve clients on TCP HOST:PORT (port 0: any; the address is printed).
    #[arg(long, group = "listen_on", value_name = "HOST:PORT", value_parser = crate::tcp_address)]
    listen_tcp: Option<String>,
    /// Events queued for a client that is not reading.
    #[arg(long, default_value_t = 256, value_name = "N")]
    event_queue: usize,
    /// Disconnect a client that loses an event (instead of dropping the oldest).
    #[arg(long)]
    disconnect_slow: bool,
    /// Seconds to wait for QEMU's greeting (0: forever).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    timeout: crate::Seconds,
}

/// A stream that becomes readable when SIGTERM, SIGINT or SIGHUP arrives.
fn stop_signals() -> std::io::Result<async_io::Async<std::os::unix::net::UnixStream>> {
    let (read, write) = std::os::unix::net::UnixStream::pair()?;
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
    }
    async_io::Async::new(read)
}

/// Runs the multiplexer until QEMU goes away.
pub fn run(args: QmpMuxArgs) -> ExitCode {
    // Warnings (a slow client's lost events) on stderr, one line each.
    crate::init_logging(0, 1);
    let timeout = args.timeout.0;
    let options = Options {
        events: args.event_queue,
        slow: if args.disconnect_slow { Slow::Disconnect } else { Slow::DropEvents },
        ..Options::default()
    };
    let listener = match (&args.listen, &args.listen_tcp) {
        (Some(path), _) => Listener::bind_unix(path),
        (_, Some(addr)) => Listener::bind_tcp(addr),
        _ => unreachable!("clap requires one"),
    };
    let listener = match listener {
        Ok(l) => l,
        Err(e) => return crate::fail(&format!("listening: {e}")),
    };
    if let Some(address) = listener.tcp_addr() {
        // The port the system chose for `:0` is known only now.
        eprintln!("vmwire: serving QMP on {address}");
    }
    let stop = match stop_signals() {
        Ok(stop) => stop,
        Err(e) => return crate::fail(&format!("catching signals: {e}")),
    };
    let outcome = async_io::block_on(future::or(
        async {
            let qmp_options = QmpOptions { oob: true, timeout, ..QmpOptions::default() };
            let qmp = match (&args.socket, &args.tcp) {
                (Some(path), _) => Qmp::connect_unix(path, qmp_options).await,
                (_, Some(addr)) => Qmp::connect_tcp(addr.as_str(), qmp_options).await,
                _ => unreachable!("clap requires one"),
            }?;
            let (handle, driver) = qmp.share();
            let mux = Mux::new(handle, options);
            let (driven, served) = future::zip(driver, mux.serve(&listener)).await;
            served.map_err(Error::Io)?;
            match driven {
                Ok(()) | Err(Error::Closed) => Ok(()),
                Err(e) => Err(e),
            }
        },
        async {
            // A signal: stop serving (the listener's drop removes its socket).
            let mut byte = [0u8; 1];
            let _ = futures_lite::AsyncReadExt::read(&mut &stop, &mut byte).await;
            Ok(())
        },
    ));
    drop(listener);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(&e),
    }
}
