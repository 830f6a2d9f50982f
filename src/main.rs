//! The `belofte` command line.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cli;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use belofte_core::event::parse_time;
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
        /// Also write the trace (why each message went, and why one did not) to this file,
        /// one JSON object per line; the output stays as it is.
        #[arg(long)]
        trace: Option<PathBuf>,
    },
    /// Lint configuration and templates: every kind × channel × language × tone.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// Run the daemon: consume Kafka, keep state, deliver email, SMS and action events.
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        templates: Option<PathBuf>,
    },
    /// A Kafka for development: the embedded broker on a fixed address with every configured
    /// topic created, until Ctrl-C. Point `kafka.brokers` of one or several `belofte run` at it.
    Broker {
        /// Where clients bootstrap (`kafka.brokers`).
        #[arg(long, default_value = cli::broker::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Partitions of every topic.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// Configuration folder: the topics are those of its `[kafka]` section.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the product working with nothing installed: an embedded broker, the daemon, the
    /// stories of the scenarios played in fast motion, email and SMS captured to files.
    Demo {
        /// Where the database, the .eml files and sms.jsonl go (default: a new temporary folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Folder of scenario stories (NAME.jsonl); default: tests/scenarios of the source tree.
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Virtual seconds per real second.
        #[arg(long, default_value_t = 50_000.0)]
        speed: f64,
        #[arg(long)]
        config: Option<PathBuf>,
        /// After the stories, keep the daemon and its console open until Ctrl-C (the token
        /// is `BELOFTE__CONSOLE__TOKEN`, or a new one printed at start).
        #[arg(long)]
        serve: bool,
        /// Where the console listens with `--serve`.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: String,
    },
    /// Record one bounce or complaint read on stdin (for a Postfix or Exim pipe transport).
    /// Exit 0 when recorded or ignored, 75 (EX_TEMPFAIL: the MTA retries) when the
    /// configuration or the database cannot be used.
    Bounce {
        /// The envelope recipient the MTA passes (Postfix `${original_recipient}`, Exim
        /// `$local_part@$domain`): where the VERP token is looked for first.
        #[arg(long)]
        recipient: Option<String>,
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
    /// Measure the whole pipeline against the broker's own limit (docs/BENCHMARKS.md):
    /// prints a table of medians with their spread; `--json FILE` writes the medians.
    Bench {
        #[command(flatten)]
        options: cli::bench::Options,
        /// Internal: be the memory measurement's child process with this many orders.
        #[arg(long, hide = true)]
        rss_child: Option<u64>,
    },
}

// The engine allocates and frees many small strings, often on another thread than the
// one that made them (decode → decide → render); glibc's malloc spent a fifth of
// `simulate`'s time there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Simulate { events, until, config, templates, strict, trace } => {
            let until = match until {
                Some(s) => Some(parse_time(&s).with_context(|| format!("--until {s:?} is not RFC 3339 with an offset"))?),
                None => None,
            };
            let (settings, templates) = load(config.as_deref(), templates.as_deref())?;
            let file = std::fs::File::open(&events).with_context(|| format!("cannot open {}", events.display()))?;
            let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
            let stderr = std::io::stderr();
            let mut err = std::io::BufWriter::new(stderr.lock());
            let label = events.display().to_string();
            let mut trace_file = match &trace {
                Some(path) => Some(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => None,
            };
            let mut simulation = Simulation::new(&settings.policy, &templates).process_ends_after();
            if let Some(f) = trace_file.as_mut() {
                simulation = simulation.traced(f);
            }
            let summary = simulation.run(
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
            if let Err(e) = belofte::daemon::DaemonConfig::from_settings(&settings) {
                eprintln!("{e}");
                eprintln!("check: configuration is broken");
                return Ok(ExitCode::from(1));
            }
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
        Command::Run { config, templates: templates_flag } => {
            let (settings, templates) = load(config.as_deref(), templates_flag.as_deref())?;
            let cfg = belofte::daemon::DaemonConfig::from_settings(&settings)?;
            belofte::daemon::init_logging(&cfg.log);
            let problems = belofte::check::lint(&settings.policy, &settings::templates_dir(templates_flag.as_deref(), &settings.dir));
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                anyhow::bail!("{} template problem(s): fix them (belofte check) before starting", problems.len());
            }
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async move {
                let running = belofte::daemon::Running::start(settings, templates, cfg, Default::default()).await?;
                running.until_signal().await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Broker { listen, partitions, config } => {
            let settings = settings::load(&settings::config_dir(config.as_deref())).context("configuration")?;
            let cfg = belofte::daemon::DaemonConfig::from_settings(&settings)?;
            belofte::daemon::init_logging(&cfg.log);
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(cli::broker::run(listen, partitions, &cfg.kafka))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { out, scenarios, speed, config, serve, listen } => {
            let (settings, templates) = load(config.as_deref(), None)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let serve = serve.then_some(listen);
            runtime.block_on(cli::demo::run(settings, templates, out, scenarios, speed, serve))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { options: opts, rss_child } => {
            match rss_child {
                Some(orders) => cli::bench::rss_child(&opts, orders)?,
                None => cli::bench::run(&opts)?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bounce { recipient, config, templates } => Ok(bounce(recipient, config, templates)),
        Command::Generate { events, delayed_percent, seed } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            cli::generate::write_stream(&mut out, events, delayed_percent, seed)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `belofte bounce`: every failure is EX_TEMPFAIL, so the MTA keeps the bounce and retries.
fn bounce(recipient: Option<String>, config: Option<PathBuf>, templates: Option<PathBuf>) -> ExitCode {
    use belofte::daemon::bounce::{read_message, record, EX_TEMPFAIL};
    let raw = match read_message(&mut std::io::stdin().lock()) {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("belofte bounce: reading stdin: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    let loaded = load(config.as_deref(), templates.as_deref())
        .and_then(|(s, t)| Ok((belofte::daemon::DaemonConfig::from_settings(&s)?, s, t)));
    let (cfg, settings, templates) = match loaded {
        Ok(l) => l,
        Err(e) => {
            eprintln!("belofte bounce: {e:#}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    belofte::daemon::init_logging(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("belofte bounce: {e}");
            return ExitCode::from(EX_TEMPFAIL);
        }
    };
    match runtime.block_on(record(settings, templates, &cfg, &raw, recipient.as_deref())) {
        Ok(recorded) => {
            eprintln!("belofte bounce: {}", recorded.label());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("belofte bounce: {e}");
            ExitCode::from(EX_TEMPFAIL)
        }
    }
}
