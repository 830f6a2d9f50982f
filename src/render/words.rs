//! Language-level wording that is not marketing copy: how dates, times and amounts are
//! written, how plain text becomes an HTML part, and what fits in an SMS.

use chrono::{Datelike, Timelike};
use chrono_tz::Tz;
use serde_json::{Map, Value};

use belofte_core::domain::{Instant, Lang};

const NL_WEEKDAYS: [&str; 7] = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"];
const EN_WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
const NL_MONTHS: [&str; 12] = [
    "januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober", "november",
    "december",
];
const EN_MONTHS: [&str; 12] = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
];

/// The day and month as the checker and people look for it: "24 november", "24 November".
pub fn day_month(lang: Lang, tz: Tz, t: Instant) -> String {
    let local = t.with_timezone(&tz);
    let months = match lang {
        Lang::Nl => &NL_MONTHS,
        Lang::En => &EN_MONTHS,
    };
    format!("{} {}", local.day(), months[local.month0() as usize])
}

/// One instant written out once: "woensdag 25 november om 12:00", with the places where the
/// shorter forms (`date`, `day_month`, `time`) are slices of it.
#[derive(Debug, Clone)]
pub(crate) struct DateText {
    at: String,
    date_len: usize,
    weekday_len: usize,
}

impl DateText {
    pub(crate) fn new(lang: Lang, tz: Tz, t: Instant) -> DateText {
        let local = t.with_timezone(&tz);
        let (weekdays, months, at) = match lang {
            Lang::Nl => (&NL_WEEKDAYS, &NL_MONTHS, "om"),
            Lang::En => (&EN_WEEKDAYS, &EN_MONTHS, "at"),
        };
        let weekday = weekdays[local.weekday().num_days_from_monday() as usize];
        let month = months[local.month0() as usize];
        let (hour, minute) = (local.hour(), local.minute());
        // Built once and sliced: this runs for every date of every message.
        let at_text = format!("{weekday} {} {month} {at} {hour:02}:{minute:02}", local.day());
        let date_len = at_text.len() - at.len() - 7;
        DateText { at: at_text, date_len, weekday_len: weekday.len() }
    }
    pub(crate) fn day_month(&self) -> &str {
        &self.at[self.weekday_len + 1..self.date_len]
    }
    pub(crate) fn date(&self) -> &str {
        &self.at[..self.date_len]
    }
    pub(crate) fn time(&self) -> &str {
        &self.at[self.at.len() - 5..]
    }
    pub(crate) fn at(&self) -> &str {
        &self.at
    }
}

/// One instant in every form a template may want, in the brand's local time.
pub fn date_words(lang: Lang, tz: Tz, t: Instant) -> Value {
    let d = DateText::new(lang, tz, t);
    let mut m = Map::new();
    m.insert("day_month".into(), Value::String(d.day_month().to_string()));
    m.insert("date".into(), Value::String(d.date().to_string()));
    m.insert("time".into(), Value::String(d.time().to_string()));
    m.insert("at".into(), Value::String(d.at));
    Value::Object(m)
}

/// An amount in euro as written in running text: nl "€ 5", en "€5".
pub fn euro(lang: Lang, eur: u32) -> String {
    match lang {
        Lang::Nl => format!("€ {eur}"),
        Lang::En => format!("€{eur}"),
    }
}

pub fn first_name(full: &str) -> &str {
    full.split_whitespace().next().unwrap_or("")
}

/// At most `max` characters; a cut value ends in "..." (ASCII, so an SMS stays GSM-7).
pub fn truncate(value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_string();
    }
    let keep = max.saturating_sub(3);
    let mut cut: String = value.chars().take(keep).collect();
    // Cut at a word boundary when one is near, so "Lumen Nova 14 lap..." reads as "Lumen Nova 14...".
    if let Some(space) = cut.rfind(' ') {
        if space * 3 >= cut.len() * 2 {
            cut.truncate(space);
        }
    }
    // An opened bracket that the cut leaves unclosed reads as a typo: cut before it.
    if cut.matches('(').count() > cut.matches(')').count() {
        if let Some(open) = cut.rfind('(') {
            cut.truncate(open);
        }
    }
    let trimmed = cut.trim_end_matches([' ', ',', '-', '(']);
    format!("{trimmed}...")
}

/// Tidy rendered text: conditional blocks leave double spaces and empty lines behind, and an
/// empty variable leaves a space before punctuation ("van ons ." reads as a typo).
pub fn tidy(raw: &str) -> String {
    // Works on bytes: every byte it looks at is ASCII, and UTF-8 never uses ASCII bytes
    // inside a multi-byte character, so copying the other bytes keeps the text valid.
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    let mut pending_blank = false;
    for line in raw.lines() {
        let line_start = out.len();
        if line_start > 0 {
            out.extend_from_slice(if pending_blank { b"\n\n" } else { b"\n" });
        }
        let content_start = out.len();
        let mut last_space = true;
        for &b in line.as_bytes() {
            match b {
                b' ' | b'\t' => {
                    if !last_space {
                        out.push(b' ');
                    }
                    last_space = true;
                }
                b'.' | b',' => {
                    if out.len() > content_start && out.last() == Some(&b' ') {
                        out.pop();
                    }
                    out.push(b);
                    last_space = false;
                }
                _ => {
                    out.push(b);
                    last_space = false;
                }
            }
        }
        while out.len() > content_start && out.last() == Some(&b' ') {
            out.pop();
        }
        if out.len() == content_start {
            out.truncate(line_start);
            pending_blank = line_start > 0;
        } else {
            pending_blank = false;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// [`tidy`] on text the caller owns: the same result, tidied in place (the result is never
/// longer than the text, so it needs no second buffer).
pub fn tidy_owned(raw: String) -> String {
    let mut buf = raw.into_bytes();
    let len = tidy_in_place(&mut buf);
    buf.truncate(len);
    String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The bytes [`tidy`] looks at.
const TIDY_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t[b'.' as usize] = true;
    t[b',' as usize] = true;
    t[b'\n' as usize] = true;
    t
};

/// The bytes of [`tidy`] written over `buf` (lines as `str::lines` splits them); the new length.
///
/// Writing never overtakes reading: a line's text never grows, and a line break written
/// ("\n", or "\n\n" after blank lines) stands for at least as many line breaks read.
fn tidy_in_place(buf: &mut [u8]) -> usize {
    let len = buf.len();
    let (mut r, mut w) = (0, 0);
    let mut pending_blank = false;
    // One pass: the line breaks are found with the other bytes tidy looks at.
    loop {
        // A new line: its separator first (before anything is known of the line).
        let line_in = r;
        let line_start = w;
        if line_start > 0 {
            buf[w] = b'\n';
            w += 1;
            if pending_blank {
                buf[w] = b'\n';
                w += 1;
            }
        }
        let content_start = w;
        let mut last_space = true;
        let mut ended = false;
        while r < len {
            // A run of bytes that are copied as they are, in one go.
            let run = r;
            while r < len && !TIDY_SPECIAL[buf[r] as usize] {
                r += 1;
            }
            if r > run {
                if w != run {
                    buf.copy_within(run..r, w);
                }
                w += r - run;
                last_space = false;
                if r == len {
                    break;
                }
            }
            let b = buf[r];
            r += 1;
            match b {
                b'\n' => {
                    // `str::lines` drops the "\r" of a "\r\n" (it was copied as it is).
                    if r - 1 > line_in && buf[r - 2] == b'\r' {
                        w -= 1;
                    }
                    ended = true;
                    break;
                }
                b' ' | b'\t' => {
                    if !last_space {
                        buf[w] = b' ';
                        w += 1;
                    }
                    last_space = true;
                }
                b'.' | b',' => {
                    if w > content_start && buf[w - 1] == b' ' {
                        w -= 1;
                    }
                    buf[w] = b;
                    w += 1;
                    last_space = false;
                }
                _ => {
                    buf[w] = b;
                    w += 1;
                    last_space = false;
                }
            }
        }
        while w > content_start && buf[w - 1] == b' ' {
            w -= 1;
        }
        if w == content_start {
            w = line_start;
            pending_blank = line_start > 0;
        } else {
            pending_blank = false;
        }
        // `str::lines` has no empty line after a final line break.
        if !ended || r == len {
            return w;
        }
    }
}

// ---------------------------------------------------------------- HTML

pub fn escape_html(s: &str, out: &mut String) {
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let entity = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            b'\'' => "&#x27;",
            _ => continue,
        };
        out.push_str(&s[from..i]);
        out.push_str(entity);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// One line of text as HTML: escaped, with web addresses as links.
fn line_html(line: &str, out: &mut String) {
    let mut rest = line;
    while let Some(start) = find_url(rest) {
        escape_html(&rest[..start], out);
        let tail = &rest[start..];
        let mut end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        // Sentence punctuation after an address is not part of it.
        while end > 0 && tail[..end].ends_with(['.', ',', ')', '!', '?', ';', ':']) {
            end -= 1;
        }
        let url = &tail[..end];
        let href = if url.starts_with("www.") { format!("https://{url}") } else { url.to_string() };
        out.push_str("<a href=\"");
        escape_html(&href, out);
        out.push_str("\">");
        escape_html(url, out);
        out.push_str("</a>");
        rest = &tail[end..];
        if end == 0 {
            // Defensive: never loop on an empty match.
            escape_html(rest, out);
            return;
        }
    }
    escape_html(rest, out);
}

fn find_url(s: &str) -> Option<usize> {
    // One pass over the bytes: this runs on every line of every email.
    let bytes = s.as_bytes();
    (0..bytes.len()).find(|&i| {
        if !matches!(bytes[i], b'h' | b'w') {
            return false;
        }
        let rest = &bytes[i..];
        (rest.starts_with(b"https://") || rest.starts_with(b"http://") || rest.starts_with(b"www."))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'/' || bytes[i - 1] == b'.'))
    })
}

/// [`paragraphs`] joined by line breaks, written into one string.
pub fn paragraphs_joined(text: &str) -> String {
    let mut html = String::with_capacity(text.len() + text.len() / 4 + 64);
    for (n, p) in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).enumerate() {
        if n > 0 {
            html.push('\n');
        }
        paragraph_html(p, &mut html);
    }
    html
}

/// One paragraph as `<p>…</p>`, its line breaks as `<br>`.
fn paragraph_html(p: &str, html: &mut String) {
    html.push_str("<p>");
    for (i, line) in p.lines().enumerate() {
        if i > 0 {
            html.push_str("<br>\n");
        }
        line_html(line, html);
    }
    html.push_str("</p>");
}

/// The text part as HTML paragraphs (blank line = new paragraph, line break = `<br>`).
pub fn paragraphs(text: &str) -> Vec<String> {
    text.split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut html = String::with_capacity(p.len() + 32);
            paragraph_html(p, &mut html);
            html
        })
        .collect()
}

// ---------------------------------------------------------------- SMS

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "^{}\\[~]|€\x0c";
pub const SMS_LIMIT_GSM7: usize = 306;
pub const SMS_LIMIT_UCS2: usize = 134;

/// Which ASCII characters a set holds (an ASCII byte in UTF-8 is always that character).
const fn ascii_set(s: &str) -> [bool; 128] {
    let bytes = s.as_bytes();
    let mut set = [false; 128];
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 128 {
            set[bytes[i] as usize] = true;
        }
        i += 1;
    }
    set
}

const GSM7_BASIC_ASCII: [bool; 128] = ascii_set(GSM7_BASIC);
const GSM7_EXTENSION_ASCII: [bool; 128] = ascii_set(GSM7_EXTENSION);

fn is_gsm_basic(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == ' ' || GSM7_BASIC_ASCII[c as usize];
    }
    GSM7_BASIC.contains(c)
}

fn is_gsm_ext(c: char) -> bool {
    if c.is_ascii() {
        return GSM7_EXTENSION_ASCII[c as usize];
    }
    GSM7_EXTENSION.contains(c)
}

/// (units used, limit) for 2 segments; same rules as the acceptance checker's `sms_size`.
pub fn sms_units(text: &str) -> (usize, usize) {
    if text.chars().all(|c| is_gsm_basic(c) || is_gsm_ext(c)) {
        (text.chars().map(|c| if is_gsm_ext(c) { 2 } else { 1 }).sum(), SMS_LIMIT_GSM7)
    } else {
        (text.encode_utf16().count(), SMS_LIMIT_UCS2)
    }
}

/// How the SMS channel bills a text: its encoding, units and segments. One segment holds
/// 160 GSM-7 units or 70 UCS-2 ones; a longer text is split into parts of 153 or 67 (the
/// rest of each part is the header that joins them again), so 2 segments are the limits
/// of [`sms_units`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SmsSize {
    pub encoding: &'static str,
    pub units: usize,
    pub segments: usize,
    /// The units 2 segments hold, the most `belofte check` allows.
    pub limit: usize,
}

pub fn sms_size(text: &str) -> SmsSize {
    let (units, limit) = sms_units(text);
    let (encoding, single, part) = if limit == SMS_LIMIT_GSM7 { ("GSM-7", 160, 153) } else { ("UCS-2", 70, 67) };
    let segments = if units <= single { 1 } else { units.div_ceil(part) };
    SmsSize { encoding, units, segments, limit }
}

/// The SMS text in the GSM-7 alphabet: one "ë" in a name would switch the whole message to
/// UCS-2 and cut the room from 306 to 134 units, so letters lose their accents instead.
pub fn to_gsm7(text: &str) -> String {
    if text.chars().all(|c| is_gsm_basic(c) || is_gsm_ext(c)) {
        return text.to_string();
    }
    to_gsm7_replaced(text)
}

/// ASCII characters in the GSM-7 alphabet, basic or extension.
const GSM7_ASCII: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 128 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b' ' || GSM7_BASIC_ASCII[i] || GSM7_EXTENSION_ASCII[i];
        i += 1;
    }
    t
};

/// [`to_gsm7`] on text the caller owns: no copy when it is GSM-7 already.
pub fn to_gsm7_owned(text: String) -> String {
    let all_gsm = if text.is_ascii() {
        text.bytes().all(|b| GSM7_ASCII[b as usize])
    } else {
        text.chars().all(|c| is_gsm_basic(c) || is_gsm_ext(c))
    };
    if all_gsm {
        return text;
    }
    to_gsm7_replaced(&text)
}

fn to_gsm7_replaced(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_gsm_basic(c) || is_gsm_ext(c) {
            out.push(c);
            continue;
        }
        let s: &str = match c {
            '‘' | '’' | '‚' | '′' | '`' | '´' => "'",
            '“' | '”' | '„' | '″' | '«' | '»' => "\"",
            '–' | '—' | '‐' | '‑' | '−' => "-",
            '…' => "...",
            '\u{a0}' | '\u{202f}' | '\u{2009}' | '\t' => " ",
            '×' => "x",
            'á' | 'â' | 'ã' | 'ā' | 'ą' => "a",
            'Á' | 'À' | 'Â' | 'Ã' | 'Ā' | 'Ą' => "A",
            'ë' | 'ê' | 'ē' | 'ę' | 'ě' => "e",
            'Ë' | 'Ê' | 'È' | 'Ē' | 'Ę' | 'Ě' => "E",
            'ï' | 'î' | 'í' | 'ī' | 'ı' => "i",
            'Ï' | 'Î' | 'Í' | 'Ì' | 'Ī' | 'İ' => "I",
            'ó' | 'ô' | 'õ' | 'ō' | 'ő' => "o",
            'Ó' | 'Ô' | 'Õ' | 'Ò' | 'Ō' | 'Ő' => "O",
            'ú' | 'û' | 'ū' | 'ů' | 'ű' => "u",
            'Ú' | 'Û' | 'Ù' | 'Ū' | 'Ů' | 'Ű' => "U",
            'ç' | 'ć' | 'č' => "c",
            'Ć' | 'Č' => "C",
            'ý' | 'ÿ' => "y",
            'Ý' | 'Ÿ' => "Y",
            'ś' | 'š' | 'ş' => "s",
            'Ś' | 'Š' | 'Ş' => "S",
            'ź' | 'ż' | 'ž' => "z",
            'Ź' | 'Ż' | 'Ž' => "Z",
            'ń' | 'ň' => "n",
            'Ń' | 'Ň' => "N",
            'ł' => "l",
            'Ł' => "L",
            'ř' => "r",
            'Ř' => "R",
            'đ' | 'ď' => "d",
            'Đ' | 'Ď' => "D",
            'ğ' => "g",
            'Ğ' => "G",
            'ť' => "t",
            'Ť' => "T",
            'œ' => "oe",
            'Œ' => "OE",
            'ĳ' => "ij",
            'Ĳ' => "IJ",
            _ => "?",
        };
        out.push_str(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_at_words() {
        assert_eq!(truncate("Lumen Nova 14 laptop", 30), "Lumen Nova 14 laptop");
        assert_eq!(truncate("Puzzel Nederland 1000 stukjes", 20), "Puzzel Nederland...");
    }

    #[test]
    fn gsm_tables_match_the_alphabet() {
        for c in (0u32..0x2100).filter_map(char::from_u32) {
            let basic = c.is_ascii_alphanumeric() || c == ' ' || GSM7_BASIC.contains(c);
            assert_eq!(is_gsm_basic(c), basic, "{c:?}");
            assert_eq!(is_gsm_ext(c), GSM7_EXTENSION.contains(c), "{c:?}");
        }
    }

    #[test]
    fn to_gsm7_owned_like_to_gsm7() {
        for t in ["abc €", "Zoë’s – café", "plain [x] {y} ~^|\\ \x0c", "tab\there", "", "é"] {
            assert_eq!(to_gsm7_owned(t.to_string()), to_gsm7(t), "{t:?}");
        }
        for b in 0u8..128 {
            let t = (b as char).to_string();
            assert_eq!(to_gsm7_owned(t.clone()), to_gsm7(&t), "{b}");
        }
    }

    #[test]
    fn paragraphs_joined_like_paragraphs() {
        for t in ["Hoi <b>,\n\nZie https://lumen.nl/hulp.\nen www.x.nl", "", "\n\n\n", "a\n\n\n\nb\nc"] {
            assert_eq!(paragraphs_joined(t), paragraphs(t).join("\n"), "{t:?}");
        }
    }

    #[test]
    fn sms_units_like_checker() {
        assert_eq!(sms_units("abc €"), (6, 306));
        assert_eq!(sms_units("Zoë"), (3, 134));
        assert_eq!(to_gsm7("Zoë’s – café"), "Zoe's - café");
    }

    #[test]
    fn links_and_escapes() {
        let p = paragraphs("Hoi <b>,\n\nZie https://lumen.nl/hulp.");
        assert_eq!(p[0], "<p>Hoi &lt;b&gt;,</p>");
        assert_eq!(p[1], "<p>Zie <a href=\"https://lumen.nl/hulp\">https://lumen.nl/hulp</a>.</p>");
    }
}

#[cfg(test)]
mod tidy_tests {
    use super::tidy;

    #[test]
    fn tidies_in_place_like_tidy() {
        let cases = [
            "  Hoi  Daan ,\n\n\n\nJe  pakket .\n  \nDag\n",
            "\n\na\nb\n\n",
            "",
            "\n",
            " \t \n .,\n\t,x ,  . y\r\n\r\nz\r",
            "Zoë  ,  é .\n\n \n  ü\n",
            "a\r\n\r\n\r\nb \r",
        ];
        for c in cases {
            assert_eq!(super::tidy_owned(c.to_string()), tidy(c), "{c:?}");
        }
        // And strings made of the characters tidy cares about.
        let alphabet = [" ", "\t", ".", ",", "\n", "\r", "a", "é", "bc"];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut c = String::new();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            for _ in 0..(seed >> 59) {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                c.push_str(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            assert_eq!(super::tidy_owned(c.clone()), tidy(&c), "{c:?}");
        }
    }

    #[test]
    fn tidies() {
        assert_eq!(tidy("  Hoi  Daan ,\n\n\n\nJe  pakket .\n  \nDag\n"), "Hoi Daan,\n\nJe pakket.\n\nDag");
        assert_eq!(tidy("\n\na\nb\n\n"), "a\nb");
    }
}
