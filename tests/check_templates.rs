//! `belofte check` passes on the shipped templates and fails, clearly, on each kind of breakage.
mod render_support;

use std::fs;
use std::path::{Path, PathBuf};

use belofte::check::{lint, Problem};
use render_support::{policy, templates_dir};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A copy of the shipped templates with one file changed by `edit`.
fn broken(rel: &str, edit: impl Fn(String) -> String) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("templates");
    copy_dir(&templates_dir(), &dir);
    let path = dir.join(rel);
    let src = fs::read_to_string(&path).expect("read template");
    let changed = edit(src.clone());
    assert_ne!(src, changed, "the edit must change {rel}");
    fs::write(&path, changed).expect("write");
    (tmp, dir)
}

fn show(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

#[test]
fn shipped_templates_pass() {
    let problems = lint(&policy(), &templates_dir());
    assert!(problems.is_empty(), "lint found problems:\n{}", show(&problems));
}

#[test]
fn syntax_error_names_file_and_line() {
    let (_tmp, dir) = broken("delayed/nl/email.txt.hbs", |s| s.replacen("{{reason \"doing\"}}", "{{#if new}}{{reason \"doing\"}}", 1));
    let problems = lint(&policy(), &dir);
    let p = problems.iter().find(|p| p.template.ends_with("delayed/nl/email.txt.hbs")).unwrap_or_else(|| panic!("{}", show(&problems)));
    assert!(p.line.is_some(), "{p}");
    assert!(p.to_string().contains("delayed/nl/email.txt.hbs:"), "{p}");
}

#[test]
fn unknown_variable_is_reported_with_its_line() {
    let (_tmp, dir) = broken("backorder/en/email.txt.hbs", |s| s.replacen("{{voice \"greeting\"}}", "{{voice \"greeting\"}} {{customer.nickname}}", 1));
    let problems = lint(&policy(), &dir);
    let p = problems
        .iter()
        .find(|p| p.template.ends_with("backorder/en/email.txt.hbs") && p.message.contains("nickname"))
        .unwrap_or_else(|| panic!("{}", show(&problems)));
    assert_eq!(p.line, Some(1), "{p}");
}

#[test]
fn misspelt_condition_is_an_unknown_variable_too() {
    let (_tmp, dir) = broken("delayed/nl/sms.txt.hbs", |s| s.replacen("{{#if voucher}}", "{{#if vouchr}}", 1));
    let problems = lint(&policy(), &dir);
    assert!(problems.iter().any(|p| p.message.contains("vouchr")), "{}", show(&problems));
}

#[test]
fn sms_too_long_is_reported() {
    let (_tmp, dir) = broken("delivery_failed/nl/sms.txt.hbs", |s| {
        s.replacen("{{reason \"sms\"}}", "{{reason \"sms\"}} {{reason \"what\"}} {{reason \"doing\"}}", 1)
    });
    let problems = lint(&policy(), &dir);
    let p = problems
        .iter()
        .find(|p| p.message.contains("SMS longer than 2 segments"))
        .unwrap_or_else(|| panic!("{}", show(&problems)));
    assert!(p.template.ends_with("delivery_failed/nl/sms.txt.hbs"), "{p}");
}

#[test]
fn formal_template_saying_je_is_reported_at_its_line() {
    let (_tmp, dir) = broken("update/nl/email.txt.hbs", |s| s.replacen("We blijven erbovenop zitten.", "We laten je niet in de steek.", 1));
    let problems = lint(&policy(), &dir);
    let p = problems
        .iter()
        .find(|p| p.message.contains("tone formal must not say \"je\""))
        .unwrap_or_else(|| panic!("{}", show(&problems)));
    assert!(p.template.ends_with("update/nl/email.txt.hbs"), "{p}");
    assert_eq!(p.line, Some(10), "{p}");
}

#[test]
fn warm_phrase_saying_u_is_reported_in_the_voice_file() {
    let (_tmp, dir) = broken("_voice/nl.toml", |s| s.replacen("Bedankt voor je geduld.", "Bedankt voor uw geduld.", 1));
    let problems = lint(&policy(), &dir);
    let p = problems
        .iter()
        .find(|p| p.message.contains("tone warm must not say \"uw\""))
        .unwrap_or_else(|| panic!("{}", show(&problems)));
    assert!(p.template.ends_with("_voice/nl.toml"), "{p}");
    assert!(p.line.is_some(), "{p}");
}

#[test]
fn warm_template_saying_u_is_reported() {
    let (_tmp, dir) = broken("back_on_track/nl/email.txt.hbs", |s| s.replacen("zoals we hadden beloofd.", "zoals we u hadden beloofd.", 1));
    let problems = lint(&policy(), &dir);
    let p = problems
        .iter()
        .find(|p| p.message.contains("must not say \"u\""))
        .unwrap_or_else(|| panic!("{}", show(&problems)));
    assert!(p.template.ends_with("back_on_track/nl/email.txt.hbs"), "{p}");
    assert_eq!(p.line, Some(5), "{p}");
}

#[test]
fn delayed_template_without_the_date_is_reported() {
    let (_tmp, dir) = broken("delayed/en/sms.txt.hbs", |s| s.replacen("New date: {{new.date}}.", "New date coming soon.", 1));
    let problems = lint(&policy(), &dir);
    let p = problems
        .iter()
        .find(|p| p.message.contains("gives neither a new date nor a next-update time"))
        .unwrap_or_else(|| panic!("{}", show(&problems)));
    assert!(p.template.ends_with("delayed/en/sms.txt.hbs"), "{p}");
}

#[test]
fn missing_required_template_and_phrase_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("templates");
    copy_dir(&templates_dir(), &dir);
    fs::remove_file(dir.join("backorder/nl/sms.txt.hbs")).expect("rm");
    let voice = fs::read_to_string(dir.join("_voice/en.toml")).expect("read");
    fs::write(dir.join("_voice/en.toml"), voice.replacen("sms_sorry = \"Our apologies.\"\n", "", 1)).expect("write");
    let problems = lint(&policy(), &dir);
    assert!(problems.iter().any(|p| p.template.ends_with("backorder/nl/sms.txt.hbs") && p.message.starts_with("missing")), "{}", show(&problems));
    assert!(problems.iter().any(|p| p.template.ends_with("_voice/en.toml") && p.message.contains("sms_sorry")), "{}", show(&problems));
}

#[test]
fn an_update_that_says_tomorrow_when_the_next_one_is_a_week_away_is_refused() {
    let (_tmp, dir) = broken("update/en/email.txt.hbs", |s| {
        s.replacen("You'll hear from us again by {{next_update.at}} at the latest", "You'll hear from us again tomorrow, by {{next_update.at}} at the latest", 1)
    });
    let problems = lint(&policy(), &dir);
    let p = problems
        .iter()
        .find(|p| p.template.ends_with("update/en/email.txt.hbs") && p.to_string().contains("tomorrow"))
        .unwrap_or_else(|| panic!("{}", show(&problems)));
    assert!(p.to_string().contains("name its day"), "{p}");
}
