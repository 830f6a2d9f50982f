//! Where a bounce says which of our addresses it was sent to: the VERP address that names
//! the message it is about.

use crate::mime::{strip_comments, Header};

/// Where a [`EnvelopeAddress`] was found, most trusted first (the order of
/// [`crate::BounceReport::verp_candidates`]).
///
/// All of them can be written by whoever sent the bounce except [`AddressSource::Argument`]
/// and the fields our own MTA adds on delivery; none needs to be trusted, because the VERP
/// token's MAC is what makes an address ours. The order only decides which one is tried
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressSource {
    /// Given by the MTA outside the message: Postfix pipe's `${original_recipient}`, Exim's
    /// `$local_part@$domain`, passed as an argument to `belofte bounce`.
    Argument,
    /// `Delivered-To:`, added by Postfix (pipe flag `D`, local delivery) and others; the
    /// topmost one is our MTA's.
    DeliveredTo,
    /// `X-Original-To:`, added by Postfix (pipe flag `O`): the recipient before aliasing.
    XOriginalTo,
    /// `Envelope-To:`, added by Exim (`envelope_to_add`).
    EnvelopeTo,
    /// The `To:` header: a DSN is addressed to the original envelope sender.
    To,
    /// `Original-Mail-From:` of an abuse report: the envelope sender of the reported message.
    OriginalMailFrom,
    /// `Return-Path:` in the returned or reported original message.
    OriginalReturnPath,
}

/// One address where the VERP token may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeAddress {
    pub source: AddressSource,
    /// The bare address (`local@domain`), without display name or angle brackets.
    pub address: String,
}

/// The candidates from the MTA's argument and the bounce's own header, in trust order.
pub(crate) fn from_delivery(argument: Option<&str>, header: &Header) -> Vec<EnvelopeAddress> {
    let mut found = Vec::new();
    if let Some(arg) = argument {
        push(&mut found, AddressSource::Argument, arg);
    }
    for (name, source) in [
        ("delivered-to", AddressSource::DeliveredTo),
        ("x-original-to", AddressSource::XOriginalTo),
        ("envelope-to", AddressSource::EnvelopeTo),
        ("to", AddressSource::To),
    ] {
        for value in header.all(name) {
            push(&mut found, source, value);
        }
    }
    found
}

/// Adds every address in `value` (a list such as `a@x, "B" <b@y>`), skipping ones already
/// found: the first, most trusted source of an address is kept.
pub(crate) fn push(found: &mut Vec<EnvelopeAddress>, source: AddressSource, value: &str) {
    for address in addresses(value) {
        if found.len() >= 32 {
            return;
        }
        if !found
            .iter()
            .any(|f| f.address.eq_ignore_ascii_case(&address))
        {
            found.push(EnvelopeAddress { source, address });
        }
    }
}

/// The addresses of an address list, loosely: `<…>` contents where there are angle
/// brackets, otherwise the comma-separated words that hold an `@`. A DSN address field
/// (`rfc822; a@x`) loses its type first.
pub(crate) fn addresses(value: &str) -> Vec<String> {
    let value = strip_comments(value);
    let value = strip_type(&value);
    let mut out = Vec::new();
    for item in split_list(value) {
        let item = item.trim();
        let bare = match (item.find('<'), item.rfind('>')) {
            (Some(open), Some(close)) if open < close => item.get(open + 1..close),
            _ => Some(item),
        };
        // `<>` (the null sender) and words without `@` are no addresses.
        if let Some(bare) = bare.map(str::trim) {
            let bare = bare.trim_matches('"');
            if bare.contains('@') && !bare.contains(char::is_whitespace) && bare.len() <= 320 {
                out.push(bare.to_string());
            }
        }
    }
    out
}

/// `rfc822; a@x` → `a@x`. Only an `address-type ;` prefix (an atom before the first `;`
/// with no `@` or `<` in it) is taken off.
pub(crate) fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((kind, rest))
            if !kind.trim().is_empty()
                && kind
                    .trim()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// Commas outside quotes and angle brackets.
fn split_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut angle = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                items.push(value.get(start..i).unwrap_or_default());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(value.get(start..).unwrap_or_default());
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists() {
        assert_eq!(addresses("a@x.example"), vec!["a@x.example"]);
        assert_eq!(
            addresses("\"Doe, J\" <j@x.example>, b@y.example (comment)"),
            vec!["j@x.example", "b@y.example"]
        );
        assert_eq!(
            addresses("<b@y.example>, c@z.example"),
            vec!["b@y.example", "c@z.example"]
        );
        assert_eq!(
            addresses("rfc822; louisl@larry.slip.umd.edu"),
            vec!["louisl@larry.slip.umd.edu"]
        );
        assert_eq!(addresses("rfc822;<a@x.example>"), vec!["a@x.example"]);
        assert!(addresses("<>").is_empty());
        assert!(addresses("unknown; nair_s").is_empty());
        assert!(addresses("Undisclosed Recipients").is_empty());
    }

    #[test]
    fn trust_order_and_duplicates() {
        let (header, _) = Header::parse(
            b"To: Bounce <BOUNCE+a@b.example>\nDelivered-To: bounce+a@b.example\nX-Original-To: x@b.example\nEnvelope-To: y@b.example\n\n",
            true,
        );
        let found = from_delivery(Some("arg@b.example"), &header);
        let sources: Vec<_> = found
            .iter()
            .map(|f| (f.source, f.address.as_str()))
            .collect();
        assert_eq!(
            sources,
            vec![
                (AddressSource::Argument, "arg@b.example"),
                (AddressSource::DeliveredTo, "bounce+a@b.example"),
                (AddressSource::XOriginalTo, "x@b.example"),
                (AddressSource::EnvelopeTo, "y@b.example"),
            ]
        );
    }
}
