//! One-time enrolment codes: what a home's owner hands to a new agent, so that the agent enrols
//! with the code alone instead of ids and tokens copied by hand.
//!
//! A code is 60 random bits written as twelve characters of Crockford's base 32 in three groups
//! (`7KQ2-M9XD-4HPA`): digits and capital letters without I, L, O and U, so that it reads aloud
//! and types without confusion. Sixty bits keep guessing hopeless while codes are valid (hours
//! to a week) with the service limiting failed attempts. Reading a code forgives what people do: lower case, spaces or no
//! dash, and O for 0, I or L for 1.

use std::fmt;
use std::str::FromStr;

/// The 32 symbols, in value order.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Symbols in a code.
const LEN: usize = 12;

/// A one-time enrolment code, in its canonical form (upper case, no dash).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EnrolmentCode([u8; LEN]);

/// Why a text is not an enrolment code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// Not eight symbols once spaces and dashes are left out.
    #[error("an enrolment code has 12 letters and digits (like 7KQ2-M9XD-4HPA), got {0}")]
    Length(usize),
    /// A character outside the code's alphabet.
    #[error("{0:?} is not used in enrolment codes (letters and digits, without U)")]
    Symbol(char),
}

impl EnrolmentCode {
    /// The code written by 60 of the random bits of eight random bytes.
    #[must_use]
    pub fn from_random(bytes: [u8; 8]) -> Self {
        let bits = bytes.iter().fold(0_u64, |acc, b| (acc << 8) | u64::from(*b));
        let mut out = [0_u8; LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (LEN - 1 - i);
            *slot = ALPHABET[((bits >> shift) & 31) as usize];
        }
        Self(out)
    }

    /// The canonical form (`7KQ2M9XD4HPA`), the one to hash and store.
    #[must_use]
    pub fn canonical(&self) -> &str {
        // Only ASCII symbols of the alphabet are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The value of a typed symbol, forgiving case and the letters people mistake for digits.
fn symbol(c: char) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        'O' => '0',
        'I' | 'L' => '1',
        other => other,
    };
    ALPHABET.iter().position(|s| char::from(*s) == c).map(|p| ALPHABET[p])
}

impl FromStr for EnrolmentCode {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, CodeError> {
        let mut out = [0_u8; LEN];
        let mut n = 0;
        for c in s.chars().filter(|c| !matches!(c, '-' | ' ' | '\t')) {
            let v = symbol(c).ok_or(CodeError::Symbol(c))?;
            if n < LEN {
                out[n] = v;
            }
            n += 1;
        }
        if n != LEN {
            return Err(CodeError::Length(n));
        }
        Ok(Self(out))
    }
}

impl fmt::Display for EnrolmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.canonical();
        write!(f, "{}-{}-{}", &s[..4], &s[4..8], &s[8..])
    }
}

impl fmt::Debug for EnrolmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A code is a secret until used: never in logs.
        f.write_str("EnrolmentCode(****-****-****)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_are_two_groups_of_four_and_read_back_as_typed() {
        let code = EnrolmentCode::from_random([0x3a, 0x51, 0x9c, 0x07, 0xff, 0x10, 0x22, 0x9e]);
        let shown = code.to_string();
        assert_eq!(shown.len(), 14);
        assert_eq!((&shown[4..5], &shown[9..10]), ("-", "-"));
        assert_eq!(shown.parse::<EnrolmentCode>().unwrap(), code);
        let typed = format!(" {} ", shown.to_lowercase().replace('-', " "));
        assert_eq!(typed.parse::<EnrolmentCode>().unwrap(), code);
        assert_eq!(EnrolmentCode::from_random([0; 8]).to_string(), "0000-0000-0000");
        assert_eq!(EnrolmentCode::from_random([0xff; 8]).to_string(), "ZZZZ-ZZZZ-ZZZZ");
    }

    #[test]
    fn letters_mistaken_for_digits_are_read_as_the_digits() {
        assert_eq!("OIL0-1234-5678".parse::<EnrolmentCode>().unwrap().canonical(), "011012345678");
        assert!(!format!("{:?}", "ABCD-EFGH-JKMN".parse::<EnrolmentCode>().unwrap()).contains("ABCD"));
    }

    #[test]
    fn bad_codes_say_what_is_wrong() {
        let e = |s: &str| s.parse::<EnrolmentCode>().unwrap_err().to_string();
        assert!(e("ABC-DEF").contains("12 letters and digits"), "{}", e("ABC-DEF"));
        assert!(e("ABCD-EFGH-JKMNP").contains("got 13"));
        assert!(e("ABCD-EFGH-JKMU").contains("'U'"));
        assert!(e("ABCD_EFGH_JKMN").contains("'_'"));
    }

    proptest! {
        #[test]
        fn every_code_reads_back(bytes in any::<[u8; 8]>()) {
            let code = EnrolmentCode::from_random(bytes);
            prop_assert_eq!(code.to_string().parse::<EnrolmentCode>().unwrap(), code.clone());
            prop_assert!(code.canonical().bytes().all(|b| ALPHABET.contains(&b)));
        }
    }
}
