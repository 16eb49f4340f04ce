//! Web pages: HTML rendered on the server from askama templates checked at compile time.
//!
//! Every page is a template in `templates/` extending `layout.html` (skip link, header with
//! the navigation, `main`, footer with the version), a struct deriving [`Template`] with a
//! [`Chrome`] field named `chrome`, a handler returning [`render`]'s response and a route in
//! [`router`]. The stylesheet and icon are embedded in the binary ([`assets`]). Pages work
//! without JavaScript and are sent with a strict Content-Security-Policy (no inline script
//! or style).

mod assets;
mod bus;
mod bus_catalog;
pub(crate) mod dashboards;
mod format;
mod home;
mod kiosk;
pub(crate) mod session;
mod sql;

use crate::AppState;
use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

/// Name of the cookie holding the access token of a signed-in browser.
pub(crate) const TOKEN_COOKIE: &str = "civiclake_token";

/// Policy of every page: resources only from this server, no inline code, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The pages and their static files.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home::home))
        .route("/dashboards", get(dashboards::index))
        .route("/dashboards/{id}", get(dashboards::page))
        .route("/dashboards/{id}/panels/{file}", get(dashboards::panel))
        .route(
            "/dashboards/{id}/panels/{panel}/sql",
            get(dashboards::panel_sql),
        )
        .route("/sql", get(sql::page))
        .route("/bus", get(bus::index))
        .route("/bus/subscriptions/{name}", get(bus::subscription))
        .route("/bus/subscriptions/{name}/replay", post(bus::replay))
        .route(
            "/bus/subscriptions/{name}/dead-letters/{seq}/redeliver",
            post(bus::redeliver),
        )
        .route("/bus/schemas/{type}", get(bus::schema))
        .route("/bus/catalog", get(bus_catalog::catalog))
        .route("/bus/catalog/{org}/{system}", get(bus_catalog::system))
        .route("/bus/map", get(bus_catalog::map))
        .route("/bus/map.svg", get(bus_catalog::map_svg))
        .route("/kiosk/plan", get(kiosk::plan))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/static/{name}", get(assets::serve))
}

/// What the layout shows around every page.
#[derive(Debug)]
pub(crate) struct Chrome {
    /// Version of civiclake (footer).
    pub(crate) version: &'static str,
    /// URL of the stylesheet, with its content hash.
    pub(crate) style_href: String,
    /// URL of the icon, with its content hash.
    pub(crate) icon_href: String,
    /// Whether the browser holds a token cookie (shows "Sign out" instead of "Sign in").
    pub(crate) signed_in: bool,
    /// Which navigation entry is the current page (`home`, `login`, or empty).
    pub(crate) current: &'static str,
}

impl Chrome {
    /// The chrome of a page named `current` in the navigation, for a request with `headers`.
    pub(crate) fn new(headers: &HeaderMap, current: &'static str) -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION"),
            style_href: assets::href("style.css"),
            icon_href: assets::href("favicon.svg"),
            signed_in: cookie(headers, TOKEN_COOKIE).is_some_and(|v| !v.is_empty()),
            current,
        }
    }
}

/// An error shown as a page.
#[derive(Debug, Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
}

/// A rendered page with `status` and the headers every page carries.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, page_headers(), Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "the page could not be rendered\n",
            )
                .into_response()
        }
    }
}

/// An error page: `status`, a heading and what went wrong.
pub(crate) fn error_page(headers: &HeaderMap, status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        chrome: Chrome::new(headers, ""),
        heading: status.canonical_reason().unwrap_or("Error").to_string(),
        message: message.to_string(),
    };
    render(status, &page)
}

fn page_headers() -> [(HeaderName, &'static str); 4] {
    [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        // Pages show live state and may depend on the signed-in token.
        (header::CACHE_CONTROL, "no-store"),
    ]
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_by_name_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; civiclake_token=abc"),
        );
        headers.append(header::COOKIE, HeaderValue::from_static("b=\"quoted\""));
        assert_eq!(cookie(&headers, TOKEN_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "a"), Some("1"));
        assert_eq!(cookie(&headers, "b"), Some("quoted"));
        assert_eq!(cookie(&headers, "civiclake"), None);
        assert_eq!(cookie(&HeaderMap::new(), TOKEN_COOKIE), None);
    }

    #[test]
    fn the_error_page_escapes_the_message_and_carries_the_page_headers() {
        let page = ErrorPage {
            chrome: Chrome::new(&HeaderMap::new(), ""),
            heading: "Not Found".to_string(),
            message: "<b>x</b> & y".to_string(),
        };
        let html = page.render().unwrap();
        assert!(html.contains("<h1>Not Found</h1>"), "{html}");
        assert!(html.contains("&#60;b&#62;x&#60;/b&#62; &#38; y"), "{html}");
        assert!(html.contains(&assets::href("style.css")));
        assert!(
            html.contains("href=\"/login\""),
            "signed out: a sign-in link"
        );
        let r = error_page(&HeaderMap::new(), StatusCode::NOT_FOUND, "gone");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
