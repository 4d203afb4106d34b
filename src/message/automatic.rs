//! Telling machines from people (RFC 3834 and what the anchors learned, anchors.md lessons 5 and 11):
//! Postroom never answers automatic mail, and never answers mail that claims to come from itself.

use super::Message;
use super::address::EmailAddress;
use super::envelope::ReturnPath;

/// Why a message must get no automatic reply, with a stable ledger reason code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AutoReason {
    /// A delivery status notification (`auto:bounce`).
    Bounce,
    /// A vacation or out-of-office reply (`auto:out_of_office`).
    OutOfOffice,
    /// `Auto-Submitted` other than `no`, or a non-delivery report such as a read receipt
    /// (`auto:auto_submitted`).
    AutoSubmitted,
    /// List or bulk mail (`auto:list`).
    List,
    /// A noreply-style sender (`auto:no_reply_sender`).
    NoReplySender,
    /// `From` names one of our own addresses: a loop or a forgery (`loop:own_address`).
    OwnAddress,
}

impl AutoReason {
    pub fn reason_code(self) -> &'static str {
        match self {
            AutoReason::Bounce => "auto:bounce",
            AutoReason::OutOfOffice => "auto:out_of_office",
            AutoReason::AutoSubmitted => "auto:auto_submitted",
            AutoReason::List => "auto:list",
            AutoReason::NoReplySender => "auto:no_reply_sender",
            AutoReason::OwnAddress => "loop:own_address",
        }
    }

    /// Whether staff must look (ANSWERS.md: mail from our own address is quarantined), rather than the
    /// message being quietly ignored like other automatic mail.
    pub fn quarantine(self) -> bool {
        matches!(self, AutoReason::OwnAddress)
    }
}

/// Subject beginnings that out-of-office replies use (Outlook, Exchange, Gmail, in the languages our
/// senders' clients are set to). Matched case-insensitively.
const OUT_OF_OFFICE_SUBJECTS: &[&str] = &[
    "out of office",
    "out-of-office",
    "automatic reply",
    "auto reply",
    "auto-reply",
    "autoreply",
    "auto response",
    "auto-response",
    "autosvar",
    "automatisk svar",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "automatisch antwoord",
    "resposta automática",
    "odpowiedź automatyczna",
];

impl Message {
    /// Whether this message is automatic mail, and why; `None` means a person sent it.
    ///
    /// Checks run from the most to the least specific, so an out-of-office sent with a null return path
    /// is `auto:out_of_office`, not `auto:bounce`. `own_addresses` are the mailboxes' own addresses.
    pub fn automatic(&self, own_addresses: &[EmailAddress]) -> Option<AutoReason> {
        if self.from_own_address(own_addresses) {
            return Some(AutoReason::OwnAddress);
        }
        if self.is_delivery_report() || self.author_local_part_is(&["mailerdaemon", "postmaster"]) {
            return Some(AutoReason::Bounce);
        }
        if self.report_type.is_some() {
            // Read receipts and other machine reports (RFC 6522) that are not about delivery.
            return Some(AutoReason::AutoSubmitted);
        }
        if self.is_out_of_office() {
            return Some(AutoReason::OutOfOffice);
        }
        if self.auto_submitted() {
            return Some(AutoReason::AutoSubmitted);
        }
        if self.is_list_mail() {
            return Some(AutoReason::List);
        }
        if self.envelope.return_path == Some(ReturnPath::Null) {
            // RFC 5321: a null reverse path is for notifications; what is left after the checks above
            // is a delivery report without the report structure.
            return Some(AutoReason::Bounce);
        }
        if self.sender_is_no_reply() {
            return Some(AutoReason::NoReplySender);
        }
        None
    }

    /// Whether any `From` mailbox is one of our own addresses. ANSWERS.md quarantines such mail rather
    /// than ignoring it, so it is asked separately as well as reported by [`Message::automatic`].
    pub fn from_own_address(&self, own_addresses: &[EmailAddress]) -> bool {
        self.envelope.from_is_one_of(own_addresses)
    }

    /// For a bounce: the Message-ID of the message that could not be delivered, so a bounce of one of
    /// our replies can mark that reply `delivery_failed`. Taken from the returned headers or message
    /// inside the report, else from `In-Reply-To`, else the last of `References`. `None` when this is
    /// not a bounce.
    pub fn bounced_message_id(&self) -> Option<&str> {
        let bounce = matches!(self.automatic(&[]), Some(AutoReason::Bounce));
        if !bounce {
            return None;
        }
        self.report_original_message_id
            .as_deref()
            .or_else(|| self.envelope.in_reply_to.first().map(String::as_str))
            .or_else(|| self.envelope.references.last().map(String::as_str))
    }

    fn is_delivery_report(&self) -> bool {
        self.report_type.as_deref() == Some("delivery-status")
    }

    fn is_out_of_office(&self) -> bool {
        let headers = &self.envelope.headers;
        if headers.all_raw("X-Autoreply").any(|v| !v.trim().eq_ignore_ascii_case("no"))
            || headers.contains("X-Autorespond")
            || headers.all_raw("Auto-Submitted").any(|v| keyword(v).eq_ignore_ascii_case("auto-replied"))
            || headers.all_raw("Precedence").any(|v| keyword(v).eq_ignore_ascii_case("auto_reply"))
        {
            return true;
        }
        let subject = self.subject_looks_out_of_office();
        // Exchange asks others not to auto-answer many messages, so `X-Auto-Response-Suppress` alone
        // proves nothing; with Exchange's rules-loop stamp (as Zammad checks) or an out-of-office
        // subject it marks Exchange's own auto-reply.
        if headers.contains("X-Auto-Response-Suppress")
            && (headers.contains("X-MS-Exchange-Inbox-Rules-Loop") || subject)
        {
            return true;
        }
        // A subject alone is a guess: it counts only when the message carries nothing that could be a
        // form, so a real notification titled "Automatic reply" still reaches a person.
        subject && self.candidate_forms().next().is_none()
    }

    fn subject_looks_out_of_office(&self) -> bool {
        let Some(subject) = self.envelope.subject.as_deref() else {
            return false;
        };
        let lower = subject.trim().to_lowercase();
        let lower = lower.trim_start_matches('[');
        OUT_OF_OFFICE_SUBJECTS.iter().any(|p| lower.starts_with(p)) || lower.contains("out of office")
    }

    /// RFC 3834: any `Auto-Submitted` value other than `no` (case-insensitive, parameters ignored).
    fn auto_submitted(&self) -> bool {
        self.envelope.headers.all_raw("Auto-Submitted").any(|v| !keyword(v).eq_ignore_ascii_case("no"))
    }

    fn is_list_mail(&self) -> bool {
        let headers = &self.envelope.headers;
        headers.contains("List-Id")
            || headers.contains("List-Unsubscribe")
            || headers.all_raw("Precedence").any(|v| {
                let v = keyword(v);
                ["bulk", "list", "junk"].iter().any(|p| v.eq_ignore_ascii_case(p))
            })
    }

    fn sender_is_no_reply(&self) -> bool {
        self.envelope.from_mailboxes.iter().any(|m| {
            let local = squashed_local_part(&m.address);
            local.starts_with("noreply") || local.starts_with("donotreply")
        })
    }

    fn author_local_part_is(&self, names: &[&str]) -> bool {
        self.envelope.from_mailboxes.iter().any(|m| names.contains(&squashed_local_part(&m.address).as_str()))
    }
}

/// The local part lowercased, without a `+tag` and without `-`, `_` and `.`: `Do_Not-Reply+x` becomes
/// `donotreply`.
fn squashed_local_part(address: &EmailAddress) -> String {
    let local = address.local_part();
    let local = local.split('+').next().unwrap_or(local);
    local.chars().filter(|c| !matches!(c, '-' | '_' | '.')).flat_map(char::to_lowercase).collect()
}

/// The first token of a structured header value: parameters after `;` and comments dropped.
fn keyword(value: &str) -> &str {
    let value = value.split(';').next().unwrap_or("");
    let value = value.split('(').next().unwrap_or("");
    value.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_ignores_parameters_and_comments() {
        assert_eq!(keyword(" Auto-Replied ; owner-email=\"x@y\""), "Auto-Replied");
        assert_eq!(keyword("no (a person wrote this)"), "no");
    }

    #[test]
    fn squashed_local_parts() {
        let a = EmailAddress::parse("Do_Not-Reply+abc@x.test").map(|a| squashed_local_part(&a));
        assert_eq!(a.as_deref(), Ok("donotreply"));
        let b = EmailAddress::parse("MAILER-DAEMON@x.test").map(|a| squashed_local_part(&a));
        assert_eq!(b.as_deref(), Ok("mailerdaemon"));
    }

    #[test]
    fn reason_codes_are_stable() {
        assert_eq!(AutoReason::Bounce.reason_code(), "auto:bounce");
        assert_eq!(AutoReason::OwnAddress.reason_code(), "loop:own_address");
        assert!(AutoReason::OwnAddress.quarantine());
        assert!(!AutoReason::List.quarantine());
    }
}
