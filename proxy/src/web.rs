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

/// One embedded file, with its ETag.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Self {
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .unwrap_or(HeaderValue::from_static("\"page\""));
        Self {
            body,
            content_type,
            etag,
        }
    }

    /// The file, or 304 when the browser already has this version. Browsers revalidate every
    /// time (`no-cache`), so a new gateway build is seen on the next load.
    fn respond(&self, request: &HeaderMap) -> Response {
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag == self.etag);
        let headers = [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::ETAG, self.etag.clone()),
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
        match fresh {
            true => (StatusCode::NOT_MODIFIED, headers).into_response(),
            false => (headers, self.body).into_response(),
        }
    }
}

macro_rules! asset {
    ($path:literal, $type:literal) => {
        LazyLock::new(|| {
            Asset::new(
                include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)),
                $type,
            )
        })
    };
}

static PAGE: LazyLock<Asset> = asset!("index.html", "text/html; charset=utf-8");
static SCRIPT: LazyLock<Asset> = asset!("dist/app.js", "text/javascript; charset=utf-8");
static STYLE: LazyLock<Asset> = asset!("app.css", "text/css; charset=utf-8");

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
        let mut request = axum::http::Request::get(path);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
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
}
