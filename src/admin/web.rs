//! The browser side of the dashboard: the embedded pages and assets, the security headers,
//! the session cookie, the same-origin check and the urlencoded form reader.
//!
//! Owns no state. The pages are static files compiled into the binary; the only value put into
//! one at runtime is the session's CSRF token (base64url, so it needs no escaping), and the
//! login page's message is one of a few fixed strings, escaped anyway.

use std::time::Duration;

use crate::http::{Request, Response};

const LOGIN_HTML: &str = include_str!("assets/login.html");
const DASHBOARD_HTML: &str = include_str!("assets/dashboard.html");
/// Each page's script is served with the shared helpers (`common.js`) in front of it.
const APP_JS: &str = concat!(
    include_str!("assets/common.js"),
    include_str!("assets/app.js")
);
const APP_CSS: &str = include_str!("assets/app.css");
const KEYS_HTML: &str = include_str!("assets/keys.html");
const KEYS_JS: &str = concat!(
    include_str!("assets/common.js"),
    include_str!("assets/keys.js")
);
const KEYS_CSS: &str = include_str!("assets/keys.css");

/// The session cookie's name.
pub const COOKIE: &str = "noviqi_admin";

/// The Content-Security-Policy of every admin response: no inline script or style, nothing
/// from elsewhere, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers every admin response carries.
pub fn secure(response: Response) -> Response {
    response
        .with_header("content-security-policy", CSP)
        .with_header("x-frame-options", "DENY")
        .with_header("referrer-policy", "no-referrer")
        .with_header("x-content-type-options", "nosniff")
        .with_header("cache-control", "no-store")
        .with_header("cross-origin-opener-policy", "same-origin")
        .with_header("cross-origin-resource-policy", "same-origin")
}

pub fn text(status: u16, body: &'static str) -> Response {
    Response::bytes(status, "text/plain; charset=utf-8", body)
}

fn html(status: u16, body: String) -> Response {
    Response::bytes(status, "text/html; charset=utf-8", body)
}

/// The login page, with an optional message (status 200 when there is nothing to say).
pub fn login_page(status: u16, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    html(status, LOGIN_HTML.replace("<!--MESSAGE-->", &message))
}

/// The dashboard page with the session's CSRF token in its logout form.
pub fn dashboard(csrf: &str) -> Response {
    html(200, DASHBOARD_HTML.replace("{{CSRF}}", &escape(csrf)))
}

/// The Keys page, with the session's CSRF token for its API calls and its logout form.
pub fn keys_page(csrf: &str) -> Response {
    html(200, KEYS_HTML.replace("{{CSRF}}", &escape(csrf)))
}

pub fn asset_keys_js() -> Response {
    Response::bytes(200, "text/javascript; charset=utf-8", KEYS_JS)
}

pub fn asset_keys_css() -> Response {
    Response::bytes(200, "text/css; charset=utf-8", KEYS_CSS)
}

pub fn asset_js() -> Response {
    Response::bytes(200, "text/javascript; charset=utf-8", APP_JS)
}

pub fn asset_css() -> Response {
    Response::bytes(200, "text/css; charset=utf-8", APP_CSS)
}

/// `303 See Other` to `location` (after a form post, the browser GETs it).
pub fn redirect(location: &str) -> Response {
    Response::new(303).with_header("location", location.to_owned())
}

/// The `Set-Cookie` value for a new session.
pub fn cookie(id: &str, ttl: Duration, tls: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/admin; Max-Age={}; HttpOnly; SameSite=Strict{}",
        ttl.as_secs(),
        if tls { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(tls: bool) -> String {
    format!(
        "{COOKIE}=; Path=/admin; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if tls { "; Secure" } else { "" }
    )
}

/// The session id from the request's `Cookie` header(s).
pub fn session_cookie<'r>(req: &'r Request<'_>) -> Option<&'r str> {
    req.headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
        .filter_map(|(_, value)| std::str::from_utf8(value).ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then_some(value)
        })
}

/// Whether a state-changing request may be trusted to come from our own page.
///
/// `Sec-Fetch-Site` (sent by every current browser) must be `same-origin` or `none` (typed
/// URL, bookmark). Without it (an old browser or a script), an `Origin` naming another host
/// than `Host` is refused; `Origin: null` is let through, since Chromium sends it on
/// same-origin form posts from a `no-referrer` page, and the SameSite=Strict cookie (plus the
/// CSRF token on logout) still stands.
pub fn same_origin(req: &Request<'_>) -> bool {
    if let Some(site) = req.header("sec-fetch-site") {
        let site = site.trim();
        return site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none");
    }
    match (req.header("origin").map(str::trim), req.header("host")) {
        (None | Some("null"), _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host.trim())),
        (Some(_), None) => false,
    }
}

/// The value of field `name` in an `application/x-www-form-urlencoded` body.
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        (percent_decode(k)? == name.as_bytes())
            .then(|| percent_decode(v).and_then(|v| String::from_utf8(v).ok()))
            .flatten()
    })
}

/// `+` is a space, `%XX` a byte; `None` for a broken escape.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// Text made safe for HTML content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_decoded() {
        let body = b"a=1&password=p%40ss+word%21&csrf=x";
        assert_eq!(form_value(body, "password").as_deref(), Some("p@ss word!"));
        assert_eq!(form_value(body, "csrf").as_deref(), Some("x"));
        assert_eq!(form_value(body, "missing"), None);
        assert_eq!(form_value(b"password=%zz", "password"), None);
        assert_eq!(form_value(b"password=%4", "password"), None);
        assert_eq!(form_value(b"password", "password").as_deref(), Some(""));
    }

    #[test]
    fn cookies_carry_the_attributes() {
        let c = cookie("abc", Duration::from_secs(60), false);
        assert_eq!(
            c,
            "noviqi_admin=abc; Path=/admin; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(cookie("abc", Duration::from_secs(60), true).ends_with("; Secure"));
        assert!(clear_cookie(true).contains("Max-Age=0"));
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for page in [LOGIN_HTML, DASHBOARD_HTML, KEYS_HTML] {
            assert!(!page.contains("<script>"), "inline script");
            assert!(!page.contains("style="), "inline style attribute");
            assert!(!page.contains("<style"), "inline style element");
            assert!(!page.contains(" onclick=") && !page.contains(" onsubmit="));
            assert!(!page.contains("http://") && !page.contains("https://"));
        }
        assert!(LOGIN_HTML.contains("<form method=\"post\" action=\"/admin/login\""));
        assert!(DASHBOARD_HTML.contains("{{CSRF}}"));
        assert!(KEYS_HTML.contains("{{CSRF}}"));
        for js in [APP_JS, KEYS_JS] {
            assert!(
                !js.contains("innerHTML"),
                "build DOM nodes, not HTML strings"
            );
        }
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
