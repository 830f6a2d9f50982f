//! The trace answers "why did I get this?" and "why did nobody tell me?" for the stories:
//! `simulate --trace` writes every event's outcome, every decision, every release and every
//! silence with its reason, for the right order, the same on every run; stdout stays as it is.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `belofte simulate --events STORY --trace FILE`: (stdout, the trace's lines).
fn simulate_traced(story: &str, with_trace: bool) -> (String, Vec<Value>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace.jsonl");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_belofte"));
    cmd.arg("simulate").arg("--events").arg(root().join(format!("tests/scenarios/{story}.jsonl")));
    cmd.arg("--config").arg(root().join("config"));
    if with_trace {
        cmd.arg("--trace").arg(&trace);
    }
    let out = cmd.output().expect("belofte runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let steps = if with_trace {
        std::fs::read_to_string(&trace)
            .expect("trace written")
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    } else {
        Vec::new()
    };
    (String::from_utf8(out.stdout).expect("utf8"), steps)
}

fn silences<'a>(steps: &'a [Value], reason: &str) -> Vec<&'a Value> {
    steps.iter().filter(|s| s["step"] == "silence" && s["reason"] == reason).collect()
}

#[test]
fn the_sms_of_webshop_18h_is_held_by_quiet_hours_until_eight() {
    let (_, steps) = simulate_traced("webshop_18h", true);
    let held = silences(&steps, "quiet_hours");
    assert!(!held.is_empty(), "a quiet-hours silence is traced");
    for s in &held {
        assert_eq!(s["channel"], "sms");
        assert_eq!(s["order_id"], "B-1401");
        assert!(s["until"].as_str().is_some_and(|u| u.ends_with("T08:00:00+01:00")), "{s}");
    }
    // The held SMS is released at eight: a message step for the same order and channel.
    let released: Vec<&Value> = steps.iter().filter(|s| s["step"] == "message" && s["channel"] == "sms").collect();
    assert!(released.iter().any(|s| s["send_at"] == held[0]["until"]), "{released:?}");
}

#[test]
fn the_failed_delivery_the_customer_caused_says_why_there_is_no_delay_message_or_voucher() {
    let (_, steps) = simulate_traced("delivery_failed", true);
    let caused = silences(&steps, "customer_caused");
    assert!(!caused.is_empty(), "customer_caused is traced");
    assert!(caused.iter().all(|s| s["order_id"] == "B-1801"), "{caused:?}");
    let decided: Vec<&str> = steps.iter().filter(|s| s["step"] == "decision").filter_map(|s| s["kind"].as_str()).collect();
    assert_eq!(decided, vec!["delivery_failed"], "only the failed-delivery message is decided");
}

#[test]
fn kpn_slips_says_when_an_estimate_still_fits() {
    let (_, steps) = simulate_traced("kpn_slips", true);
    let fits = silences(&steps, "estimate_fits");
    assert!(fits.iter().any(|s| s["cause"] == "car-0002" && s["order_id"] == "B-1301"), "the in-transit ETA within the promise: {fits:?}");
    // The three slips are decisions, each with its cause.
    let slips: Vec<&str> = steps
        .iter()
        .filter(|s| s["step"] == "decision" && s["kind"] == "delayed")
        .filter_map(|s| s["cause"].as_str())
        .collect();
    assert_eq!(slips, vec!["car-0001", "car-0003", "car-0004"]);
}

#[test]
fn a_duplicate_event_has_the_outcome_duplicate_and_an_old_one_stale() {
    let (_, steps) = simulate_traced("late_and_shuffled", true);
    let outcome = |o: &str| steps.iter().filter(|s| s["step"] == "event" && s["outcome"] == o).count();
    assert!(outcome("duplicate") >= 1, "duplicates are traced");
    assert!(outcome("stale") >= 1, "late, older facts are traced as stale");
    assert!(outcome("applied") >= 1);
    for s in steps.iter().filter(|s| s["step"] == "event") {
        for key in ["at", "type", "id", "cause", "detail"] {
            assert!(!s[key].is_null(), "{key} in {s}");
        }
    }
}

#[test]
fn the_trace_is_deterministic_and_leaves_the_output_as_it_was() {
    for story in ["kpn_slips", "storm_incident", "webshop_18h"] {
        let (plain, _) = simulate_traced(story, false);
        let (traced, first) = simulate_traced(story, true);
        let (_, second) = simulate_traced(story, true);
        assert_eq!(plain, traced, "{story}: stdout is the same with --trace");
        assert_eq!(first, second, "{story}: the same trace on every run");
        assert!(!first.is_empty());
    }
}
