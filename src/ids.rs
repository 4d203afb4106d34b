//! Identifiers parsed once at the edge, so an invalid one cannot travel further: provider and location IDs
//! (`1-` and 9 to 11 digits, or an NHS organisation code); email addresses live with the mail they come in.

use std::fmt;

fn is_cqc_id(s: &str) -> bool {
    s.strip_prefix("1-").is_some_and(|d| (9..=11).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn is_nhs_code(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && s.as_bytes()[0].is_ascii_uppercase()
}

/// A provider: `1-101641531`, or an NHS trust's 3-character code such as `RX1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderId(String);

impl ProviderId {
    pub fn parse(text: &str) -> Option<ProviderId> {
        let s = text.trim().to_ascii_uppercase();
        (is_cqc_id(&s) || is_nhs_code(&s, 3)).then_some(ProviderId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A location: `1-1000210669`, or an NHS site's 5-character code such as `RX1CC`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationId(String);

impl LocationId {
    pub fn parse(text: &str) -> Option<LocationId> {
        let s = text.trim().to_ascii_uppercase();
        (is_cqc_id(&s) || is_nhs_code(&s, 5)).then_some(LocationId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub use crate::message::EmailAddress;

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}
display_as_str!(ProviderId, LocationId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_ids_are_cqc_or_nhs_trust_codes() {
        assert_eq!(ProviderId::parse(" 1-101641531 ").unwrap().as_str(), "1-101641531");
        assert_eq!(ProviderId::parse("rx1").unwrap().as_str(), "RX1");
        for bad in ["1-12345678", "1-123456789012", "101641531", "1-10164153a", "RX1CC", "1X1", "", "1-"] {
            assert!(ProviderId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn location_ids_are_cqc_or_nhs_site_codes() {
        assert_eq!(LocationId::parse("1-1000210669").unwrap().as_str(), "1-1000210669");
        assert_eq!(LocationId::parse("rx1cc").unwrap().as_str(), "RX1CC");
        for bad in ["RX1", "1-123", "1 1000210669", "RX1C-"] {
            assert!(LocationId::parse(bad).is_none(), "{bad}");
        }
    }
}
