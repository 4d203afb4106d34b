//! The dev mail servers (`scripts/dev-services`) really deliver: one message sent over raw SMTP to Postfix
//! arrives in Dovecot and is read back over raw IMAP. Std only, plain text on loopback, so this proves the
//! servers and nothing of Postroom's own mail code.
//!
//! With `POSTROOM_TEST_SMTP_PORT` set (from `eval "$(scripts/dev-services env)"`) the servers are taken as
//! running. Otherwise the test runs `scripts/dev-services start` itself; when that fails (not root, no
//! apt) it says SKIP loudly and passes, unless `POSTROOM_REQUIRE_TOOLS=1`, when it fails.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::mail::{DELIVERY_WAIT, Imap, exists, send, servers};

#[test]
fn smtp_message_arrives_in_imap_mailbox() {
    let Some(servers) = servers() else { return };

    // An address of its own: Dovecot accepts any user name with the test password.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let unique = format!("devsvc-{}-{nanos}", std::process::id());
    let address = format!("{unique}@postroom.test");
    let token = format!("body-token-{unique}");
    let message = format!(
        "From: Provider <provider@care.example>\r\nTo: <{address}>\r\nSubject: dev services check\r\n\
         Message-ID: <{unique}@care.example>\r\n\r\nHello from the dev services test.\r\n{token}\r\n"
    );
    send(&servers, "provider@care.example", &address, &message);

    let mut imap = Imap::connect(&servers.host, servers.imap_port);
    imap.command(&format!("LOGIN \"{address}\" \"{}\"", servers.password));
    // MOVE and UIDPLUS are only listed after login.
    let capability = String::from_utf8_lossy(&imap.command("CAPABILITY")).into_owned();
    for want in ["IDLE", "MOVE", "UIDPLUS"] {
        assert!(capability.split_whitespace().any(|c| c == want), "{want} missing from {capability:?}");
    }

    let started = Instant::now();
    while exists(&imap.command("SELECT INBOX")) == 0 {
        assert!(started.elapsed() < DELIVERY_WAIT, "nothing delivered to {address} within {DELIVERY_WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let fetched = imap.command("UID FETCH 1:* BODY.PEEK[]");
    let fetched = String::from_utf8_lossy(&fetched);
    assert!(fetched.contains(&token), "body token not in the fetched message:\n{fetched}");
    assert!(fetched.contains("Subject: dev services check"), "subject not in the fetched message:\n{fetched}");
    // Postfix stamped it on the way in: it went through the SMTP server, not around it.
    assert!(fetched.contains("Received: from "), "no Received header:\n{fetched}");
    imap.command("LOGOUT");
}
