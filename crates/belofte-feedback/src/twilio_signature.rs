//! Twilio's `X-Twilio-Signature`, computed and checked exactly as Twilio's own libraries do.
//!
//! Twilio signs every webhook request: HMAC-SHA1, keyed with the account's auth token, over
//! the full URL it requested followed by every POST parameter as `name` + `value`, sorted by
//! name, with no separators; the header carries the digest in base64. Nothing but the auth
//! token is secret, so anyone who knows the URL can post a status callback: an unchecked
//! callback could mark any message delivered or failed.
//!
//! What the libraries do beyond that rule, and so what is done here:
//! - **Repeated parameters** (`Digits=5678&Digits=1234`): the distinct values of a name are
//!   sorted and each is appended as `name` + `value`; an exact duplicate pair counts once
//!   (twilio-python: `sorted(set(values))`, twilio-node: `Array.from(new Set(v)).sort()`).
//! - **The port**: Twilio's back end is not consistent about signing `https://host/…` or
//!   `https://host:443/…`, so both libraries accept the signature of the URL without its port
//!   and of the URL with its port (the default one, 443 for https and 80 otherwise, added when
//!   none is written).
//! - **The legacy query string** (twilio-node only): the same two URLs with the query decoded
//!   and encoded again as Node's `querystring` module does, for URLs whose query Twilio once
//!   signed in that spelling.
//!
//! Not covered: JSON webhooks signed through a `bodySHA256` query parameter, and Webhooks
//! Rules signing with a shared key and HMAC-SHA256 (`X-Twilio-Webhooks-Signature-Settings`).
//! Status callbacks are form posts signed with the auth token.
//!
//! The URL must be the one Twilio requested, spelled as Twilio was given it: the public
//! scheme and host (not the listener's loopback address behind a proxy) and the query string
//! exactly as it arrived, not decoded and encoded again.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::hmac;

/// Why a webhook request is refused. Every variant means "answer 403 and record nothing".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Twilio-Signature` header, or an empty one.
    #[error("no X-Twilio-Signature header")]
    Missing,
    /// The header matches none of the URL spellings Twilio may have signed.
    #[error("X-Twilio-Signature does not match")]
    Mismatch,
    /// No auth token is configured. An empty HMAC key is public, so nothing can be verified.
    #[error("no Twilio auth token configured: webhooks cannot be verified")]
    NoAuthToken,
}

/// The signature Twilio sends for a request to `url` with the POST parameters `params`
/// (in any order): base64 of HMAC-SHA1(auth token, url + sorted name/value pairs).
///
/// This is the spelling of `url` as given; [`verify`] also tries the other spellings.
pub fn expected(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    STANDARD.encode(hmac::sign(&key, &signed_data(url, params)).as_ref())
}

/// Checks the `X-Twilio-Signature` header of a request to `url` with the POST parameters
/// `params`, trying every URL spelling Twilio's libraries try (see the module documentation).
/// The comparison is constant-time (ring's `hmac::verify`).
pub fn verify(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    if auth_token.is_empty() {
        return Err(SignatureError::NoAuthToken);
    }
    let header = header.map(str::trim).unwrap_or_default();
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    // A header that is not a base64 SHA-1 digest cannot match any candidate.
    let tag = STANDARD
        .decode(header)
        .map_err(|_| SignatureError::Mismatch)?;
    if tag.len()
        != hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
            .digest_algorithm()
            .output_len()
    {
        return Err(SignatureError::Mismatch);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth_token.as_bytes());
    let matched = candidate_urls(url)
        .iter()
        .any(|candidate| hmac::verify(&key, &signed_data(candidate, params), &tag).is_ok());
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `url` followed by every distinct (name, value) pair in name order, then value order.
/// Rust's `str` order is byte order, which for UTF-8 is code point order: Python's.
fn signed_data(url: &str, params: &[(String, String)]) -> Vec<u8> {
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut data = String::with_capacity(
        url.len()
            + pairs
                .iter()
                .map(|(name, value)| name.len() + value.len())
                .sum::<usize>(),
    );
    data.push_str(url);
    for (name, value) in pairs {
        data.push_str(name);
        data.push_str(value);
    }
    data.into_bytes()
}

/// The spellings of `url` that Twilio may have signed, without duplicates: as given, without
/// the port, with the port, and those two with the legacy query string.
fn candidate_urls(url: &str) -> Vec<String> {
    let mut candidates = vec![url.to_string()];
    if let Some(parts) = UrlParts::split(url) {
        let without = parts.without_port();
        let with = parts.with_port();
        for spelled in [without, with] {
            if let Some(legacy) = with_legacy_query(&spelled) {
                candidates.push(legacy);
            }
            candidates.push(spelled);
        }
    }
    let mut unique: Vec<String> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if !unique.contains(&candidate) {
            unique.push(candidate);
        }
    }
    unique
}

/// `scheme://userinfo@host:port` + the rest, cut up only as far as the port handling needs.
struct UrlParts<'a> {
    scheme: &'a str,
    /// `userinfo@`, or empty.
    userinfo: &'a str,
    host: &'a str,
    port: Option<&'a str>,
    /// Path, query and fragment, as written.
    rest: &'a str,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Option<UrlParts<'a>> {
        let (scheme, after) = url.split_once("://")?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return None;
        }
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(authority_end);
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => authority.split_at(at + 1),
            None => ("", authority),
        };
        // An IPv6 literal keeps its colons inside the brackets.
        let host_end = if hostport.starts_with('[') {
            hostport.find(']').map(|i| i + 1)?
        } else {
            hostport.find(':').unwrap_or(hostport.len())
        };
        let (host, port_part) = hostport.split_at(host_end);
        let port = match port_part.strip_prefix(':') {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => Some(p),
            None if port_part.is_empty() => None,
            // `host:` or `host:abc`: not a URL Twilio calls; leave it to the exact spelling.
            _ => return None,
        };
        Some(UrlParts {
            scheme,
            userinfo,
            host,
            port,
            rest,
        })
    }

    fn without_port(&self) -> String {
        format!(
            "{}://{}{}{}",
            self.scheme, self.userinfo, self.host, self.rest
        )
    }

    fn with_port(&self) -> String {
        let default = if self.scheme.eq_ignore_ascii_case("https") {
            "443"
        } else {
            "80"
        };
        let port = self.port.unwrap_or(default);
        format!(
            "{}://{}{}:{}{}",
            self.scheme, self.userinfo, self.host, port, self.rest
        )
    }
}

/// twilio-node's `withLegacyQuerystring`: the query parsed and written again by Node's
/// `querystring` module (values of a repeated name grouped at its first place, every byte
/// outside `A-Za-z0-9-_.!~*'()` percent-encoded). `None` without a query, or with a
/// fragment (which that function would put before the query).
fn with_legacy_query(url: &str) -> Option<String> {
    let (base, query) = url.split_once('?')?;
    if query.is_empty() || query.contains('#') {
        return None;
    }
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let (name, value) = (query_decode(name), query_decode(value));
        match grouped.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    let encoded: Vec<String> = grouped
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| format!("{}={}", query_encode(name), query_encode(value)))
        })
        .collect();
    Some(format!("{base}?{}", encoded.join("&")))
}

/// `+` is a space; valid `%XX` escapes are decoded, invalid ones kept as written.
fn query_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                bytes.get(i + 1).and_then(|&h| hex_value(h)),
                bytes.get(i + 2).and_then(|&l| hex_value(l)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    /// The worked example of Twilio's "Webhooks security" page.
    fn docs_params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ])
    }

    /// twilio-python's `tests/unit/test_request_validator.py`.
    fn python_params() -> Vec<(String, String)> {
        pairs(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn twilio_docs_example() {
        assert_eq!(
            expected("12345", URL, &docs_params()),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        assert_eq!(
            verify(
                "12345",
                URL,
                &docs_params(),
                Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
            ),
            Ok(())
        );
    }

    #[test]
    fn twilio_python_vectors() {
        let params = python_params();
        assert_eq!(
            expected("12345", URL, &params),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        assert_eq!(
            verify("12345", URL, &params, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Ok(())
        );
        // test_validation_removes_port_on_https
        let with_port = URL.replace(".com", ".com:1234");
        assert_eq!(
            verify(
                "12345",
                &with_port,
                &params,
                Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            ),
            Ok(())
        );
        // test_validation_removes_port_on_http: signed with the port as written.
        let http_port = with_port.replace("https", "http");
        assert_eq!(
            verify(
                "12345",
                &http_port,
                &params,
                Some("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=")
            ),
            Ok(())
        );
        // test_validation_adds_port_on_https / _on_http
        assert_eq!(
            verify("12345", URL, &params, Some("kvajT1Ptam85bY51eRf/AJRuM3w=")),
            Ok(())
        );
        let http = URL.replace("https", "http");
        assert_eq!(
            verify(
                "12345",
                &http,
                &params,
                Some("0ZXoZLH/DfblKGATFgpif+LLRf4=")
            ),
            Ok(())
        );
    }

    #[test]
    fn repeated_parameters_sorted_and_deduplicated() {
        // test_compute_signature_duplicate_multi_dict
        let params = pairs(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            expected("12345", URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn order_of_parameters_does_not_matter() {
        let mut params = docs_params();
        params.reverse();
        assert_eq!(
            verify("12345", URL, &params, Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=")),
            Ok(())
        );
    }

    #[test]
    fn tampered_missing_and_other_url_are_refused() {
        let good = Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        let mut tampered = docs_params();
        if let Some(digits) = tampered.iter_mut().find(|(n, _)| n == "Digits") {
            digits.1 = "9999".into();
        }
        assert_eq!(
            verify("12345", URL, &tampered, good),
            Err(SignatureError::Mismatch)
        );
        let mut extra = docs_params();
        extra.push(("MessageStatus".into(), "delivered".into()));
        assert_eq!(
            verify("12345", URL, &extra, good),
            Err(SignatureError::Mismatch)
        );
        let fewer: Vec<_> = docs_params().into_iter().skip(1).collect();
        assert_eq!(
            verify("12345", URL, &fewer, good),
            Err(SignatureError::Mismatch)
        );

        assert_eq!(
            verify("12345", URL, &docs_params(), None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify("12345", URL, &docs_params(), Some(" ")),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify("12345", URL, &docs_params(), Some("not base64!")),
            Err(SignatureError::Mismatch)
        );
        // One byte short, as base64.
        assert_eq!(
            verify(
                "12345",
                URL,
                &docs_params(),
                Some("0/KCTR6DLpKmkAf8muzZqo1nDg")
            ),
            Err(SignatureError::Mismatch)
        );
        // Replayed against another URL: another query, path, host or scheme.
        for other in [
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            "https://mycompany.com/myapp.php?foo=1",
            "https://mycompany.com/other.php?foo=1&bar=2",
            "https://evil.example/myapp.php?foo=1&bar=2",
            "http://mycompany.com/myapp.php?foo=1&bar=2",
        ] {
            assert_eq!(
                verify("12345", other, &docs_params(), good),
                Err(SignatureError::Mismatch),
                "{other}"
            );
        }
        assert_eq!(
            verify("54321", URL, &docs_params(), good),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("", URL, &docs_params(), good),
            Err(SignatureError::NoAuthToken)
        );
    }

    #[test]
    fn header_whitespace_is_ignored() {
        assert_eq!(
            verify(
                "12345",
                URL,
                &docs_params(),
                Some(" 0/KCTR6DLpKmkAf8muzZqo1nDgQ= ")
            ),
            Ok(())
        );
    }

    #[test]
    fn a_callback_url_with_the_key_in_its_query() {
        // As the SMS channel builds it: the key form-encoded into `?key=`.
        let url = "https://hooks.lumen.example/hooks/twilio/status?key=B-1101%2Fdelayed%2F2026-11-28T00%3A00Z%2Fsms%2F3";
        let params = pairs(&[
            ("MessageSid", "SM0123"),
            ("MessageStatus", "delivered"),
            ("AccountSid", "AC0123"),
        ]);
        let signature = expected("token", url, &params);
        assert_eq!(verify("token", url, &params, Some(&signature)), Ok(()));
        // Twilio signing with the default port also passes.
        let with_port = url.replacen("example/", "example:443/", 1);
        let signature = expected("token", &with_port, &params);
        assert_eq!(verify("token", url, &params, Some(&signature)), Ok(()));
        // The key of another message does not.
        let other = url.replace("%2F3", "%2F4");
        assert_eq!(
            verify("token", &other, &params, Some(&signature)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn url_spellings() {
        let c = candidate_urls("https://user:pw@h.example:8443/p?q=1");
        assert!(c.contains(&"https://user:pw@h.example/p?q=1".to_string()));
        assert!(c.contains(&"https://user:pw@h.example:8443/p?q=1".to_string()));
        let c = candidate_urls("http://[::1]/p");
        assert!(c.contains(&"http://[::1]:80/p".to_string()));
        let c = candidate_urls("https://h.example");
        assert!(c.contains(&"https://h.example:443".to_string()));
        // Not a URL: only the exact spelling.
        assert_eq!(candidate_urls("nonsense"), vec!["nonsense".to_string()]);
        // Node's querystring spelling: grouped repeats, `*` kept, `:` and space encoded.
        assert_eq!(
            with_legacy_query("https://h/p?a=1&b=x:y&a=2&c=*&d=a+b").as_deref(),
            Some("https://h/p?a=1&a=2&b=x%3Ay&c=*&d=a%20b")
        );
        assert_eq!(query_decode("%zz%41%"), "%zzA%");
    }
}
