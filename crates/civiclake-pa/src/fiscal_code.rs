//! Italian *codice fiscale* (tax code).
//!
//! Two shapes are accepted by [`FiscalCode::parse`]:
//!
//! * the 16-character alphanumeric code of a **natural person**
//!   ([`PersonFiscalCode`]), e.g. `RSSMRA85T10A562S`:
//!
//!   | positions | content                                                        |
//!   |-----------|----------------------------------------------------------------|
//!   | 1-3       | surname consonants/vowels (letters)                            |
//!   | 4-6       | name consonants/vowels (letters)                               |
//!   | 7-8       | last two digits of the birth year                              |
//!   | 9         | birth month letter, one of `ABCDEHLMPRST` (January..December)  |
//!   | 10-11     | birth day, `01`-`31` for men, `41`-`71` (day + 40) for women   |
//!   | 12-15     | cadastral code of the birthplace: a letter and three digits    |
//!   | 16        | check character                                                |
//!
//!   When two people would get the same code, the Agenzia delle Entrate replaces digits
//!   (starting from the rightmost) with letters — *omocodia* — following the table
//!   `0=L 1=M 2=N 3=P 4=Q 5=R 6=S 7=T 8=U 9=V`. Every digit position (7, 8, 10, 11, 13,
//!   14, 15) may therefore hold one of those letters; the accessors decode them.
//!
//!   The check character is computed over the first 15 characters: characters in odd
//!   positions (1st, 3rd, …) are converted with the official "odd" table, those in even
//!   positions with the "even" table (digits and letters `A`-`Z` to `0`-`9` and
//!   `0`-`25`), the values are summed and the remainder modulo 26 is turned back into a
//!   letter (`0` = `A`).
//!
//! * the 11-digit numeric code of a **legal person** or other organisation
//!   ([`CompanyFiscalCode`]), with the same layout and check digit as a *partita IVA*:
//!   digits in odd positions 1, 3, …, 9 are summed as they are, digits in even positions
//!   2, 4, …, 10 are doubled (subtracting 9 when the double exceeds 9) and summed, and
//!   the 11th digit is `(10 - sum % 10) % 10`.
//!
//! Input is normalised by trimming surrounding whitespace and upper-casing ASCII
//! letters. Positions in errors are 1-based and refer to the normalised input.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Length of the fiscal code of a natural person.
pub const PERSON_CODE_LENGTH: usize = 16;

/// Length of the numeric fiscal code of a legal person (and of a *partita IVA*).
pub const COMPANY_CODE_LENGTH: usize = 11;

/// Letters that replace the digits 0..=9 in omocodic codes, indexed by digit value.
const OMOCODIA_LETTERS: &[u8; 10] = b"LMNPQRSTUV";

/// Month letters, indexed by month number - 1.
const MONTH_LETTERS: &[u8; 12] = b"ABCDEHLMPRST";

/// Value of the letters `A`..=`Z` in odd positions; digits `0`..=`9` share the values of
/// `A`..=`J`.
const ODD_VALUES: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// Why a string is not a valid fiscal code (or a valid prefix to compute a check on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FiscalCodeError {
    /// Nothing but whitespace was given.
    #[error("fiscal code is empty")]
    Empty,
    /// A character other than an ASCII letter or digit was found.
    #[error("character {found:?} at position {position} is not an ASCII letter or digit")]
    InvalidCharacter {
        /// 1-based position in the normalised input.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// The code is neither 16 (natural person) nor 11 (legal person) characters long.
    #[error(
        "fiscal code has {length} characters but should have 16 (natural person) or 11 (legal person)"
    )]
    WrongLength {
        /// Number of characters after normalisation.
        length: usize,
    },
    /// A position that must hold a letter holds something else.
    #[error("character {found:?} at position {position} ({field}) should be a letter")]
    ExpectedLetter {
        /// 1-based position.
        position: usize,
        /// The offending character.
        found: char,
        /// Which part of the code the position belongs to, e.g. `"surname"`.
        field: &'static str,
    },
    /// A position that must hold a digit holds neither a digit nor an omocodia letter.
    #[error(
        "character {found:?} at position {position} ({field}) should be a digit or an omocodia letter (one of LMNPQRSTUV)"
    )]
    ExpectedDigit {
        /// 1-based position.
        position: usize,
        /// The offending character.
        found: char,
        /// Which part of the code the position belongs to, e.g. `"birth year"`.
        field: &'static str,
    },
    /// The 9th character is not a month letter.
    #[error("month character {found:?} at position 9 is not one of ABCDEHLMPRST")]
    InvalidMonth {
        /// The offending character.
        found: char,
    },
    /// The birth day (positions 10-11, omocodia decoded) is outside 01-31 and 41-71.
    #[error("birth day {day:02} is not in 01-31 (men) or 41-71 (women)")]
    InvalidDay {
        /// The decoded two-digit value.
        day: u8,
    },
    /// The check character of a 16-character code does not match the computed one.
    #[error("check character is {found:?} but should be {expected:?}")]
    WrongCheckCharacter {
        /// The check character in the input.
        found: char,
        /// The check character computed from the first 15 characters.
        expected: char,
    },
    /// An 11-character code contains something other than digits.
    #[error(
        "character {found:?} at position {position} should be a digit (11-character fiscal codes are numeric)"
    )]
    CompanyNonDigit {
        /// 1-based position.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// The check digit of an 11-digit code does not match the computed one.
    #[error("check digit is {found:?} but should be {expected:?}")]
    WrongCheckDigit {
        /// The check digit in the input.
        found: char,
        /// The check digit computed from the first 10 digits.
        expected: char,
    },
    /// The input of [`compute_check_char`] or [`compute_company_check_digit`] has the
    /// wrong length.
    #[error("got {length} characters to compute a check on but {expected} are needed")]
    WrongPrefixLength {
        /// Number of characters after normalisation.
        length: usize,
        /// Number of characters required (15 or 10).
        expected: usize,
    },
}

/// Sex encoded in a natural person's fiscal code (women have 40 added to the birth day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Sex {
    /// Birth day encoded as 01-31.
    Male,
    /// Birth day encoded as 41-71.
    Female,
}

/// A validated fiscal code: a natural person's 16-character code or an organisation's
/// 11-digit code.
///
/// Equality is on the normalised text, so two omocodic variants of the same person's code
/// are different values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FiscalCode {
    /// 16-character code of a natural person.
    Person(PersonFiscalCode),
    /// 11-digit code of a legal person (same check digit as a *partita IVA*).
    Company(CompanyFiscalCode),
}

/// A validated 16-character fiscal code of a natural person, with its decoded fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PersonFiscalCode {
    code: String,
    birth_year: u8,
    birth_month: u8,
    birth_day: u8,
    sex: Sex,
    birthplace: String,
}

/// A validated 11-digit fiscal code of a legal person (or *partita IVA*).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompanyFiscalCode {
    code: String,
}

impl FiscalCode {
    /// Parses and validates a fiscal code after trimming whitespace and upper-casing.
    ///
    /// 16 characters are checked as a natural person's code (structure, month letter, day
    /// range, check character); 11 characters as an organisation's numeric code (digits and
    /// check digit).
    pub fn parse(input: &str) -> Result<FiscalCode, FiscalCodeError> {
        let code = normalise(input);
        if code.is_empty() {
            return Err(FiscalCodeError::Empty);
        }
        check_alphanumeric(&code)?;
        match code.len() {
            PERSON_CODE_LENGTH => PersonFiscalCode::from_normalised(code).map(FiscalCode::Person),
            COMPANY_CODE_LENGTH => {
                CompanyFiscalCode::from_normalised(code).map(FiscalCode::Company)
            }
            length => Err(FiscalCodeError::WrongLength { length }),
        }
    }

    /// The normalised code (upper case, no surrounding whitespace).
    pub fn as_str(&self) -> &str {
        match self {
            FiscalCode::Person(person) => person.as_str(),
            FiscalCode::Company(company) => company.as_str(),
        }
    }

    /// The natural person's code, if this is one.
    pub fn person(&self) -> Option<&PersonFiscalCode> {
        match self {
            FiscalCode::Person(person) => Some(person),
            FiscalCode::Company(_) => None,
        }
    }

    /// The organisation's code, if this is one.
    pub fn company(&self) -> Option<&CompanyFiscalCode> {
        match self {
            FiscalCode::Person(_) => None,
            FiscalCode::Company(company) => Some(company),
        }
    }

    /// Last two digits of the birth year (0-99), for natural persons.
    pub fn birth_year(&self) -> Option<u8> {
        self.person().map(PersonFiscalCode::birth_year)
    }

    /// Birth month (1-12), for natural persons.
    pub fn birth_month(&self) -> Option<u8> {
        self.person().map(PersonFiscalCode::birth_month)
    }

    /// Birth day of the month (1-31, with the +40 for women removed), for natural persons.
    pub fn birth_day(&self) -> Option<u8> {
        self.person().map(PersonFiscalCode::birth_day)
    }

    /// Sex, for natural persons.
    pub fn sex(&self) -> Option<Sex> {
        self.person().map(PersonFiscalCode::sex)
    }

    /// Cadastral code of the birthplace with omocodia decoded (e.g. `A562`), for natural
    /// persons.
    pub fn birthplace_code(&self) -> Option<&str> {
        self.person().map(PersonFiscalCode::birthplace_code)
    }
}

impl PersonFiscalCode {
    /// Validates an already normalised, ASCII-alphanumeric, 16-character code.
    fn from_normalised(code: String) -> Result<PersonFiscalCode, FiscalCodeError> {
        let bytes = code.as_bytes();
        let letter = |index: usize, field: &'static str| -> Result<u8, FiscalCodeError> {
            let byte = bytes.get(index).copied().unwrap_or(b' ');
            if byte.is_ascii_uppercase() {
                Ok(byte)
            } else {
                Err(FiscalCodeError::ExpectedLetter {
                    position: index + 1,
                    found: char::from(byte),
                    field,
                })
            }
        };
        let digit = |index: usize, field: &'static str| -> Result<u8, FiscalCodeError> {
            let byte = bytes.get(index).copied().unwrap_or(b' ');
            decode_digit(byte).ok_or(FiscalCodeError::ExpectedDigit {
                position: index + 1,
                found: char::from(byte),
                field,
            })
        };

        for index in 0..3 {
            letter(index, "surname")?;
        }
        for index in 3..6 {
            letter(index, "name")?;
        }
        let birth_year = digit(6, "birth year")? * 10 + digit(7, "birth year")?;
        let month_byte = bytes.get(8).copied().unwrap_or(b' ');
        let birth_month = MONTH_LETTERS
            .iter()
            .position(|&m| m == month_byte)
            .and_then(|index| u8::try_from(index + 1).ok())
            .ok_or(FiscalCodeError::InvalidMonth {
                found: char::from(month_byte),
            })?;
        let encoded_day = digit(9, "birth day")? * 10 + digit(10, "birth day")?;
        let place_letter = letter(11, "birthplace code")?;
        let mut birthplace = String::with_capacity(4);
        birthplace.push(char::from(place_letter));
        for index in 12..15 {
            birthplace.push(char::from(b'0' + digit(index, "birthplace code")?));
        }
        let found_check = char::from(letter(15, "check character")?);

        let (birth_day, sex) = match encoded_day {
            1..=31 => (encoded_day, Sex::Male),
            41..=71 => (encoded_day - 40, Sex::Female),
            day => return Err(FiscalCodeError::InvalidDay { day }),
        };

        let expected = check_char_of(bytes.get(..15).unwrap_or_default());
        if found_check != expected {
            return Err(FiscalCodeError::WrongCheckCharacter {
                found: found_check,
                expected,
            });
        }

        Ok(PersonFiscalCode {
            code,
            birth_year,
            birth_month,
            birth_day,
            sex,
            birthplace,
        })
    }

    /// The normalised 16-character code, exactly as validated (omocodia letters kept).
    pub fn as_str(&self) -> &str {
        &self.code
    }

    /// Last two digits of the birth year (0-99); the century is not encoded.
    pub fn birth_year(&self) -> u8 {
        self.birth_year
    }

    /// Birth month, 1 (January) to 12 (December).
    pub fn birth_month(&self) -> u8 {
        self.birth_month
    }

    /// Birth day of the month, 1-31 (the +40 added for women is removed).
    ///
    /// Only the range 1-31 is checked, not whether the day exists in that month.
    pub fn birth_day(&self) -> u8 {
        self.birth_day
    }

    /// Sex, derived from the encoded birth day.
    pub fn sex(&self) -> Sex {
        self.sex
    }

    /// Cadastral (Belfiore) code of the birthplace with omocodia decoded, e.g. `A562`
    /// (Italian municipality) or `Z…` (foreign country).
    pub fn birthplace_code(&self) -> &str {
        &self.birthplace
    }

    /// Whether any digit position holds an omocodia substitution letter.
    pub fn is_omocodic(&self) -> bool {
        self.code
            .bytes()
            .enumerate()
            .any(|(index, byte)| DIGIT_INDICES.contains(&index) && !byte.is_ascii_digit())
    }

    /// The check character (16th character).
    pub fn check_char(&self) -> char {
        self.code.chars().last().unwrap_or('A')
    }
}

/// 0-based indices of the positions that hold (possibly omocodic) digits.
const DIGIT_INDICES: [usize; 7] = [6, 7, 9, 10, 12, 13, 14];

impl CompanyFiscalCode {
    /// Validates an already normalised, ASCII-alphanumeric, 11-character code.
    fn from_normalised(code: String) -> Result<CompanyFiscalCode, FiscalCodeError> {
        check_digits_only(&code)?;
        let bytes = code.as_bytes();
        let expected = company_check_digit_of(bytes.get(..10).unwrap_or_default());
        let found = char::from(bytes.get(10).copied().unwrap_or(b' '));
        if found != expected {
            return Err(FiscalCodeError::WrongCheckDigit { found, expected });
        }
        Ok(CompanyFiscalCode { code })
    }

    /// The 11 digits.
    pub fn as_str(&self) -> &str {
        &self.code
    }
}

/// Computes the check character of a natural person's fiscal code from its first 15
/// characters (normalised like [`FiscalCode::parse`]).
///
/// Only the length and the character set (ASCII letters and digits) are checked, not the
/// structure of the code: pass the result to [`FiscalCode::parse`] for full validation.
pub fn compute_check_char(first15: &str) -> Result<char, FiscalCodeError> {
    let prefix = normalise(first15);
    check_alphanumeric(&prefix)?;
    if prefix.len() != PERSON_CODE_LENGTH - 1 {
        return Err(FiscalCodeError::WrongPrefixLength {
            length: prefix.chars().count(),
            expected: PERSON_CODE_LENGTH - 1,
        });
    }
    Ok(check_char_of(prefix.as_bytes()))
}

/// Computes the check digit of an 11-digit fiscal code or *partita IVA* from its first 10
/// digits (surrounding whitespace is trimmed).
pub fn compute_company_check_digit(first10: &str) -> Result<char, FiscalCodeError> {
    let prefix = normalise(first10);
    check_digits_only(&prefix)?;
    if prefix.len() != COMPANY_CODE_LENGTH - 1 {
        return Err(FiscalCodeError::WrongPrefixLength {
            length: prefix.chars().count(),
            expected: COMPANY_CODE_LENGTH - 1,
        });
    }
    Ok(company_check_digit_of(prefix.as_bytes()))
}

fn normalise(input: &str) -> String {
    input.trim().to_ascii_uppercase()
}

fn check_alphanumeric(code: &str) -> Result<(), FiscalCodeError> {
    match code
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_alphanumeric())
    {
        Some((index, found)) => Err(FiscalCodeError::InvalidCharacter {
            position: index + 1,
            found,
        }),
        None => Ok(()),
    }
}

fn check_digits_only(code: &str) -> Result<(), FiscalCodeError> {
    match code.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        Some((index, found)) => Err(FiscalCodeError::CompanyNonDigit {
            position: index + 1,
            found,
        }),
        None => Ok(()),
    }
}

/// A digit or its omocodia letter, as a value 0..=9.
fn decode_digit(byte: u8) -> Option<u8> {
    if byte.is_ascii_digit() {
        return Some(byte - b'0');
    }
    OMOCODIA_LETTERS
        .iter()
        .position(|&letter| letter == byte)
        .and_then(|value| u8::try_from(value).ok())
}

/// Check character of upper-case ASCII letters/digits (other bytes count as 0).
fn check_char_of(prefix: &[u8]) -> char {
    let sum: u32 = prefix
        .iter()
        .enumerate()
        .map(|(index, &byte)| {
            let ordinal = match byte {
                b'0'..=b'9' => usize::from(byte - b'0'),
                b'A'..=b'Z' => usize::from(byte - b'A'),
                _ => 0,
            };
            if index % 2 == 0 {
                // 1st, 3rd, ... character: odd position in the official 1-based numbering.
                ODD_VALUES.get(ordinal).copied().unwrap_or(0)
            } else {
                u32::try_from(ordinal).unwrap_or(0)
            }
        })
        .sum();
    // sum % 26 < 26, so the addition stays within 'A'..='Z'.
    char::from(b'A' + u8::try_from(sum % 26).unwrap_or(0))
}

/// Check digit of ASCII digits (other bytes count as 0).
fn company_check_digit_of(prefix: &[u8]) -> char {
    let sum: u32 = prefix
        .iter()
        .enumerate()
        .map(|(index, &byte)| {
            let digit = u32::from(byte.saturating_sub(b'0') % 10);
            if index % 2 == 0 {
                digit
            } else {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            }
        })
        .sum();
    char::from(b'0' + u8::try_from((10 - sum % 10) % 10).unwrap_or(0))
}

impl fmt::Display for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PersonFiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CompanyFiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FiscalCode {
    type Err = FiscalCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FiscalCode::parse(s)
    }
}

impl TryFrom<String> for FiscalCode {
    type Error = FiscalCodeError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        FiscalCode::parse(&value)
    }
}

impl From<FiscalCode> for String {
    fn from(value: FiscalCode) -> Self {
        match value {
            FiscalCode::Person(person) => person.code,
            FiscalCode::Company(company) => company.code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn person(code: &str) -> PersonFiscalCode {
        FiscalCode::parse(code).unwrap().person().unwrap().clone()
    }

    #[test]
    fn valid_male_code_decodes_all_fields() {
        let code = FiscalCode::parse("RSSMRA85T10A562S").unwrap();
        assert_eq!(code.as_str(), "RSSMRA85T10A562S");
        assert_eq!(code.birth_year(), Some(85));
        assert_eq!(code.birth_month(), Some(12));
        assert_eq!(code.birth_day(), Some(10));
        assert_eq!(code.sex(), Some(Sex::Male));
        assert_eq!(code.birthplace_code(), Some("A562"));
        assert!(code.company().is_none());
        assert!(!code.person().unwrap().is_omocodic());
        assert_eq!(code.person().unwrap().check_char(), 'S');
    }

    #[test]
    fn second_valid_code() {
        let code = person("MRTMTT25D09F205Z");
        assert_eq!(code.birth_year(), 25);
        assert_eq!(code.birth_month(), 4);
        assert_eq!(code.birth_day(), 9);
        assert_eq!(code.sex(), Sex::Male);
        assert_eq!(code.birthplace_code(), "F205");
    }

    #[test]
    fn input_is_trimmed_and_uppercased() {
        let code = FiscalCode::parse("  rssmra85t10a562s\n").unwrap();
        assert_eq!(code.to_string(), "RSSMRA85T10A562S");
        assert_eq!("rssmra85t10a562s".parse::<FiscalCode>().unwrap(), code);
    }

    #[test]
    fn female_code_subtracts_forty_from_the_day() {
        // RSSMRA85T50A562 + computed check character (cross-checked with an independent
        // implementation of the official tables): day 50 = 10th, female.
        let check = compute_check_char("RSSMRA85T50A562").unwrap();
        assert_eq!(check, 'W');
        let code = person("RSSMRA85T50A562W");
        assert_eq!(code.birth_day(), 10);
        assert_eq!(code.sex(), Sex::Female);
    }

    #[test]
    fn omocodic_variants_decode_digits() {
        // Last digit 2 replaced by N: the check character changes from S to H.
        let code = person("RSSMRA85T10A56NH");
        assert!(code.is_omocodic());
        assert_eq!(code.birthplace_code(), "A562");
        assert_eq!(code.birth_year(), 85);

        // All seven digit positions substituted: 8=U 5=R 1=M 0=L 5=R 6=S 2=N.
        let code = person("RSSMRAURTMLARSNL");
        assert!(code.is_omocodic());
        assert_eq!(code.birth_year(), 85);
        assert_eq!(code.birth_month(), 12);
        assert_eq!(code.birth_day(), 10);
        assert_eq!(code.birthplace_code(), "A562");
    }

    #[test]
    fn compute_check_char_matches_known_codes() {
        assert_eq!(compute_check_char("RSSMRA85T10A562").unwrap(), 'S');
        assert_eq!(compute_check_char("MRTMTT25D09F205").unwrap(), 'Z');
        assert_eq!(compute_check_char(" rssmra85t10a56n ").unwrap(), 'H');
        assert_eq!(
            compute_check_char("RSSMRA85T10A56"),
            Err(FiscalCodeError::WrongPrefixLength {
                length: 14,
                expected: 15
            })
        );
        assert_eq!(
            compute_check_char("RSSMRA85T10A56-"),
            Err(FiscalCodeError::InvalidCharacter {
                position: 15,
                found: '-'
            })
        );
    }

    #[test]
    fn wrong_check_character() {
        let err = FiscalCode::parse("RSSMRA85T10A562X").unwrap_err();
        assert_eq!(
            err,
            FiscalCodeError::WrongCheckCharacter {
                found: 'X',
                expected: 'S'
            }
        );
        assert_eq!(err.to_string(), "check character is 'X' but should be 'S'");
    }

    #[test]
    fn bad_month_letter() {
        let err = FiscalCode::parse("RSSMRA85F10A562S").unwrap_err();
        assert_eq!(err, FiscalCodeError::InvalidMonth { found: 'F' });
        assert_eq!(
            err.to_string(),
            "month character 'F' at position 9 is not one of ABCDEHLMPRST"
        );
    }

    #[test]
    fn wrong_length() {
        let err = FiscalCode::parse("RSSMRA85T10A562").unwrap_err();
        assert_eq!(err, FiscalCodeError::WrongLength { length: 15 });
        assert_eq!(
            err.to_string(),
            "fiscal code has 15 characters but should have 16 (natural person) or 11 (legal person)"
        );
        assert_eq!(FiscalCode::parse("   "), Err(FiscalCodeError::Empty));
    }

    #[test]
    fn structural_errors_name_the_position_and_field() {
        assert_eq!(
            FiscalCode::parse("RS1MRA85T10A562S"),
            Err(FiscalCodeError::ExpectedLetter {
                position: 3,
                found: '1',
                field: "surname"
            })
        );
        assert_eq!(
            FiscalCode::parse("RSSMRA8AT10A562S"),
            Err(FiscalCodeError::ExpectedDigit {
                position: 8,
                found: 'A',
                field: "birth year"
            })
        );
        assert_eq!(
            FiscalCode::parse("RSSMRA85T10A5Z2S"),
            Err(FiscalCodeError::ExpectedDigit {
                position: 14,
                found: 'Z',
                field: "birthplace code"
            })
        );
        assert_eq!(
            FiscalCode::parse("RSSMRA85T101562S"),
            Err(FiscalCodeError::ExpectedLetter {
                position: 12,
                found: '1',
                field: "birthplace code"
            })
        );
        assert_eq!(
            FiscalCode::parse("RSSMRA85T10A5620"),
            Err(FiscalCodeError::ExpectedLetter {
                position: 16,
                found: '0',
                field: "check character"
            })
        );
        assert_eq!(
            FiscalCode::parse("RSSMRA85T10A56?S"),
            Err(FiscalCodeError::InvalidCharacter {
                position: 15,
                found: '?'
            })
        );
        assert_eq!(
            FiscalCode::parse("RSSMRA85T10A56éS"),
            Err(FiscalCodeError::InvalidCharacter {
                position: 15,
                found: 'é'
            })
        );
    }

    #[test]
    fn day_out_of_range() {
        for (day, text) in [(0, "00"), (32, "32"), (40, "40"), (72, "72"), (99, "VV")] {
            let prefix = format!("RSSMRA85T{text}A562");
            let code = format!("{prefix}{}", compute_check_char(&prefix).unwrap());
            assert_eq!(
                FiscalCode::parse(&code),
                Err(FiscalCodeError::InvalidDay { day }),
                "{code}"
            );
        }
        assert_eq!(
            FiscalCodeError::InvalidDay { day: 0 }.to_string(),
            "birth day 00 is not in 01-31 (men) or 41-71 (women)"
        );
    }

    #[test]
    fn company_codes() {
        // Derived with this implementation and cross-checked by hand: odd positions
        // 0+2+4+6+8 = 20, even positions 1,3,5,7,9 doubled (minus 9 when > 9) = 2+6+1+5+9
        // = 23, total 43, check (10 - 3) % 10 = 7.
        let code = FiscalCode::parse("01234567897").unwrap();
        assert_eq!(code.company().unwrap().as_str(), "01234567897");
        assert_eq!(code.birth_year(), None);
        assert_eq!(code.sex(), None);
        assert_eq!(compute_company_check_digit("0123456789").unwrap(), '7');
        assert_eq!(compute_company_check_digit("0000000000").unwrap(), '0');
        assert_eq!(compute_company_check_digit("0074311015").unwrap(), '7');
        assert!(FiscalCode::parse("00743110157").is_ok());

        let err = FiscalCode::parse("01234567890").unwrap_err();
        assert_eq!(
            err,
            FiscalCodeError::WrongCheckDigit {
                found: '0',
                expected: '7'
            }
        );
        assert_eq!(err.to_string(), "check digit is '0' but should be '7'");
        assert_eq!(
            FiscalCode::parse("0123456789A"),
            Err(FiscalCodeError::CompanyNonDigit {
                position: 11,
                found: 'A'
            })
        );
        assert_eq!(
            compute_company_check_digit("012345678"),
            Err(FiscalCodeError::WrongPrefixLength {
                length: 9,
                expected: 10
            })
        );
    }

    #[test]
    fn serde_round_trip_uses_the_string_form() {
        let code = FiscalCode::parse("RSSMRA85T10A562S").unwrap();
        let text: String = code.clone().into();
        assert_eq!(text, "RSSMRA85T10A562S");
        assert_eq!(FiscalCode::try_from(text).unwrap(), code);
        assert!(FiscalCode::try_from("RSSMRA85T10A562X".to_owned()).is_err());
    }

    fn person_prefix() -> impl Strategy<Value = String> {
        // Structurally valid first 15 characters, omocodia letters included.
        let digit = "[0-9LMNPQRSTUV]";
        let pattern = format!(
            "[A-Z]{{6}}{digit}{{2}}[ABCDEHLMPRST](0[1-9]|[12][0-9]|3[01]|4[1-9]|[56][0-9]|7[01])[A-Z]{digit}{{3}}"
        );
        proptest::string::string_regex(&pattern).unwrap()
    }

    proptest! {
        #[test]
        fn computed_check_char_always_validates(prefix in person_prefix()) {
            let check = compute_check_char(&prefix).unwrap();
            let code = format!("{prefix}{check}");
            let parsed = FiscalCode::parse(&code).unwrap();
            prop_assert_eq!(parsed.as_str(), code.as_str());
        }

        #[test]
        fn any_other_check_char_fails(prefix in person_prefix(), other in proptest::char::range('A', 'Z')) {
            let check = compute_check_char(&prefix).unwrap();
            prop_assume!(other != check);
            let code = format!("{prefix}{other}");
            prop_assert_eq!(
                FiscalCode::parse(&code),
                Err(FiscalCodeError::WrongCheckCharacter { found: other, expected: check })
            );
        }

        #[test]
        fn computed_company_check_digit_always_validates(prefix in "[0-9]{10}") {
            let check = compute_company_check_digit(&prefix).unwrap();
            let code = format!("{prefix}{check}");
            prop_assert!(FiscalCode::parse(&code).unwrap().company().is_some());
        }

        #[test]
        fn changing_one_company_digit_fails(prefix in "[0-9]{10}", index in 0usize..11, bump in 1u8..10) {
            let check = compute_company_check_digit(&prefix).unwrap();
            let mut bytes = format!("{prefix}{check}").into_bytes();
            bytes[index] = b'0' + (bytes[index] - b'0' + bump) % 10;
            let code = String::from_utf8(bytes).unwrap();
            prop_assert!(FiscalCode::parse(&code).is_err(), "{} parsed", code);
        }

        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = FiscalCode::parse(&input);
            let _ = compute_check_char(&input);
            let _ = compute_company_check_digit(&input);
        }

        #[test]
        fn parse_never_panics_on_near_valid_input(input in "[A-Z0-9]{16}|[0-9]{11}") {
            if let Ok(code) = FiscalCode::parse(&input) {
                prop_assert_eq!(code.as_str(), input.as_str());
                if let Some(person) = code.person() {
                    prop_assert!((1..=12).contains(&person.birth_month()));
                    prop_assert!((1..=31).contains(&person.birth_day()));
                    prop_assert_eq!(person.birthplace_code().len(), 4);
                }
            }
        }
    }
}
