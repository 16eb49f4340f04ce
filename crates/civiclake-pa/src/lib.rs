//! Italian public-administration building blocks for civiclake.
//!
//! Small, dependency-free validators for the identifiers that the school, kiosk and
//! council modules exchange with citizens and with the national payment infrastructure:
//!
//! * [`FiscalCode`] ([`fiscal_code`] module) — the *codice fiscale*. Guardians, pupils and
//!   applicants are identified by the 16-character code of a natural person
//!   ([`PersonFiscalCode`]: structure, omocodia, check character, decoded birth date, sex
//!   and birthplace); organisations by the 11-digit numeric code ([`CompanyFiscalCode`],
//!   same check digit as a *partita IVA*).
//! * [`NoticeNumber`] ([`pagopa`] module) — the 18-digit pagoPA *numero avviso* under
//!   which fees (school meals, permits, fines) are paid through pagoPA, with the mod-93
//!   IUV check digits, and [`qr_payload`] for the QR code printed on the notice.
//! * [`Iban`] ([`iban`] module) — the account to which refunds are sent: ISO 13616
//!   length per country and MOD 97 checksum, plus the Italian CIN/ABI/CAB/account split.
//!
//! Every parser normalises its input (trimming, upper-casing, removing the spaces of
//! printed forms where they occur), never panics, and reports what exactly is wrong through
//! a per-topic error enum ([`FiscalCodeError`], [`PagoPaError`], [`IbanError`]) whose
//! messages can be shown to an operator, e.g. `check character is 'X' but should be 'S'`.
//! The validated types serialise with serde as their normalised string form.

pub mod fiscal_code;
pub mod iban;
pub mod pagopa;

pub use fiscal_code::{
    CompanyFiscalCode, FiscalCode, FiscalCodeError, PersonFiscalCode, Sex, compute_check_char,
    compute_company_check_digit,
};
pub use iban::{Iban, IbanError};
pub use pagopa::{NoticeNumber, PagoPaError, qr_payload};
