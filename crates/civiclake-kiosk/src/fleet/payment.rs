//! Paying at a kiosk. A [`PaymentMethod`] takes a cart of up to five pagoPA notices and
//! starts its payment; [`CheckoutClient`] sends the citizen to pagoPA Checkout (the
//! creditor's "carts" API: `POST /checkout/ec/v1/carts`, answered with a `302` to the
//! Checkout page for the cart). A card-present terminal that acts as a payment provider's
//! channel is another implementation of the same trait.

use civiclake_pa::{NoticeNumber, qr_payload};
use serde::Serialize;

use super::FleetError;
use super::transaction::MAX_NOTICES;

/// A notice in a cart.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CartNotice {
    pub notice_number: String,
    /// The creditor's fiscal code.
    pub fiscal_code: String,
    /// Euro cents.
    pub amount: u64,
    pub company_name: String,
    pub description: String,
}

/// Where Checkout sends the citizen back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReturnUrls {
    pub return_ok_url: String,
    pub return_cancel_url: String,
    pub return_error_url: String,
}

/// A cart for pagoPA Checkout, checked: 1 to 5 valid notices, no notice twice.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    payment_notices: Vec<CartNotice>,
    return_urls: ReturnUrls,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_notice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_cart: Option<String>,
}

impl Cart {
    /// A cart of `notices` (the kiosk's session id as `id_cart`), checked with pagoPA's
    /// rules.
    pub fn new(
        notices: Vec<CartNotice>,
        return_urls: ReturnUrls,
        email_notice: Option<String>,
        id_cart: Option<String>,
    ) -> Result<Self, FleetError> {
        if notices.is_empty() || notices.len() > MAX_NOTICES {
            return Err(FleetError::field(
                "notices",
                format!(
                    "a cart holds 1 to {MAX_NOTICES} notices, not {}",
                    notices.len()
                ),
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        let mut checked = Vec::with_capacity(notices.len());
        for (i, mut n) in notices.into_iter().enumerate() {
            let field = |f: &str| format!("notices[{i}].{f}");
            let number = NoticeNumber::parse(&n.notice_number)
                .map_err(|e| FleetError::field(&field("notice_number"), e.to_string()))?;
            qr_payload(&number, &n.fiscal_code, n.amount)
                .map_err(|e| FleetError::field(&field("notice"), e.to_string()))?;
            let key = format!("{}{}", n.fiscal_code.trim(), number);
            if seen.contains(&key) {
                return Err(FleetError::field(
                    &field("notice_number"),
                    format!("notice {number} is twice in the cart"),
                ));
            }
            seen.push(key);
            if n.description.chars().count() > 140 {
                return Err(FleetError::field(
                    &field("description"),
                    "at most 140 characters".into(),
                ));
            }
            n.notice_number = number.to_string();
            n.fiscal_code = n.fiscal_code.trim().to_string();
            checked.push(n);
        }
        for (f, url) in [
            ("return_urls.return_ok_url", &return_urls.return_ok_url),
            (
                "return_urls.return_cancel_url",
                &return_urls.return_cancel_url,
            ),
            (
                "return_urls.return_error_url",
                &return_urls.return_error_url,
            ),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(FleetError::field(
                    f,
                    format!("'{url}' is not an http(s) URL"),
                ));
            }
        }
        Ok(Self {
            payment_notices: checked,
            return_urls,
            email_notice,
            id_cart,
        })
    }

    /// The notices.
    pub fn notices(&self) -> &[CartNotice] {
        &self.payment_notices
    }

    /// The total, euro cents.
    pub fn total_cents(&self) -> u64 {
        self.payment_notices.iter().map(|n| n.amount).sum()
    }
}

/// How a payment started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PaymentStart {
    /// The citizen continues on this page (pagoPA Checkout), shown on the kiosk.
    Redirect { url: String },
    /// Paid on the spot (a card-present terminal), with the provider's receipt id.
    Paid { receipt: String },
}

/// A payment method failing.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The payment service refused the cart (its status and what it said).
    #[error("the payment service refused the cart ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The payment service could not be reached or answered otherwise than expected.
    #[error("the payment service is unavailable: {0}")]
    Unavailable(String),
}

/// A way to pay a cart at a kiosk.
#[async_trait::async_trait]
pub trait PaymentMethod: Send + Sync + std::fmt::Debug {
    /// Its name (`checkout`, `pos`...).
    fn name(&self) -> &str;

    /// Starts paying `cart`.
    async fn start(&self, cart: &Cart) -> Result<PaymentStart, PaymentError>;
}

/// pagoPA Checkout's carts API.
#[derive(Debug, Clone)]
pub struct CheckoutClient {
    base_url: String,
    http: reqwest::Client,
}

/// Production Checkout's API host.
pub const CHECKOUT_API: &str = "https://api.platform.pagopa.it";

impl CheckoutClient {
    /// A client of the carts API at `base_url` (`CHECKOUT_API`, the UAT host, or a local
    /// stand-in), with `http` configured by the caller (TLS roots, proxy, timeouts); the
    /// client never follows the redirect: its target is the page for the citizen.
    pub fn new(base_url: &str, http: reqwest::ClientBuilder) -> Result<Self, PaymentError> {
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
        })
    }
}

#[async_trait::async_trait]
impl PaymentMethod for CheckoutClient {
    fn name(&self) -> &str {
        "checkout"
    }

    async fn start(&self, cart: &Cart) -> Result<PaymentStart, PaymentError> {
        let url = format!("{}/checkout/ec/v1/carts", self.base_url);
        let response = self
            .http
            .post(&url)
            .json(cart)
            .send()
            .await
            .map_err(|e| PaymentError::Unavailable(format!("{url}: {e}")))?;
        let status = response.status();
        if status == reqwest::StatusCode::FOUND || status == reqwest::StatusCode::SEE_OTHER {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
                .ok_or_else(|| {
                    PaymentError::Unavailable(format!("{status} without a Location to follow"))
                })?;
            return Ok(PaymentStart::Redirect {
                url: location.to_string(),
            });
        }
        let body = response.text().await.unwrap_or_default();
        let message: String = body.chars().take(500).collect();
        if status.is_client_error() {
            Err(PaymentError::Refused {
                status: status.as_u16(),
                message,
            })
        } else {
            Err(PaymentError::Unavailable(format!("{status}: {message}")))
        }
    }
}
