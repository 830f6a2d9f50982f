//! The `belofte` command line.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use belofte::core::event::parse_time;
use belofte::render::Templates;
use belofte::settings;
use belofte::simulate::Simulation;

#[derive(Parser)]
#[command(name = "belofte", version, about = "Tells webshop customers first when a delivery promise breaks.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run events from a file through the engine on a virtual clock; print the messages.
    Simulate {
        /// CloudEvents, one JSON object per line, in arrival order.
        #[arg(long)]
        events: PathBuf,
        /// Run the clock on to this moment (RFC 3339); default: last event + 7 days.
        #[arg(long)]
        until: Option<String>,
        /// Configuration folder (default.toml, local.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Templates folder (default: templates/ beside the configuration folder).
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Exit non-zero when any line was rejected.
        #[arg(long)]
        strict: bool,
    },
    /// Lint configuration and templates: every kind × channel × language × tone.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Write a synthetic event stream (for benchmarks and load tests) to stdout.
    Generate {
        /// How many events, about.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Share of orders that go wrong, in percent.
        #[arg(long, default_value_t = 10)]
        delayed_percent: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("belofte: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(config: Option<&Path>, templates: Option<&Path>) -> Result<(settings::Settings, Templates)> {
    let dir = settings::config_dir(config);
    let settings = settings::load(&dir).context("configuration")?;
    let tdir = settings::templates_dir(templates, &dir);
    let templates = Templates::load(&tdir).with_context(|| format!("templates in {}", tdir.display()))?;
    Ok((settings, templates))
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Simulate { events, until, config, templates, strict } => {
            let until = match until {
                Some(s) => Some(parse_time(&s).with_context(|| format!("--until {s:?} is not RFC 3339 with an offset"))?),
                None => None,
            };
            let (settings, templates) = load(config.as_deref(), templates.as_deref())?;
            let file = std::fs::File::open(&events).with_context(|| format!("cannot open {}", events.display()))?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let stderr = std::io::stderr();
            let mut err = std::io::BufWriter::new(stderr.lock());
            let label = events.display().to_string();
            let summary = Simulation::new(&settings.policy, &templates).run(
                BufReader::with_capacity(1 << 16, file),
                until,
                &mut out,
                &mut err,
                &label,
            )?;
            out.flush()?;
            err.flush()?;
            if summary.render_errors > 0 {
                return Ok(ExitCode::from(3));
            }
            Ok(if strict && summary.rejected > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Check { config, templates } => {
            let dir = settings::config_dir(config.as_deref());
            let settings = match settings::load(&dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("check: configuration is broken");
                    return Ok(ExitCode::from(1));
                }
            };
            let tdir = settings::templates_dir(templates.as_deref(), &dir);
            let problems = belofte::check::lint(&settings.policy, &tdir);
            for p in &problems {
                eprintln!("{p}");
            }
            if problems.is_empty() {
                println!("check: configuration {} and templates {} are fine", dir.display(), tdir.display());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("check: {} problem(s)", problems.len());
                Ok(ExitCode::from(1))
            }
        }
        Command::Generate { events, delayed_percent, seed } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            belofte::generate::write_stream(&mut out, events, delayed_percent, seed)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
