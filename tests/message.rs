//! Raw mail to envelope and attachments: the hand-written fixtures in tests/fixtures/mail and messages
//! built here (the oversize, deeply nested and garbage ones are made in code, not committed).

use postroom::message::{
    self, AutoReason, Dmarc, EmailAddress, MessageError, MessageLimits, Origin, ReturnPath, SkipReason,
    strip_reply_prefixes,
};

const DOCX: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/mail/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn parse(raw: &[u8]) -> message::Message {
    message::parse(raw, &MessageLimits::default()).expect("fixture parses")
}

fn parse_fixture(name: &str) -> message::Message {
    parse(&fixture(name))
}

fn own() -> Vec<EmailAddress> {
    vec![EmailAddress::parse("notifications@cqc.test").expect("valid")]
}

/// The fixture with one header replaced (or added when absent), keeping everything else byte for byte.
fn with_header(name: &str, header: &str, value: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(name)).expect("utf-8 fixture");
    let (head, body) = text.split_once("\n\n").or_else(|| text.split_once("\r\n\r\n")).expect("headers");
    let newline = if head.contains("\r\n") { "\r\n" } else { "\n" };
    let prefix = format!("{header}:");
    let mut lines: Vec<String> = Vec::new();
    let mut replaced = false;
    let mut skipping = false;
    for line in head.split(newline) {
        if skipping && line.starts_with([' ', '\t']) {
            continue;
        }
        skipping = false;
        if line.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()) {
            lines.push(format!("{header}: {value}"));
            replaced = true;
            skipping = true;
        } else {
            lines.push(line.to_string());
        }
    }
    if !replaced {
        lines.insert(0, format!("{header}: {value}"));
    }
    format!("{}{newline}{newline}{body}", lines.join(newline)).into_bytes()
}

fn filenames(message: &message::Message) -> Vec<&str> {
    message.attachments.iter().map(|a| a.filename.as_deref().unwrap_or("<none>")).collect()
}

#[test]
fn outlook_mail_yields_the_docx_and_not_the_signature_logo() {
    let m = parse_fixture("outlook_docx.eml");
    let e = &m.envelope;
    let from = e.from.as_ref().expect("one author");
    assert_eq!(from.name.as_deref(), Some("Doe, Jane"));
    assert_eq!(from.address.as_str(), "Jane.Doe@sunnyside-care.test");
    assert_eq!(from.address.comparison_key(), "jane.doe@sunnyside-care.test");
    assert_eq!(from.address, EmailAddress::parse("JANE.DOE@SUNNYSIDE-CARE.TEST").expect("valid"));
    assert_eq!(e.reply_to.len(), 1);
    assert_eq!(e.reply_to[0].address.as_str(), "office@sunnyside-care.test");
    assert_eq!(e.to[0].address.as_str(), "notifications@cqc.test");
    assert_eq!(e.subject.as_deref(), Some("Death notification - Sunnyside Care Home"));
    assert_eq!(e.message_id.as_deref(), Some("AM0PR01MB1234ABCD5678@AM0PR01MB1234.eurprd01.prod.outlook.test"));
    assert_eq!(e.date.map(|d| d.to_rfc3339()).as_deref(), Some("2026-11-03T09:15:00+00:00"));
    assert_eq!(e.return_path, Some(ReturnPath::Address("jane.doe@sunnyside-care.test".into())));

    assert_eq!(filenames(&m), ["image001.png", "Death notification form.docx"]);
    let logo = &m.attachments[0];
    assert!(logo.inline && logo.is_inline_image());
    assert_eq!(logo.content_id.as_deref(), Some("image001.png@01DB2E3F.5A6B7C80"));
    assert_eq!(logo.bytes.len(), 68);

    let forms: Vec<_> = m.candidate_forms().collect();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0].filename.as_deref(), Some("Death notification form.docx"));
    assert_eq!(forms[0].media_type, DOCX);
    assert_eq!(forms[0].bytes.len(), 300);
    assert!(forms[0].bytes.starts_with(b"PK\x03\x04"));
    assert!(!forms[0].inline);
    assert_eq!(forms[0].nested_depth, 0);
    assert_eq!(forms[0].origin, Origin::Part);

    let body = m.body_text.as_deref().expect("plain text body");
    assert!(body.contains("notification of a death at Sunnyside Care Home."), "{body}");
    assert!(m.skipped.is_empty());
    assert_eq!(m.automatic(&own()), None);
    assert_eq!(m.dmarc(Some("mx.cqc.test")), Dmarc::Pass);
}

#[test]
fn debug_output_shows_sizes_not_contents() {
    let m = parse_fixture("outlook_docx.eml");
    let debug = format!("{m:?}");
    assert!(debug.contains("bytes: 300"), "{debug}");
    assert!(!debug.contains("Please find attached"), "{debug}");
    assert!(!debug.contains("fake docx"), "{debug}");
}

#[test]
fn form_forwarded_as_message_rfc822_is_found_one_level_down() {
    let m = parse_fixture("forwarded_rfc822.eml");
    // The envelope is the forwarder's, not the inner message's.
    let from = m.envelope.from.as_ref().expect("one author");
    assert_eq!(from.address.as_str(), "manager@oakview.test");
    assert_eq!(m.envelope.message_id.as_deref(), Some("fwd-7781@oakview.test"));
    assert_eq!(m.body_text.as_deref().map(str::trim), Some("Forwarding the form our deputy sent me."));

    let forms: Vec<_> = m.candidate_forms().collect();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0].filename.as_deref(), Some("Serious injury.docx"));
    assert_eq!(forms[0].bytes.len(), 257);
    assert_eq!(forms[0].nested_depth, 1);
    assert_eq!(m.automatic(&own()), None);
}

/// Standard base64 with line breaks, as mail clients write it.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let n = chunk.iter().enumerate().fold(0u32, |n, (j, b)| n | u32::from(*b) << (16 - 8 * j));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_encoded_forwarded_message_is_decoded_and_walked() {
    let inner = "From: deputy@oakview.test\nSubject: inner\nContent-Type: application/octet-stream\n\
        Content-Disposition: attachment; filename=\"Form.docx\"\n\nPK-inner-form\n";
    let raw = format!(
        "From: manager@oakview.test\nSubject: Fwd: inner\nContent-Type: multipart/mixed; boundary=\"o\"\n\n\
         --o\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n{}\n--o--\n",
        base64(inner.as_bytes())
    );
    let m = parse(raw.as_bytes());
    assert_eq!(filenames(&m), ["Form.docx"]);
    // A single-part body runs to the end of the message, final line break included.
    assert_eq!(m.attachments[0].bytes, b"PK-inner-form\n");
    assert_eq!(m.attachments[0].nested_depth, 1);
}

#[test]
fn rfc2231_rfc2047_and_raw_latin1_filenames_decode_exactly() {
    let m = parse_fixture("rfc2231_filenames.eml");
    assert_eq!(
        filenames(&m),
        [
            "Notificação de óbito.docx",
            "Notificação de óbito – parte 2.docx",
            "Meldung über Todesfall.docx",
            "Relatório.docx",
        ]
    );
    let sizes: Vec<usize> = m.attachments.iter().map(|a| a.bytes.len()).collect();
    assert_eq!(sizes, [120, 130, 140, 150]);
    assert_eq!(m.candidate_forms().count(), 4);
    // ISO-8859-1 encoded words (read as Windows-1252, as mail clients do), split across two words.
    assert_eq!(m.envelope.subject.as_deref(), Some("Notificação de óbito – Lar do Sol"));
    let from = m.envelope.from.as_ref().expect("one author");
    assert_eq!(from.name.as_deref(), Some("João Gonçalves"));
    assert_eq!(m.body_text.as_deref().map(str::trim), Some("Segue em anexo a notificação."));
}

#[test]
fn delivery_report_is_a_bounce_linked_to_our_reply() {
    let m = parse_fixture("dsn_bounce.eml");
    let reason = m.automatic(&own());
    assert_eq!(reason, Some(AutoReason::Bounce));
    assert_eq!(reason.map(AutoReason::reason_code), Some("auto:bounce"));
    assert_eq!(reason.map(AutoReason::quarantine), Some(false));
    assert_eq!(m.bounced_message_id(), Some("reply-abc@postroom.test"));
    assert_eq!(m.envelope.return_path, Some(ReturnPath::Null));
    // The report's status and returned headers are not attachments.
    assert!(m.attachments.is_empty(), "{:?}", m.attachments);
    assert_eq!(m.candidate_forms().count(), 0);
}

#[test]
fn bounce_returning_the_whole_message_is_linked_too() {
    let text = String::from_utf8(fixture("dsn_bounce.eml")).expect("utf-8 fixture");
    let raw = text.replace("Content-Type: text/rfc822-headers", "Content-Type: message/rfc822");
    let m = parse(raw.as_bytes());
    assert_eq!(m.automatic(&own()), Some(AutoReason::Bounce));
    assert_eq!(m.bounced_message_id(), Some("reply-abc@postroom.test"));
}

#[test]
fn bounce_without_report_structure_falls_back_to_in_reply_to() {
    let raw = b"Return-Path: <>\nFrom: postmaster@closed-home.test\nTo: notifications@cqc.test\n\
        Subject: Undeliverable: Re: [N-7K3QX9M]\nIn-Reply-To: <reply-xyz@postroom.test>\n\
        References: <a@b> <reply-xyz@postroom.test>\n\nDelivery failed.\n";
    let m = parse(raw);
    assert_eq!(m.automatic(&own()), Some(AutoReason::Bounce));
    assert_eq!(m.bounced_message_id(), Some("reply-xyz@postroom.test"));
    // A person's reply is not a bounce, so it links nothing.
    assert_eq!(parse_fixture("outlook_docx.eml").bounced_message_id(), None);
}

#[test]
fn exchange_out_of_office_is_recognised() {
    let m = parse_fixture("exchange_oof.eml");
    let reason = m.automatic(&own());
    // Not `auto:bounce` despite the null Return-Path: an auto-reply is more specific.
    assert_eq!(reason, Some(AutoReason::OutOfOffice));
    assert_eq!(reason.map(AutoReason::reason_code), Some("auto:out_of_office"));
    assert_eq!(m.bounced_message_id(), None);
    assert_eq!(m.envelope.in_reply_to, ["reply-abc@postroom.test"]);
}

#[test]
fn x_auto_response_suppress_alone_does_not_make_mail_automatic() {
    let m = parse(&with_header("outlook_docx.eml", "X-Auto-Response-Suppress", "All"));
    assert_eq!(m.automatic(&own()), None);
}

#[test]
fn out_of_office_headers_and_subjects() {
    for (header, value) in [
        ("X-Autoreply", "yes"),
        ("X-Autorespond", "Vacation"),
        ("Auto-Submitted", "auto-replied; owner-email=\"jane@x.test\""),
        ("Precedence", "auto_reply"),
    ] {
        let m = parse(&with_header("no_message_id.eml", header, value));
        assert_eq!(m.automatic(&own()), Some(AutoReason::OutOfOffice), "{header}: {value}");
    }
    for subject in [
        "Out of Office: back Monday",
        "Automatic reply: Death notification",
        "Autosvar: Dødsfall",
        "Abwesenheitsnotiz: Meldung",
        "[Out of office] away",
    ] {
        let m = parse(&with_header("no_message_id.eml", "Subject", subject));
        assert_eq!(m.automatic(&own()), Some(AutoReason::OutOfOffice), "{subject}");
    }
}

#[test]
fn out_of_office_subject_alone_never_hides_a_form() {
    let m = parse(&with_header("outlook_docx.eml", "Subject", "Automatic reply: Death notification"));
    assert_eq!(m.candidate_forms().count(), 1);
    assert_eq!(m.automatic(&own()), None);
}

#[test]
fn list_and_bulk_mail() {
    let m = parse_fixture("list_mail.eml");
    assert_eq!(m.automatic(&own()).map(AutoReason::reason_code), Some("auto:list"));
    for value in ["bulk", "LIST", "junk"] {
        let m = parse(&with_header("no_message_id.eml", "Precedence", value));
        assert_eq!(m.automatic(&own()), Some(AutoReason::List), "{value}");
    }
    let m = parse(&with_header("no_message_id.eml", "List-Unsubscribe", "<mailto:u@x.test>"));
    assert_eq!(m.automatic(&own()), Some(AutoReason::List));
    let m = parse(&with_header("no_message_id.eml", "Precedence", "first-class"));
    assert_eq!(m.automatic(&own()), None);
}

#[test]
fn auto_submitted_other_than_no_is_automatic() {
    let m = parse_fixture("auto_generated.eml");
    assert_eq!(m.automatic(&own()).map(AutoReason::reason_code), Some("auto:auto_submitted"));
    for value in ["auto-notified", "something-new", ""] {
        let m = parse(&with_header("no_message_id.eml", "Auto-Submitted", value));
        assert_eq!(m.automatic(&own()), Some(AutoReason::AutoSubmitted), "{value:?}");
    }
    for value in ["no", "No", " NO (a person wrote this)", "no; reason=x"] {
        let m = parse(&with_header("no_message_id.eml", "Auto-Submitted", value));
        assert_eq!(m.automatic(&own()), None, "{value:?}");
    }
}

#[test]
fn machine_senders_are_recognised_by_local_part() {
    for from in
        ["noreply@x.test", "No-Reply@x.test", "do-not-reply@x.test", "DoNotReply+abc@x.test", "no_reply.alerts@x.test"]
    {
        let m = parse(&with_header("no_message_id.eml", "From", from));
        assert_eq!(m.automatic(&own()).map(AutoReason::reason_code), Some("auto:no_reply_sender"), "{from}");
    }
    for from in ["MAILER-DAEMON@x.test", "postmaster@x.test"] {
        let m = parse(&with_header("no_message_id.eml", "From", from));
        assert_eq!(m.automatic(&own()), Some(AutoReason::Bounce), "{from}");
    }
    let m = parse(&with_header("no_message_id.eml", "From", "reply.desk@x.test"));
    assert_eq!(m.automatic(&own()), None);
}

#[test]
fn mail_from_our_own_address_is_quarantined_not_ignored() {
    // Even an auto-reply: our own address in From is a loop or a forgery either way.
    let raw = with_header("exchange_oof.eml", "From", "CQC <Notifications@CQC.test>");
    let m = parse(&raw);
    assert!(m.from_own_address(&own()));
    let reason = m.automatic(&own());
    assert_eq!(reason, Some(AutoReason::OwnAddress));
    assert_eq!(reason.map(AutoReason::reason_code), Some("loop:own_address"));
    assert_eq!(reason.map(AutoReason::quarantine), Some(true));
    assert!(!parse_fixture("outlook_docx.eml").from_own_address(&own()));
}

#[test]
fn missing_message_id_stays_missing() {
    let m = parse_fixture("no_message_id.eml");
    assert_eq!(m.envelope.message_id, None);
    assert!(m.envelope.references.is_empty());
    assert_eq!(m.candidate_forms().count(), 0);
    assert_eq!(
        m.body_text.as_deref().map(str::trim),
        Some("Hello, which form do I use when a resident dies in hospital?")
    );
    assert_eq!(m.automatic(&own()), None);
}

#[test]
fn dmarc_trusts_only_the_configured_authserv_id() {
    let m = parse_fixture("dmarc_fail.eml");
    assert_eq!(m.dmarc(Some("mx.cqc.test")), Dmarc::Fail);
    assert_eq!(m.dmarc(Some("MX.CQC.TEST")), Dmarc::Fail);
    assert_eq!(m.dmarc(Some("mx.cqc.test")).reason_code(), Some("auth:dmarc_fail"));
    // The forger's own header is never read as ours, and nothing is trusted without configuration.
    assert_eq!(m.dmarc(Some("mx.elsewhere.test")), Dmarc::None);
    assert_eq!(m.dmarc(None), Dmarc::None);
    // The form is still surfaced: the pipeline quarantines it for staff.
    assert_eq!(m.candidate_forms().count(), 1);

    let forged_pass =
        with_header("dmarc_fail.eml", "Authentication-Results", "mx.cqc.test; dmarc=fail header.from=x.test");
    let forged_pass = [b"Authentication-Results: forger.test; dmarc=pass\n".as_slice(), &forged_pass].concat();
    assert_eq!(parse(&forged_pass).dmarc(Some("mx.cqc.test")), Dmarc::Fail);
    let trusted_pass =
        with_header("dmarc_fail.eml", "Authentication-Results", "mx.cqc.test; dmarc=pass header.from=x.test");
    assert_eq!(parse(&trusted_pass).dmarc(Some("mx.cqc.test")), Dmarc::Pass);
    assert_eq!(parse_fixture("no_message_id.eml").dmarc(Some("mx.cqc.test")), Dmarc::None);
}

#[test]
fn an_encoded_word_cannot_pass_for_our_authserv_id() {
    // Our MTA strips look-alikes of its own header by exact text; this one slips past it, so it must
    // not be decoded into "mx.cqc.test" here either.
    let raw = [
        b"Authentication-Results: =?us-ascii?q?mx.cqc.test?=; dmarc=pass header.from=x.test\n".as_slice(),
        &fixture("no_message_id.eml"),
    ]
    .concat();
    assert_eq!(parse(&raw).dmarc(Some("mx.cqc.test")), Dmarc::None);
    let disguised_no = with_header("no_message_id.eml", "Auto-Submitted", "=?us-ascii?q?no?=");
    assert_eq!(parse(&disguised_no).automatic(&own()), Some(AutoReason::AutoSubmitted));
}

#[test]
fn a_pdf_is_surfaced_so_the_pipeline_can_say_it_is_not_the_form() {
    let m = parse_fixture("pdf_only.eml");
    let forms: Vec<_> = m.candidate_forms().collect();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0].filename.as_deref(), Some("Abuse notification.pdf"));
    assert_eq!(forms[0].media_type, "application/pdf");
    assert_eq!(forms[0].bytes.len(), 219);
    assert!(forms[0].bytes.starts_with(b"%PDF-"));
    assert_eq!(m.body_text, None);
}

#[test]
fn winmail_dat_is_unpacked_and_the_form_inside_is_a_candidate() {
    let m = parse_fixture("winmail_dat.eml");
    assert_eq!(filenames(&m), ["winmail.dat", "Notification of death – Rose Court.docx"]);
    assert_eq!(m.attachments[0].media_type, "application/ms-tnef");
    assert_eq!(m.attachments[0].origin, Origin::UnpackedTnef);
    assert_eq!(m.attachments[0].bytes.len(), 544);
    let forms: Vec<_> = m.candidate_forms().collect();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0].origin, Origin::Tnef);
    assert_eq!(forms[0].media_type, DOCX);
    assert_eq!(forms[0].bytes.len(), 210);
    assert!(forms[0].bytes.starts_with(b"PK\x03\x04"));
}

#[test]
fn winmail_dat_that_does_not_decode_stays_a_candidate() {
    let raw = b"From: a@x.test\nSubject: s\nContent-Type: application/ms-tnef; name=winmail.dat\n\
        Content-Transfer-Encoding: base64\n\nAAECAwQFBgc=\n";
    let m = parse(raw);
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].origin, Origin::Part);
    assert_eq!(m.candidate_forms().count(), 1);
}

#[test]
fn oversize_message_is_refused_before_parsing() {
    let limits = MessageLimits { max_message_bytes: 1000, ..MessageLimits::default() };
    // Garbage that would be `unreadable` if it were parsed.
    let err = message::parse(&[0xFFu8; 1001], &limits).expect_err("too big");
    assert_eq!(err, MessageError::Oversize { size: 1001, limit: 1000 });
    assert_eq!(err.reason_code(), "size:oversize");

    let mut big = fixture("no_message_id.eml");
    let default_limit = MessageLimits::default().max_message_bytes;
    assert_eq!(default_limit, 25 * 1024 * 1024);
    big.resize(usize::try_from(default_limit).expect("fits") + 1, b'x');
    let err = message::parse(&big, &MessageLimits::default()).expect_err("too big");
    assert_eq!(err.reason_code(), "size:oversize");
    big.truncate(usize::try_from(default_limit).expect("fits"));
    assert!(message::parse(&big, &MessageLimits::default()).is_ok());
}

#[test]
fn oversize_attachment_is_recorded_not_loaded() {
    let limits = MessageLimits { max_attachment_bytes: 200, ..MessageLimits::default() };
    let m = message::parse(&fixture("outlook_docx.eml"), &limits).expect("parses");
    assert_eq!(filenames(&m), ["image001.png"]);
    assert_eq!(m.candidate_forms().count(), 0);
    assert_eq!(m.skipped.len(), 1);
    let skipped = &m.skipped[0];
    assert_eq!(skipped.filename.as_deref(), Some("Death notification form.docx"));
    assert_eq!(skipped.media_type, DOCX);
    assert_eq!(skipped.size, 300);
    assert_eq!(skipped.reason, SkipReason::TooLarge);
    assert_eq!(skipped.reason.reason_code(), "size:attachment_oversize");
}

/// A docx wrapped in `levels` forwarded messages.
fn nested(levels: usize) -> Vec<u8> {
    let mut message = String::from(
        "From: deep@x.test\nSubject: innermost\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\
         Content-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"deep.docx\"\n\n\
         PK-deep-form\n--b--\n",
    );
    for level in (0..levels).rev() {
        message = format!(
            "From: level{level}@x.test\nSubject: level {level}\nContent-Type: multipart/mixed; boundary=\"l{level}\"\n\n\
             --l{level}\nContent-Type: message/rfc822\n\n{message}\n--l{level}--\n"
        );
    }
    message.into_bytes()
}

#[test]
fn forwarding_deeper_than_the_cap_is_recorded_not_followed() {
    let raw = nested(10);
    let m = parse(&raw);
    assert_eq!(m.envelope.from.as_ref().map(|f| f.address.as_str()), Some("level0@x.test"));
    assert!(m.attachments.is_empty());
    assert_eq!(m.skipped.len(), 1);
    assert_eq!(m.skipped[0].reason, SkipReason::TooDeep);
    assert_eq!(m.skipped[0].reason.reason_code(), "mime:too_deep");
    assert_eq!(m.skipped[0].nested_depth, 8);
    assert_eq!(m.skipped[0].media_type, "message/rfc822");

    let limits = MessageLimits { max_nesting: 10, ..MessageLimits::default() };
    let m = message::parse(&raw, &limits).expect("parses");
    assert_eq!(filenames(&m), ["deep.docx"]);
    assert_eq!(m.attachments[0].nested_depth, 10);
    assert_eq!(m.attachments[0].bytes, b"PK-deep-form");
}

#[test]
fn garbage_is_unreadable_and_never_panics() {
    let mut state: u32 = 0x1234_5678;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect();
    let deep_multipart = {
        let mut raw = String::from("From: a@x.test\n");
        for i in 0..5000 {
            raw.push_str(&format!("Content-Type: multipart/mixed; boundary=\"d{i}\"\n\n--d{i}\n"));
        }
        raw.into_bytes()
    };
    for (name, raw) in [
        ("empty", Vec::new()),
        ("random", random),
        ("zeros", vec![0u8; 512]),
        ("lone carriage returns", b"\r\r\r\r".to_vec()),
        ("prose", b"this is not an email at all\nnor is this\n".to_vec()),
        ("deep multipart", deep_multipart),
    ] {
        let err = message::parse(&raw, &MessageLimits::default()).expect_err(name);
        assert_eq!(err.reason_code(), "unreadable", "{name}: {err}");
    }
}

#[test]
fn several_from_mailboxes_give_no_single_author() {
    let m = parse(&with_header("no_message_id.eml", "From", "a@x.test, b@y.test"));
    assert_eq!(m.envelope.from, None);
    assert_eq!(m.envelope.from_mailboxes.len(), 2);
    let twice = [b"From: other@evil.test\n".as_slice(), &fixture("no_message_id.eml")].concat();
    let m = parse(&twice);
    assert_eq!(m.envelope.from, None);
    assert_eq!(m.envelope.from_mailboxes.len(), 2);
}

#[test]
fn encoded_line_breaks_cannot_reach_a_reply_subject() {
    let m = parse(&with_header("no_message_id.eml", "Subject", "=?UTF-8?B?SGVsbG8NCkJjYzogZXZpbEB4LnRlc3Q=?="));
    assert_eq!(m.envelope.subject.as_deref(), Some("Hello  Bcc: evil@x.test"));
}

#[test]
fn reply_prefixes_are_stripped_in_any_language_and_case() {
    assert_eq!(strip_reply_prefixes("Re: RE: AW: Death notification"), "Death notification");
    assert_eq!(strip_reply_prefixes("  fwd:FW :  WG: sv: Re[2]: Re(3): Subject "), "Subject");
    assert_eq!(strip_reply_prefixes("[EXTERNAL] RE: [N-7K3QX9M] Notification"), "[N-7K3QX9M] Notification");
    assert_eq!(strip_reply_prefixes("EXTERNAL: Re: Notification"), "Notification");
    assert_eq!(strip_reply_prefixes("Report: monthly"), "Report: monthly");
    assert_eq!(strip_reply_prefixes("Re:"), "");
    assert_eq!(strip_reply_prefixes("Regarding Mrs Smith"), "Regarding Mrs Smith");
}

#[test]
fn email_addresses_are_parsed_not_assumed() {
    let a = EmailAddress::parse("  Jane.Doe@Example.ORG ").expect("valid");
    assert_eq!(a.as_str(), "Jane.Doe@example.org");
    assert_eq!(a.comparison_key(), "jane.doe@example.org");
    assert_eq!(a.local_part(), "Jane.Doe");
    assert_eq!(a.domain(), "example.org");
    assert_eq!(a.to_string(), "Jane.Doe@example.org");
    for bad in [
        "",
        "   ",
        "no-at-sign",
        "a@b@c",
        "@example.org",
        "jane@",
        "jane doe@x.test",
        "<jane@x.test>",
        "jane@.x.test",
        "jane@x..test",
        "a,b@x.test",
    ] {
        assert!(EmailAddress::parse(bad).is_err(), "{bad:?} should be refused");
    }
    let from_config: EmailAddress = serde_json::from_str("\"Notifications@CQC.test\"").expect("valid");
    assert_eq!(from_config, own()[0]);
    assert!(serde_json::from_str::<EmailAddress>("\"not an address\"").is_err());
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = message::parse(&raw, &MessageLimits::default());
        }

        #[test]
        fn mutated_fixtures(index in 0usize..11, at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
            let names = [
                "outlook_docx.eml", "forwarded_rfc822.eml", "rfc2231_filenames.eml", "dsn_bounce.eml",
                "exchange_oof.eml", "list_mail.eml", "auto_generated.eml", "no_message_id.eml",
                "dmarc_fail.eml", "pdf_only.eml", "winmail_dat.eml",
            ];
            let mut raw = fixture(names[index]);
            let at = at % raw.len();
            raw[at] = byte;
            raw.truncate(raw.len() - cut % (raw.len() / 2));
            if let Ok(m) = message::parse(&raw, &MessageLimits::default()) {
                let _ = (m.automatic(&own()), m.dmarc(Some("mx.cqc.test")), m.bounced_message_id());
            }
        }
    }
}
