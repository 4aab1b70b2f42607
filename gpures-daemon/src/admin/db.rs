//! `gpures-daemon db dump FILE`: pg_dump of whatever database the daemon
//! uses. The password never appears on pg_dump's command line (it goes
//! through `PGPASSWORD`), and the dump, which holds every email and password
//! hash, is created mode 0600.

use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::cli::DbCommand;
use crate::config::Config;
use crate::host::pg;

/// Runs a `db` command.
///
/// # Errors
/// No pg_dump, the file cannot be created, or pg_dump failed.
pub async fn run(config: &Config, cmd: DbCommand) -> Result<()> {
    let DbCommand::Dump { file } = cmd;
    dump(config, &file).await
}

async fn dump(config: &Config, file: &Path) -> Result<()> {
    let bin = pg::find_bin_dir()
        .map(|d| d.join("pg_dump"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("pg_dump"));
    create_private(file)?;
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.args(["--format=custom", "--no-owner", "--file"])
        .arg(file);
    let database = if config.database_url.is_some() {
        None
    } else {
        Some(crate::open_database(config, Default::default()).await?)
    };
    match (
        &config.database_url,
        database.as_ref().and_then(|d| d.cluster()),
    ) {
        (Some(url), _) => {
            let (url, password) = split_password(url.expose());
            if let Some(password) = password {
                cmd.env("PGPASSWORD", password);
            }
            cmd.arg(format!("--dbname={url}"));
        }
        (None, Some(cluster)) => {
            cmd.arg("--host").arg(cluster.socket_dir()).args([
                "--port",
                "5432",
                "--username",
                pg::SUPERUSER,
                "--dbname",
                pg::DATABASE,
            ]);
        }
        (None, None) => anyhow::bail!("no database to dump"),
    }
    let status = cmd
        .status()
        .await
        .with_context(|| format!("running {}", bin.display()));
    if let Some(d) = database {
        d.close().await;
    }
    let status = status?;
    if !status.success() {
        anyhow::bail!("pg_dump failed ({status})");
    }
    println!("dumped to {} (restore with pg_restore)", file.display());
    Ok(())
}

/// Creates (or truncates) `file` readable by its owner only, before pg_dump
/// writes into it.
fn create_private(file: &Path) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("creating {}", file.display()))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("protecting {}", file.display()))?;
    Ok(())
}

/// A PostgreSQL URL without its password, and the password (percent-decoded).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return (url.to_owned(), None);
    };
    let userinfo = &authority[..at];
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    let stripped = format!(
        "{}{user}{}{}",
        &url[..scheme_end],
        &authority[at..],
        &rest[authority_end..]
    );
    (stripped, Some(percent_decode(password)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_the_url() {
        assert_eq!(
            split_password("postgres://gp:s%40cret@db.lab:5432/gpures?sslmode=disable"),
            (
                "postgres://gp@db.lab:5432/gpures?sslmode=disable".to_owned(),
                Some("s@cret".to_owned())
            )
        );
        assert_eq!(
            split_password("postgres://gp@db/gpures"),
            ("postgres://gp@db/gpures".to_owned(), None)
        );
        assert_eq!(
            split_password("postgresql:///gpures?host=/run/pg"),
            ("postgresql:///gpures?host=/run/pg".to_owned(), None)
        );
    }

    #[test]
    fn dump_files_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.dump");
        std::fs::write(&file, "old").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        create_private(&file).expect("create");
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
