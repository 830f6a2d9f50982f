//! The template language as the fast path reads it: our own parser of the subset of
//! Handlebars the fast path translates, so that it depends on no internal type of the
//! `handlebars` crate.
//!
//! The subset: text (with `\{{` escapes), `{{path.to.var}}`, `{{{triple}}}`, helper calls
//! with string, number, `true`/`false`/`null`, path and sub-expression arguments
//! (`{{t "je" "u"}}`, `{{trunc x 20}}`, `(eq a "b")`), blocks `{{#helper …}}` with
//! `{{else}}` / `{{^}}` and `{{else helper …}}` chains, comments `{{! }}` / `{{!-- --}}`, and
//! `~` whitespace control. Anything else (partials, decorators, raw blocks, hashes, block
//! parameters, `@`/`../`/`[…]`/`this` paths, other numbers, a syntax error) is
//! [`Unsupported`]: the template then renders on Handlebars.
//!
//! What it reproduces byte for byte is handlebars-rust 6's whitespace handling
//! (`Template::compile2` with the pest grammar in `grammar.pest`):
//! - a block tag, `{{else}}` or comment alone on its line (only spaces and tabs around it)
//!   removes that line: the spaces before it, and after it the spaces and one line break;
//!   the end of the template counts as a line break, the start as the start of a line;
//! - `{{~` trims all whitespace before the tag, `~}}` all whitespace after it — and, as
//!   handlebars-rust does, keeps trimming the text after the next comment as well, until
//!   another tag that may carry a `~` is read;
//! - whitespace-only text between two tags is what pest's implicit whitespace skips: it is
//!   dropped after a `~}}` without resetting the pending line removal, which then applies to
//!   the next text (so `{{#if a~}}` + newline + `{{b}} c` writes `bc`).
//!
//! The mirror is kept faithful by `tests/render_equivalence.rs`, whose property test renders
//! generated templates on both paths.

/// The template uses what the fast path does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsupported;

type Parse<T> = Result<T, Unsupported>;

/// A literal argument.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    /// A whole number that fits `u64` (others are [`Unsupported`]).
    Int(u64),
    Str(String),
}

/// One argument of a helper.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    /// `a.b.c` (or `a/b/c`): the names of its segments.
    Path(Vec<String>),
    Literal(Literal),
    /// `(helper args…)`.
    Sub(Call),
}

/// `helper args…` inside a tag.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub helper: String,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Element {
    /// Text as written out (escapes removed, whitespace control applied).
    Text(String),
    /// A comment: writes nothing (kept because the whitespace rules look at what precedes).
    Comment,
    /// `{{path}}`; `triple` for `{{{path}}}`, which is never HTML-escaped.
    Value { path: Vec<String>, triple: bool },
    /// `{{helper args…}}` (or `{{{…}}}`).
    Call(Call),
    /// `{{#helper args}}then{{else}}otherwise{{/helper}}`; an `{{else other …}}` chain is an
    /// inner block, alone in `otherwise`.
    Block { call: Call, then: Vec<Element>, otherwise: Vec<Element> },
}

/// Parses one template source; [`Unsupported`] for anything outside the subset.
pub(crate) fn parse(src: &str) -> Parse<Vec<Element>> {
    let cur = Cursor { src, pos: 0 };
    let mut p = Parser { cur, root: Vec::new(), open: Vec::new(), omit_ws_after: false, trim_line: false };
    loop {
        let start = p.cur.pos;
        let text = p.cur.text();
        p.text(start, text);
        if p.cur.at_end() {
            break;
        }
        let tag_start = p.cur.pos;
        let tag = p.cur.tag()?;
        p.tag(tag, tag_start)?;
    }
    if !p.open.is_empty() {
        return Err(Unsupported);
    }
    Ok(p.root)
}

/// What one `{{…}}` is.
enum Tag {
    Value { path: Vec<String>, triple: bool, tilde: Tilde },
    Call { call: Call, tilde: Tilde },
    Open { call: Call, tilde: Tilde },
    /// `{{else}}` (`call` None) or `{{else helper …}}`.
    Else { call: Option<Call>, tilde: Tilde },
    Close { helper: String, tilde: Tilde },
    Comment,
}

/// `{{~` (`before`) and `~}}` (`after`).
#[derive(Default, Clone, Copy)]
struct Tilde {
    before: bool,
    after: bool,
}

/// A block being read.
struct Open {
    /// The arms read so far, each with the call that chooses it: the block's own first,
    /// then each `{{else helper …}}`.
    arms: Vec<(Call, Vec<Element>)>,
    /// The arm being read.
    arm: Arm,
    body: Vec<Element>,
}

enum Arm {
    Call(Call),
    /// The final `{{else}}`.
    Else,
}

/// Builds the tree as handlebars-rust's `compile2` does, with the same state.
struct Parser<'s> {
    cur: Cursor<'s>,
    root: Vec<Element>,
    open: Vec<Open>,
    /// The last tag that may carry a `~` had `~}}`: the next text loses its leading whitespace.
    omit_ws_after: bool,
    /// The last block tag or comment stood alone on its line: the next text loses the rest
    /// of that line.
    trim_line: bool,
}

fn is_pest_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_space_or_tab(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn strip_first_newline(s: &str) -> &str {
    s.strip_prefix("\r\n").or_else(|| s.strip_prefix('\n')).unwrap_or(s)
}

/// Nothing but spaces and tabs before a line break (handlebars' `starts_with_empty_line`).
fn starts_with_empty_line(s: &str) -> bool {
    s.trim_start_matches(is_space_or_tab).starts_with(['\n', '\r'])
}

/// Nothing but spaces and tabs since the last line break or the start.
fn ends_with_empty_line(s: &str) -> bool {
    let s = s.trim_end_matches(is_space_or_tab);
    s.ends_with(['\n', '\r']) || s.is_empty()
}

impl Parser<'_> {
    fn body(&mut self) -> &mut Vec<Element> {
        match self.open.last_mut() {
            Some(open) => &mut open.body,
            None => &mut self.root,
        }
    }

    /// The text between two tags (`start` where it began in the source).
    fn text(&mut self, start: usize, text: String) {
        if text.is_empty() {
            return;
        }
        let only_whitespace = text.chars().all(is_pest_whitespace);
        if only_whitespace && start > 0 {
            // Pest's implicit whitespace skipped it; compile2 adds it back as the text before
            // the next tag, unless a `~}}` dropped it (which leaves `trim_line` pending).
            if !self.omit_ws_after {
                let text = self.trimmed(text, false);
                self.body().push(Element::Text(text));
                self.trim_line = false;
            }
        } else {
            let text = self.trimmed(text, self.omit_ws_after);
            self.body().push(Element::Text(text));
            self.trim_line = false;
        }
    }

    /// handlebars' `raw_string`: a `~}}` before trims all leading whitespace, else a
    /// standalone tag before trims the rest of its line.
    fn trimmed(&self, text: String, omit_ws: bool) -> String {
        if omit_ws {
            text.trim_start().to_string()
        } else if self.trim_line {
            strip_first_newline(text.trim_start_matches(is_space_or_tab)).to_string()
        } else {
            text
        }
    }

    /// `{{~`: the text before loses its trailing whitespace.
    fn tilde_before(&mut self, tilde: Tilde) {
        if tilde.before {
            if let Some(Element::Text(text)) = self.body().last_mut() {
                text.truncate(text.trim_end().len());
            }
        }
        self.omit_ws_after = tilde.after;
    }

    /// handlebars' `process_standalone_statement` for the tag at `start..end`: is it alone on
    /// its line? If so the spaces before it on that line go now, the rest of it with the
    /// next text.
    fn standalone(&mut self, start: usize, end: usize) -> bool {
        let src = self.cur.src;
        let after = &src[end..];
        if !(starts_with_empty_line(after) || after.is_empty()) {
            return false;
        }
        let alone = ends_with_empty_line(&src[..start]);
        if alone {
            if let Some(Element::Text(text)) = self.body().last_mut() {
                text.truncate(text.trim_end_matches(is_space_or_tab).len());
            }
        }
        start == 0 || alone
    }

    fn tag(&mut self, tag: Tag, start: usize) -> Parse<()> {
        let end = self.cur.pos;
        match tag {
            Tag::Value { path, triple, tilde } => {
                self.tilde_before(tilde);
                self.body().push(Element::Value { path, triple });
            }
            Tag::Call { call, tilde } => {
                self.tilde_before(tilde);
                self.body().push(Element::Call(call));
            }
            Tag::Open { call, tilde } => {
                self.tilde_before(tilde);
                self.trim_line = self.standalone(start, end);
                self.open.push(Open { arms: Vec::new(), arm: Arm::Call(call), body: Vec::new() });
            }
            Tag::Else { call, tilde } => {
                self.tilde_before(tilde);
                self.trim_line = self.standalone(start, end);
                let open = self.open.last_mut().ok_or(Unsupported)?;
                let next = match call {
                    Some(call) => Arm::Call(call),
                    None => Arm::Else,
                };
                // The grammar allows nothing after the final `{{else}}` but the end.
                let Arm::Call(done) = std::mem::replace(&mut open.arm, next) else { return Err(Unsupported) };
                open.arms.push((done, std::mem::take(&mut open.body)));
            }
            Tag::Close { helper, tilde } => {
                self.tilde_before(tilde);
                self.trim_line = self.standalone(start, end);
                let open = self.open.pop().ok_or(Unsupported)?;
                let block = close(open, &helper)?;
                self.body().push(block);
            }
            Tag::Comment => {
                self.trim_line = self.standalone(start, end);
                self.body().push(Element::Comment);
            }
        }
        Ok(())
    }
}

/// The block of `open`, ended by `{{/helper}}`: its arms folded into nested blocks, as
/// handlebars nests an `{{else if}}` chain.
fn close(open: Open, helper: &str) -> Parse<Element> {
    let Open { mut arms, arm, body } = open;
    let mut otherwise = match arm {
        Arm::Call(call) => {
            arms.push((call, body));
            Vec::new()
        }
        Arm::Else => body,
    };
    if arms.first().is_none_or(|(call, _)| call.helper != helper) {
        return Err(Unsupported);
    }
    for (call, then) in arms.into_iter().rev() {
        otherwise = vec![Element::Block { call, then, otherwise }];
    }
    otherwise.pop().ok_or(Unsupported)
}

/// `ASCII alphanumerics`, `-`, `_`, `$`, `:` and every non-ASCII character (the grammar's
/// `symbol_char`).
fn is_symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '$' | ':') || !c.is_ascii()
}

/// What a tag holds between its braces: a value, or a helper with arguments.
enum Inner {
    Path(Vec<String>),
    Call(Call),
}

struct Cursor<'s> {
    src: &'s str,
    pos: usize,
}

impl<'s> Cursor<'s> {
    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, s: &str) -> Parse<()> {
        if self.eat(s) {
            Ok(())
        } else {
            Err(Unsupported)
        }
    }

    /// Pest's implicit whitespace between the parts of a tag.
    fn ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches(is_pest_whitespace).len();
    }

    /// Text up to the next tag (the grammar's `raw_text`): `\{{` (and `\{{{{`) is written as
    /// `{{`, and a run of backslashes before a tag loses one.
    fn text(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            let rest = self.rest();
            if rest.starts_with("{{") {
                break;
            }
            if c == '\\' {
                if rest[1..].starts_with("{{") {
                    let len = if rest[1..].starts_with("{{{{") { 5 } else { 3 };
                    out.push_str(&rest[1..len]);
                    self.pos += len;
                    continue;
                }
                let slashes = rest[1..].len() - rest[1..].trim_start_matches('\\').len();
                if slashes > 0 && rest[1 + slashes..].starts_with("{{") {
                    out.push_str(&rest[1..1 + slashes]);
                    self.pos += 1 + slashes;
                    continue;
                }
            }
            out.push(c);
            self.pos += c.len_utf8();
        }
        out
    }

    /// One tag, the cursor at its `{{`.
    fn tag(&mut self) -> Parse<Tag> {
        let start = self.pos;
        if self.rest().starts_with("{{!") {
            return self.comment();
        }
        if self.rest().starts_with("{{{") {
            // `{{{~ x ~}}}`; failing that, `{{{x} }}` is the other spelling, below.
            self.pos += 3;
            if let Ok(tag) = self.triple_legacy() {
                return Ok(tag);
            }
            self.pos = start;
        }
        self.expect("{{")?;
        self.ws();
        let before = self.eat("~");
        self.ws();
        match self.peek() {
            Some('{') => {
                self.pos += 1;
                self.ws();
                let inner = self.inner()?;
                self.ws();
                self.expect("}")?;
                let tilde = Tilde { before, after: self.close("}}")? };
                Ok(value_or_call(inner, true, tilde))
            }
            Some('#') => {
                self.pos += 1;
                self.ws();
                let call = self.exp_line()?;
                let tilde = Tilde { before, after: self.close("}}")? };
                Ok(Tag::Open { call, tilde })
            }
            Some('/') => {
                self.pos += 1;
                self.ws();
                let helper = self.identifier().ok_or(Unsupported)?.to_string();
                let tilde = Tilde { before, after: self.close("}}")? };
                Ok(Tag::Close { helper, tilde })
            }
            _ if self.rest().starts_with("else") || self.rest().starts_with('^') => {
                self.pos += if self.rest().starts_with('^') { 1 } else { 4 };
                let item = self.pos;
                if let Ok(after) = self.close("}}") {
                    return Ok(Tag::Else { call: None, tilde: Tilde { before, after } });
                }
                self.pos = item;
                self.ws();
                let call = self.exp_line()?;
                let tilde = Tilde { before, after: self.close("}}")? };
                Ok(Tag::Else { call: Some(call), tilde })
            }
            _ => {
                let inner = self.inner()?;
                let tilde = Tilde { before, after: self.close("}}")? };
                Ok(value_or_call(inner, false, tilde))
            }
        }
    }

    /// After `{{{`: `~? inner ~? }}}`.
    fn triple_legacy(&mut self) -> Parse<Tag> {
        self.ws();
        let before = self.eat("~");
        self.ws();
        let inner = self.inner()?;
        let tilde = Tilde { before, after: self.close("}}}")? };
        Ok(value_or_call(inner, true, tilde))
    }

    /// `~? end` with whitespace around: whether there was a `~`.
    fn close(&mut self, end: &str) -> Parse<bool> {
        self.ws();
        let after = self.eat("~");
        self.ws();
        self.expect(end)?;
        Ok(after)
    }

    /// `{{!-- … --}}` (ends at the first `--}}`) or, failing that, `{{! … }}`.
    fn comment(&mut self) -> Parse<Tag> {
        self.pos += 3;
        let body = self.pos;
        self.ws();
        if self.eat("--") {
            if let Some(i) = self.rest().find("--}}") {
                self.pos += i + 4;
                return Ok(Tag::Comment);
            }
        }
        self.pos = body;
        let i = self.rest().find("}}").ok_or(Unsupported)?;
        self.pos += i + 2;
        Ok(Tag::Comment)
    }

    /// The grammar's `exp_line` of a block tag: a helper and its arguments (maybe none).
    fn exp_line(&mut self) -> Parse<Call> {
        let helper = self.identifier().ok_or(Unsupported)?.to_string();
        let args = self.args()?;
        Ok(Call { helper, args })
    }

    /// `helper arg…` (at least one argument), else a path.
    fn inner(&mut self) -> Parse<Inner> {
        let start = self.pos;
        if let Some(helper) = self.identifier() {
            let helper = helper.to_string();
            let args = self.args()?;
            if !args.is_empty() {
                return Ok(Inner::Call(Call { helper, args }));
            }
        }
        self.pos = start;
        self.path()?.map(Inner::Path).ok_or(Unsupported)
    }

    fn args(&mut self) -> Parse<Vec<Arg>> {
        let mut args = Vec::new();
        loop {
            let before = self.pos;
            self.ws();
            match self.arg()? {
                Some(arg) => args.push(arg),
                None => {
                    self.pos = before;
                    return Ok(args);
                }
            }
        }
    }

    /// One argument; None where none starts (the caller then expects the end of the tag).
    fn arg(&mut self) -> Parse<Option<Arg>> {
        let start = self.pos;
        if let Some(word) = self.identifier() {
            // `as |x|` block parameters, `else`, `key=value` hashes: not in the subset.
            if word == "as" || word == "else" {
                return Err(Unsupported);
            }
            self.ws();
            if self.peek() == Some('=') {
                return Err(Unsupported);
            }
            self.pos = start;
        }
        let Some(c) = self.peek() else { return Ok(None) };
        match c {
            '"' | '\'' => self.string().map(|s| Some(Arg::Literal(Literal::Str(s)))),
            '(' => {
                self.pos += 1;
                self.ws();
                let Inner::Call(call) = self.inner()? else { return Err(Unsupported) };
                self.ws();
                self.expect(")")?;
                Ok(Some(Arg::Sub(call)))
            }
            // An array or object literal, `@index`, `[key]`: not in the subset. (`.name`
            // after a helper is no argument: the tag is then the path `helper.name`.)
            '[' | '{' | '@' => Err(Unsupported),
            '.' => Ok(None),
            _ => {
                if let Some(n) = self.number()? {
                    return Ok(Some(Arg::Literal(Literal::Int(n))));
                }
                for (word, literal) in
                    [("null", Literal::Null), ("true", Literal::Bool(true)), ("false", Literal::Bool(false))]
                {
                    if self.rest().starts_with(word) && !self.rest()[word.len()..].starts_with(is_symbol_char) {
                        self.pos += word.len();
                        return Ok(Some(Arg::Literal(literal)));
                    }
                }
                Ok(self.path()?.map(Arg::Path))
            }
        }
    }

    /// A `number_literal` of the grammar that is a whole `u64`; None where the grammar sees
    /// no number (then it is a path); other numbers are unsupported.
    fn number(&mut self) -> Parse<Option<u64>> {
        let start = self.pos;
        let digits = |c: &mut Cursor<'_>| {
            let rest = c.rest();
            let n = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            c.pos += n;
            n
        };
        self.eat("-");
        if digits(self) == 0 {
            self.pos = start;
            return Ok(None);
        }
        self.eat(".");
        digits(self);
        let exponent = self.pos;
        if self.eat("E") {
            self.eat("-");
            if digits(self) == 0 {
                self.pos = exponent;
            }
        }
        if self.peek().is_some_and(is_symbol_char) {
            self.pos = start;
            return Ok(None);
        }
        let text = &self.src[start..self.pos];
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => v.as_u64().map(Some).ok_or(Unsupported),
            Err(_) => Err(Unsupported),
        }
    }

    /// A string literal in double or single quotes, read as handlebars reads it (JSON).
    fn string(&mut self) -> Parse<String> {
        let start = self.pos;
        let quote = self.peek().ok_or(Unsupported)?;
        self.pos += 1;
        loop {
            let c = self.peek().ok_or(Unsupported)?;
            self.pos += c.len_utf8();
            if c == quote {
                break;
            }
            if c == '\\' {
                let e = self.peek().ok_or(Unsupported)?;
                let escapes = if quote == '"' { "\"\\/bfnrtu" } else { "'\\/bfnrtu" };
                if !escapes.contains(e) {
                    return Err(Unsupported);
                }
                self.pos += 1;
                if e == 'u' {
                    let hex = self.rest().get(..4).ok_or(Unsupported)?;
                    if !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                        return Err(Unsupported);
                    }
                    self.pos += 4;
                }
            }
        }
        let literal = &self.src[start..self.pos];
        let json = if quote == '"' {
            literal.to_string()
        } else {
            let inner = &literal[1..literal.len() - 1];
            format!("\"{}\"", inner.replace("\\'", "'").replace('"', "\\\""))
        };
        match serde_json::from_str::<serde_json::Value>(&json) {
            Ok(serde_json::Value::String(s)) => Ok(s),
            _ => Err(Unsupported),
        }
    }

    fn identifier(&mut self) -> Option<&'s str> {
        let rest = self.rest();
        let len = rest.len() - rest.trim_start_matches(is_symbol_char).len();
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }

    /// `a.b/c`: the segments; None where no path starts. `this` is unsupported.
    fn path(&mut self) -> Parse<Option<Vec<String>>> {
        let Some(first) = self.identifier() else { return Ok(None) };
        let mut segs = vec![first.to_string()];
        loop {
            let rest = self.rest();
            let more = (rest.starts_with('.') || rest.starts_with('/')) && rest[1..].starts_with(is_symbol_char);
            if !more {
                break;
            }
            self.pos += 1;
            if let Some(seg) = self.identifier() {
                segs.push(seg.to_string());
            }
        }
        if segs.iter().any(|s| s == "this") {
            return Err(Unsupported);
        }
        Ok(Some(segs))
    }
}

fn value_or_call(inner: Inner, triple: bool, tilde: Tilde) -> Tag {
    match inner {
        Inner::Path(path) => Tag::Value { path, triple, tilde },
        Inner::Call(call) => Tag::Call { call, tilde },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree written out with `yes` true, `no` false and `name` "Ann"; and Handlebars,
    /// given the same source and facts, must write the very same bytes.
    fn render(src: &str) -> String {
        fn walk(elements: &[Element], out: &mut String) {
            for e in elements {
                match e {
                    Element::Text(s) => out.push_str(s),
                    Element::Comment => {}
                    Element::Value { path, .. } => out.push_str(if path == &["name"] { "Ann" } else { "?" }),
                    Element::Call(call) => panic!("no helpers here: {call:?}"),
                    Element::Block { call, then, otherwise } => {
                        let holds = call.args == [Arg::Path(vec!["yes".to_string()])];
                        let positive = call.helper == "if";
                        walk(if holds == positive { then } else { otherwise }, out);
                    }
                }
            }
        }
        let tree = parse(src).unwrap_or_else(|_| panic!("{src:?} is in the subset"));
        let mut ours = String::new();
        walk(&tree, &mut ours);
        let facts = serde_json::json!({ "yes": true, "no": false, "name": "Ann" });
        let theirs = handlebars::Handlebars::new().render_template(src, &facts).expect("handlebars renders");
        assert_eq!(ours, theirs, "{src:?}");
        ours
    }

    #[test]
    fn a_block_tag_alone_on_its_line_takes_the_whole_line_with_it() {
        assert_eq!(render("a\n  {{#if yes}}  \nb\n\t{{/if}}\nc"), "a\nb\nc");
        assert_eq!(render("a\r\n{{#if yes}}\r\nb\r\n{{/if}}\r\nc"), "a\r\nb\r\nc");
        assert_eq!(render("{{#unless no}}\nfirst line\n{{/unless}}\n"), "first line\n");
    }

    #[test]
    fn a_block_tag_among_words_leaves_the_line_alone() {
        assert_eq!(render("a {{#if yes}}b{{/if}} c\n"), "a b c\n");
        assert_eq!(render("a\n{{#if yes}}b\n{{/if}}c"), "a\nb\nc");
        assert_eq!(render("x {{#if no}}\ny\n{{/if}}\nz"), "x z");
    }

    #[test]
    fn else_and_else_if_alone_on_their_lines_go_too() {
        assert_eq!(render("{{#if no}}\nx\n{{else}}\ny\n{{/if}}\n"), "y\n");
        assert_eq!(render("{{#if no}}\nx\n  {{else if yes}}  \ny\n{{^}}\nz\n{{/if}}"), "y\n");
        assert_eq!(render("{{#if no}}x{{else unless no}}y{{else}}z{{/if}}"), "y");
    }

    #[test]
    fn the_end_of_the_template_counts_as_a_line_break() {
        assert_eq!(render("a\n{{#if yes}}\nb\n{{/if}}"), "a\nb\n");
        assert_eq!(render("a\n{{#if yes}}\nb\n{{/if}}\n"), "a\nb\n");
        // Spaces without a line break after the last tag are no empty line: they stay.
        assert_eq!(render("a\n{{#if yes}}\nb\n{{/if}}   "), "a\nb\n   ");
    }

    #[test]
    fn a_comment_alone_on_its_line_takes_the_line_and_inline_it_writes_nothing() {
        assert_eq!(render("a\n  {{! a note }}\nb"), "a\nb");
        assert_eq!(render("a {{!-- it may hold }} --}} b"), "a  b");
        assert_eq!(render("a {{!--}} b"), "a  b");
    }

    #[test]
    fn a_tilde_trims_every_whitespace_on_its_side() {
        assert_eq!(render("a  \n {{~name~}} \n\t b"), "aAnnb");
        assert_eq!(render("{{#if yes~}}\n  b  {{~/if}}!"), "b!");
        assert_eq!(render("{{#if no}}x{{~else~}}   y{{/if}}"), "y");
    }

    #[test]
    fn the_trim_after_a_tilde_runs_on_past_a_comment_as_in_handlebars() {
        assert_eq!(render("{{name~}} x {{! c }} y"), "Annx y");
        // The line removal of a standalone tag waits for the next text, past an expression.
        assert_eq!(render("{{#if yes~}}\n{{name}} x{{/if}}"), "Annx");
    }

    #[test]
    fn a_backslash_escapes_braces() {
        assert_eq!(render("\\{{name}} is {{name}}"), "{{name}} is Ann");
        assert_eq!(render("\\\\{{name}}"), "\\Ann");
        assert_eq!(render("a \\ b"), "a \\ b");
    }

    #[test]
    fn whitespace_inside_tags_means_nothing() {
        assert_eq!(render("{{ name }} {{{ name }}} {{# if  yes }}y{{ / if }}"), "Ann Ann y");
    }

    #[test]
    fn helper_arguments_are_read_as_handlebars_reads_them() {
        let call = |src: &str| match parse(src) {
            Ok(tree) => match tree.as_slice() {
                [Element::Call(call)] => call.clone(),
                other => panic!("{other:?}"),
            },
            Err(_) => panic!("{src:?} is in the subset"),
        };
        let s = |s: &str| Arg::Literal(Literal::Str(s.to_string()));
        assert_eq!(call(r#"{{t "je" 'u'}}"#).args, [s("je"), s("u")]);
        assert_eq!(call(r#"{{t "a \"b\"\n" 'it''s'}}"#).args, [s("a \"b\"\n"), s("it"), s("s")]);
        assert_eq!(call(r#"{{t 'say "hi"' 'it\'s'}}"#).args, [s("say \"hi\""), s("it's")]);
        assert_eq!(
            call("{{trunc items.first 28}}").args,
            [Arg::Path(vec!["items".into(), "first".into()]), Arg::Literal(Literal::Int(28))]
        );
        assert_eq!(call("{{x true null false1}}").args[2], Arg::Path(vec!["false1".into()]));
        let sub = call(r#"{{x (eq tone "warm")}}"#);
        let eq = Call { helper: "eq".into(), args: vec![Arg::Path(vec!["tone".into()]), s("warm")] };
        assert_eq!(sub.args, [Arg::Sub(eq)]);
    }

    #[test]
    fn what_the_fast_path_does_not_read_is_unsupported() {
        for src in [
            "{{> partial}}",
            "{{#each items as |item|}}{{item}}{{/each}}",
            "{{#*inline \"x\"}}y{{/inline}}",
            "{{{{raw}}}}x{{{{/raw}}}}",
            "{{items.[0]}}",
            "{{../name}}",
            "{{this.name}}",
            "{{@index}}",
            "{{x key=1}}",
            "{{x 1.5}}",
            "{{x -1}}",
            "{{&name}}",
            "{{#if yes}}open",
            "{{#if yes}}x{{/unless}}",
            "{{#if yes}}x{{else}}y{{else}}z{{/if}}",
            "{{else}}",
            "{{name",
        ] {
            assert_eq!(parse(src), Err(Unsupported), "{src:?}");
        }
    }
}
