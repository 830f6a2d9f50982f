//! The fast render path writes exactly the bytes the Handlebars reference path writes: every
//! kind × channel × language × tone, with notices that take every branch.
mod render_support;

use belofte_core::domain::{Channel, Item, Kind, Lang, PickupPoint, Reason};
use belofte_core::notice::Notice;
use belofte::render::Templates;
use proptest::prelude::*;
use render_support::*;

/// Notices that push every branch: dates or none, vouchers raised or not, a second slip,
/// several items, long and odd names, every reason, unknown carriers ...
fn variants(kind: Kind, lang: Lang, brand: &str) -> Vec<Notice> {
    let base = in_lang(for_brand(notice(kind), brand), lang);
    let mut out = vec![base.clone()];
    let mut v = |f: &dyn Fn(&mut Notice)| {
        let mut n = base.clone();
        f(&mut n);
        out.push(n);
    };
    v(&|n| {
        n.new = None;
        n.next_update_at = Some(at("2026-11-25T12:00:00+01:00"));
    });
    v(&|n| {
        n.new = None;
        n.next_update_at = None;
        n.compensation_eur = None;
    });
    v(&|n| {
        n.again = true;
        n.compensation_eur = Some(10);
        n.previous_compensation_eur = Some(5);
    });
    v(&|n| {
        n.again = true;
        n.compensation_eur = Some(5);
        n.previous_compensation_eur = Some(10);
        n.previous = Some(at("2026-11-22T22:00:00+01:00"));
    });
    v(&|n| {
        n.compensation_eur = Some(0);
        n.carrier = Some("DHL".to_string());
        n.promise_label = Some("op de releasedag".to_string());
    });
    v(&|n| {
        n.tracking_number = None;
        n.carrier = Some("some-local-courier".to_string());
        n.items.push(Item { sku: "X".into(), name: "USB-C lader".to_string(), qty: 2 });
        n.items.push(Item { sku: "Y".into(), name: "Hoes".to_string(), qty: 1 });
    });
    v(&|n| {
        n.carrier = None;
        n.items = vec![Item { sku: "A".into(), name: "Printpapier A4 (2500 vel)".to_string(), qty: 3 }];
        n.items.push(Item { sku: "B".into(), name: "Nietjes".to_string(), qty: 1 });
    });
    v(&|n| {
        n.items.clear();
        n.customer_name = "  Zoë   O'Brien-<b>Jansen</b> & \"co\" = `x` ".to_string();
        n.order_id = "B-<1>&'2'".to_string();
    });
    v(&|n| {
        n.customer_name = String::new();
        n.reason = None;
    });
    v(&|n| {
        n.customer_name = "Maximiliaan Alexander Zoë van den Heuvel-Oudshoorn".to_string();
        n.order_id = "B-2026-1120-004711".to_string();
        n.items = vec![
            Item {
                sku: "A".into(),
                name: "Ergonomische bureaustoel Ergo Plus Deluxe met hoofdsteun (antraciet)".to_string(),
                qty: 12,
            },
            Item { sku: "B".into(), name: "Printpapier".to_string(), qty: 1 },
        ];
        n.again = true;
        n.new = Some(at("2026-09-30T22:00:00+02:00"));
        n.compensation_eur = Some(20);
        n.previous_compensation_eur = Some(10);
        n.pickup_point = Some(PickupPoint {
            name: "Primera Centrum Hoog Catharijne".to_string(),
            address: "Godebaldkwartier 1045, 3511 DB Utrecht".to_string(),
        });
        n.next_attempt_at = Some(at("2026-09-30T09:00:00+02:00"));
        n.delivered_at = Some(at("2026-09-30T14:00:00+02:00"));
        n.failed_attempts = 2;
    });
    v(&|n| {
        *n = with_pickup(n.clone());
        n.new = None;
        n.next_attempt_at = Some(at("2026-11-25T09:00:00+01:00"));
        n.failed_attempts = 1;
        n.delivered_at = Some(at("2026-11-24T14:12:00+01:00"));
    });
    v(&|n| {
        n.new = None;
        n.previous = None;
        n.next_attempt_at = None;
        n.pickup_point = None;
        n.delivered_at = None;
        n.next_update_at = Some(at("2026-03-29T01:30:00+01:00"));
    });
    for reason in Reason::ALL {
        v(&|n| n.reason = Some(reason));
        v(&|n| {
            n.reason = Some(reason);
            n.again = true;
            n.new = None;
            n.next_update_at = Some(at("2026-11-21T12:00:00+01:00"));
        });
    }
    out
}

#[test]
fn fast_path_writes_the_same_bytes_as_handlebars() {
    let t = Templates::load(&templates_dir()).expect("shipped templates load");
    let mut compared = 0;
    for kind in Kind::CUSTOMER {
        for lang in Lang::ALL {
            for brand_id in ["lumen", "hofman", "pip"] {
                let b = brand(brand_id);
                for channel in [Channel::Email, Channel::Sms] {
                    if !t.has(kind, channel, lang) {
                        continue;
                    }
                    for n in variants(kind, lang, brand_id) {
                        for with_html in [false, true] {
                            let reference = t.render_reference(&n, &b, channel, with_html).expect("reference renders");
                            let fast = t
                                .render_fast(&n, &b, channel, with_html)
                                .unwrap_or_else(|| panic!("the fast path renders {kind} {channel} {lang:?} {brand_id}"));
                            assert_eq!(fast, reference, "{kind} {channel} {lang:?} {brand_id}: {n:?}");
                            let public = if with_html { t.render(&n, &b, channel) } else { t.render_text(&n, &b, channel) };
                            assert_eq!(public.expect("renders"), reference);
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 1000, "{compared}");
}

/// A template the fast path does not compile still renders, through Handlebars, and is
/// counted (the daemon serves the count as `belofte_render_fallbacks_total`).
#[test]
fn a_template_the_fast_path_does_not_compile_falls_back_and_is_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("templates");
    copy(&templates_dir(), &dir);
    let sms = dir.join("delayed/nl/sms.txt.hbs");
    let src = std::fs::read_to_string(&sms).expect("read");
    // `with` is a Handlebars block helper the fast path leaves alone.
    std::fs::write(&sms, src.replacen("{{order_id}}", "{{#with customer}}{{first_name}}{{/with}} {{order_id}}", 1)).expect("write");
    let t = Templates::load(&dir).expect("templates load");
    let n = in_lang(for_brand(notice(Kind::Delayed), "lumen"), Lang::Nl);
    let b = brand("lumen");
    assert_eq!(t.fallbacks(), 0);
    let r = t.render(&n, &b, Channel::Sms).expect("renders on the slow path");
    assert!(r.text.contains("Daan B-"), "{}", r.text);
    assert_eq!(t.fallbacks(), 1, "the fallback is counted");
    t.render(&n, &b, Channel::Email).expect("email renders");
    assert_eq!(t.fallbacks(), 1, "the email still takes the fast path");
}

fn copy(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

// ------------------------------------------------------------ generated templates

/// Text around the tags: words, spaces, tabs, line breaks (Unix and Windows), an escaped
/// tag, a lone brace, so that tags land inline and alone on their lines.
fn glue() -> impl Strategy<Value = String> {
    let bit = prop_oneof![
        4 => Just(""),
        4 => Just(" "),
        2 => Just("  "),
        1 => Just("\t"),
        5 => Just("\n"),
        1 => Just("\r\n"),
        3 => Just("word"),
        1 => Just(" . "),
        1 => Just("\\{{order_id}}"),
        1 => Just("}"),
    ];
    prop::collection::vec(bit, 0..4).prop_map(|bits| bits.concat())
}

/// A tag that writes something (or nothing: a comment).
fn inline_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{order_id}}"),
        Just("{{ customer.first_name }}"),
        Just("{{{customer.name}}}"),
        Just("{{carrier}}"),
        Just("{{items.count}}"),
        Just("{{again}}"),
        Just("{{~order_id}}"),
        Just("{{order_id~}}"),
        Just("{{~ brand.name ~}}"),
        Just("{{t \"je\" \"u\"}}"),
        Just("{{t 'jij' \"u\" \"jij!\"}}"),
        Just("{{~t \"a\" \"b\"~}}"),
        Just("{{trunc customer.name 5}}"),
        Just("{{voice \"greeting\"}}"),
        Just("{{reason \"what\"}}"),
        Just("{{! a note }}"),
        Just("{{!-- a }} note --}}"),
        Just("{{!--x--}}"),
    ]
    .prop_map(str::to_string)
}

/// `(tag, helper)`: a block's first tag and the helper its end tag names.
fn block_open() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        Just(("{{#if again}}", "if")),
        Just(("{{#if voucher}}", "if")),
        Just(("{{#if carrier}}", "if")),
        Just(("{{#unless formal}}", "unless")),
        Just(("{{#if (eq tone \"warm\")}}", "if")),
        Just(("{{#if (ne lang \"nl\")}}", "if")),
        Just(("{{~#if playful~}}", "if")),
        Just(("{{# if  warm }}", "if")),
    ]
}

fn else_if() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("{{else if playful}}"), Just("{{else unless warm}}"), Just("{{~else if again~}}")]
}

fn else_tag() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("{{else}}"), Just("{{^}}"), Just("{{~else~}}"), Just("{{else~}}")]
}

fn block_close(helper: &str, tilde: bool) -> String {
    if tilde {
        format!("{{{{~/{helper}~}}}}")
    } else {
        format!("{{{{/{helper}}}}}")
    }
}

/// Template sources in the fast path's subset: text, values, helpers, comments and nested
/// `if`/`unless` blocks with `else if` and `else`, every tag with text around it.
fn template() -> impl Strategy<Value = String> {
    let leaf = (glue(), inline_tag(), glue()).prop_map(|(a, t, b)| format!("{a}{t}{b}"));
    leaf.prop_recursive(3, 32, 6, |inner| {
        let body = prop::collection::vec(inner.clone(), 0..4).prop_map(|parts| parts.concat());
        let block = (
            block_open(),
            body.clone(),
            prop::collection::vec((else_if(), body.clone()), 0..2),
            prop::option::of((else_tag(), body.clone())),
            any::<bool>(),
            (glue(), glue()),
        )
            .prop_map(|((open, helper), then, chain, otherwise, tilde, (before, after))| {
                let mut src = format!("{before}{open}{then}");
                for (tag, body) in chain {
                    src.push_str(tag);
                    src.push_str(&body);
                }
                if let Some((tag, body)) = otherwise {
                    src.push_str(tag);
                    src.push_str(&body);
                }
                src.push_str(&block_close(helper, tilde));
                src.push_str(&after);
                src
            });
        prop_oneof![
            1 => prop::collection::vec(inner, 1..4).prop_map(|parts| parts.concat()),
            2 => block,
        ]
    })
}

fn shipped() -> &'static Templates {
    static TEMPLATES: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(|| Templates::load(&templates_dir()).expect("shipped templates load"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Whatever the whitespace, the comments and the nesting, the fast path writes the bytes
    /// Handlebars writes; where Handlebars cannot render, the fast path gives up too.
    #[test]
    fn generated_templates_write_the_same_bytes_on_both_paths(
        src in template(),
        brand_id in prop::sample::select(vec!["lumen", "hofman", "pip"]),
        with_voucher in any::<bool>(),
        lang in prop::sample::select(vec![Lang::Nl, Lang::En]),
    ) {
        let mut n = in_lang(for_brand(notice(Kind::Delayed), brand_id), lang);
        if !with_voucher {
            n.compensation_eur = None;
            n.carrier = None;
        }
        let (fast, reference) = shipped().render_source(&src, &n, &brand(brand_id));
        match reference {
            Ok(reference) => prop_assert_eq!(fast, Some(reference), "{:?}", src),
            Err(e) => prop_assert!(fast.is_none(), "Handlebars fails ({}) but the fast path renders {:?}", e, src),
        }
    }
}
