//! The `postroom` command line: the daemon, one-off processing of .eml files, the demo, form publishing,
//! registry import and maintenance. Errors reach the user through anyhow with what to do next.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use postroom::config::Config;
use postroom::forms::Catalog;

#[derive(Parser)]
#[command(name = "postroom", version, about = "Intake gateway for statutory notifications emailed as Word forms")]
struct Cli {
    /// Configuration file (default: ./postroom.toml if present, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Workspace directory holding var/ (database, Maildir, outbox); default: the config's, else `.`.
    #[arg(long, global = true)]
    workspace: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Form definitions: list them, or render the blank .docx forms providers download.
    Forms {
        #[command(subcommand)]
        command: FormsCommand,
    },
    /// Create or upgrade the database schema.
    Migrate,
    /// Compare each IMAP mailbox's folders on the server with the ledger, and report mail the ledger has
    /// not seen (exit status 1 when anything disagrees).
    Reconcile,
    /// Delete raw mail past its retention period now (the daemon also does this on a schedule).
    Purge,
    /// A working demonstration on embedded defaults: synthetic registry, blank forms, 50+ sample emails
    /// (valid ones and every common mistake) processed, and a table of what became of each.
    Demo {
        /// Seed of the synthetic registry (same seed, same registry).
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        #[arg(long, default_value_t = 2000)]
        providers: usize,
        #[arg(long, default_value_t = 5000)]
        locations: usize,
        /// Delete the workspace's var/ first (the demo refuses to mix with an existing workspace).
        #[arg(long)]
        reset: bool,
    },
    /// Registration data: providers, locations and the people who may notify.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// The daemon: watch every configured mailbox until Ctrl-C, filing and answering each message.
    Run {
        /// Drain every mailbox and the outbox once, then exit.
        #[arg(long)]
        once: bool,
    },
    /// Run the pipeline on .eml files (filed and answered like `run`; the files are never moved).
    Process {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The mailbox the files count as arriving in (default: the first configured).
        #[arg(long)]
        mailbox: Option<String>,
        /// One JSON object per message, one per line.
        #[arg(long)]
        json: bool,
    },
    /// Print every problem code with its meaning and fix.
    Problems {
        /// As the Markdown page docs/problem-codes.md.
        #[arg(long)]
        markdown: bool,
    },
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Import the care directory (locations and providers) and/or the people file. All or nothing: a bad
    /// row is reported with its line number and nothing is imported.
    Import {
        /// The regulator's care-directory CSV (either published layout).
        #[arg(long)]
        locations: Option<PathBuf>,
        /// People CSV: person_id,name,role,email,phone,provider_id,location_id
        #[arg(long)]
        people: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum FormsCommand {
    /// List every form definition (id, version, title, mailbox), current versions marked.
    List,
    /// Write one blank .docx per current form definition into DIR.
    Render {
        #[arg(long, default_value = "forms-out")]
        out: PathBuf,
        /// Also render superseded versions.
        #[arg(long)]
        all_versions: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own table; the daemon's per-message log lines would bury it.
    let default_level = if matches!(cli.command, Command::Demo { .. }) { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTROOM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config = Config::load(cli.config.as_deref())?;
    config.resolve_paths(cli.workspace.as_deref());
    Ok(config)
}

fn catalog(config: &Config) -> anyhow::Result<Catalog> {
    Ok(match &config.forms.dir {
        Some(dir) => Catalog::with_overrides(dir)?,
        None => Catalog::embedded()?,
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Problems { markdown } => {
            if *markdown {
                print!("{}", postroom::problem::codes_markdown());
            } else {
                for c in postroom::problem::ProblemCode::ALL {
                    println!("{:<26} {}", c.as_str(), c.summary());
                }
            }
        }
        Command::Forms { command } => {
            let config = load_config(&cli)?;
            let catalog = catalog(&config)?;
            match command {
                FormsCommand::List => {
                    for def in catalog.all() {
                        let current = catalog.current(&def.id).is_some_and(|c| c.version == def.version);
                        println!(
                            "{:<26} {:<8} {:<8} {:<14} {}",
                            def.id,
                            def.version,
                            if current { "current" } else { "old" },
                            def.mailbox,
                            def.title
                        );
                    }
                }
                FormsCommand::Render { out, all_versions } => {
                    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
                    let defs: Vec<_> =
                        if *all_versions { catalog.all().collect() } else { catalog.current_forms().collect() };
                    for def in defs {
                        let bytes = postroom::forms::render::render(def, None)?;
                        let path = out.join(format!("{}-{}.docx", def.id, def.version));
                        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
                        println!("{}", path.display());
                    }
                }
            }
        }
        Command::Run { once } => {
            let config = load_config(&cli)?;
            runtime()?.block_on(async {
                let pipeline = std::sync::Arc::new(postroom::daemon::open(config).await?);
                let (stop, shutdown) = postroom::daemon::Shutdown::new();
                tokio::spawn(async move {
                    if tokio::signal::ctrl_c().await.is_ok() {
                        tracing::info!("Ctrl-C: finishing the message in hand, then stopping");
                        let _ = stop.send(true);
                    }
                });
                tracing::info!(mailboxes = pipeline.config.mailboxes.len(), "postroom is watching");
                // On a worker, not this thread: I/O wake-ups then stay on the thread that polls the driver.
                let once = *once;
                tokio::spawn(postroom::daemon::run(pipeline, shutdown, once)).await?
            })?;
        }
        Command::Process { files, mailbox, json } => {
            let config = load_config(&cli)?;
            let mailbox = match mailbox {
                Some(name) => config
                    .mailbox(name)
                    .cloned()
                    .with_context(|| format!("no mailbox named `{name}` in the configuration"))?,
                None => config.mailboxes.first().cloned().context("the configuration has no mailboxes")?,
            };
            let any_failed = runtime()?.block_on(async {
                let pipeline = postroom::daemon::open(config).await?;
                let mut failed = false;
                for file in files {
                    let raw = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
                    // Keyed by content: processing the same file twice is recognised as a duplicate.
                    let key = format!("file:{}", postroom::sha256_hex(&raw));
                    match pipeline.process(&mailbox, &key, &raw, chrono::Utc::now()).await {
                        Ok(outcome) if *json => println!("{}", serde_json::to_string(&outcome)?),
                        Ok(outcome) => print_outcome(&file.display().to_string(), &outcome),
                        Err(e) => {
                            failed = true;
                            eprintln!("{}: not processed: {e}", file.display());
                        }
                    }
                }
                postroom::daemon::deliver_replies(&pipeline).await?;
                anyhow::Ok(failed)
            })?;
            if any_failed {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Demo { seed, providers, locations, reset } => {
            let config = load_config(&cli)?;
            let var = config.workspace.dir.join("var");
            if *reset && var.exists() {
                std::fs::remove_dir_all(&var).with_context(|| format!("cannot remove {}", var.display()))?;
            }
            if var.join("postroom.db").exists() {
                anyhow::bail!(
                    "a workspace already exists at {}; run `postroom demo --reset` to start over, or pass --workspace DIR",
                    var.display()
                );
            }
            let workspace = config.workspace.dir.clone();
            runtime()?.block_on(async {
                let pipeline = postroom::daemon::open(config).await?;
                let rows = postroom::demo::run(&pipeline, *seed, *providers, *locations).await?;
                postroom::demo::print(&rows, &workspace);
                anyhow::Ok(())
            })?;
        }
        Command::Registry { command: RegistryCommand::Import { locations, people } } => {
            let config = load_config(&cli)?;
            let bar = ImportBar::new();
            let report = runtime()?.block_on(async {
                let store =
                    postroom::store::Store::connect(&config.database.url, config.database.max_connections).await?;
                anyhow::Ok(postroom::registry::import(&store, locations.as_deref(), people.as_deref(), &bar).await?)
            });
            bar.done();
            let report = report?;
            println!(
                "imported: {} providers ({} new, {} deregistered, {} re-activated), {} locations ({} new, {} deregistered, {} re-activated), {} people roles ({} added, {} removed)",
                report.providers.listed,
                report.providers.added,
                report.providers.deregistered,
                report.providers.reactivated,
                report.locations.listed,
                report.locations.added,
                report.locations.deregistered,
                report.locations.reactivated,
                report.people.listed,
                report.people.added,
                report.people.removed
            );
        }
        Command::Reconcile => {
            let config = load_config(&cli)?;
            let clean = runtime()?.block_on(async {
                let pipeline = postroom::daemon::open(config).await?;
                let mut clean = true;
                for mb in pipeline.config.mailboxes.iter().filter(|m| m.imap.is_some()) {
                    let r = postroom::mailbox::imap::reconcile_mailbox(&pipeline, mb).await?;
                    println!(
                        "{}: inbox unseen {}, filed but not moved {}, unrecorded moves recorded now {}",
                        r.mailbox, r.inbox_unseen, r.inbox_filed_not_moved, r.moves_recorded
                    );
                    for f in &r.folders {
                        let mark = if i64::from(f.server) == f.ledger { "" } else { "   <- differs" };
                        println!("  {:<12} server {:>7}  ledger {:>7}{mark}", f.folder, f.server, f.ledger);
                    }
                    clean &= r.is_clean();
                }
                anyhow::Ok(clean)
            })?;
            if !clean {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Purge => {
            let config = load_config(&cli)?;
            let purged = runtime()?.block_on(async {
                let store =
                    postroom::store::Store::connect(&config.database.url, config.database.max_connections).await?;
                postroom::retention::purge(&store, &config, postroom::store::now_ms()).await
            })?;
            println!(
                "purged {} raw messages, {} sent replies, {} files older than {} days",
                purged.raw_messages, purged.replies, purged.files, config.retention.raw_mail_days
            );
        }
        Command::Migrate => {
            let config = load_config(&cli)?;
            runtime()?.block_on(async {
                postroom::store::Store::connect(&config.database.url, config.database.max_connections).await
            })?;
            println!("database schema is up to date: {}", config.database.url);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(name: &str, o: &postroom::pipeline::Outcome) {
    let refs = if o.references.is_empty() { "-".to_string() } else { o.references.join(", ") };
    println!("{name}: {} {refs} reply={}", o.outcome, o.reply.as_deref().unwrap_or("none"));
    if let Some(reason) = &o.reason {
        println!("    reason: {reason}");
    }
    for p in &o.problems {
        println!("    {} {}: {}", p.code.as_str(), p.field.as_deref().unwrap_or("-"), p.message);
    }
}

/// A progress bar for `registry import`, shown only when stderr is a terminal.
struct ImportBar(Option<indicatif::ProgressBar>);

impl ImportBar {
    fn new() -> ImportBar {
        use std::io::IsTerminal;
        ImportBar(std::io::stderr().is_terminal().then(indicatif::ProgressBar::no_length))
    }

    fn done(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl postroom::registry::Progress for ImportBar {
    fn start(&self, rows: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(rows);
            if let Ok(style) = indicatif::ProgressStyle::with_template("importing {bar:40} {pos}/{len} rows {elapsed}")
            {
                bar.set_style(style);
            }
        }
    }

    fn advance(&self, rows: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(rows);
        }
    }
}
