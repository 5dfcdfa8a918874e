//! The sandbox's relay keeps its events on disk: stopped and started again on the same folder
//! and port, it serves every event it had, so a back-fill after a restart misses nothing.
use localnet::EmbeddedRelay;
use nostr_sdk::prelude::*;
use std::time::Duration;

async fn client(url: &str) -> Client {
    let client = Client::new(Keys::generate());
    client.add_relay(url).await.expect("relay url");
    client.connect().await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_serves_what_it_stored() {
    let dir = std::env::temp_dir().join(format!("relay-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let relay = EmbeddedRelay::open(0, &dir).await.expect("relay starts");
    let url = relay.url().to_owned();
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|port| port.trim_end_matches('/').parse().ok())
        .expect("a port in the relay's url");

    let publisher = client(&url).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let event = EventBuilder::text_note(format!("kept {i}"))
            .sign_with_keys(&Keys::generate())
            .unwrap();
        publisher.send_event(&event).await.expect("relay accepts");
        sent.push(event.id);
    }
    publisher.shutdown().await;
    relay.shutdown().await;
    drop(relay);

    // The old listener's socket may take a moment to be released after its task ends.
    let mut attempts = 0;
    let relay = loop {
        match EmbeddedRelay::open(port, &dir).await {
            Ok(relay) => break relay,
            Err(error) if attempts < 100 && format!("{error:?}").contains("AddrInUse") => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("relay restarts: {error:?}"),
        }
    };
    assert_eq!(relay.url(), url, "same address after the restart");
    let reader = client(relay.url()).await;
    let stored = reader
        .fetch_events(Filter::new().kind(Kind::TextNote), Duration::from_secs(10))
        .await
        .expect("query");
    let mut got: Vec<EventId> = stored.iter().map(|e| e.id).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "every event survived the restart");
    reader.shutdown().await;
    relay.shutdown().await;
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
}
