//! Just enough RFC 5322 / MIME to read a bounce: header fields (folded, any case, any bytes),
//! `Content-Type` parameters, multipart bodies and the two transfer encodings.
//!
//! Written for hostile input: it works on bytes, never indexes out of bounds, never
//! recurses without a depth limit and bounds how many fields and parts it keeps. It also
//! tracks *completeness*: a part is complete only when the boundary after it was seen, and a
//! header field only when something after it was. The bounce reader uses that to refuse
//! truncated reports instead of reading a cut-off address as a whole one.

/// Header fields kept per header section; a bounce has a few dozen.
const MAX_FIELDS: usize = 2_000;
/// Parts kept per multipart body; a report has three.
const MAX_PARTS: usize = 64;
/// Boundaries longer than this (RFC 2046 allows 70) are not believed.
const MAX_BOUNDARY: usize = 200;

/// One header field: the name in ASCII lowercase, the value unfolded and trimmed (bytes
/// that are not UTF-8 replaced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Header {
    pub fields: Vec<Field>,
}

impl Header {
    /// Reads a header section from the start of `bytes`; returns it and where the body
    /// starts (after the empty line; `bytes.len()` without one).
    ///
    /// With `complete == false` the bytes may have been cut anywhere, so a last field that
    /// is not followed by another line or by the empty line is dropped: it may be cut too.
    pub fn parse(bytes: &[u8], complete: bool) -> (Header, usize) {
        let mut fields: Vec<Field> = Vec::new();
        // The raw (folded) value of the field being read.
        let mut current: Option<(String, Vec<u8>)> = None;
        let mut ended = false;
        let mut pos = 0;
        for line in Lines::new(bytes) {
            pos = line.next;
            let text = line.text;
            if text.is_empty() {
                ended = true;
                break;
            }
            let first = text.first().copied().unwrap_or(b' ');
            if first == b' ' || first == b'\t' {
                if let Some((_, value)) = current.as_mut() {
                    // Unfolding: the line break goes, the white space stays.
                    if value.len() < 64 * 1024 {
                        value.extend_from_slice(text);
                    }
                }
                continue;
            }
            if let Some(done) = current.take() {
                push_field(&mut fields, done);
            }
            current = field_start(text);
        }
        if let Some(last) = current {
            // Without the empty line after it, in bytes that may have been cut, the last
            // field (or a continuation line of it) may be cut off.
            if complete || ended {
                push_field(&mut fields, last);
            }
        }
        (Header { fields }, if ended { pos } else { bytes.len() })
    }

    /// The first field of this name (lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    /// Every field of this name (lowercase), top to bottom.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |f| f.name == name)
            .map(|f| f.value.as_str())
    }

    pub fn content_type(&self) -> ContentType {
        self.get("content-type")
            .map(ContentType::parse)
            .unwrap_or_default()
    }
}

fn field_start(text: &[u8]) -> Option<(String, Vec<u8>)> {
    let colon = text.iter().position(|&b| b == b':')?;
    let (name, rest) = text.split_at(colon);
    // Trailing white space before the colon is obsolete syntax, still met.
    let name = trim_end(name);
    if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
        // Not a field: an mbox `From ` line, or a body line without the empty line.
        return None;
    }
    let value = rest.get(1..).unwrap_or_default().to_vec();
    Some((String::from_utf8_lossy(name).to_ascii_lowercase(), value))
}

fn push_field(fields: &mut Vec<Field>, (name, value): (String, Vec<u8>)) {
    if fields.len() < MAX_FIELDS {
        fields.push(Field {
            name,
            value: String::from_utf8_lossy(&value).trim().to_string(),
        });
    }
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    bytes.get(..end).unwrap_or_default()
}

/// A line of `bytes`: its text without the line break, where it starts and where the next
/// one starts.
struct Line<'a> {
    text: &'a [u8],
    start: usize,
    next: usize,
}

struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Lines<'a> {
        Lines { bytes, pos: 0 }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let rest = self.bytes.get(self.pos..).filter(|r| !r.is_empty())?;
        let start = self.pos;
        let (raw, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (rest.get(..i).unwrap_or_default(), start + i + 1),
            None => (rest, self.bytes.len()),
        };
        let text = raw.strip_suffix(b"\r").unwrap_or(raw);
        self.pos = next;
        Some(Line { text, start, next })
    }
}

/// `type/subtype` in lowercase, and the parameters (names lowercase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentType {
    pub mime: String,
    pub params: Vec<(String, String)>,
}

impl Default for ContentType {
    /// RFC 2045: no `Content-Type` means `text/plain`.
    fn default() -> Self {
        ContentType {
            mime: "text/plain".to_string(),
            params: Vec::new(),
        }
    }
}

impl ContentType {
    pub fn parse(value: &str) -> ContentType {
        let value = strip_comments(value);
        let (mime, rest) = value.split_once(';').unwrap_or((&value, ""));
        let mime = mime.trim().to_ascii_lowercase();
        if !mime.contains('/') {
            return ContentType::default();
        }
        ContentType {
            mime,
            params: parse_params(rest),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_multipart(&self) -> bool {
        self.mime.starts_with("multipart/")
    }
}

/// `(comment)`s removed outside quoted strings (they may nest).
pub(crate) fn strip_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// `; name=value; name="quoted \" value"` → pairs. Malformed pieces are skipped.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut params = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ';').is_some() {}
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && *c != ';') {
            name.push(c);
        }
        if chars.peek().is_none() && name.trim().is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            // A name without a value.
            if chars.peek().is_none() {
                break;
            }
            continue;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    _ => value.push(c),
                }
            }
            // Anything up to the next `;` after the closing quote is junk.
            while chars.next_if(|c| *c != ';').is_some() {}
        } else {
            while let Some(c) = chars.next_if(|c| *c != ';') {
                value.push(c);
            }
            value = value.trim().to_string();
        }
        let name = name.trim().to_ascii_lowercase();
        if !name.is_empty() && params.len() < 32 {
            params.push((name, value));
        }
        if chars.peek().is_none() {
            break;
        }
    }
    params
}

/// One body part of a multipart body. `complete`: the boundary after it was seen, so it was
/// not cut off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part<'a> {
    pub bytes: &'a [u8],
    pub complete: bool,
}

/// The parts of a multipart `body` (RFC 2046 §5.1.1): preamble and epilogue dropped, the
/// line break before each delimiter belonging to the delimiter. A part still open when the
/// bytes end is returned as incomplete.
pub(crate) fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<Part<'a>> {
    let mut parts = Vec::new();
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return parts;
    }
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary.as_bytes());
    let mut open: Option<usize> = None;
    for line in Lines::new(body) {
        let Some(after) = line.text.strip_prefix(delimiter.as_slice()) else {
            continue;
        };
        let (close, padding) = match after.strip_prefix(b"--") {
            Some(rest) => (true, rest),
            None => (false, after),
        };
        // Transport padding only; `--boundaryX` is another boundary.
        if !padding.iter().all(|&b| b == b' ' || b == b'\t') {
            continue;
        }
        if let Some(start) = open.take() {
            let mut end = line.start;
            if end > start && body.get(end - 1) == Some(&b'\n') {
                end -= 1;
                if end > start && body.get(end - 1) == Some(&b'\r') {
                    end -= 1;
                }
            }
            if let Some(bytes) = body.get(start..end) {
                parts.push(Part {
                    bytes,
                    complete: true,
                });
            }
        }
        if close || parts.len() >= MAX_PARTS {
            return parts;
        }
        open = Some(line.next);
    }
    if let Some(start) = open {
        if let Some(bytes) = body.get(start..) {
            parts.push(Part {
                bytes,
                complete: false,
            });
        }
    }
    parts
}

/// A header and its body, the body decoded from its `Content-Transfer-Encoding`.
#[derive(Debug, Clone)]
pub(crate) struct Entity<'a> {
    pub header: Header,
    pub raw_body: &'a [u8],
}

impl<'a> Entity<'a> {
    pub fn parse(bytes: &'a [u8], complete: bool) -> Entity<'a> {
        let (header, body_start) = Header::parse(bytes, complete);
        Entity {
            header,
            raw_body: bytes.get(body_start..).unwrap_or_default(),
        }
    }

    /// The body with its transfer encoding undone (base64 and quoted-printable; anything
    /// else as it is).
    pub fn decoded_body(&self) -> Vec<u8> {
        let encoding = self
            .header
            .get("content-transfer-encoding")
            .map(|e| strip_comments(e).trim().to_ascii_lowercase())
            .unwrap_or_default();
        match encoding.as_str() {
            "base64" => decode_base64(self.raw_body),
            "quoted-printable" => decode_quoted_printable(self.raw_body),
            _ => self.raw_body.to_vec(),
        }
    }

    /// The parts of a multipart entity (empty for anything else or without a boundary).
    /// Only the boundary after a part makes it complete: the bytes of a message as a whole
    /// may have been cut by whoever passed them on.
    pub fn parts(&self) -> Vec<Part<'a>> {
        let ct = self.header.content_type();
        match (ct.is_multipart(), ct.param("boundary")) {
            (true, Some(boundary)) => split_multipart(self.raw_body, boundary),
            _ => Vec::new(),
        }
    }
}

/// Lenient base64: characters outside the alphabet (line breaks) are skipped, decoding stops
/// at `=`, and a trailing partial group gives the bytes it holds.
pub(crate) fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut bits: u32 = 0;
    let mut count = 0u8;
    for &c in input {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => continue,
        };
        bits = bits << 6 | u32::from(value);
        count += 1;
        if count == 4 {
            out.extend_from_slice(&[(bits >> 16) as u8, (bits >> 8) as u8, bits as u8]);
            bits = 0;
            count = 0;
        }
    }
    match count {
        2 => out.push((bits >> 4) as u8),
        3 => out.extend_from_slice(&[(bits >> 10) as u8, (bits >> 2) as u8]),
        _ => {}
    }
    out
}

/// Quoted-printable (RFC 2045 §6.7): `=XX` decoded, `=` at the end of a line joins it with the
/// next, anything malformed kept as written.
pub(crate) fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        let next = input.get(i + 1).copied();
        let after = input.get(i + 2).copied();
        match (next, after) {
            (Some(b'\n'), _) => i += 2,
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push(hex(h).unwrap_or(0) << 4 | hex(l).unwrap_or(0));
                i += 3;
            }
            _ => {
                // Soft break with trailing white space before the line break.
                let rest = input.get(i + 1..).unwrap_or_default();
                let blank = rest
                    .iter()
                    .take_while(|&&c| c == b' ' || c == b'\t')
                    .count();
                match rest.get(blank..) {
                    Some([b'\n', ..]) => i += 1 + blank + 1,
                    Some([b'\r', b'\n', ..]) => i += 1 + blank + 2,
                    _ => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_folded_and_case_insensitive() {
        let raw = b"From MAILER-DAEMON Thu Jul  7 17:16:05 1994\r\nSubject: a\r\n  b\r\nCONTENT-Type : multipart/report;\r\n\treport-type=delivery-status;\r\n boundary=\"x y\"\r\n\r\nbody";
        let (h, start) = Header::parse(raw, true);
        assert_eq!(h.get("subject"), Some("a  b"));
        let ct = h.content_type();
        assert_eq!(ct.mime, "multipart/report");
        assert_eq!(ct.param("report-type"), Some("delivery-status"));
        assert_eq!(ct.param("boundary"), Some("x y"));
        assert_eq!(raw.get(start..), Some(&b"body"[..]));
        assert_eq!(h.fields.len(), 2, "the mbox From line is no field");
    }

    #[test]
    fn cut_headers_drop_their_last_field() {
        let (h, _) = Header::parse(b"A: 1\nB: two", false);
        assert_eq!(h.get("a"), Some("1"));
        assert_eq!(h.get("b"), None);
        let (h, _) = Header::parse(b"A: 1\nB: two\n", false);
        assert_eq!(h.get("b"), None, "a continuation line may have been cut");
        let (h, _) = Header::parse(b"A: 1\nB: two\n\n", false);
        assert_eq!(h.get("b"), Some("two"));
        let (h, _) = Header::parse(b"A: 1\nB: two", true);
        assert_eq!(h.get("b"), Some("two"));
    }

    #[test]
    fn content_type_params() {
        let ct =
            ContentType::parse("Multipart/Mixed (comment); boundary=abc ; x=\"q\\\"uo;te\"; junk");
        assert_eq!(ct.mime, "multipart/mixed");
        assert_eq!(ct.param("boundary"), Some("abc"));
        assert_eq!(ct.param("x"), Some("q\"uo;te"));
        assert_eq!(ContentType::parse("garbage").mime, "text/plain");
        assert_eq!(ContentType::parse("").mime, "text/plain");
    }

    #[test]
    fn multipart_split() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b \r\n\r\ntwo\r\n--bb\r\nstill two\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, "b");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].bytes, b"A: 1\r\n\r\none");
        assert_eq!(parts[1].bytes, b"\r\ntwo\r\n--bb\r\nstill two");
        assert!(parts.iter().all(|p| p.complete));
        let cut = split_multipart(b"--b\none\n--b\ntw", "b");
        assert_eq!(cut.len(), 2);
        assert!(cut[0].complete);
        assert!(!cut[1].complete);
        assert!(split_multipart(b"--b\n--b--", "b")[0].bytes.is_empty());
    }

    #[test]
    fn transfer_encodings() {
        assert_eq!(
            decode_base64(b"QWN0aW9u\r\nOiBmYWlsZWQ="),
            b"Action: failed"
        );
        assert_eq!(decode_base64(b"QWN0aW9"), b"Actio");
        assert_eq!(decode_base64(b"!!"), b"");
        assert_eq!(
            decode_quoted_printable(b"Status: 5.1.1=\r\n (x)=3D=zz= \nend="),
            b"Status: 5.1.1 (x)==zzend="
        );
    }
}
