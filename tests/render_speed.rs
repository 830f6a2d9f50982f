//! How long rendering takes: µs per email and per SMS, as `simulate` renders them (no HTML),
//! and per email with its HTML part (as the daemon sends it).
//!
//! `cargo test --release --test render_speed -- --ignored --nocapture`
mod render_support;

use std::hint::black_box;
use std::time::Instant;

use belofte_core::domain::{Channel, Kind, Lang, Reason};
use belofte_core::notice::Notice;
use belofte_core::policy::Brand;
use belofte::render::Templates;
use render_support::*;

/// A spread of notices like a real stream: every kind, both languages, all three brands.
fn workload() -> Vec<(Notice, Brand)> {
    let mut out = Vec::new();
    let mut i = 0u32;
    for kind in Kind::CUSTOMER {
        for lang in Lang::ALL {
            for brand_id in ["lumen", "hofman", "pip"] {
                for variant in 0..4 {
                    let mut n = in_lang(for_brand(notice(kind), brand_id), lang);
                    i += 1;
                    n.order_id = format!("B-{:05}", 1000 + i);
                    match variant {
                        0 => {}
                        1 => {
                            n.new = None;
                            n.next_update_at = Some(at("2026-11-25T12:00:00+01:00"));
                            n.compensation_eur = None;
                        }
                        2 => {
                            n.again = true;
                            n.compensation_eur = Some(10);
                            n.previous_compensation_eur = Some(5);
                            n.reason = Some(Reason::Weather);
                        }
                        _ => {
                            n = with_pickup(n);
                            n.items.push(belofte_core::domain::Item {
                                sku: "X".into(),
                                name: "USB-C lader".to_string(),
                                qty: 2,
                            });
                            n.next_attempt_at = Some(at("2026-11-25T09:00:00+01:00"));
                            n.delivered_at = Some(at("2026-11-24T14:12:00+01:00"));
                            n.failed_attempts = 1;
                        }
                    }
                    let b = brand(brand_id);
                    out.push((n, b));
                }
            }
        }
    }
    out
}

/// `reference`: the Handlebars path alone (the renderer as it was before the fast path).
fn per_message(t: &Templates, work: &[(Notice, Brand)], channel: Channel, html: bool, rounds: usize, reference: bool) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut count = 0usize;
        for _ in 0..rounds {
            for (n, b) in work {
                let r = if reference {
                    t.render_reference(n, b, channel, html)
                } else if html {
                    t.render(n, b, channel)
                } else {
                    t.render_text(n, b, channel)
                };
                black_box(r.expect("renders"));
                count += 1;
            }
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / count as f64;
        best = best.min(us);
    }
    best
}

#[test]
#[ignore]
fn render_speed() {
    let t = Templates::load(&templates_dir()).expect("templates load");
    let work = workload();
    // Warm up.
    per_message(&t, &work, Channel::Email, false, 2, false);
    per_message(&t, &work, Channel::Email, false, 2, true);
    for (label, reference) in [("handlebars (before)", true), ("fast path (now)", false)] {
        let email = per_message(&t, &work, Channel::Email, false, 20, reference);
        let sms = per_message(&t, &work, Channel::Sms, false, 20, reference);
        let email_html = per_message(&t, &work, Channel::Email, true, 10, reference);
        println!("{label}:");
        println!("  render_text email: {email:8.2} µs/message");
        println!("  render_text sms:   {sms:8.2} µs/message");
        println!("  render email+html: {email_html:8.2} µs/message");
    }
}
