//! Problems found in a submission: one enum of stable codes (the API, the database and the error email all
//! use the code), each with a summary and a hint telling the provider how to fix it. `docs/problem-codes.md`
//! is generated from [`ProblemCode::ALL`] and a test keeps it current.

use serde::Serialize;

macro_rules! problem_codes {
    ($($variant:ident => $code:literal, $summary:literal, $hint:literal;)*) => {
        /// A stable problem code. Never rename one: staff filters and providers' records depend on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemCode { $($variant),* }

        impl ProblemCode {
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $(ProblemCode::$variant => $code),* }
            }

            /// What is wrong, in general terms.
            pub fn summary(self) -> &'static str {
                match self { $(ProblemCode::$variant => $summary),* }
            }

            /// How to fix it, in general terms; a problem may carry a more precise hint.
            pub fn hint(self) -> &'static str {
                match self { $(ProblemCode::$variant => $hint),* }
            }

            pub fn parse(code: &str) -> Option<ProblemCode> {
                match code { $($code => Some(ProblemCode::$variant),)* _ => None }
            }
        }
    };
}

problem_codes! {
    NoForm => "no_form", "No notification form was attached.",
        "Attach the completed notification form (.docx) to your email and send it again.";
    NotWord => "not_word", "The attachment is not a Word form.",
        "Send the completed notification form as a Word document (.docx), not a PDF, scan or photo.";
    LegacyDoc => "legacy_doc", "The form is in the old Word 97-2003 format (.doc).",
        "Open the form in Word, choose File > Save As > Word Document (.docx), and send the .docx.";
    MacroEnabled => "macro_enabled", "The form is a macro-enabled document (.docm).",
        "Save the form as a Word Document (.docx) without macros and send it again.";
    Encrypted => "encrypted", "The form is password-protected, so it cannot be read.",
        "Remove the password (File > Info > Protect Document) and send the form again.";
    CorruptFile => "corrupt_file", "The attached file is damaged and cannot be opened.",
        "Open the form on your computer to check it, save it again as .docx and resend it.";
    FileTooLarge => "file_too_large", "The attachment is larger than we accept.",
        "Send the form on its own, without embedded pictures or other attachments.";
    UnknownForm => "unknown_form", "The Word document is not one of our notification forms.",
        "Download the current form from our website, complete it and send it again.";
    StaleFormVersion => "stale_form_version", "The form is an old version.",
        "Download the current version of the form, copy your answers into it and send it again.";
    UnknownFormVersion => "unknown_form_version", "The form's version is not one we recognise.",
        "Download the current version of the form, complete it and send it again.";
    WrongMailbox => "wrong_mailbox", "This form belongs to a different mailbox.",
        "Send this form to the address printed on the form.";
    RequiredMissing => "required_missing", "A required answer is missing.",
        "Complete every question marked with * and send the form again.";
    InvalidDate => "invalid_date", "A date could not be read.",
        "Write dates as dd/mm/yyyy, for example 03/04/2026.";
    DateInFuture => "date_in_future", "A date is in the future.",
        "Check the date: it should be on or before the day you send the form.";
    DateTooOld => "date_too_old", "A date is implausibly old.",
        "Check the year of the date.";
    InvalidTime => "invalid_time", "A time could not be read.",
        "Write times in 24-hour form as hh:mm, for example 14:30.";
    InvalidChoice => "invalid_choice", "The ticked boxes do not make a valid answer.",
        "Tick exactly one box for this question.";
    InvalidProviderId => "invalid_provider_id", "The provider ID is not in the right format.",
        "A provider ID looks like 1-101641531 (1- then 9 to 11 digits), or an NHS trust code like RX1.";
    InvalidLocationId => "invalid_location_id", "The location ID is not in the right format.",
        "A location ID looks like 1-1000210669 (1- then 9 to 11 digits), or an NHS site code like RX1CC.";
    InvalidEmail => "invalid_email", "An email address is not valid.",
        "Write the full email address, for example firstname.lastname@provider.co.uk.";
    InvalidPhone => "invalid_phone", "A telephone number is not valid.",
        "Write a UK telephone number with its area code, for example 0113 496 0000.";
    InvalidNumber => "invalid_number", "A number could not be read.",
        "Write the number in digits, for example 12.";
    UnknownProvider => "unknown_provider", "The provider ID is not one we hold.",
        "Check the provider ID on your registration certificate.";
    ProviderDeregistered => "provider_deregistered", "The provider ID belongs to a provider that is no longer registered.",
        "If your organisation changed legal entity, use the new provider ID.";
    UnknownLocation => "unknown_location", "The location ID is not one we hold.",
        "Check the location ID on your registration certificate.";
    LocationDeregistered => "location_deregistered", "The location is no longer registered.",
        "Use the ID of the location where the event happened.";
    LocationNotOfProvider => "location_not_of_provider", "The location does not belong to the provider named on the form.",
        "Use one of your own locations' IDs.";
    SenderNotRegistered => "sender_not_registered", "The address this email came from is not one we hold for a registered person.",
        "Send from the email address we hold for you, or ask your nominated individual to name you as a delegate.";
    SenderNotAtProvider => "sender_not_at_provider", "The sender holds no registered role at this provider.",
        "Ask a registered person of this provider (or their delegate) to send the form.";
    EmailMultipleRoles => "email_multiple_roles", "Email Address held by Multiple roles.",
        "Submit a change of contact details form so each registered person has a personal address, such as firstname.lastname@provider.co.uk.";
    ManagerNotAtLocation => "manager_not_at_location", "The sender is registered manager of other locations, not this one.",
        "Ask the registered manager of this location, or the nominated individual, to send the form.";
}

/// One problem with one submission (or with the email as a whole when `form_index` is None).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: ProblemCode,
    /// The field key, when the problem is about one field.
    pub field: Option<String>,
    /// 0-based index of the form in the email; None for the email as a whole.
    pub form_index: Option<usize>,
    /// The value found, quoted back to the provider.
    pub value: Option<String>,
    pub message: String,
    pub hint: String,
}

impl Problem {
    /// A problem with the code's own summary and hint.
    pub fn new(code: ProblemCode) -> Problem {
        Problem {
            code,
            field: None,
            form_index: None,
            value: None,
            message: code.summary().to_string(),
            hint: code.hint().to_string(),
        }
    }

    pub fn field(mut self, key: &str) -> Problem {
        self.field = Some(key.to_string());
        self
    }

    pub fn value(mut self, value: &str) -> Problem {
        self.value = Some(value.to_string());
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Problem {
        self.message = message.into();
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = hint.into();
        self
    }

    pub fn form_index(mut self, index: Option<usize>) -> Problem {
        self.form_index = index;
        self
    }
}

impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Problem", 6)?;
        st.serialize_field("code", self.code.as_str())?;
        st.serialize_field("field", &self.field)?;
        st.serialize_field("form_index", &self.form_index)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("hint", &self.hint)?;
        st.end()
    }
}

impl Serialize for ProblemCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The Markdown page listing every code (docs/problem-codes.md).
pub fn codes_markdown() -> String {
    let mut out = String::from(
        "# Problem codes\n\nGenerated from `src/problem.rs` (`postroom problems --markdown`); a test keeps it current.\n\n| code | what is wrong | how to fix it |\n|---|---|---|\n",
    );
    for c in ProblemCode::ALL {
        out.push_str(&format!("| `{}` | {} | {} |\n", c.as_str(), c.summary(), c.hint()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in ProblemCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {}", c.as_str());
            assert_eq!(ProblemCode::parse(c.as_str()), Some(*c));
            assert!(!c.hint().is_empty() && !c.summary().is_empty());
        }
    }

    #[test]
    fn problem_codes_page_is_current() {
        let page =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/problem-codes.md")).unwrap_or_default();
        assert_eq!(page, codes_markdown(), "run `cargo run -- problems --markdown > docs/problem-codes.md`");
    }

    #[test]
    fn problem_serialises_with_code_as_string_and_nulls_for_absent_parts() {
        let p = Problem::new(ProblemCode::InvalidDate).field("event_date").value("31/02/2026");
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(j["code"], "invalid_date");
        assert_eq!(j["field"], "event_date");
        assert_eq!(j["form_index"], serde_json::Value::Null);
        assert_eq!(j["value"], "31/02/2026");
    }
}
