//! Email addresses and mailboxes as they arrive in headers. An [`EmailAddress`] can only be built by
//! parsing, so code further down the pipeline never compares an unchecked string with a registry address.

use std::fmt;
use std::hash::{Hash, Hasher};

/// RFC 5321 caps a path at 256 octets including the angle brackets.
const MAX_ADDRESS_LEN: usize = 254;
/// RFC 5321 section 4.5.3.1.1.
const MAX_LOCAL_LEN: usize = 64;

/// Why a string is not an address we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("the address has no @")]
    NoAt,
    #[error("the address has more than one @")]
    SeveralAt,
    #[error("the address has nothing before the @")]
    EmptyLocalPart,
    #[error("the address has no domain after the @")]
    EmptyDomain,
    #[error("the address domain is malformed")]
    BadDomain,
    #[error("the address contains a space, control character or one of <>()[],;:\\\"")]
    BadCharacter,
    #[error("the address is longer than email allows")]
    TooLong,
}

/// An email address: trimmed, exactly one `@`, non-empty local part and domain, domain lowercased.
///
/// The local part keeps the sender's spelling (that is what they typed and what a reply goes to), but
/// equality and hashing use the whole address lowercased: real mail systems treat local parts
/// case-insensitively, and a registry match must not fail on `Jane.Doe@` versus `jane.doe@`.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress {
    /// Local part as written, `@`, lowercase domain.
    address: String,
    /// The whole address lowercased: the comparison key.
    key: String,
}

impl EmailAddress {
    /// Parses an address such as `Jane.Doe@Example.org` (no display name, no angle brackets).
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(AddressError::Empty);
        }
        if trimmed.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"".contains(c)) {
            return Err(AddressError::BadCharacter);
        }
        let (local, domain) = match trimmed.split_once('@') {
            None => return Err(AddressError::NoAt),
            Some((_, rest)) if rest.contains('@') => return Err(AddressError::SeveralAt),
            Some(parts) => parts,
        };
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart);
        }
        if local.len() > MAX_LOCAL_LEN {
            return Err(AddressError::TooLong);
        }
        if domain.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(AddressError::BadDomain);
        }
        let address = format!("{local}@{}", domain.to_lowercase());
        let key = address.to_lowercase();
        Ok(Self { address, key })
    }

    /// The address as written (domain lowercased): what a reply is addressed to.
    pub fn as_str(&self) -> &str {
        &self.address
    }

    /// The whole address lowercased: use it to compare or to look an address up.
    pub fn comparison_key(&self) -> &str {
        &self.key
    }

    /// The part before the `@`, as written.
    pub fn local_part(&self) -> &str {
        self.address.rsplit_once('@').map_or(self.address.as_str(), |(local, _)| local)
    }

    /// The lowercase domain.
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("", |(_, domain)| domain)
    }
}

impl PartialEq for EmailAddress {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for EmailAddress {}

impl Hash for EmailAddress {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({:?})", self.address)
    }
}

impl std::str::FromStr for EmailAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = AddressError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.address
    }
}

/// One mailbox from an address header: the decoded display name and the address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    /// RFC 2047 decoded display name, control characters replaced by spaces; `None` when absent or empty.
    pub name: Option<String>,
    pub address: EmailAddress,
}

/// Parses every mailbox of an address header (groups flattened). Mailboxes whose address does not
/// parse are dropped: an address we cannot check is never an authority.
pub(super) fn mailboxes(header: &mailparse::MailHeader<'_>) -> Vec<Mailbox> {
    let Ok(list) = mailparse::addrparse_header(header) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for addr in list.iter() {
        let singles: Vec<&mailparse::SingleInfo> = match addr {
            mailparse::MailAddr::Single(info) => vec![info],
            mailparse::MailAddr::Group(group) => group.addrs.iter().collect(),
        };
        for info in singles {
            if let Ok(address) = EmailAddress::parse(&info.addr) {
                let name = info.display_name.as_deref().map(super::envelope::clean_text).filter(|n| !n.is_empty());
                out.push(Mailbox { name, address });
            }
        }
    }
    out
}
