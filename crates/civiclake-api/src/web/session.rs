//! `GET/POST /login` and `POST /logout`: keeping an access token in a browser cookie.
//!
//! Signing in only stores the token the user typed in the `civiclake_token` cookie
//! (HttpOnly, SameSite=Strict, Path=/; Secure behind an HTTPS reverse proxy); the
//! authentication layer reads that cookie like an `Authorization: Bearer` header and decides
//! what the token may do. Forms posted from another site are refused.

use super::{Chrome, TOKEN_COOKIE, error_page, render};
use askama::Template;
use axum::Form;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Longest token accepted in the cookie.
const MAX_TOKEN_LEN: usize = 4096;

#[derive(Debug, Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    error: Option<String>,
}

/// The body of `POST /login`.
#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `GET /login`: the sign-in form.
pub(crate) async fn login_form(headers: HeaderMap) -> Response {
    let page = LoginPage {
        chrome: Chrome::new(&headers, "login"),
        error: None,
    };
    render(StatusCode::OK, &page)
}

/// `POST /login` (`token=…`): stores the token in the cookie and goes to the home page.
pub(crate) async fn login(headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if !from_this_site(&headers) {
        return cross_site_refused(&headers);
    }
    let token = form.token.trim();
    if let Err(message) = check_token(token) {
        let page = LoginPage {
            chrome: Chrome::new(&headers, "login"),
            error: Some(message.to_string()),
        };
        return render(StatusCode::BAD_REQUEST, &page);
    }
    let cookie = format!(
        "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{}",
        if behind_https(&headers) {
            "; Secure"
        } else {
            ""
        }
    );
    see_home(cookie)
}

/// `POST /logout`: clears the cookie and goes to the home page.
pub(crate) async fn logout(headers: HeaderMap) -> Response {
    if !from_this_site(&headers) {
        return cross_site_refused(&headers);
    }
    see_home(format!(
        "{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
}

/// `303 See Other` to `/`, setting `cookie`.
fn see_home(cookie: String) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

/// Whether a token can be stored in a cookie as it is: 1–4096 visible ASCII characters
/// other than `"`, `,`, `;` and `\`.
fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("Enter your access token.");
    }
    let cookie_safe = |b: u8| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\');
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(cookie_safe) {
        return Err(
            "This is not an access token: a token is up to 4096 letters, digits and \
             punctuation marks, without spaces, quotes, commas, semicolons or backslashes.",
        );
    }
    Ok(())
}

/// Whether a form was posted from this site, not another (login CSRF): `Sec-Fetch-Site` must be
/// `same-origin` or `none` when present, and `Origin` must name this host when present.
pub(crate) fn from_this_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let site_ok = fetch_site.is_none_or(|s| s == "same-origin" || s == "none");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_ok = match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => true,
        Some(Ok(origin)) => host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o == host)
        }),
        Some(Err(_)) => false,
    };
    site_ok && origin_ok
}

/// The `403` page of a form posted from another site.
pub(crate) fn cross_site_refused(headers: &HeaderMap) -> Response {
    error_page(
        headers,
        StatusCode::FORBIDDEN,
        "This form was sent from another site and was refused. Open the sign-in page of \
         this civiclake and try again.",
    )
}

/// Whether a reverse proxy says the browser connected over HTTPS.
fn behind_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn tokens_must_fit_in_a_cookie() {
        assert!(check_token("cl_0123456789abcdef-._~+/=").is_ok());
        assert_eq!(check_token(""), Err("Enter your access token."));
        for bad in [
            "with space",
            "quo\"te",
            "a;b",
            "a,b",
            "back\\slash",
            "caffè",
        ] {
            assert!(check_token(bad).is_err(), "{bad}");
        }
        assert!(check_token(&"a".repeat(MAX_TOKEN_LEN)).is_ok());
        assert!(check_token(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }

    #[test]
    fn forms_from_other_sites_are_refused() {
        assert!(from_this_site(&headers(&[])), "curl sends neither header");
        assert!(from_this_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(from_this_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        assert!(!from_this_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!from_this_site(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null")
        ])));
        assert!(!from_this_site(&headers(&[(
            "origin",
            "http://127.0.0.1:8080"
        )])));
        assert_eq!(
            cross_site_refused(&HeaderMap::new()).status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn the_login_form_labels_its_field_and_shows_errors() {
        let page = LoginPage {
            chrome: Chrome::new(&HeaderMap::new(), "login"),
            error: Some("Enter your access token.".to_string()),
        };
        let html = page.render().unwrap();
        assert!(html.contains(r#"<label for="token">Access token</label>"#));
        assert!(html.contains(r#"id="token" name="token" type="password""#));
        assert!(html.contains(r#"aria-invalid="true" aria-describedby="token-error""#));
        assert!(html.contains(r#"id="token-error">Enter your access token.</p>"#));
    }

    #[test]
    fn https_is_detected_from_the_proxy_header() {
        assert!(behind_https(&headers(&[("x-forwarded-proto", "HTTPS")])));
        assert!(!behind_https(&headers(&[("x-forwarded-proto", "http")])));
        assert!(!behind_https(&headers(&[])));
    }
}
