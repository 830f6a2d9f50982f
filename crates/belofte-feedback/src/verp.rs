//! VERP: an envelope sender per message, so that every bounce names the message it is about.
//!
//! A bounce goes to the envelope sender (`MAIL FROM`) of the message that bounced. With a
//! template such as `bounce+{token}@bounce.example`, each message goes out from its own
//! address, and the address a bounce arrives at gives the message back.
//!
//! Anyone can send mail to such an address, so the token is authenticated: it is the message
//! ref followed by a truncated HMAC-SHA256 of it, keyed with a secret only the daemon knows.
//! A forged bounce can then only name a message whose token the forger has seen, that is a
//! message sent to the forger; it cannot suppress somebody else's address.
//!
//! Token: `{ref}-{mac}`, where `ref` is what [`Verp::encode`] was given (lowercase letters,
//! digits and `-`; see [`message_ref`]) and `mac` is the first 10 bytes (80 bits) of
//! HMAC-SHA256(secret, `belofte-verp-v1:` + ref) in lowercase base32 (16 characters). Only
//! lowercase letters and digits: safe in any local part, unchanged by MTAs that lowercase
//! local parts, and free of `+` so a `+` recipient delimiter in the template still works.
//! With a 32-character ref and `bounce+` the local part is 56 characters; encode refuses
//! anything over RFC 5321's 64.

use ring::{digest, hmac};

/// What a template needs in its local part.
const TOKEN: &str = "{token}";
/// RFC 5321 §4.5.3.1.1.
const MAX_LOCAL_PART: usize = 64;
/// Bytes of HMAC kept in the token: 80 bits, far beyond what a forger can guess online.
const MAC_BYTES: usize = 10;
/// Characters of [`MAC_BYTES`] in base32.
const MAC_CHARS: usize = MAC_BYTES * 8 / 5;
const MAC_CONTEXT: &[u8] = b"belofte-verp-v1:";
/// Fewer bytes of secret than this are a configuration mistake, not a secret.
const MIN_SECRET: usize = 16;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A problem with a template, a secret, a ref or an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerpError {
    #[error("VERP template {template:?}: {problem}")]
    BadTemplate {
        template: String,
        problem: &'static str,
    },
    #[error("VERP secret is {len} bytes; at least {MIN_SECRET} are needed")]
    SecretTooShort { len: usize },
    #[error("message ref {0:?} is not token-safe: only a-z, 0-9 and '-'")]
    RefNotTokenSafe(String),
    #[error("VERP local part would be {len} characters; at most {MAX_LOCAL_PART} are allowed")]
    TooLong { len: usize },
    /// The address is not made from this template: not a bounce to us at all.
    #[error("not a VERP address of this template")]
    NotOurs,
    /// The template fits, but the token is not a ref and a MAC.
    #[error("malformed VERP token")]
    Malformed,
    /// The template and shape fit, but the MAC is wrong: forged, or made with another secret.
    #[error("VERP token with a wrong MAC")]
    BadMac,
}

/// The 32 lowercase hex digits of SHA-256(notification key), cut to 128 bits.
///
/// This is exactly the local part of the `Message-ID` the email channel gives the
/// notification (`<{ref}@belofte.DOMAIN>`), so the same ref can be matched against the
/// original `Message-ID` quoted in a bounce. Notification keys themselves
/// (`B-1101/delayed/2026-11-28T00:00Z/email/3`) have uppercase letters and slashes and are
/// often too long for a local part, so the daemon finds the notification by its ref.
pub fn message_ref(notification_key: &str) -> String {
    let digest = digest::digest(&digest::SHA256, notification_key.as_bytes());
    digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A VERP template with its secret. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct Verp {
    /// Local part before the token.
    prefix: String,
    /// After the token, the `@` and the domain included.
    suffix: String,
    /// Characters of the local part that are not the token.
    fixed_local: usize,
    mac_key: hmac::Key,
    /// Keys the comparison: two MACs are compared as HMACs of themselves, through ring's
    /// constant-time `hmac::verify`, because the truncated tag cannot be given to it directly.
    compare_key: hmac::Key,
}

impl std::fmt::Debug for Verp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verp")
            .field(
                "template",
                &format!("{}{TOKEN}{}", self.prefix, self.suffix),
            )
            .finish_non_exhaustive()
    }
}

impl Verp {
    /// `template` holds `{token}` once, in its local part, e.g. `bounce+{token}@bounce.example`.
    pub fn new(template: &str, secret: &[u8]) -> Result<Verp, VerpError> {
        let bad = |problem| VerpError::BadTemplate {
            template: template.to_string(),
            problem,
        };
        let (prefix, suffix) = template
            .split_once(TOKEN)
            .ok_or_else(|| bad("no {token}"))?;
        if suffix.contains(TOKEN) {
            return Err(bad("{token} more than once"));
        }
        if prefix.contains('@') {
            return Err(bad("{token} must be in the local part"));
        }
        let (local_tail, domain) = suffix
            .split_once('@')
            .ok_or_else(|| bad("no @domain after {token}"))?;
        if domain.is_empty() || domain.contains('@') || !domain.bytes().all(is_domain_byte) {
            return Err(bad("bad domain"));
        }
        if !prefix.bytes().chain(local_tail.bytes()).all(is_local_byte) {
            return Err(bad("local part may hold only a-z, 0-9 and +-_."));
        }
        if secret.len() < MIN_SECRET {
            return Err(VerpError::SecretTooShort { len: secret.len() });
        }
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let compare_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            hmac::sign(&mac_key, b"belofte-verp-compare").as_ref(),
        );
        Ok(Verp {
            prefix: prefix.to_ascii_lowercase(),
            suffix: suffix.to_ascii_lowercase(),
            fixed_local: prefix.len() + local_tail.len(),
            mac_key,
            compare_key,
        })
    }

    /// The envelope sender for the message with this ref (normally [`message_ref`] of its
    /// notification key), all in lowercase (the template too), as it will come back from
    /// MTAs that lowercase addresses.
    pub fn encode(&self, message_ref: &str) -> Result<String, VerpError> {
        if message_ref.is_empty() || !message_ref.bytes().all(is_ref_byte) {
            return Err(VerpError::RefNotTokenSafe(message_ref.to_string()));
        }
        let len = self.fixed_local + message_ref.len() + 1 + MAC_CHARS;
        if len > MAX_LOCAL_PART {
            return Err(VerpError::TooLong { len });
        }
        Ok(format!(
            "{}{message_ref}-{}{}",
            self.prefix,
            base32(&self.mac(message_ref)),
            self.suffix
        ))
    }

    /// The message ref in a bounce's recipient address, if the address is one of ours with a
    /// valid MAC. Accepts `<…>` around it and any ASCII case.
    pub fn decode(&self, address: &str) -> Result<String, VerpError> {
        let address = address.trim();
        let address = address
            .strip_prefix('<')
            .and_then(|a| a.strip_suffix('>'))
            .unwrap_or(address)
            .trim()
            .to_ascii_lowercase();
        let token = address
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_suffix(self.suffix.as_str()))
            .ok_or(VerpError::NotOurs)?;
        let (message_ref, mac) = token.rsplit_once('-').ok_or(VerpError::Malformed)?;
        if message_ref.is_empty() || !message_ref.bytes().all(is_ref_byte) || mac.len() != MAC_CHARS
        {
            return Err(VerpError::Malformed);
        }
        let given = unbase32(mac).ok_or(VerpError::Malformed)?;
        let expected = self.mac(message_ref);
        let given_tag = hmac::sign(&self.compare_key, &given);
        hmac::verify(&self.compare_key, &expected, given_tag.as_ref())
            .map_err(|_| VerpError::BadMac)?;
        Ok(message_ref.to_string())
    }

    fn mac(&self, message_ref: &str) -> [u8; MAC_BYTES] {
        let mut ctx = hmac::Context::with_key(&self.mac_key);
        ctx.update(MAC_CONTEXT);
        ctx.update(message_ref.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; MAC_BYTES];
        for (o, t) in out.iter_mut().zip(tag.as_ref()) {
            *o = *t;
        }
        out
    }
}

fn is_ref_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn is_local_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"+-_.".contains(&b)
}

fn is_domain_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.".contains(&b)
}

/// RFC 4648 base32, lowercase, for whole groups of 5 bytes (10 bytes: no padding).
fn base32(bytes: &[u8; MAC_BYTES]) -> String {
    let mut out = String::with_capacity(MAC_CHARS);
    for chunk in bytes.chunks(5) {
        let mut group = [0u8; 5];
        for (g, b) in group.iter_mut().zip(chunk) {
            *g = *b;
        }
        let bits = group.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
        for i in (0..8).rev() {
            let index = (bits >> (i * 5)) & 31;
            out.push(char::from(
                BASE32.get(index as usize).copied().unwrap_or(b'a'),
            ));
        }
    }
    out
}

fn unbase32(text: &str) -> Option<[u8; MAC_BYTES]> {
    if text.len() != MAC_CHARS {
        return None;
    }
    let mut out = [0u8; MAC_BYTES];
    for (chunk, dest) in text.as_bytes().chunks(8).zip(out.chunks_mut(5)) {
        let mut bits = 0u64;
        for &c in chunk {
            let value = BASE32.iter().position(|&a| a == c)? as u64;
            bits = bits << 5 | value;
        }
        for (i, d) in dest.iter_mut().enumerate() {
            *d = (bits >> (8 * (4 - i))) as u8;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn verp() -> Verp {
        Verp::new("bounce+{token}@bounce.example", SECRET).unwrap()
    }

    #[test]
    fn message_ref_is_the_message_id_local_part() {
        // src/channels/email.rs: message_id("B-1101/delayed/2026-11-28/email", …) is
        // `<{32 hex digits of SHA-256(key)}@belofte.…>`.
        let r = message_ref("B-1101/delayed/2026-11-28/email");
        assert_eq!(r.len(), 32);
        assert!(r
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // SHA-256("abc") starts ba7816bf8f01cfea414140de5dae2223.
        assert_eq!(message_ref("abc"), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn round_trip() {
        let v = verp();
        let r = message_ref("B-1101/delayed/2026-11-28T00:00Z/email/3");
        let address = v.encode(&r).unwrap();
        let (local, domain) = address.split_once('@').unwrap();
        assert_eq!(domain, "bounce.example");
        assert!(local.len() <= 64, "{local}");
        assert_eq!(local.len(), 7 + 32 + 1 + 16);
        assert!(local.starts_with("bounce+"));
        assert_eq!(v.decode(&address).unwrap(), r);
        // Case and angle brackets do not matter.
        assert_eq!(
            v.decode(&format!(" <{}> ", address.to_uppercase()))
                .unwrap(),
            r
        );
    }

    #[test]
    fn forged_and_foreign_addresses_are_refused() {
        let v = verp();
        let r = message_ref("k");
        let address = v.encode(&r).unwrap();
        let other = message_ref("someone else");
        // Another ref with this MAC.
        let forged = address.replacen(&r, &other, 1);
        assert_eq!(v.decode(&forged), Err(VerpError::BadMac));
        // A flipped character of the MAC.
        let (local, _) = address.split_once('@').unwrap();
        let last = local.chars().last().unwrap();
        let flipped = if last == 'a' { 'b' } else { 'a' };
        let tampered = format!("{}{}@bounce.example", &local[..local.len() - 1], flipped);
        assert_eq!(v.decode(&tampered), Err(VerpError::BadMac));
        // Another secret.
        let stranger = Verp::new(
            "bounce+{token}@bounce.example",
            b"another secret, 32 bytes long!!!",
        )
        .unwrap();
        assert_eq!(stranger.decode(&address), Err(VerpError::BadMac));
        // Not our template.
        assert_eq!(v.decode("alice@example.com"), Err(VerpError::NotOurs));
        assert_eq!(
            v.decode(&address.replace("bounce.example", "bounce.example.net")),
            Err(VerpError::NotOurs)
        );
        assert_eq!(
            v.decode("bounce+@bounce.example"),
            Err(VerpError::Malformed)
        );
        assert_eq!(
            v.decode("bounce+abc@bounce.example"),
            Err(VerpError::Malformed)
        );
        assert_eq!(
            v.decode("bounce+abc-0000000000000000@bounce.example"),
            Err(VerpError::Malformed),
            "0 and 1 are not base32"
        );
        assert_eq!(
            v.decode("bounce+abc-aaaaaaaaaaaaaaaa@bounce.example"),
            Err(VerpError::BadMac)
        );
    }

    #[test]
    fn template_and_ref_checks() {
        assert!(matches!(
            Verp::new("bounce@bounce.example", SECRET),
            Err(VerpError::BadTemplate { .. })
        ));
        assert!(matches!(
            Verp::new("{token}{token}@x.example", SECRET),
            Err(VerpError::BadTemplate { .. })
        ));
        assert!(matches!(
            Verp::new("b@x.example+{token}", SECRET),
            Err(VerpError::BadTemplate { .. })
        ));
        assert!(matches!(
            Verp::new("b+{token}", SECRET),
            Err(VerpError::BadTemplate { .. })
        ));
        assert!(matches!(
            Verp::new("b+{token}@", SECRET),
            Err(VerpError::BadTemplate { .. })
        ));
        assert!(matches!(
            Verp::new("b c+{token}@x.example", SECRET),
            Err(VerpError::BadTemplate { .. })
        ));
        assert_eq!(
            Verp::new("b+{token}@x.example", b"short").unwrap_err(),
            VerpError::SecretTooShort { len: 5 }
        );
        // The token may sit in the middle of the local part.
        let v = Verp::new("Bounces-{token}-x@Mail.Example", SECRET).unwrap();
        let a = v.encode("abc").unwrap();
        assert!(
            a.starts_with("bounces-abc-") && a.ends_with("-x@mail.example"),
            "{a}"
        );
        assert_eq!(v.decode(&a).unwrap(), "abc");

        let v = verp();
        assert!(matches!(
            v.encode("ABC"),
            Err(VerpError::RefNotTokenSafe(_))
        ));
        assert!(matches!(
            v.encode("a/b"),
            Err(VerpError::RefNotTokenSafe(_))
        ));
        assert!(matches!(v.encode(""), Err(VerpError::RefNotTokenSafe(_))));
        assert_eq!(
            v.encode(&"a".repeat(41)),
            Err(VerpError::TooLong { len: 65 })
        );
        assert!(v.encode(&"a".repeat(40)).is_ok());
        assert!(!format!("{v:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn base32_round_trip() {
        let bytes = [0u8, 1, 2, 3, 250, 251, 252, 253, 254, 255];
        let text = base32(&bytes);
        assert_eq!(text.len(), 16);
        assert_eq!(unbase32(&text), Some(bytes));
        // RFC 4648 test vector "fooba" → MZXW6YTB, lowercased.
        let mut ten = [0u8; 10];
        ten[..5].copy_from_slice(b"fooba");
        ten[5..].copy_from_slice(b"fooba");
        assert_eq!(base32(&ten), "mzxw6ytbmzxw6ytb");
    }
}
