//! `belofte bench` with tiny sizes, so the benchmark cannot silently rot. Not timed: it
//! checks that every measurement runs and the JSON has exactly the agreed keys.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// `belofte bench ARGS --json FILE` run from the crate's root, with `env` set: what it
/// printed, and the figures it wrote, once it has exited successfully.
fn bench(args: &[&str], env: &[(&str, &str)]) -> (String, String, serde_json::Map<String, serde_json::Value>) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_belofte"))
        .current_dir(&root)
        .envs(env.iter().copied())
        .arg("bench")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("belofte bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let figures = serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written")).expect("JSON object");
    (stdout, stderr, figures)
}

#[test]
fn bench_runs_with_tiny_sizes_and_writes_every_figure() {
    let (stdout, _, figures) = bench(
        &[
            "--reps", "1", "--events", "2000", "--engine-events", "2000", "--rate", "500", "--latency-secs", "2", "--fanout-orders", "300",
            "--dispatch-messages", "40", "--rss-orders", "2000", "--session-timeout-ms", "3000",
        ],
        &[],
    );
    assert!(stdout.contains("pipeline_ratio"), "no table printed:\n{stdout}");

    let keys: BTreeSet<&str> = figures.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "raw_consume_eps",
        "engine_eps",
        "pipeline_eps",
        "pipeline_ratio",
        "pipeline_pg_eps",
        "latency_p50_ms",
        "latency_p99_ms",
        "fanout_100k_s",
        "fanout_100k_pg_s",
        "dispatch_email_ps",
        "dispatch_sms_ps",
        "rss_mib_1m_orders",
        "resume_after_kill_s",
        "resume_after_kill_dynamic_s",
        "start_to_served_s",
    ]
    .into_iter()
    .collect();
    assert_eq!(keys, expected);
    for (key, value) in &figures {
        let v = value.as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{key} = {value}");
    }
}

#[test]
fn without_a_postgresql_server_its_figures_are_null_and_the_run_goes_on() {
    // Port 1 on loopback: nothing listens there.
    let (_, stderr, figures) = bench(
        &["--reps", "1", "--only", "fanout", "--fanout-orders", "300"],
        &[("BELOFTE_TEST_PG", "postgres://postgres@127.0.0.1:1/postgres")],
    );
    assert!(stderr.contains("PostgreSQL figures not measured"), "no reason printed:\n{stderr}");
    assert!(figures["fanout_100k_pg_s"].is_null(), "{figures:?}");
    assert!(figures["fanout_100k_s"].as_f64().is_some_and(|v| v > 0.0), "{figures:?}");
}
