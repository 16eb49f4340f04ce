//! IBAN (International Bank Account Number, ISO 13616) validation.
//!
//! An IBAN is a two-letter country code, two check digits and a country-specific BBAN
//! (basic bank account number) of letters and digits. Validation:
//!
//! 1. normalise: remove whitespace, upper-case ASCII letters;
//! 2. only ASCII letters and digits, country code of two letters, check digits of two
//!    digits;
//! 3. the length registered for the country (see [`expected_length`]);
//! 4. for Italy, the BBAN layout: CIN (one letter), ABI (5 digits), CAB (5 digits),
//!    account number (12 letters or digits);
//! 5. the ISO 7064 MOD 97-10 checksum: move the first four characters to the end, replace
//!    letters by numbers (`A` = 10 … `Z` = 35) and require the number modulo 97 to be 1.
//!    Errors report the check digits the IBAN should have (`98 - (BBAN + country + "00")
//!    mod 97`), so check digits `00`, `01` and `99` are never accepted.
//!
//! The CIN of Italian IBANs is itself a check character over ABI, CAB and account; it is
//! not verified here (the MOD 97 check already covers the whole IBAN).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Registered IBAN lengths (SWIFT IBAN registry) for the countries this crate accepts:
/// the SEPA area and its neighbours.
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AL", 28),
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("RS", 22),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("VA", 22),
    ("XK", 20),
];

/// Why a string is not a valid IBAN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbanError {
    /// A character other than an ASCII letter or digit (or whitespace) was found.
    #[error("character {found:?} at position {position} is not an ASCII letter or digit")]
    IllegalCharacter {
        /// 1-based position after whitespace is removed.
        position: usize,
        /// The offending character.
        found: char,
    },
    /// Fewer than the four characters of country code and check digits.
    #[error("IBAN has {length} characters but needs at least 4 (country code and check digits)")]
    TooShort {
        /// Number of characters after normalisation.
        length: usize,
    },
    /// The first two characters are not letters.
    #[error("country code {found:?} should be two letters")]
    InvalidCountryCode {
        /// The first two characters.
        found: String,
    },
    /// The country is not in the length table.
    #[error("country code {country:?} is not a supported IBAN country")]
    UnsupportedCountry {
        /// The two-letter country code.
        country: String,
    },
    /// Characters 3-4 are not digits.
    #[error("check digits {found:?} should be two digits")]
    CheckDigitsNotNumeric {
        /// Characters 3-4.
        found: String,
    },
    /// The length does not match the one registered for the country.
    #[error("IBAN for {country} has {length} characters but should have {expected}")]
    WrongLength {
        /// The two-letter country code.
        country: String,
        /// Number of characters after normalisation.
        length: usize,
        /// Registered length for the country.
        expected: usize,
    },
    /// The 5th character of an Italian IBAN (the CIN) is not a letter.
    #[error("Italian CIN (5th character) is {found:?} but should be a letter")]
    ItalianCinNotLetter {
        /// The 5th character.
        found: char,
    },
    /// The ABI or CAB of an Italian IBAN is not 5 digits.
    #[error("Italian {field} code {found:?} should be 5 digits")]
    ItalianBankCodeNotNumeric {
        /// `"ABI"` (characters 6-10) or `"CAB"` (characters 11-15).
        field: &'static str,
        /// The 5 characters found.
        found: String,
    },
    /// The MOD 97 checksum fails.
    #[error("check digits are '{found:02}' but should be '{expected:02}'")]
    WrongCheckDigits {
        /// The check digits in the input.
        found: u8,
        /// The check digits computed from the country code and BBAN.
        expected: u8,
    },
}

/// A validated IBAN, stored in electronic form (no spaces, upper case).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Iban {
    code: String,
}

/// The registered IBAN length for a two-letter country code (upper case), or `None` when
/// the country is not supported.
pub fn expected_length(country: &str) -> Option<usize> {
    LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|&(_, length)| length)
}

impl Iban {
    /// Parses and validates an IBAN; whitespace anywhere is removed and letters are
    /// upper-cased, so the printed form `IT60 X054 2811 …` is accepted.
    pub fn parse(input: &str) -> Result<Iban, IbanError> {
        let code: String = input
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if let Some((index, found)) = code
            .chars()
            .enumerate()
            .find(|(_, c)| !c.is_ascii_alphanumeric())
        {
            return Err(IbanError::IllegalCharacter {
                position: index + 1,
                found,
            });
        }
        // All ASCII from here on: byte indices are character indices.
        let length = code.len();
        if length < 4 {
            return Err(IbanError::TooShort { length });
        }
        let country = code.get(..2).unwrap_or_default();
        if !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(IbanError::InvalidCountryCode {
                found: country.to_owned(),
            });
        }
        let check = code.get(2..4).unwrap_or_default();
        if !check.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IbanError::CheckDigitsNotNumeric {
                found: check.to_owned(),
            });
        }
        let expected = expected_length(country).ok_or_else(|| IbanError::UnsupportedCountry {
            country: country.to_owned(),
        })?;
        if length != expected {
            return Err(IbanError::WrongLength {
                country: country.to_owned(),
                length,
                expected,
            });
        }
        if country == "IT" {
            check_italian_bban(code.get(4..).unwrap_or_default())?;
        }

        let found = check.bytes().fold(0u8, |acc, b| acc * 10 + (b - b'0'));
        let bban = code.get(4..).unwrap_or_default();
        let remainder = mod97(bban.bytes().chain(country.bytes()).chain(*b"00"));
        let expected = u8::try_from(98 - remainder).unwrap_or(0);
        if found != expected {
            return Err(IbanError::WrongCheckDigits { found, expected });
        }
        Ok(Iban { code })
    }

    /// The IBAN in electronic form: upper case, no spaces.
    pub fn as_str(&self) -> &str {
        &self.code
    }

    /// The two-letter country code.
    pub fn country_code(&self) -> &str {
        self.code.get(..2).unwrap_or_default()
    }

    /// The two check digits.
    pub fn check_digits(&self) -> &str {
        self.code.get(2..4).unwrap_or_default()
    }

    /// The BBAN: everything after the check digits.
    pub fn bban(&self) -> &str {
        self.code.get(4..).unwrap_or_default()
    }

    /// The IBAN in print form, in groups of four characters separated by spaces.
    pub fn to_print_format(&self) -> String {
        let mut out = String::with_capacity(self.code.len() + self.code.len() / 4);
        for (index, c) in self.code.chars().enumerate() {
            if index > 0 && index % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }

    fn is_italian(&self) -> bool {
        self.country_code() == "IT"
    }

    /// The CIN (control letter, 5th character) of an Italian IBAN.
    pub fn cin(&self) -> Option<char> {
        if self.is_italian() {
            self.code.chars().nth(4)
        } else {
            None
        }
    }

    /// The ABI (bank code, characters 6-10) of an Italian IBAN.
    pub fn abi(&self) -> Option<&str> {
        if self.is_italian() {
            self.code.get(5..10)
        } else {
            None
        }
    }

    /// The CAB (branch code, characters 11-15) of an Italian IBAN.
    pub fn cab(&self) -> Option<&str> {
        if self.is_italian() {
            self.code.get(10..15)
        } else {
            None
        }
    }

    /// The 12-character account number (characters 16-27) of an Italian IBAN.
    pub fn account_number(&self) -> Option<&str> {
        if self.is_italian() {
            self.code.get(15..)
        } else {
            None
        }
    }
}

/// Checks the layout of an Italian BBAN (23 ASCII alphanumerics): CIN letter, ABI and CAB
/// digits.
fn check_italian_bban(bban: &str) -> Result<(), IbanError> {
    let cin = bban.bytes().next().unwrap_or(b' ');
    if !cin.is_ascii_uppercase() {
        return Err(IbanError::ItalianCinNotLetter {
            found: char::from(cin),
        });
    }
    for (field, range) in [("ABI", 1..6), ("CAB", 6..11)] {
        let part = bban.get(range).unwrap_or_default();
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IbanError::ItalianBankCodeNotNumeric {
                field,
                found: part.to_owned(),
            });
        }
    }
    Ok(())
}

/// MOD 97 of the decimal number obtained by writing digits as they are and letters as
/// 10..=35; computed incrementally, so any length fits.
fn mod97(chars: impl Iterator<Item = u8>) -> u32 {
    chars.fold(0u32, |acc, b| match b {
        b'0'..=b'9' => (acc * 10 + u32::from(b - b'0')) % 97,
        b'A'..=b'Z' => (acc * 100 + u32::from(b - b'A') + 10) % 97,
        _ => acc,
    })
}

impl fmt::Display for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

impl FromStr for Iban {
    type Err = IbanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Iban::parse(s)
    }
}

impl TryFrom<String> for Iban {
    type Error = IbanError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Iban::parse(&value)
    }
}

impl From<Iban> for String {
    fn from(value: Iban) -> Self {
        value.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Independent check: the textbook algorithm on a big decimal string.
    fn textbook_mod97(iban: &str) -> u32 {
        let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
        let digits: String = rearranged
            .chars()
            .map(|c| c.to_digit(36).unwrap().to_string())
            .collect();
        // Long division in chunks that fit u64.
        digits.as_bytes().chunks(9).fold(0u64, |acc, chunk| {
            let chunk_str = std::str::from_utf8(chunk).unwrap();
            let value: u64 = format!("{acc}{chunk_str}").parse().unwrap();
            value % 97
        }) as u32
    }

    #[test]
    fn known_good_ibans() {
        for text in [
            "IT60X0542811101000000123456",
            "DE89370400440532013000",
            "GB82WEST12345698765432",
            "SM86U0322509800000000270100",
            "FR1420041010050500013M02606",
            "ES9121000418450200051332",
            "AT611904300234573201",
            "CH9300762011623852957",
            "NL91ABNA0417164300",
            "BE68539007547034",
        ] {
            assert_eq!(textbook_mod97(text), 1, "{text}");
            let iban = Iban::parse(text).unwrap();
            assert_eq!(iban.as_str(), text);
            assert_eq!(
                Some(iban.as_str().len()),
                expected_length(iban.country_code())
            );
        }
    }

    #[test]
    fn italian_parts() {
        let iban = Iban::parse("it60 x054 2811 1010 0000 0123 456").unwrap();
        assert_eq!(iban.as_str(), "IT60X0542811101000000123456");
        assert_eq!(iban.to_print_format(), "IT60 X054 2811 1010 0000 0123 456");
        assert_eq!(iban.country_code(), "IT");
        assert_eq!(iban.check_digits(), "60");
        assert_eq!(iban.bban(), "X0542811101000000123456");
        assert_eq!(iban.cin(), Some('X'));
        assert_eq!(iban.abi(), Some("05428"));
        assert_eq!(iban.cab(), Some("11101"));
        assert_eq!(iban.account_number(), Some("000000123456"));

        let german = Iban::parse("DE89370400440532013000").unwrap();
        assert_eq!(german.cin(), None);
        assert_eq!(german.abi(), None);
        assert_eq!(german.cab(), None);
        assert_eq!(german.account_number(), None);
        assert_eq!(german.to_print_format(), "DE89 3704 0044 0532 0130 00");
    }

    #[test]
    fn bad_check_digits() {
        let err = Iban::parse("IT61X0542811101000000123456").unwrap_err();
        assert_eq!(
            err,
            IbanError::WrongCheckDigits {
                found: 61,
                expected: 60
            }
        );
        assert_eq!(err.to_string(), "check digits are '61' but should be '60'");
        // A changed BBAN character is caught too.
        assert_eq!(
            Iban::parse("DE89370400440532013001"),
            Err(IbanError::WrongCheckDigits {
                found: 89,
                expected: 62
            })
        );
    }

    #[test]
    fn bad_length_for_country() {
        let err = Iban::parse("IT60X054281110100000012345").unwrap_err();
        assert_eq!(
            err,
            IbanError::WrongLength {
                country: "IT".to_owned(),
                length: 26,
                expected: 27
            }
        );
        assert_eq!(
            err.to_string(),
            "IBAN for IT has 26 characters but should have 27"
        );
        assert_eq!(
            Iban::parse("DE8937040044053201300"),
            Err(IbanError::WrongLength {
                country: "DE".to_owned(),
                length: 21,
                expected: 22
            })
        );
    }

    #[test]
    fn illegal_characters_and_prefix_errors() {
        let err = Iban::parse("IT60-X054").unwrap_err();
        assert_eq!(
            err,
            IbanError::IllegalCharacter {
                position: 5,
                found: '-'
            }
        );
        assert_eq!(
            err.to_string(),
            "character '-' at position 5 is not an ASCII letter or digit"
        );
        assert_eq!(
            Iban::parse("IT6Ä"),
            Err(IbanError::IllegalCharacter {
                position: 4,
                found: 'Ä'
            })
        );
        assert_eq!(Iban::parse(" "), Err(IbanError::TooShort { length: 0 }));
        assert_eq!(Iban::parse("IT6"), Err(IbanError::TooShort { length: 3 }));
        assert_eq!(
            Iban::parse("1T60X0542811101000000123456"),
            Err(IbanError::InvalidCountryCode {
                found: "1T".to_owned()
            })
        );
        assert_eq!(
            Iban::parse("ITX0X0542811101000000123456"),
            Err(IbanError::CheckDigitsNotNumeric {
                found: "X0".to_owned()
            })
        );
        let err = Iban::parse("US60X0542811101000000123456").unwrap_err();
        assert_eq!(
            err,
            IbanError::UnsupportedCountry {
                country: "US".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "country code \"US\" is not a supported IBAN country"
        );
    }

    #[test]
    fn italian_layout_errors() {
        assert_eq!(
            Iban::parse("IT6010542811101000000123456"),
            Err(IbanError::ItalianCinNotLetter { found: '1' })
        );
        assert_eq!(
            Iban::parse("IT60X05A2811101000000123456"),
            Err(IbanError::ItalianBankCodeNotNumeric {
                field: "ABI",
                found: "05A28".to_owned()
            })
        );
        assert_eq!(
            Iban::parse("IT60X05428111B1000000123456"),
            Err(IbanError::ItalianBankCodeNotNumeric {
                field: "CAB",
                found: "111B1".to_owned()
            })
        );
        assert_eq!(
            IbanError::ItalianCinNotLetter { found: '1' }.to_string(),
            "Italian CIN (5th character) is '1' but should be a letter"
        );
    }

    #[test]
    fn non_canonical_check_digits_are_rejected_even_though_mod97_is_1() {
        // Check digits 01 leave the same remainder as 98: find an account whose canonical
        // check digits are 98, then write them as 01.
        let bban = (0u64..)
            .map(|n| format!("X0542811101{n:012}"))
            .find(|bban| with_check_digits("IT", bban).starts_with("IT98"))
            .unwrap();
        let text = format!("IT01{bban}");
        assert_eq!(textbook_mod97(&text), 1);
        assert_eq!(
            Iban::parse(&text),
            Err(IbanError::WrongCheckDigits {
                found: 1,
                expected: 98
            })
        );
        assert_eq!(
            Iban::parse("IT00X0542811101000000123456"),
            Err(IbanError::WrongCheckDigits {
                found: 0,
                expected: 60
            })
        );
    }

    #[test]
    fn serde_uses_the_electronic_form() {
        let iban = Iban::parse("GB82 WEST 1234 5698 7654 32").unwrap();
        let text: String = iban.clone().into();
        assert_eq!(text, "GB82WEST12345698765432");
        assert_eq!(Iban::try_from(text).unwrap(), iban);
    }

    fn with_check_digits(country: &str, bban: &str) -> String {
        let check = 98 - textbook_mod97(&format!("{country}00{bban}"));
        format!("{country}{check:02}{bban}")
    }

    fn italian_bban() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[A-Z][0-9]{10}[0-9A-Z]{12}").unwrap()
    }

    proptest! {
        #[test]
        fn computed_check_digits_always_validate(bban in italian_bban()) {
            let text = with_check_digits("IT", &bban);
            let iban = Iban::parse(&text).unwrap();
            prop_assert_eq!(iban.as_str(), text.as_str());
            prop_assert_eq!(iban.bban(), bban.as_str());
        }

        #[test]
        fn computed_check_digits_validate_for_every_country(
            country_index in 0usize..LENGTHS.len(),
            seed in "[0-9A-Z]{40}",
        ) {
            let (country, length) = LENGTHS[country_index];
            let mut bban: String = seed[..length - 4].to_owned();
            if country == "IT" {
                bban = format!("X01234012345{}", &bban[12..]);
            }
            let text = with_check_digits(country, &bban);
            prop_assert!(Iban::parse(&text).is_ok(), "{} rejected", text);
        }

        /// MOD 97-10 catches every substitution of a digit by a digit or a letter by a
        /// letter (the change is `delta * 10^k` with `0 < |delta| < 97`, and 97 is prime).
        /// A digit swapped for a letter (or back) shifts the expanded number and is only
        /// caught with probability about 96/97, so it is not asserted here.
        #[test]
        fn changing_any_single_character_within_its_class_fails(
            bban in italian_bban(),
            index in 0usize..27,
            digit in "[0-9]",
            letter in "[A-Z]",
        ) {
            let text = with_check_digits("IT", &bban);
            let original = text.chars().nth(index).unwrap();
            let replacement = if original.is_ascii_digit() { digit } else { letter };
            let replacement = replacement.chars().next().unwrap();
            prop_assume!(replacement != original);
            let changed: String = text
                .chars()
                .enumerate()
                .map(|(i, c)| if i == index { replacement } else { c })
                .collect();
            prop_assert!(Iban::parse(&changed).is_err(), "{} parsed", changed);
        }

        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = Iban::parse(&input);
        }

        #[test]
        fn parse_never_panics_on_near_valid_input(input in "[A-Z]{2}[0-9]{2}[0-9A-Z ]{10,30}") {
            if let Ok(iban) = Iban::parse(&input) {
                prop_assert_eq!(Some(iban.as_str().len()), expected_length(iban.country_code()));
                let _ = iban.to_print_format();
            }
        }
    }
}
