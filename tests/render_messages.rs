//! What customers read: snapshots of representative messages (a wording change is a reviewed
//! diff) and the rules every message keeps.
mod render_support;

use belofte_core::domain::{Channel, Kind, Lang, Reason, Tone};
use belofte_core::notice::Notice;
use belofte::render::{sms_units, Rendered, Templates};
use render_support::*;

fn templates() -> Templates {
    Templates::load(&templates_dir()).expect("shipped templates load")
}

fn render(n: &Notice, channel: Channel) -> Rendered {
    let brand = brand(&n.brand);
    templates().render(n, &brand, channel).expect("renders")
}

/// Email and SMS of one notice as one reviewable text.
fn both(n: &Notice) -> String {
    let t = templates();
    let brand = brand(&n.brand);
    let mut out = String::new();
    for channel in [Channel::Email, Channel::Sms] {
        if !t.has(n.kind, channel, n.lang) {
            continue;
        }
        let r = t.render(n, &brand, channel).expect("renders");
        match channel {
            Channel::Email => {
                out.push_str(&format!("SUBJECT: {}\n\n{}\n", r.subject.unwrap_or_default(), r.text));
            }
            _ => {
                let (used, limit) = sms_units(&r.text);
                out.push_str(&format!("\n----- SMS ({used}/{limit} units)\n{}\n", r.text));
            }
        }
    }
    out
}

#[test]
fn delayed_nl_warm_with_voucher() {
    insta::assert_snapshot!(both(&notice(Kind::Delayed)));
}

#[test]
fn delayed_again_nl_formal_without_voucher() {
    let mut n = for_brand(notice(Kind::Delayed), "hofman");
    n.again = true;
    n.compensation_eur = None;
    n.reason = Some(Reason::Weather);
    n.customer_name = "Ingrid Hoekstra".to_string();
    n.items = vec![belofte_core::domain::Item {
        sku: "PAP-A4-2500".into(),
        name: "Printpapier A4 (2500 vel)".to_string(),
        qty: 2,
    }];
    insta::assert_snapshot!(both(&n));
}

#[test]
fn delayed_again_nl_warm_voucher_raised() {
    let mut n = notice(Kind::Delayed);
    n.again = true;
    n.compensation_eur = Some(10);
    n.previous_compensation_eur = Some(5);
    insta::assert_snapshot!(both(&n));
}

#[test]
fn backorder_en_playful_without_date() {
    let mut n = in_lang(for_brand(notice(Kind::Backorder), "pip"), Lang::En);
    n.customer_name = "Oliver Bennett".to_string();
    n.items[0].name = "Wooden train set".to_string();
    n.reason = Some(Reason::OutOfStock);
    n.new = None;
    n.next_update_at = Some(at("2026-11-25T12:00:00+01:00"));
    n.compensation_eur = None;
    insta::assert_snapshot!(both(&n));
}

#[test]
fn delivery_failed_nl_with_pickup_point() {
    let mut n = with_pickup(notice(Kind::DeliveryFailed));
    n.customer_name = "Eva Dijkstra".to_string();
    n.items[0].name = "Lumen Buds Pro".to_string();
    n.reason = Some(Reason::NotHome);
    n.new = None;
    n.compensation_eur = None;
    n.next_attempt_at = Some(at("2026-11-25T09:00:00+01:00"));
    n.failed_attempts = 1;
    let out = both(&n);
    assert_eq!(out.matches("Primera Centrum").count(), 2, "email and SMS name the pickup point");
    insta::assert_snapshot!(out);
}

#[test]
fn at_risk_nl_warm() {
    let mut n = notice(Kind::AtRisk);
    n.reason = None;
    n.new = None;
    n.compensation_eur = None;
    n.next_update_at = Some(at("2026-11-21T12:00:00+01:00"));
    insta::assert_snapshot!(both(&n));
}

#[test]
fn update_nl_formal() {
    let mut n = for_brand(notice(Kind::Update), "hofman");
    n.reason = Some(Reason::OutOfStock);
    n.new = None;
    n.compensation_eur = None;
    n.next_update_at = Some(at("2026-11-26T12:00:00+01:00"));
    insta::assert_snapshot!(both(&n));
}

#[test]
fn late_followup_nl_playful_with_voucher() {
    let mut n = for_brand(notice(Kind::LateDeliveryFollowup), "pip");
    n.customer_name = "Lotte Visser".to_string();
    n.items[0].name = "Houten treinset".to_string();
    n.compensation_eur = Some(10);
    n.delivered_at = Some(at("2026-11-24T14:12:00+01:00"));
    insta::assert_snapshot!(both(&n));
}

#[test]
fn back_on_track_en_warm() {
    let mut n = in_lang(notice(Kind::BackOnTrack), Lang::En);
    n.reason = None;
    n.new = None;
    n.previous = Some(at("2026-11-20T22:00:00+01:00"));
    n.compensation_eur = None;
    insta::assert_snapshot!(both(&n));
}

#[test]
fn html_part_escapes_and_links() {
    let mut n = notice(Kind::Delayed);
    n.customer_name = "<script>alert(1)</script> Jansen".to_string();
    let r = render(&n, Channel::Email);
    let html = r.html.expect("email has html");
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
    assert!(html.contains("<a href=\"https://www.lumen.nl/klantenservice\">"), "{html}");
    assert!(html.contains("Lumen"));
    assert!(html.contains("<p"));
    insta::assert_snapshot!(render(&notice(Kind::Delayed), Channel::Email).html.expect("html"));
}

#[test]
fn dates_are_written_as_people_write_them() {
    let n = notice(Kind::Delayed);
    assert!(render(&n, Channel::Email).text.contains("dinsdag 24 november"));
    assert!(render(&in_lang(n.clone(), Lang::En), Channel::Email).text.contains("Tuesday 24 November"));
    let mut n = notice(Kind::Update);
    n.new = None;
    n.next_update_at = Some(at("2026-11-25T12:00:00+01:00"));
    assert!(render(&n, Channel::Email).text.contains("woensdag 25 november om 12:00"));
    let mut n = notice(Kind::Delayed);
    n.new = Some(at("2026-03-01T22:00:00+01:00"));
    assert!(render(&n, Channel::Email).text.contains("zondag 1 maart"), "no leading zero");
}

#[test]
fn dates_are_local_across_daylight_saving() {
    // 22:30 UTC on Saturday 24 October 2026 is already Sunday 00:30 in Amsterdam (CEST),
    // and after the clocks go back, 23:30 UTC on 25 October is 00:30 on Monday 26 (CET).
    let mut n = notice(Kind::Delayed);
    n.new = Some(at("2026-10-24T22:30:00Z"));
    assert!(render(&n, Channel::Email).text.contains("zondag 25 oktober"));
    n.new = Some(at("2026-10-25T23:30:00Z"));
    assert!(render(&n, Channel::Email).text.contains("maandag 26 oktober"));
    // Spring forward: 23:30 UTC on 28 March 2026 is 00:30 CET on Sunday 29 March.
    let mut n = in_lang(notice(Kind::Delayed), Lang::En);
    n.new = Some(at("2026-03-28T23:30:00Z"));
    assert!(render(&n, Channel::Email).text.contains("Sunday 29 March"));
    let mut n = notice(Kind::Update);
    n.new = None;
    n.next_update_at = Some(at("2026-03-29T10:00:00Z"));
    assert!(render(&n, Channel::Email).text.contains("zondag 29 maart om 12:00"), "CEST is UTC+2");
}

fn has_word(text: &str, words: &[&str]) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| words.iter().any(|x| w.eq_ignore_ascii_case(x)))
}

#[test]
fn register_follows_the_brand_tone() {
    let t = templates();
    for kind in Kind::CUSTOMER {
        for (id, tone) in [("hofman", Tone::Formal), ("lumen", Tone::Warm), ("pip", Tone::Playful)] {
            let mut n = for_brand(notice(kind), id);
            n.next_update_at = Some(at("2026-11-25T12:00:00+01:00"));
            for channel in [Channel::Email, Channel::Sms] {
                let r = t.render(&n, &brand(id), channel).expect("renders");
                let all = format!("{}\n{}", r.subject.unwrap_or_default(), r.text);
                match tone {
                    Tone::Formal => {
                        assert!(!has_word(&all, &["je", "jij", "jouw", "jou"]), "{kind} {channel}: {all}");
                        assert!(has_word(&all, &["u", "uw"]), "{kind} {channel}: {all}");
                    }
                    _ => assert!(!has_word(&all, &["u", "uw"]), "{kind} {channel}: {all}"),
                }
            }
        }
    }
}

#[test]
fn sms_fits_in_two_segments_even_with_long_names() {
    let t = templates();
    for kind in Kind::CUSTOMER {
        for lang in Lang::ALL {
            for id in ["hofman", "lumen", "pip"] {
                let mut n = in_lang(with_pickup(for_brand(notice(kind), id)), lang);
                n.customer_name = "Chloë Ångström-van den Heuvel Oudshoorn de Vries".to_string();
                n.items[0].name = "Ergonomische bureaustoel Ergo Plus Deluxe met hoofdsteun".to_string();
                n.again = true;
                n.compensation_eur = Some(20);
                n.previous_compensation_eur = Some(10);
                n.next_attempt_at = Some(at("2026-09-30T09:00:00+02:00"));
                n.new = Some(at("2026-09-30T22:00:00+02:00"));
                n.next_update_at = Some(at("2026-09-30T12:00:00+02:00"));
                let r = t.render(&n, &brand(id), Channel::Sms).expect("renders");
                let (used, limit) = sms_units(&r.text);
                assert_eq!(limit, 306, "stays GSM-7: {}", r.text);
                assert!(used <= limit, "{kind} {id} {lang:?}: {used} units: {}", r.text);
                assert!(r.subject.is_none() && r.html.is_none());
            }
        }
    }
}

#[test]
fn no_voucher_words_without_a_voucher() {
    let t = templates();
    for kind in Kind::CUSTOMER {
        let mut n = for_brand(notice(kind), "hofman");
        n.compensation_eur = None;
        for channel in [Channel::Email, Channel::Sms] {
            let r = t.render(&n, &brand("hofman"), channel).expect("renders");
            let all = format!("{}\n{}", r.subject.unwrap_or_default(), r.text).to_lowercase();
            for w in ["€", "voucher", "tegoed", "cadeaubon"] {
                assert!(!all.contains(w), "{kind} {channel} mentions {w}: {all}");
            }
        }
    }
}

#[test]
fn repeated_slip_says_again() {
    let mut n = notice(Kind::Delayed);
    n.again = true;
    for channel in [Channel::Email, Channel::Sms] {
        assert!(has_word(&render(&n, channel).text, &["opnieuw", "weer"]));
        assert!(has_word(&render(&in_lang(n.clone(), Lang::En), channel).text, &["again"]));
    }
}

#[test]
fn has_reports_templates_per_channel() {
    let t = templates();
    for kind in Kind::CUSTOMER {
        for lang in Lang::ALL {
            assert!(t.has(kind, Channel::Email, lang) && t.has(kind, Channel::Sms, lang));
            assert!(!t.has(kind, Channel::Event, lang));
        }
    }
}

#[test]
fn render_is_fast_enough() {
    let t = templates();
    let n = notice(Kind::Delayed);
    let b = brand("lumen");
    let runs = 2000;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        std::hint::black_box(t.render(&n, &b, Channel::Email).expect("renders"));
    }
    let per = start.elapsed() / runs;
    eprintln!("email render: {per:?} per message");
    // Generous for debug builds; release is far below (see templates/README.md).
    assert!(per < std::time::Duration::from_millis(2), "{per:?}");
}
