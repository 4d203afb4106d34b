//! Reference numbers given to every filed submission: `<prefix>-` + 6 characters + one check character,
//! e.g. `N-7K3QX9M`, all from Crockford's base32 alphabet less `Z` (31 symbols, so the check is modulo the
//! prime 31). The check catches every single mistyped character and every swap of two adjacent ones, so a
//! provider quoting a reference with a typo is told so rather than linked to someone else's notification.
//! (ISO 7064 MOD 37,36 misses some swaps: see docs/decisions.md.)

use std::fmt;

/// Crockford's base32 alphabet less `Z`: no I, L, O or U (references read aloud and retype well), and 31
/// symbols so that the check can work modulo a prime.
const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKMNPQRSTVWXY";
const BODY_LEN: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("`{0}` is not a reference: expected {1}- followed by 7 letters and digits, like {1}-7K3QX9M")]
    Shape(String, String),
    #[error("`{0}` is not a valid reference: a character is mistyped (its check character does not match)")]
    Check(String),
}

impl Reference {
    /// A new random reference. Uniqueness is the database's job (unique column, retry on collision).
    pub fn generate(prefix: &str) -> Reference {
        let mut bytes = [0u8; BODY_LEN];
        // Values are taken modulo 31 below; the slight bias toward low symbols does not matter here.
        // A failing OS RNG is not something to carry on through; fall back to time-derived bits so filing
        // still happens (the unique constraint still guards collisions).
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (nanos >> (i * 7)) as u8;
            }
        }
        let body: String = bytes.iter().map(|b| ALPHABET[(b % 31) as usize] as char).collect();
        let check = check_char(&body);
        Reference(format!("{prefix}-{body}{check}"))
    }

    /// Parses a reference as typed by a person: case-insensitive, surrounding space ignored, and Crockford's
    /// look-alikes (O→0, I/L→1) accepted in the body.
    pub fn parse(text: &str, prefix: &str) -> Result<Reference, ReferenceError> {
        let shape = || ReferenceError::Shape(text.trim().to_string(), prefix.to_string());
        let t = text.trim().to_ascii_uppercase();
        let rest = t.strip_prefix(&prefix.to_ascii_uppercase()).and_then(|r| r.strip_prefix('-')).ok_or_else(shape)?;
        if rest.len() != BODY_LEN + 1 || !rest.is_ascii() {
            return Err(shape());
        }
        // Crockford's look-alikes, anywhere: O is 0, I and L are 1.
        let normalised: String = rest
            .chars()
            .map(|c| match c {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            })
            .collect();
        if !normalised.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(shape());
        }
        let (body, check) = normalised.split_at(BODY_LEN);
        if !check.starts_with(check_char(body)) {
            return Err(ReferenceError::Check(text.trim().to_string()));
        }
        Ok(Reference(format!("{}-{body}{check}", prefix.to_ascii_uppercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every reference with this prefix found in free text (a reply subject), valid ones only.
    pub fn find_all(text: &str, prefix: &str) -> Vec<Reference> {
        let upper = text.to_ascii_uppercase();
        let needle = format!("{}-", prefix.to_ascii_uppercase());
        let mut found = Vec::new();
        let mut from = 0;
        while let Some(pos) = upper[from..].find(&needle) {
            let start = from + pos;
            let end = start + needle.len() + BODY_LEN + 1;
            let boundary_before = start == 0 || !upper.as_bytes()[start - 1].is_ascii_alphanumeric();
            let boundary_after = upper.as_bytes().get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
            if boundary_before
                && boundary_after
                && let Some(candidate) = upper.get(start..end)
                && let Ok(r) = Reference::parse(candidate, prefix)
                && !found.contains(&r)
            {
                found.push(r);
            }
            from = start + needle.len();
        }
        found
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The check character: the weighted sum of all seven symbol values, weights 3^6 .. 3^0, is 0 modulo 31.
/// 31 is prime and larger than any difference of two symbol values, and 3 has order 30 modulo 31, so every
/// weight and every difference of neighbouring weights is non-zero: a substitution or an adjacent swap
/// always changes the sum.
fn check_char(body: &str) -> char {
    const P: u32 = 31;
    let mut sum = 0;
    for b in body.bytes() {
        let v = ALPHABET.iter().position(|&a| a == b).unwrap_or(0) as u32;
        sum = (sum + v) * 3 % P;
    }
    ALPHABET[((P - sum % P) % P) as usize] as char
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_references_parse_back_and_have_the_documented_shape() {
        for _ in 0..200 {
            let r = Reference::generate("N");
            assert_eq!(r.as_str().len(), 9, "{r}");
            assert!(r.as_str().starts_with("N-"));
            assert_eq!(Reference::parse(r.as_str(), "N").unwrap(), r);
            assert_eq!(Reference::parse(&format!("  {}  ", r.as_str().to_lowercase()), "n").unwrap(), r);
        }
    }

    #[test]
    fn wrong_prefix_or_length_is_a_shape_error_not_a_check_error() {
        assert!(matches!(Reference::parse("X-7K3QX9M", "N"), Err(ReferenceError::Shape(..))));
        assert!(matches!(Reference::parse("N-7K3QX9", "N"), Err(ReferenceError::Shape(..))));
        assert!(matches!(Reference::parse("N-7K3QX9MM", "N"), Err(ReferenceError::Shape(..))));
        assert!(matches!(Reference::parse("N-7K3QX9é", "N"), Err(ReferenceError::Shape(..))));
    }

    #[test]
    fn references_are_found_in_reply_subjects() {
        let a = Reference::generate("N");
        let b = Reference::generate("N");
        let subject = format!("RE: Fwd: notification received [{a}] and ({})", b.as_str().to_lowercase());
        assert_eq!(Reference::find_all(&subject, "N"), vec![a.clone(), b]);
        // A test instance's prefix never claims production references.
        assert!(Reference::find_all(&subject, "TEST").is_empty());
        // Embedded in a longer token: not a reference.
        assert!(Reference::find_all(&format!("X{a}9"), "N").is_empty());
    }

    const TYPED: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    fn body() -> impl Strategy<Value = String> {
        proptest::collection::vec(0usize..31, BODY_LEN)
            .prop_map(|v| v.into_iter().map(|i| ALPHABET[i] as char).collect())
    }

    /// Whether two typed characters are the same symbol once look-alikes are normalised.
    fn same_symbol(a: char, b: char) -> bool {
        let n = |c| match c {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        };
        n(a) == n(b)
    }

    #[test]
    fn every_substitution_and_adjacent_swap_is_caught_exhaustively_on_sampled_references() {
        for _ in 0..300 {
            let good = Reference::generate("N");
            let chars: Vec<char> = good.as_str().chars().collect();
            for at in 2..chars.len() {
                for &t in TYPED {
                    if same_symbol(chars[at], t as char) {
                        continue;
                    }
                    let mut typo = chars.clone();
                    typo[at] = t as char;
                    let typo: String = typo.into_iter().collect();
                    assert!(Reference::parse(&typo, "N").is_err(), "{typo} accepted as {good}");
                }
                if at + 1 < chars.len() && !same_symbol(chars[at], chars[at + 1]) {
                    let mut typo = chars.clone();
                    typo.swap(at, at + 1);
                    let typo: String = typo.into_iter().collect();
                    assert!(Reference::parse(&typo, "N").is_err(), "{typo} accepted as {good}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn every_single_substitution_is_caught(body in body(), pos in 0usize..=BODY_LEN, with in 0usize..36) {
            let good = format!("N-{body}{}", check_char(&body));
            let mut chars: Vec<char> = good.chars().collect();
            let new = TYPED[with] as char;
            let at = pos + 2;
            // Crockford look-alikes normalise to the same value by design; not a mistype.
            prop_assume!(!same_symbol(chars[at], new));
            chars[at] = new;
            let typo: String = chars.into_iter().collect();
            prop_assert!(Reference::parse(&typo, "N").is_err(), "{} accepted as {}", typo, good);
        }

        #[test]
        fn every_adjacent_swap_is_caught(body in body(), pos in 0usize..BODY_LEN) {
            let good = format!("N-{body}{}", check_char(&body));
            let mut chars: Vec<char> = good.chars().collect();
            prop_assume!(!same_symbol(chars[pos + 2], chars[pos + 3]));
            chars.swap(pos + 2, pos + 3);
            let typo: String = chars.into_iter().collect();
            prop_assert!(Reference::parse(&typo, "N").is_err(), "{} accepted as {}", typo, good);
        }
    }
}
