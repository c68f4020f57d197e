//! The `ticket-reservation` binary: parse the command line, set up logging,
//! run one subcommand.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ticket_reservation::config::{Config, LogFormat};
use ticket_reservation::error::AppResult;
use ticket_reservation::{catalogue, check, clock, db, graphql, server};
use tracing_subscriber::EnvFilter;

/// A server allocates many small, short-lived objects per request on every
/// worker thread; mimalloc's per-thread heaps make that cheaper than glibc's
/// malloc (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ticket-reservation", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Create and migrate the database if needed, then serve (the default).
    Serve,
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Write the GraphQL schema (SDL) to standard output.
    PrintSchema,
    /// Report every broken invariant in the database; exit 1 if any.
    Check,
    /// Manage the catalogue from files.
    Catalogue {
        #[command(subcommand)]
        action: CatalogueAction,
    },
}

#[derive(Subcommand)]
enum CatalogueAction {
    /// Load concerts, dates, opening times and prices from a TOML file
    /// (see catalogue/demo.toml): all or nothing; twice adds nothing.
    Import {
        /// The TOML file.
        file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::PrintSchema = command {
        return write_stdout(&graphql::sdl());
    }
    init_tracing(&cli.config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(command, cli.config));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(error = %error.detail(), "ticket-reservation failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> AppResult<ExitCode> {
    match command {
        Command::Serve => server::serve(config).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => {
            let applied = db::prepare(&config.database_url).await?;
            tracing::info!(applied, "database is up to date");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check => {
            // Only reads: no database created, no migration run, no secret
            // written. A mistyped DATABASE_URL fails instead of passing.
            let monitor = Arc::new(db::DbMonitor::default());
            let pool = db::build_pool(&config.database_url, db::PoolOptions::requests(1), monitor)?;
            let violations =
                check::find_violations(&pool, check::Limits::of(&config), clock::now()).await?;
            let report: String = if violations.is_empty() {
                "ok: no invariant is broken\n".to_owned()
            } else {
                violations
                    .iter()
                    .map(|v| format!("violation: {v}\n"))
                    .collect()
            };
            write_stdout(&report);
            Ok(if violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::PrintSchema => Ok(write_stdout(&graphql::sdl())),
        Command::Catalogue {
            action: CatalogueAction::Import { file },
        } => import_catalogue(&config, &file).await,
    }
}

async fn import_catalogue(config: &Config, file: &std::path::Path) -> AppResult<ExitCode> {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            write_stderr(&format!("cannot read {}: {error}\n", file.display()));
            return Ok(ExitCode::FAILURE);
        }
    };
    let plan = match catalogue::import::plan(&text, clock::now()) {
        Ok(plan) => plan,
        Err(refused) => {
            write_stderr(&format!(
                "{}: {}\n",
                file.display(),
                refused.public_message()
            ));
            return Ok(ExitCode::FAILURE);
        }
    };
    db::prepare(&config.database_url).await?;
    let monitor = Arc::new(db::DbMonitor::default());
    let pool = db::build_pool(&config.database_url, db::PoolOptions::requests(1), monitor)?;
    let imported = catalogue::import::import(&pool, plan).await?;
    Ok(write_stdout(&format!(
        "imported: {} concerts and {} dates added, {} dates already there\n",
        imported.concerts_added, imported.dates_added, imported.dates_already_there
    )))
}

fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

fn write_stdout(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
