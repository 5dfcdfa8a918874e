//! The wallet page at `/`: a person connects a Solana wallet, deposits, tops up, logs in, makes
//! API keys and sees usage (source in `proxy/web/`). The built files are embedded in the
//! binary, so the page is always the one this gateway was built with and serving it needs no
//! Node and no files at run time.
use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::LazyLock,
};

/// The page may load only its own script and style and talk to the gateway, the cluster's RPC
/// and the relays (whose addresses come from the discovery document at run time).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' http: https: ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file (and, for the script, its gzipped copy), with their ETags.
struct Asset {
    body: &'static [u8],
    gzipped: Option<(&'static [u8], HeaderValue)>,
    content_type: &'static str,
    etag: HeaderValue,
}

/// A strong ETag for `bytes` (the gzipped copy is a representation of its own, with its own).
fn etag(bytes: &[u8]) -> HeaderValue {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
        .unwrap_or(HeaderValue::from_static("\"page\""))
}

/// Whether the request's `Accept-Encoding` takes gzip (and does not refuse it with `q=0`).
fn takes_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

impl Asset {
    fn new(
        body: &'static [u8],
        gzipped: Option<&'static [u8]>,
        content_type: &'static str,
    ) -> Self {
        Self {
            body,
            gzipped: gzipped.map(|bytes| (bytes, etag(bytes))),
            content_type,
            etag: etag(body),
        }
    }

    /// The file (gzipped when the browser takes it), or 304 when the browser already has this
    /// version. Browsers revalidate every time (`no-cache`), so a new gateway build is seen on
    /// the next load.
    fn respond(&self, request: &HeaderMap) -> Response {
        let (body, etag, gzip) = match &self.gzipped {
            Some((bytes, etag)) if takes_gzip(request) => (*bytes, etag, true),
            _ => (self.body, &self.etag, false),
        };
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag == etag);
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, etag.clone()),
            (header::VARY, HeaderValue::from_static("accept-encoding")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ];
        let mut response = match fresh {
            true => (StatusCode::NOT_MODIFIED, headers).into_response(),
            false => (headers, body).into_response(),
        };
        if gzip {
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }
}

macro_rules! embedded {
    ($path:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path))
    };
}

static PAGE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(embedded!("index.html"), None, "text/html; charset=utf-8"));
static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        embedded!("dist/app.js"),
        Some(embedded!("dist/app.js.gz")),
        "text/javascript; charset=utf-8",
    )
});
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| Asset::new(embedded!("app.css"), None, "text/css; charset=utf-8"));

/// The page's routes, merged into the API's router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { PAGE.respond(&headers) }),
        )
        .route(
            "/app.js",
            get(|headers: HeaderMap| async move { SCRIPT.respond(&headers) }),
        )
        .route(
            "/app.css",
            get(|headers: HeaderMap| async move { STYLE.respond(&headers) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;
    use tower::ServiceExt;

    async fn get(path: &str, etag: Option<&HeaderValue>) -> Response {
        get_with(path, etag, None).await
    }

    async fn get_with(path: &str, etag: Option<&HeaderValue>, encoding: Option<&str>) -> Response {
        let mut request = axum::http::Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(encoding) = encoding {
            request = request.header(header::ACCEPT_ENCODING, encoding);
        }
        routes::<()>()
            .with_state(())
            .oneshot(request.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_its_script_and_style_are_served_with_a_strict_policy() {
        let page = get("/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        let html = to_bytes(page.into_body(), usize::MAX).await.unwrap();
        let html = std::str::from_utf8(&html).unwrap();
        assert!(html.contains(r#"<script type="module" src="/app.js">"#));
        assert!(html.contains(r#"href="/app.css""#));

        let script = get("/app.js", None).await;
        assert_eq!(script.status(), StatusCode::OK);
        assert_eq!(
            script.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            to_bytes(script.into_body(), usize::MAX)
                .await
                .unwrap()
                .len()
                > 1000
        );
        assert_eq!(get("/app.css", None).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_browser_with_the_current_version_gets_304_and_an_old_one_the_file() {
        let first = get("/app.js", None).await;
        let etag = first.headers()[header::ETAG].clone();
        assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
        let again = get("/app.js", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(to_bytes(again.into_body(), usize::MAX)
            .await
            .unwrap()
            .is_empty());
        let stale = get("/app.js", Some(&HeaderValue::from_static("\"old\""))).await;
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_browser_that_takes_gzip_gets_the_gzipped_script_with_the_same_content() {
        use std::io::Read;
        let plain = get("/app.js", None).await;
        assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
        let plain_etag = plain.headers()[header::ETAG].clone();
        let plain = to_bytes(plain.into_body(), usize::MAX).await.unwrap();

        let zipped = get_with("/app.js", None, Some("br, gzip;q=0.8, deflate")).await;
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(zipped.headers()[header::VARY], "accept-encoding");
        let zipped_etag = zipped.headers()[header::ETAG].clone();
        assert_ne!(
            zipped_etag, plain_etag,
            "each representation has its own ETag"
        );
        let zipped = to_bytes(zipped.into_body(), usize::MAX).await.unwrap();
        assert!(zipped.len() < plain.len() / 2);
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain, "the gzipped copy is the same script");

        let refused = get_with("/app.js", None, Some("gzip;q=0, identity")).await;
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
        let fresh = get_with("/app.js", Some(&zipped_etag), Some("gzip")).await;
        assert_eq!(fresh.status(), StatusCode::NOT_MODIFIED);
        let page = get_with("/", None, Some("gzip")).await;
        assert!(page.headers().get(header::CONTENT_ENCODING).is_none());
    }
}
