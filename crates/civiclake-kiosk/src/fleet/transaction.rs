//! Transactions at a kiosk, checked before they are stored: pagoPA notices with
//! `civiclake-pa` (notice number, creditor fiscal code, QR payload, amount in cents).

use civiclake_pa::{NoticeNumber, qr_payload};
use serde::{Deserialize, Serialize};

use super::FleetError;
use super::registry::{Service, ServiceKind};

/// The most notices one payment (a pagoPA Checkout cart) holds.
pub const MAX_NOTICES: usize = 5;

/// How a citizen paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Card,
    Contactless,
    App,
    /// Nothing to pay (a certificate free of charge, a lookup, a call).
    None,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Card => "card",
            Method::Contactless => "contactless",
            Method::App => "app",
            Method::None => "none",
        }
    }
}

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Failed,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// One pagoPA notice paid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticePayment {
    /// The 18-digit notice number (NAV).
    pub notice_number: String,
    /// The creditor's 11-digit fiscal code.
    pub creditor_fiscal_code: String,
    pub amount_cents: u64,
    /// The notice's QR payload as scanned, when it was scanned.
    #[serde(default)]
    pub qr: Option<String>,
}

/// A transaction as a kiosk reports it (`devices/kiosk/{id}/transactions`, or HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transaction {
    /// The kiosk's id for it (unique per kiosk; a repeat is a duplicate).
    pub id: String,
    /// When it started (RFC 3339).
    pub time: chrono::DateTime<chrono::Utc>,
    /// The catalog's service.
    pub service: String,
    #[serde(default = "no_method")]
    pub method: Method,
    pub outcome: Outcome,
    /// Seconds from start to end.
    pub duration_s: f64,
    /// Total paid, cents (the notices' sum for a payment; a fee for a certificate).
    #[serde(default)]
    pub amount_cents: u64,
    /// Notices paid (payments only).
    #[serde(default)]
    pub notices: Vec<NoticePayment>,
    /// The office of a video call or of a scan's upload.
    #[serde(default)]
    pub office: Option<String>,
    /// Seconds in the video call (video calls only).
    #[serde(default)]
    pub call_s: Option<f64>,
    /// Pages scanned (scans only).
    #[serde(default)]
    pub pages: Option<u32>,
}

fn no_method() -> Method {
    Method::None
}

/// A checked transaction, with its service's kind.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedTransaction {
    pub kiosk: String,
    pub kind: ServiceKind,
    pub tx: Transaction,
}

impl Transaction {
    /// Reads a transaction from JSON.
    pub fn parse(payload: &[u8]) -> Result<Self, FleetError> {
        serde_json::from_slice(payload)
            .map_err(|e| FleetError::field("transaction", format!("not a transaction: {e}")))
    }

    /// Checks the transaction of `kiosk` against the services it offers; an invalid one is
    /// refused with the field and the reason.
    pub fn check(
        self,
        kiosk: &str,
        offered: &[String],
        catalog: &[Service],
    ) -> Result<CheckedTransaction, FleetError> {
        if self.id.trim().is_empty() || self.id.len() > 64 {
            return Err(FleetError::field("id", "1 to 64 characters".into()));
        }
        let Some(service) = catalog.iter().find(|s| s.id == self.service) else {
            return Err(FleetError::field(
                "service",
                format!("'{}' is not in the service catalog", self.service),
            ));
        };
        if !offered.contains(&self.service) {
            return Err(FleetError::field(
                "service",
                format!("kiosk {kiosk} does not offer '{}'", self.service),
            ));
        }
        if !(self.duration_s.is_finite() && self.duration_s >= 0.0) {
            return Err(FleetError::field(
                "duration_s",
                format!("{} is not a duration in seconds", self.duration_s),
            ));
        }
        match service.kind {
            ServiceKind::Payment => self.check_payment()?,
            _ if !self.notices.is_empty() => {
                return Err(FleetError::field(
                    "notices",
                    format!(
                        "only payments pay notices, and '{}' is not one",
                        self.service
                    ),
                ));
            }
            ServiceKind::VideoCall => {
                if self.office.as_deref().is_none_or(|o| o.trim().is_empty()) {
                    return Err(FleetError::field(
                        "office",
                        "a video call is with an office".into(),
                    ));
                }
                if let Some(call) = self.call_s
                    && !(call.is_finite() && call >= 0.0 && call <= self.duration_s)
                {
                    return Err(FleetError::field(
                        "call_s",
                        format!("{call} s of call in a {} s transaction", self.duration_s),
                    ));
                }
            }
            _ => {}
        }
        if self.amount_cents > 0
            && self.method == Method::None
            && self.outcome == Outcome::Completed
        {
            return Err(FleetError::field(
                "method",
                format!(
                    "{} cents were paid: by card, contactless or app",
                    self.amount_cents
                ),
            ));
        }
        Ok(CheckedTransaction {
            kiosk: kiosk.into(),
            kind: service.kind,
            tx: self,
        })
    }

    fn check_payment(&self) -> Result<(), FleetError> {
        if self.notices.is_empty() || self.notices.len() > MAX_NOTICES {
            return Err(FleetError::field(
                "notices",
                format!(
                    "a payment pays 1 to {MAX_NOTICES} notices, not {}",
                    self.notices.len()
                ),
            ));
        }
        let mut total = 0u64;
        for (i, n) in self.notices.iter().enumerate() {
            let field = |f: &str| format!("notices[{i}].{f}");
            let notice = NoticeNumber::parse(&n.notice_number)
                .map_err(|e| FleetError::field(&field("notice_number"), e.to_string()))?;
            let payload =
                qr_payload(&notice, &n.creditor_fiscal_code, n.amount_cents).map_err(|e| {
                    let f = match e {
                        civiclake_pa::PagoPaError::AmountZero
                        | civiclake_pa::PagoPaError::AmountTooLarge { .. } => "amount_cents",
                        _ => "creditor_fiscal_code",
                    };
                    FleetError::field(&field(f), e.to_string())
                })?;
            if let Some(qr) = &n.qr
                && qr.trim() != payload
            {
                return Err(FleetError::field(
                    &field("qr"),
                    format!("the QR code says '{}', the notice '{payload}'", qr.trim()),
                ));
            }
            if self
                .notices
                .iter()
                .take(i)
                .any(|m| m.notice_number.split_whitespace().collect::<String>() == notice.as_str())
            {
                return Err(FleetError::field(
                    &field("notice_number"),
                    format!("notice {notice} is twice in the payment"),
                ));
            }
            total += n.amount_cents;
        }
        if self.outcome == Outcome::Completed && self.amount_cents != total {
            return Err(FleetError::field(
                "amount_cents",
                format!(
                    "{} cents paid for notices of {total} cents",
                    self.amount_cents
                ),
            ));
        }
        Ok(())
    }
}
