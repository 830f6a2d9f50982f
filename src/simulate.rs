//! `belofte simulate`: the engine on a virtual clock. Reads CloudEvents one per line, runs
//! exactly the decision and rendering code of the daemon, prints every message it would
//! send as one JSON line, in `send_at` order.

use std::io::{BufRead, Write};

use chrono::Duration;

use crate::core::domain::Instant;
use crate::core::engine::Decision;
use crate::core::event::decode;
use crate::core::output::render_line;
use crate::core::policy::Policy;
use crate::core::world::{Outcome, World};
use crate::render::Templates;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub messages: u64,
    pub render_errors: u64,
}

/// How long the clock runs on after the last event when no `--until` is given.
pub const DEFAULT_RUN_ON_DAYS: i64 = 7;

pub struct Simulation<'a> {
    policy: &'a Policy,
    templates: &'a Templates,
}

impl<'a> Simulation<'a> {
    pub fn new(policy: &'a Policy, templates: &'a Templates) -> Self {
        Simulation { policy, templates }
    }

    /// Run the whole stream. `out` gets the message lines, `err` the rejections (with line
    /// numbers) and a summary. I/O errors on `out`/`err` end the run.
    pub fn run(
        &self,
        input: impl BufRead,
        until: Option<Instant>,
        out: &mut impl Write,
        err: &mut impl Write,
        label: &str,
    ) -> std::io::Result<Summary> {
        let mut world = World::new(self.policy);
        let mut summary = Summary::default();
        let mut clock: Option<Instant> = None;
        let emit = |decisions: Vec<Decision>, summary: &mut Summary, out: &mut dyn Write, err: &mut dyn Write| {
            for d in decisions {
                match render_line(self.policy, self.templates, &d, false) {
                    Ok(line) => {
                        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::other)?;
                        out.write_all(b"\n")?;
                        summary.messages += 1;
                    }
                    Err(e) => {
                        summary.render_errors += 1;
                        writeln!(err, "{label}: order {} {}/{}: cannot render: {e}", d.order_id, d.kind, d.channel)?;
                    }
                }
            }
            Ok::<(), std::io::Error>(())
        };

        let mut buf = Vec::with_capacity(1024);
        let mut input = input;
        let mut number = 0u64;
        loop {
            buf.clear();
            if input.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            number += 1;
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            summary.lines += 1;
            let event = match decode(&buf) {
                Ok(e) => e,
                Err(reason) => {
                    summary.rejected += 1;
                    writeln!(err, "{label} line {number}: rejected: {reason}")?;
                    continue;
                }
            };
            let arrival = clock.map_or(event.time, |c| c.max(event.time));
            clock = Some(arrival);
            let due = world.advance(arrival);
            emit(due, &mut summary, out, err)?;
            report_dead(&mut world, &mut summary, err, label)?;
            match world.ingest(event, arrival) {
                Ok((Outcome::Duplicate, _)) => summary.duplicates += 1,
                Ok((_, decisions)) => {
                    summary.accepted += 1;
                    emit(decisions, &mut summary, out, err)?;
                }
                Err(reason) => {
                    summary.rejected += 1;
                    writeln!(err, "{label} line {number}: rejected: {reason}")?;
                }
            }
            report_dead(&mut world, &mut summary, err, label)?;
        }
        if let Some(end) = until.or_else(|| clock.map(|c| c + Duration::days(DEFAULT_RUN_ON_DAYS))) {
            let due = world.advance(end);
            emit(due, &mut summary, out, err)?;
            report_dead(&mut world, &mut summary, err, label)?;
        }
        out.flush()?;
        writeln!(
            err,
            "{label}: {} events, {} accepted, {} rejected, {} duplicates, {} dead-lettered; {} messages",
            summary.lines, summary.accepted, summary.rejected, summary.duplicates, summary.dead_lettered, summary.messages
        )?;
        Ok(summary)
    }
}

fn report_dead(world: &mut World<'_>, summary: &mut Summary, err: &mut impl Write, label: &str) -> std::io::Result<()> {
    for dead in world.take_dead_letters() {
        summary.dead_lettered += 1;
        writeln!(
            err,
            "{label}: dead-lettered {} event {} from {}: {}",
            dead.event.type_name(),
            dead.event.id,
            dead.event.source,
            dead.reason
        )?;
    }
    Ok(())
}
