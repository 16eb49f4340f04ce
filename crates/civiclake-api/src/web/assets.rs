//! Static assets (stylesheet, icon) embedded in the binary and served at `/static/{name}`.
//!
//! Pages link an asset as `/static/{name}?v={hash}` ([`href`]); a request carrying the
//! current hash is cached for a year (`immutable`), any other one is revalidated with the
//! `ETag` (the same hash), so a new binary with a changed file is picked up at once.

use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::LazyLock;

/// An embedded file.
#[derive(Debug)]
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// Every file under `/static/`.
const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/style.css"),
    },
    Asset {
        name: "dashboard.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/dashboard.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../../assets/favicon.svg"),
    },
];

/// `Cache-Control` of a request with the current version in its URL.
const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of any other request: store, but revalidate with the `ETag` each time.
const CACHE_REVALIDATE: &str = "no-cache";

/// Content hash of each asset (same order as [`ASSETS`]): 16 hex digits of FNV-1a 64.
static HASHES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("{:016x}", fnv1a64(a.bytes)))
        .collect()
});

/// FNV-1a, 64 bits: a stable content hash for cache validation (not for security).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn find(name: &str) -> Option<(&'static Asset, &'static str)> {
    let i = ASSETS.iter().position(|a| a.name == name)?;
    Some((&ASSETS[i], HASHES[i].as_str()))
}

/// The URL of an embedded asset with its content hash (`/static/style.css?v=…`).
pub(crate) fn href(name: &str) -> String {
    match find(name) {
        Some((asset, hash)) => format!("/static/{}?v={hash}", asset.name),
        None => format!("/static/{name}"),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct AssetQuery {
    v: Option<String>,
}

/// `GET /static/{name}`: an embedded asset, `304` when the client's copy is current.
pub(crate) async fn serve(
    Path(name): Path<String>,
    Query(query): Query<AssetQuery>,
    headers: HeaderMap,
) -> Response {
    let Some((asset, hash)) = find(&name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no static file named {name:?}\n"),
        )
            .into_response();
    };
    let etag = format!("\"{hash}\"");
    let cache = if query.v.as_deref() == Some(hash) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    };
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, cache.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| etag_matches(v, &etag))
    {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, asset.content_type)],
        asset.bytes,
    )
        .into_response()
}

/// Whether an `If-None-Match` value names `etag` (or is `*`); weak validators match too.
fn etag_matches(value: &HeaderValue, etag: &str) -> bool {
    value.to_str().is_ok_and(|v| {
        v.split(',')
            .map(|t| t.trim())
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_hash_and_a_versioned_href() {
        for asset in ASSETS {
            let (_, hash) = find(asset.name).unwrap();
            assert_eq!(hash.len(), 16);
            assert_eq!(href(asset.name), format!("/static/{}?v={hash}", asset.name));
            assert!(!asset.bytes.is_empty());
        }
        assert_eq!(href("missing.css"), "/static/missing.css");
    }

    #[test]
    fn fnv1a64_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = "\"0123456789abcdef\"";
        let m = |v: &str| etag_matches(&HeaderValue::from_str(v).unwrap(), tag);
        assert!(m(tag));
        assert!(m("W/\"0123456789abcdef\""));
        assert!(m("\"other\", \"0123456789abcdef\""));
        assert!(m("*"));
        assert!(!m("\"other\""));
        assert!(!m(""));
    }
}
