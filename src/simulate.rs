//! `belofte simulate`: the engine on a virtual clock. Reads CloudEvents one per line, runs
//! exactly the decision and rendering code of the daemon, prints every message it would
//! send as one JSON line, in `send_at` order.

use std::io::{BufRead, Write};

use chrono::Duration;

use belofte_core::domain::Instant;
use belofte_core::engine::Decision;
use belofte_core::event::{decode, Event, Rejection};
use crate::render::line::render_line;
use belofte_core::policy::Policy;
use belofte_core::trace::Step;
use belofte_core::world::{event_key, DeadLetter, Outcome, World};
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
    process_ends_after: bool,
    trace: Option<&'a mut (dyn Write + Send + Sync)>,
}

impl<'a> Simulation<'a> {
    pub fn new(policy: &'a Policy, templates: &'a Templates) -> Self {
        Simulation { policy, templates, process_ends_after: false, trace: None }
    }

    /// Write the trace of every step (`trace.md`) to `out`, one JSON object per line. The
    /// messages on the output stay exactly as they are.
    pub fn traced(mut self, out: &'a mut (dyn Write + Send + Sync)) -> Self {
        self.trace = Some(out);
        self
    }

    /// The process exits after this run (the CLI): the world is not freed order by order,
    /// which took a few percent of a large run; the OS takes the memory back at exit.
    pub fn process_ends_after(mut self) -> Self {
        self.process_ends_after = true;
        self
    }

    /// Run the whole stream. `out` gets the message lines, `err` the rejections (with line
    /// numbers) and a summary. I/O errors on `out`/`err` end the run.
    ///
    /// Deciding and rendering overlap: this thread decodes and decides, a second one renders
    /// and writes, in the order decided (rendering is pure, so the output is the same as
    /// rendering inline).
    pub fn run(
        &mut self,
        input: impl BufRead + Send,
        until: Option<Instant>,
        out: &mut (impl Write + Send),
        err: &mut impl Write,
        label: &str,
    ) -> std::io::Result<Summary> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decision>>(64);
        let trace = self.trace.take();
        let this = &*self;
        std::thread::scope(|scope| {
            let writer = std::thread::Builder::new()
                .name("render".into())
                .spawn_scoped(scope, move || this.render_all(rx, out))?;
            let decided = this.decide_all(input, until, tx, err, trace, label);
            let rendered = writer.join().map_err(|_| std::io::Error::other("the rendering thread panicked"))?;
            let (messages, failures) = rendered?;
            let mut summary = decided?;
            summary.messages = messages;
            summary.render_errors = failures.len() as u64;
            for f in failures {
                writeln!(err, "{label}: {f}")?;
            }
            writeln!(
                err,
                "{label}: {} events, {} accepted, {} rejected, {} duplicates, {} dead-lettered; {} messages",
                summary.lines, summary.accepted, summary.rejected, summary.duplicates, summary.dead_lettered, summary.messages
            )?;
            Ok(summary)
        })
    }

    /// Render and write every decision in order; (lines written, render failures).
    fn render_all(
        &self,
        rx: std::sync::mpsc::Receiver<Vec<Decision>>,
        out: &mut impl Write,
    ) -> std::io::Result<(u64, Vec<String>)> {
        let mut written = 0;
        let mut failures = Vec::new();
        for batch in rx {
            for d in batch {
                match render_line(self.policy, self.templates, &d, false) {
                    Ok(line) => {
                        serde_json::to_writer(&mut *out, &line).map_err(std::io::Error::other)?;
                        out.write_all(b"\n")?;
                        written += 1;
                    }
                    Err(e) => failures.push(format!("order {} {}/{}: cannot render: {e}", d.order_id, d.kind, d.channel)),
                }
            }
        }
        out.flush()?;
        Ok((written, failures))
    }

    fn decide_all(
        &self,
        input: impl BufRead + Send,
        until: Option<Instant>,
        tx: std::sync::mpsc::SyncSender<Vec<Decision>>,
        err: &mut impl Write,
        mut trace: Option<&mut (dyn Write + Send + Sync)>,
        label: &str,
    ) -> std::io::Result<Summary> {
        const BATCH: usize = 256;
        // How many events ahead to prefetch. One event takes about a microsecond here, a
        // miss a tenth of that: a couple of events is early enough, and close enough that
        // the lines are still in the cache when the event comes.
        const PREFETCH_PLACES: usize = 4;
        const PREFETCH_ORDER: usize = 2;
        // Decoding is pure per line: a third thread does it ahead of the engine.
        let (lines_tx, lines_rx) = std::sync::mpsc::sync_channel::<Vec<(u64, Result<(Event, u128), Rejection>)>>(64);
        std::thread::scope(|scope| {
            let reader =
                std::thread::Builder::new().name("decode".into()).spawn_scoped(scope, move || decode_lines(input, lines_tx))?;
            let mut world = if trace.is_some() { World::new(self.policy).traced() } else { World::new(self.policy) };
            let mut summary = Summary::default();
            let mut clock: Option<Instant> = None;
            let mut pending: Vec<Decision> = Vec::with_capacity(BATCH);
            // A closed channel means the writer failed; its error is reported by `run`.
            let send = |ds: Vec<Decision>, pending: &mut Vec<Decision>| -> bool {
                pending.extend(ds);
                if pending.len() >= BATCH {
                    return tx.send(std::mem::replace(pending, Vec::with_capacity(BATCH))).is_ok();
                }
                true
            };
            'lines: for batch in lines_rx {
                let mut lines = batch.into_iter();
                while let Some((number, decoded)) = lines.next() {
                    // The engine waits on memory: ask for what the events a little ahead
                    // will read (their seen-set and index places, then their order) while
                    // this one is decided. Hints only; nothing is decided differently.
                    let ahead = lines.as_slice();
                    if let Some((_, Ok((e, key)))) = ahead.get(PREFETCH_PLACES - 1) {
                        world.prefetch_places(e, *key);
                    }
                    if let Some((_, Ok((e, _)))) = ahead.get(PREFETCH_ORDER - 1) {
                        world.prefetch_order(e);
                    }
                    summary.lines += 1;
                    let (event, key) = match decoded {
                        Ok(e) => e,
                        Err(reason) => {
                            summary.rejected += 1;
                            writeln!(err, "{label} line {number}: rejected: {reason}")?;
                            continue;
                        }
                    };
                    let arrival = clock.map_or(event.time, |c| c.max(event.time));
                    clock = Some(arrival);
                    let fx = world.advance(arrival);
                    report(fx.dead_letters, fx.trace, &mut summary, err, trace.as_deref_mut(), label)?;
                    if !send(fx.decisions, &mut pending) {
                        break 'lines;
                    }
                    let ok = match world.ingest_keyed(event, key, arrival) {
                        Ok((outcome, fx)) => {
                            if outcome == Outcome::Duplicate {
                                summary.duplicates += 1;
                            } else {
                                summary.accepted += 1;
                            }
                            report(fx.dead_letters, fx.trace, &mut summary, err, trace.as_deref_mut(), label)?;
                            send(fx.decisions, &mut pending)
                        }
                        Err(reason) => {
                            summary.rejected += 1;
                            writeln!(err, "{label} line {number}: rejected: {reason}")?;
                            true
                        }
                    };
                    if !ok {
                        break 'lines;
                    }
                }
            }
            reader.join().map_err(|_| std::io::Error::other("the reading thread panicked"))??;
            if let Some(end) = until.or_else(|| clock.map(|c| c + Duration::days(DEFAULT_RUN_ON_DAYS))) {
                let fx = world.advance(end);
                report(fx.dead_letters, fx.trace, &mut summary, err, trace.as_deref_mut(), label)?;
                send(fx.decisions, &mut pending);
            }
            if !pending.is_empty() {
                let _ = tx.send(pending);
            }
            if let Some(out) = trace {
                out.flush()?;
            }
            if self.process_ends_after {
                std::mem::forget(world);
            }
            Ok(summary)
        })
    }
}

/// Read and decode lines in batches, with their line numbers; blank lines are skipped.
fn decode_lines(
    mut input: impl BufRead,
    tx: std::sync::mpsc::SyncSender<Vec<(u64, Result<(Event, u128), Rejection>)>>,
) -> std::io::Result<()> {
    const BATCH: usize = 512;
    let mut buf = Vec::with_capacity(1024);
    let mut number = 0u64;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        buf.clear();
        if input.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        number += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // The duplicate key is pure too: hashed here, off the engine's thread.
        batch.push((number, decode(&buf).map(|e| {
            let key = event_key(&e.source, &e.id);
            (e, key)
        })));
        if batch.len() == BATCH && tx.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH))).is_err() {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
    Ok(())
}

/// Dead letters on `err`; the trace, when asked for, one JSON object per line.
fn report<W: Write + ?Sized>(
    dead_letters: Vec<DeadLetter>,
    steps: Vec<Step>,
    summary: &mut Summary,
    err: &mut impl Write,
    trace: Option<&mut W>,
    label: &str,
) -> std::io::Result<()> {
    if let Some(out) = trace {
        for step in steps {
            serde_json::to_writer(&mut *out, &step.to_json()).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
    }
    for dead in dead_letters {
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
