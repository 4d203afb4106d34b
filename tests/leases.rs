//! One poller per mailbox across instances: of several instances asking at once exactly one holds the
//! lease; the holder renews it; another takes over only once it has expired (its holder died); a clean
//! shutdown hands it over at once.

mod common;

use common::TestApp;

async fn expire(app: &TestApp, mailbox: &str) {
    sqlx::query("UPDATE mailbox_leases SET expires_at = 0 WHERE mailbox = $1")
        .bind(mailbox)
        .execute(app.pipeline.store.pool())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_holds_a_mailbox_and_another_takes_over_only_when_its_lease_expires() {
    let app = TestApp::start().await;
    let store = &app.pipeline.store;
    // Eight instances ask at the same moment: exactly one wins.
    let attempts = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.hold_mailbox("notifications", &format!("instance-{i}"), 30_000).await })
    });
    let mut winners = Vec::new();
    for (i, a) in attempts.enumerate() {
        if a.await.unwrap().unwrap() {
            winners.push(format!("instance-{i}"));
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let holder = winners[0].clone();
    let other = if holder == "instance-0" { "instance-1" } else { "instance-0" };

    assert!(store.hold_mailbox("notifications", &holder, 30_000).await.unwrap(), "the holder renews");
    assert!(!store.hold_mailbox("notifications", other, 30_000).await.unwrap(), "a live lease is not taken");
    assert!(store.hold_mailbox("mental_health", other, 30_000).await.unwrap(), "leases are per mailbox");

    // The holder dies: once its lease runs out, another instance takes over, and the old one cannot renew.
    expire(&app, "notifications").await;
    assert!(store.hold_mailbox("notifications", other, 30_000).await.unwrap());
    assert!(!store.hold_mailbox("notifications", &holder, 30_000).await.unwrap());

    // A clean shutdown hands over at once.
    store.release_mailbox("notifications", other).await.unwrap();
    assert!(store.hold_mailbox("notifications", &holder, 30_000).await.unwrap());
}
