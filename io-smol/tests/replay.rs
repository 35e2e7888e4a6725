//! The async replay peer against the async clients: a recorded session
//! replays, and a client that strays from it is told how.

use vmwire_smol::qmp::{Error, Options, Qmp};
use vmwire_smol::replay::{self, Fault, Peer, Protocol};

fn fixture(name: &str) -> String {
    format!("{}/../fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_recorded_qmp_session_replays_in_one_byte_reads() {
    smol::block_on(async {
        let peer = Peer::start_file(Protocol::Qmp, fixture("qmp/10_cont_stop.txn"), &[Fault::Split(1)]).unwrap();
        let mut qmp = Qmp::connect_unix(peer.path(), Options::default()).await.unwrap();
        let status: serde_json::Value = qmp.execute("query-status", ()).await.unwrap();
        assert_eq!(status["status"], "prelaunch");
        // The recorded client's commands, in its order; the recorded events come back.
        for name in ["cont", "query-status", "cont", "stop", "stop", "query-status"] {
            qmp.execute::<serde_json::Value>(name, ()).await.unwrap();
        }
        let mut events = Vec::new();
        while let Some(event) = qmp.next_event(Some(std::time::Duration::ZERO)).await.unwrap() {
            events.push(event.name);
        }
        assert_eq!(events, ["RESUME", "STOP"]);
        qmp.execute_raw("cont", None).await.unwrap();
        qmp.close();
        peer.finish().await.unwrap();
    });
}

#[test]
fn a_client_that_strays_is_shown_what_was_expected() {
    smol::block_on(async {
        let peer = Peer::start_file(Protocol::Qmp, fixture("qmp/10_cont_stop.txn"), &[]).unwrap();
        let mut qmp = Qmp::connect_unix(peer.path(), Options::default()).await.unwrap();
        // The recording has `query-status` here: the peer closes, the client sees the end.
        assert!(matches!(qmp.execute::<serde_json::Value>("stop", ()).await, Err(Error::Closed)));
        match peer.finish().await {
            Err(replay::Error::Mismatch { expected, actual, .. }) => {
                assert!(expected.contains("query-status") && actual.contains("stop"), "{expected} / {actual}");
            }
            other => panic!("{other:?}"),
        }
    });
}
