//! The stories, end to end through the real binary: `check.py` runs `belofte simulate` on
//! every scenario in tests/scenarios (the shared sample plus belofte's own) and judges the
//! output against the spec's global rules and each story's expectations.

use std::process::Command;

#[test]
fn every_story_passes_the_scenario_checker() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/tests/scenarios/check.py"))
        .args(["--bin", env!("CARGO_BIN_EXE_belofte"), "--dir", &format!("{root}/tests/scenarios"), "--config", &format!("{root}/config")])
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(out.status.success(), "scenario checker failed:\n{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(report.contains(" passed, 0 failed"), "{report}");
}
