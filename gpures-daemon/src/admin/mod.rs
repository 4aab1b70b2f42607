//! The host admin's commands (`gpures-daemon user …`, `resource …`, `gpu …`,
//! `db …`, `calendar …`, `migrate`, `check-config`), one file per group. They
//! run on the host as root or the daemon's user, against the database
//! directly, whether or not a daemon serves the same state dir, and go
//! through the same [`Service`] as every RPC, acting as
//! [`Actor::HostAdmin`] (audited as `host:<unix user>`). Failures print
//! their real cause.

pub mod calendar;
pub mod db;
pub mod gpu;
pub mod policy;
pub mod resources;
pub mod users;

use anyhow::{Context, Result};

use crate::cli::Command;
use crate::config::Config;
use crate::service::{Actor, Auth, Service};
use crate::store::Store;
use crate::{Database, open_database};

pub use resources::ResourceAction;
pub use users::UserAction;

/// The service as the host admin uses it: the configured rules, and no
/// token keys (host-admin commands issue no tokens).
pub fn host_service(store: Store, config: &Config) -> Service {
    Service::new(store, Auth::new(), crate::settings(config))
}

/// Runs a host-admin command (anything but `serve`, `man`, `completions`).
///
/// # Errors
/// The command's failure, with its cause.
pub async fn run(config: &Config, command: Command) -> Result<()> {
    match command {
        Command::Serve { .. } | Command::Man { .. } | Command::Completions { .. } => Ok(()),
        Command::CheckConfig => check_config(config),
        Command::Gpu(cmd) => gpu::run(config, cmd).await,
        Command::Db(cmd) => db::run(config, cmd).await,
        Command::Calendar(cmd) => calendar::run(config, cmd).await,
        Command::Migrate => {
            with_database(config, |_| async {
                Ok("the database schema is up to date\n".to_owned())
            })
            .await
        }
        Command::User(cmd) => {
            let action = UserAction::from(cmd);
            with_database(config, |svc| async move {
                Ok(users::execute(&svc, &Actor::host_admin(), action).await?)
            })
            .await
        }
        Command::Auth(crate::cli::AuthCommand::RotateKey) => {
            with_database(config, |svc| async move {
                let id = svc.rotate_key(&Actor::host_admin()).await?;
                Ok(format!(
                    "new signing key {id}: new logins use it; tokens signed with the old keys \
                     keep working until they expire\n"
                ))
            })
            .await
        }
        Command::Group(cmd) => {
            with_database(config, |svc| async move {
                policy::group(&svc, &Actor::host_admin(), cmd).await
            })
            .await
        }
        Command::Policy(cmd) => {
            with_database(config, |svc| async move {
                policy::policy(&svc, &Actor::host_admin(), cmd).await
            })
            .await
        }
        Command::Resource(cmd) => {
            let action = resources::action(config, cmd).await?;
            with_database(config, |svc| async move {
                Ok(resources::execute(&svc, &Actor::host_admin(), action).await?)
            })
            .await
        }
    }
}

/// Opens and migrates the database, runs `work` with the host admin's
/// service, prints what it returns, and closes the database.
async fn with_database<F, Fut>(config: &Config, work: F) -> Result<()>
where
    F: FnOnce(Service) -> Fut,
    Fut: Future<Output = Result<String>>,
{
    let database = open_database(config, Default::default()).await?;
    let result = async {
        database
            .store
            .migrate()
            .await
            .context("migrating the database")?;
        let out = work(host_service(database.store.clone(), config)).await?;
        print!("{out}");
        Ok(())
    }
    .await;
    close(database).await;
    result
}

async fn close(database: Database) {
    database.close().await;
}

/// `check-config`: the configuration in force, secrets redacted.
/// Prints the configuration in effect as TOML (the example file's shape,
/// secrets redacted), then what it resolves to as `#` comments, so the
/// output can be saved as a config file.
fn check_config(config: &Config) -> Result<()> {
    print!("{}", config.to_toml()?);
    println!();
    println!("# state dir: {}", config.state_dir().display());
    println!("# socket:    {}", config.socket_path().display());
    match (&config.database_url, crate::host::pg::find_bin_dir()) {
        (Some(_), _) => println!("# database:  external (database_url)"),
        (None, Some(bin)) => println!(
            "# database:  embedded, PostgreSQL binaries in {}",
            bin.display()
        ),
        (None, None) => anyhow::bail!("{}", crate::host::pg::PgError::BinariesMissing),
    }
    Ok(())
}
