//! The `billing-ledger` command line: serve | migrate | cleanup | expire-reservations | bill-contracts | shops |
//! keys | report | openapi | citus.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::Context;
use billing_ledger::{
    MIGRATOR, app,
    config::{DatabaseConfig, ServeConfig},
    jobs, telemetry,
    tenants::{Role, commands},
};
use clap::{Parser, Subcommand, error::ErrorKind};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "billing-ledger",
    version,
    about = "Prepaid credit wallets on a double-entry ledger, exactly once."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start; the size of the serve variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (and run the background jobs).
    Serve {
        #[command(flatten)]
        serve: ServeConfig,
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Apply pending database migrations.
    Migrate {
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Delete expired idempotency records once.
    Cleanup {
        #[arg(long, env = "IDEMPOTENCY_CLEANUP_BATCH", default_value_t = 1000)]
        batch: u32,
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Release credit reservations past their expires_at once (what the
    /// server's expiry job does every RESERVATION_EXPIRY_INTERVAL).
    ExpireReservations {
        #[arg(long, env = "RESERVATION_EXPIRY_BATCH", default_value_t = 500)]
        batch: u32,
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Bill every due period of approved recurring contracts and retry the
    /// wallet payments due, once (what the server's billing job does every
    /// BILLING_INTERVAL; docs/recurring-billing.md).
    BillContracts {
        #[command(flatten)]
        billing: billing_ledger::config::BillingConfig,
        #[arg(
            long = "idempotency-ttl-hours",
            env = "IDEMPOTENCY_TTL_HOURS",
            default_value_t = 24
        )]
        ttl_hours: u32,
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Manage shops.
    Shops {
        #[command(subcommand)]
        command: ShopsCommand,
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Reports for finance staff.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
        #[command(flatten)]
        db: DatabaseConfig,
    },
    /// Print the OpenAPI document (YAML).
    Openapi,
    /// Scale out on Citus (docs/scale-out.md).
    Citus {
        #[command(subcommand)]
        command: CitusCommand,
        #[command(flatten)]
        db: DatabaseConfig,
    },
}

#[derive(Subcommand)]
enum CitusCommand {
    /// Distribute a migrated database on a Citus coordinator by shop
    /// (sql/citus/distribute.sql); idempotent, run again after every
    /// migration that adds a table.
    Distribute,
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Reconcile a shop's period (UTC days, --to inclusive); exits 1 when
    /// any check fails, so cron can alert.
    Reconciliation {
        #[arg(long)]
        shop: Uuid,
        #[arg(long, value_parser = billing_ledger::dates::parse)]
        from: chrono::NaiveDate,
        #[arg(long, value_parser = billing_ledger::dates::parse)]
        to: chrono::NaiveDate,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Json,
    Csv,
    Table,
}

/// The command was asked something it cannot do (a malformed setting, an
/// unknown shop, an invalid currency): exit 2, like a malformed flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

/// The report ran and some check failed: exit 1, the report says which.
#[derive(Debug, thiserror::Error)]
#[error("reconciliation failed: {0}")]
struct ChecksFailed(String);

#[derive(Subcommand)]
enum ShopsCommand {
    /// Create a shop; prints its id and a new owner API key (shown once).
    Create {
        #[arg(long)]
        name: String,
    },
    /// Create the demo shop if missing and print a fresh owner key with a
    /// ready-to-paste curl line (older demo keys are revoked).
    SeedDemo {
        #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
        bind_addr: SocketAddr,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key for a shop (shown once).
    Create {
        #[arg(long)]
        shop: Uuid,
        #[arg(long, value_enum)]
        role: Role,
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke the key with this public prefix.
    Revoke {
        #[arg(long)]
        prefix: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => {
            eprintln!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<BadInput>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// clap's error as one line, with the rejected value hidden when it belongs
/// to a secret setting (a database URL carries a password).
fn one_line(e: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue};
    let text = e.render().to_string();
    let mut line = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => a.as_str(),
        _ => "",
    };
    if (arg.contains("database-url") || arg.contains("admin-api-key"))
        && let Some(ContextValue::String(value)) = e.get(ContextKind::InvalidValue)
        && !value.is_empty()
    {
        line = line.replace(value.as_str(), "***");
    }
    line
}

async fn connect(db: &DatabaseConfig) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    sqlx::PgConnection::connect_with(&db.connect_options)
        .await
        .context("cannot connect to the database (DATABASE_URL)")
}

/// A platform command through the executor (audited like the admin API);
/// a refusal is the caller's input: exit 2 with the problem's detail.
async fn platform<C>(
    db: &DatabaseConfig,
    name: &str,
    input: &serde_json::Value,
    command: C,
) -> anyhow::Result<C::Output>
where
    C: billing_ledger::executor::Command,
    C::Error: Into<billing_ledger::http::error::ApiError>,
    C::Output: serde::de::DeserializeOwned,
{
    match app::run_platform(db, name, input, command).await? {
        Ok(output) => Ok(output),
        Err(problem) => Err(BadInput(format!("{name}: {}", problem.detail)).into()),
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { serve, db } => {
            telemetry::init_logging(serve.log_format, std::io::stdout);
            telemetry::init_panic_logging();
            db.check_against(serve.request_timeout).map_err(BadInput)?;
            serve.reservations.check().map_err(BadInput)?;
            let application = app::Application::build(serve, &db).await?;
            application.run_until(app::shutdown_signal()).await
        }
        Command::Migrate { db } => {
            let mut conn = connect(&db).await?;
            MIGRATOR.run(&mut conn).await.context("migration failed")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Cleanup { batch, db } => {
            let pool = app::pool(&db);
            let n = jobs::cleanup_idempotency(&pool, batch)
                .await
                .context("cleanup failed")?;
            println!("deleted {n} expired idempotency records");
            Ok(())
        }
        Command::ExpireReservations { batch, db } => {
            let pool = app::pool(&db);
            let n = jobs::expire_reservations(&pool, batch.max(1))
                .await
                .context("reservation expiry failed")?;
            println!("expired {n} reservations");
            Ok(())
        }
        Command::BillContracts {
            billing,
            ttl_hours,
            db,
        } => {
            let pool = app::pool(&db);
            let executor =
                billing_ledger::executor::Executor::new(pool.clone(), ttl_hours.max(1), db.lock_timeout, 1);
            let run = jobs::bill_contracts_once(&pool, &executor, &billing, None)
                .await
                .context("billing failed")?;
            println!(
                "billed {} periods, retried {} payments, {} contracts no longer past due",
                run.periods_billed, run.payments_retried, run.contracts_recovered
            );
            Ok(())
        }
        Command::Shops { command, db } => {
            match command {
                ShopsCommand::Create { name } => {
                    let input = serde_json::json!({ "name": name });
                    let shop = platform(&db, "shops create", &input, commands::CreateShop { name }).await?;
                    println!("shop id:  {}", shop.id);
                    println!(
                        "api key:  {}  (owner; shown once)",
                        shop.api_key.secret.unwrap_or_default()
                    );
                }
                ShopsCommand::SeedDemo { bind_addr } => {
                    // A demo on a schema this build does not expect would
                    // fail later, on the first request.
                    let mut conn = connect(&db).await?;
                    let pending = billing_ledger::pending_migrations(&mut conn)
                        .await
                        .unwrap_or_else(|_| billing_ledger::MIGRATOR.iter().map(|m| m.version).collect());
                    if !pending.is_empty() {
                        return Err(BadInput(format!(
                            "the database has pending migrations {pending:?}: run `billing-ledger migrate` first"
                        ))
                        .into());
                    }
                    let input = serde_json::json!({});
                    let key = platform(&db, "shops seed-demo", &input, commands::SeedDemo).await?;
                    let secret = key.secret.unwrap_or_default();
                    println!("demo shop: {}", key.shop_id);
                    println!("owner key: {secret}");
                    println!("try it:");
                    println!("curl -s http://{bind_addr}/v1/wallets -H 'Authorization: Bearer {secret}'");
                }
            }
            Ok(())
        }
        Command::Keys { command, db } => {
            match command {
                KeysCommand::Create { shop, role, label } => {
                    let input = serde_json::json!({ "shop": shop, "role": role, "label": label });
                    let command = commands::CreateKey {
                        shop_id: shop,
                        role,
                        label,
                    };
                    let key = platform(&db, "keys create", &input, command).await?;
                    println!("prefix:  {}", key.prefix);
                    println!(
                        "api key: {}  ({}; shown once)",
                        key.secret.unwrap_or_default(),
                        role.as_str()
                    );
                }
                KeysCommand::Revoke { prefix } => {
                    let input = serde_json::json!({ "prefix": prefix });
                    let command = commands::RevokeKey { prefix };
                    let revoked = platform(&db, "keys revoke", &input, command).await?;
                    println!("revoked {}", revoked.prefix);
                }
            }
            Ok(())
        }
        Command::Report { command, db } => {
            let ReportCommand::Reconciliation {
                shop,
                from,
                to,
                currency,
                format,
                output,
            } = command;
            let pool = app::reports_pool(&db).unwrap_or_else(|| app::pool(&db));
            // On a terminal only (indicatif hides itself when stderr is not
            // one), so cron and pipes get clean output.
            let bar = indicatif::ProgressBar::new(billing_ledger::reports::STEPS.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = billing_ledger::reports::reconciliation_with(
                &pool,
                shop,
                from,
                to,
                currency.as_deref(),
                |part| {
                    bar.set_message(part);
                    bar.inc(1);
                },
            )
            .await
            .map_err(|e| match e {
                billing_ledger::reports::ReportError::Db(e) => anyhow::Error::from(e),
                bad => BadInput(bad.to_string()).into(),
            })?;
            bar.finish_and_clear();
            let text = match format {
                ReportFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
                ReportFormat::Csv => billing_ledger::reports::csv::reconciliation(&report),
                ReportFormat::Table => billing_ledger::reports::table::reconciliation(&report),
            };
            match output {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print!("{text}"),
            }
            if !report.ok {
                return Err(ChecksFailed(report.failed_checks.join(", ")).into());
            }
            Ok(())
        }
        Command::Openapi => {
            print!("{}", billing_ledger::openapi::yaml());
            Ok(())
        }
        Command::Citus {
            command: CitusCommand::Distribute,
            db,
        } => {
            use billing_ledger::citus::{self, CitusError};
            let mut conn = connect(&db).await?;
            let layout = citus::distribute(&mut conn).await.map_err(|e| match e {
                CitusError::Db(e) => anyhow::Error::from(e).context("distribution failed"),
                refused => BadInput(refused.to_string()).into(),
            })?;
            for (table, kind) in &layout {
                println!("{kind:<12} {table}");
            }
            println!("{} tables on Citus", layout.len());
            Ok(())
        }
    }
}
