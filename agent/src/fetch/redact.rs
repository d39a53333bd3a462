//! A manifest URL as it may be shown: in logs, errors and `status`. Credentials can sit
//! in a URL (`https://user:pass@host/…`, a presigned `?X-Amz-Signature=…`, a token in the
//! fragment); those parts are replaced with `***`, the rest (scheme, host, port, path)
//! stays so the operator still sees where the agent looks.

/// What stands in for a hidden part.
const HIDDEN: &str = "***";

/// `url` with its userinfo, query and fragment hidden. Anything without `://` (a path)
/// is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{HIDDEN}@{host}"),
        None => authority.to_string(),
    };
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    let tail = match tail.chars().next() {
        Some(mark) => format!("{mark}{HIDDEN}"),
        None => String::new(),
    };
    format!("{scheme}://{host}{path}{tail}")
}

/// `text` (an error from the HTTP stack, which may quote the URL) with the URL and each
/// hidden part of it replaced as [`redact_url`] would.
pub fn scrub(text: &str, url: &str) -> String {
    let mut text = text.replace(url, &redact_url(url));
    let Some((_, rest)) = url.split_once("://") else {
        return text;
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
    let tail = rest.find(['?', '#']).map(|at| &rest[at + 1..]);
    for secret in [userinfo, tail].into_iter().flatten() {
        if !secret.is_empty() {
            text = text.replace(secret, HIDDEN);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_hidden_and_the_place_is_kept() {
        for (url, shown) in [
            ("https://cdn.example/m.ewm", "https://cdn.example/m.ewm"),
            (
                "https://user:secret@cdn.example:8443/net/m.ewm",
                "https://***@cdn.example:8443/net/m.ewm",
            ),
            (
                "https://bucket.s3.example/m.ewm?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc",
                "https://bucket.s3.example/m.ewm?***",
            ),
            ("https://u:p@h/m?sig=1#frag", "https://***@h/m?***"),
            ("https://h/m#token=1", "https://h/m#***"),
            ("https://u:p@h?x=1", "https://***@h?***"),
            ("https://u:p@h", "https://***@h"),
            // An '@' in the path is not userinfo.
            ("https://h/a@b", "https://h/a@b"),
            ("http://[2001:db8::1]:80/m", "http://[2001:db8::1]:80/m"),
            ("file:///etc/edgewire/m.ewm", "file:///etc/edgewire/m.ewm"),
            ("/etc/edgewire/m.ewm", "/etc/edgewire/m.ewm"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn an_error_quoting_the_url_or_its_parts_is_scrubbed() {
        let url = "https://user:pw@h/m?X-Amz-Signature=abc";
        assert_eq!(
            scrub(&format!("bad uri {url}: nope"), url),
            "bad uri https://***@h/m?***: nope"
        );
        assert_eq!(
            scrub("invalid query X-Amz-Signature=abc; user:pw", url),
            "invalid query ***; ***"
        );
        assert_eq!(scrub("connection reset", "/a/path"), "connection reset");
    }
}
