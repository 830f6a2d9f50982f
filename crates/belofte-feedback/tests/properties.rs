//! Properties over hostile input: arbitrary bytes, mutations and truncations of the real
//! fixtures, MIME-shaped noise; and the order-independence of SMS statuses.

use belofte_feedback::{
    parse_bounce, verify_twilio_signature, BounceOutcome, SmsOutcome, SmsStatus, Verp,
};
use proptest::prelude::*;

const FIXTURES: &[&str] = &[
    "postfix-unknown-user.eml",
    "postfix-error-transport.eml",
    "postfix-delayed.eml",
    "postfix-gave-up.eml",
    "postfix-success.eml",
    "postfix-multi-recipient.eml",
    "exim-unknown-user.eml",
    "exim-redirect-fail.eml",
    "rfc3464-simple.eml",
    "rfc3464-multi-recipient.eml",
    "rfc3464-delayed.eml",
    "arf-abuse.eml",
    "nested-encoded.eml",
    "autoreply.eml",
    "mdn-read-receipt.eml",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn verp() -> Verp {
    Verp::new(
        "bounce+{token}@bounce.example",
        b"belofte-test-secret-0123456789ab",
    )
    .unwrap()
}

/// Every cut of every fixture, at every byte: whatever a cut message yields is also in the
/// whole one. So a cut never turns into a failure for another recipient (an address cut
/// short), another status, another original Message-ID, or a VERP address that decodes to
/// another message.
#[test]
fn truncations_never_invent() {
    let v = verp();
    for name in FIXTURES {
        let full = fixture(name);
        for crlf in [false, true] {
            let full = if crlf {
                full.iter()
                    .flat_map(|&b| {
                        if b == b'\n' {
                            vec![b'\r', b'\n']
                        } else {
                            vec![b]
                        }
                    })
                    .collect()
            } else {
                full.clone()
            };
            let whole = match parse_bounce(&full, None) {
                BounceOutcome::Report(r) => Some(r),
                BounceOutcome::Ignored(_) => None,
            };
            let whole_refs: Vec<String> = whole
                .iter()
                .flat_map(|r| &r.verp_candidates)
                .filter_map(|c| v.decode(&c.address).ok())
                .collect();
            let mut reports = 0;
            for cut in 0..full.len() {
                let BounceOutcome::Report(part) = parse_bounce(&full[..cut], None) else {
                    continue;
                };
                reports += 1;
                let whole = whole
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name}[..{cut}] is a report, the whole is not"));
                for bounce in &part.bounces {
                    assert!(
                        whole.bounces.contains(bounce),
                        "{name}[..{cut}] (crlf {crlf}): {bounce:?} is not in the whole message"
                    );
                }
                assert!(
                    part.original_message_id.is_none()
                        || part.original_message_id == whole.original_message_id,
                    "{name}[..{cut}]: {:?}",
                    part.original_message_id
                );
                for candidate in &part.verp_candidates {
                    if let Ok(r) = v.decode(&candidate.address) {
                        assert!(whole_refs.contains(&r), "{name}[..{cut}]: {r}");
                    }
                }
            }
            // Not vacuous: a report cut after its report part is still read.
            assert_eq!(reports > 0, whole.is_some(), "{name}");
        }
    }
}

fn any_fixture() -> impl Strategy<Value = Vec<u8>> {
    proptest::sample::select(FIXTURES).prop_map(fixture)
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let snippet = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::sample::select(vec![
            &b"\n"[..],
            b"\r\n",
            b"\n\n",
            b"--",
            b" ",
            b"\t",
            b";",
            b"=",
            b"\"",
            b"<",
            b">",
            b"(",
            b"Action: failed\n",
            b"Status: 5.1.1\n",
            b"Content-Type: multipart/report; boundary=\"",
            b"Content-Transfer-Encoding: base64\n",
            b"=\n",
        ])
        .prop_map(<[u8]>::to_vec),
    ];
    proptest::collection::vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            (any::<usize>(), snippet).prop_map(|(i, s)| Edit::Insert(i, s)),
            (any::<usize>(), 0usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        ],
        1..12,
    )
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len().max(1);
        match edit {
            Edit::Flip(i, b) => {
                if let Some(byte) = bytes.get_mut(i % len) {
                    *byte = *b;
                }
            }
            Edit::Insert(i, s) => {
                let at = (i % (len + 1)).min(bytes.len());
                bytes.splice(at..at, s.iter().copied());
            }
            Edit::Delete(i, n) => {
                let at = (i % len).min(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
        }
    }
    bytes
}

/// Pieces MIME bounces are made of, to reach the deeper paths more often than random bytes.
fn mime_noise() -> impl Strategy<Value = Vec<u8>> {
    let piece = proptest::sample::select(vec![
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n",
        "Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\n",
        "Content-Type: multipart/mixed; boundary=m\n",
        "Content-Type: message/delivery-status\n",
        "Content-Type: message/feedback-report\n",
        "Content-Type: message/rfc822\n",
        "Content-Type: text/rfc822-headers\n",
        "Content-Transfer-Encoding: base64\n",
        "Content-Transfer-Encoding: quoted-printable\n",
        "--b\n",
        "--b--\n",
        "--m\n",
        "--m--\n",
        "\n",
        "\r\n",
        " folded\n",
        "Final-Recipient: rfc822; a@x.example\n",
        "Original-Recipient: rfc822;<b@x.example>\n",
        "Action: failed\n",
        "Action: delayed\n",
        "Status: 5.1.1\n",
        "Status: 4.4.1 (x)\n",
        "Feedback-Type: abuse\n",
        "Original-Rcpt-To: c@x.example\n",
        "Original-Mail-From: <bounce+abc-aaaaaaaaaaaaaaaa@bounce.example>\n",
        "Message-ID: <r@belofte.x>\n",
        "Delivered-To: bounce+abc@bounce.example\n",
        "QWN0aW9uOiBmYWlsZWQK\n",
        "=41=\n",
        "\u{e9}\u{fffd}",
        "From x Thu Jul 7 17:16:05 1994\n",
    ]);
    proptest::collection::vec(piece, 0..60).prop_map(|p| p.concat().into_bytes())
}

/// A multipart/report skeleton whose parts are filled with [`mime_noise`]-like pieces, so
/// that the report reader itself gets exercised, not only the MIME splitter.
fn report_shaped() -> impl Strategy<Value = Vec<u8>> {
    let part_type = proptest::sample::select(vec![
        "message/delivery-status",
        "message/global-delivery-status",
        "message/feedback-report",
        "message/rfc822",
        "text/rfc822-headers",
        "text/plain",
    ]);
    let encoding = proptest::sample::select(vec!["", "base64", "quoted-printable", "7bit"]);
    let part = (part_type, encoding, mime_noise());
    (
        proptest::collection::vec(part, 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(parts, close, crlf)| {
            let mut out =
                b"To: bounce+x@bounce.example\nContent-Type: multipart/report; boundary=\"b\"\n\n"
                    .to_vec();
            for (part_type, encoding, body) in parts {
                out.extend_from_slice(format!("--b\nContent-Type: {part_type}\n").as_bytes());
                if !encoding.is_empty() {
                    out.extend_from_slice(
                        format!("Content-Transfer-Encoding: {encoding}\n").as_bytes(),
                    );
                }
                out.push(b'\n');
                out.extend_from_slice(&body);
                out.push(b'\n');
            }
            if close {
                out.extend_from_slice(b"--b--\n");
            }
            if crlf {
                out = out
                    .iter()
                    .flat_map(|&b| {
                        if b == b'\n' {
                            vec![b'\r', b'\n']
                        } else {
                            vec![b]
                        }
                    })
                    .collect();
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096), arg in proptest::option::of(".{0,80}")) {
        let _ = parse_bounce(&raw, arg.as_deref());
    }

    #[test]
    fn mime_noise_never_panics_and_reports_are_sane(raw in prop_oneof![mime_noise(), report_shaped()]) {
        if let BounceOutcome::Report(r) = parse_bounce(&raw, None) {
            prop_assert!(!r.bounces.is_empty());
            for b in &r.bounces {
                if let Some(recipient) = &b.recipient {
                    prop_assert!(recipient.contains('@'));
                }
            }
            for c in &r.verp_candidates {
                prop_assert!(c.address.contains('@'));
                prop_assert!(verp().decode(&c.address).is_err(), "no valid MAC in noise");
            }
        }
    }

    #[test]
    fn mutated_fixtures_never_panic(raw in any_fixture(), edits in edits()) {
        let mutated = apply(raw, &edits);
        if let BounceOutcome::Report(r) = parse_bounce(&mutated, None) {
            prop_assert!(!r.bounces.is_empty());
            prop_assert!(r.bounces.len() <= 100);
        }
    }

    #[test]
    fn signature_check_never_panics(url in ".{0,120}", header in proptest::option::of(".{0,60}"), params in proptest::collection::vec((".{0,10}", ".{0,10}"), 0..8)) {
        prop_assert!(verify_twilio_signature("token", &url, &params, header.as_deref()).is_err());
    }

    #[test]
    fn verp_decode_never_panics(address in ".{0,100}") {
        let v = verp();
        // Nothing random carries a valid MAC.
        prop_assert!(v.decode(&address).is_err());
        let _ = v.decode(&format!("bounce+{address}@bounce.example"));
    }

    #[test]
    fn verp_round_trips(r in "[a-z0-9-]{1,40}") {
        let v = verp();
        let address = v.encode(&r).unwrap();
        prop_assert!(address.split('@').next().unwrap().len() <= 64);
        prop_assert_eq!(v.decode(&address.to_uppercase()).unwrap(), r);
    }
}

// ---------------------------------------------------------------------------------------------
// SMS statuses

const LIFECYCLES: &[&[&str]] = &[
    &["accepted", "queued", "sending", "sent", "delivered", "read"],
    &[
        "scheduled",
        "queued",
        "sending",
        "sent",
        "partially_delivered",
        "delivered",
    ],
    &["queued", "sending", "sent", "undelivered"],
    &["accepted", "queued", "failed"],
    &["scheduled", "canceled"],
];

fn fold(statuses: &[&str]) -> Option<SmsStatus> {
    let mut current: Option<SmsStatus> = None;
    for s in statuses {
        if let Some(new) = SmsStatus::apply(current.as_ref(), &SmsStatus::parse(s)) {
            current = Some(new);
        }
    }
    current
}

proptest! {
    /// The callbacks of one real lifecycle, some of them lost, some repeated, in any order:
    /// the recorded status is always the furthest one that arrived.
    #[test]
    fn any_order_gives_the_furthest_status(
        path in proptest::sample::select(LIFECYCLES),
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 1..12),
        shuffle in any::<u64>(),
    ) {
        let mut arrived: Vec<&str> = picks.iter().map(|i| *i.get(path)).collect();
        // A deterministic shuffle from the seed.
        let mut seed = shuffle | 1;
        for i in (1..arrived.len()).rev() {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
            arrived.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        let furthest = arrived
            .iter()
            .max_by_key(|s| path.iter().position(|p| p == *s))
            .copied();
        let recorded = fold(&arrived);
        prop_assert_eq!(recorded.as_ref().map(SmsStatus::as_str), furthest);
    }

    /// Any sequence at all, unknown strings included: the outcome never goes back to
    /// pending, a failure never changes, and a repeat never records anything.
    #[test]
    fn statuses_only_move_forward(seq in proptest::collection::vec(prop_oneof![
        proptest::sample::select(vec![
            "scheduled", "accepted", "queued", "sending", "sent", "partially_delivered",
            "delivered", "read", "undelivered", "failed", "canceled", "receiving", "received",
        ]).prop_map(str::to_string),
        "[a-z_]{1,12}",
    ], 0..20)) {
        let mut current: Option<SmsStatus> = None;
        for s in &seq {
            let incoming = SmsStatus::parse(s);
            let before = current.as_ref().and_then(SmsStatus::outcome);
            if let Some(new) = SmsStatus::apply(current.as_ref(), &incoming) {
                prop_assert_ne!(Some(&new), current.as_ref(), "a change records something new");
                let after = new.outcome();
                match before {
                    Some(SmsOutcome::Failed) => prop_assert!(false, "a failure changed"),
                    Some(SmsOutcome::Delivered) => prop_assert_eq!(after, Some(SmsOutcome::Delivered)),
                    _ => prop_assert!(after.is_some()),
                }
                current = Some(new);
            }
            if current.as_ref() == Some(&incoming) {
                prop_assert_eq!(SmsStatus::apply(current.as_ref(), &incoming), None);
            }
        }
    }
}
