//! The host admin's subcommands (`gpures-daemon user ...`, `resource ...`):
//! [`AdminCommand`] runs against the database directly, whether or not a
//! daemon is serving the same state dir, acting as the host admin (audited as
//! `host:<unix user>`).

use std::fmt::Write as _;

use anyhow::{Context, Result};
use gpures_proto::{NewResource, Resource, ResourceKind, ResourceUpdate, Role, UserInfo};

use crate::service::{Rules, Service};
use crate::store::{Store, UserChange};

/// One admin action.
#[derive(Clone, Debug)]
pub enum AdminCommand {
    UserList,
    UserRole {
        email: String,
        role: Role,
    },
    UserDisable {
        email: String,
    },
    UserBind {
        email: String,
        unix_user: String,
    },
    ResourceAdd(NewResource),
    ResourceList,
    ResourceDisable {
        name: String,
    },
    /// One resource per GPU found by the probe on `host`.
    ResourceDiscover {
        host: String,
        gpus: Vec<crate::gpu::GpuSample>,
    },
}

/// Runs `command` and returns what to print.
///
/// # Errors
/// Unknown users or resources, invalid input, database failures.
pub async fn execute(store: &Store, command: AdminCommand) -> Result<String> {
    let service = Service::new(store.clone(), Rules::default());
    let api = |e: crate::service::ServiceError| anyhow::anyhow!("{}", crate::rpc::to_api(e));
    Ok(match command {
        AdminCommand::UserList => users_table(
            &store
                .list_users()
                .await?
                .iter()
                .map(|u| u.info())
                .collect::<Vec<_>>(),
        ),
        AdminCommand::UserRole { email, role } => {
            let u = service
                .change_user(None, &email, UserChange::Role(role))
                .await
                .map_err(api)?;
            format!("{} is now {}\n", u.email, u.role)
        }
        AdminCommand::UserDisable { email } => {
            let u = service
                .change_user(None, &email, UserChange::Disable)
                .await
                .map_err(api)?;
            format!("{} is disabled and its tokens are revoked\n", u.email)
        }
        AdminCommand::UserBind { email, unix_user } => {
            if crate::unix::user_by_name(&unix_user).is_none() && !unix_user.starts_with("uid:") {
                anyhow::bail!("there is no Unix user {unix_user:?} on this host");
            }
            let u = service
                .change_user(None, &email, UserChange::Bind(&unix_user))
                .await
                .map_err(api)?;
            format!(
                "{} is now bound to the Unix user {}; its old tokens are revoked\n",
                u.email, u.unix_user
            )
        }
        AdminCommand::ResourceAdd(new) => {
            let r = service.create_resource(None, new).await.map_err(api)?;
            format!(
                "added {}\n{}",
                r.name,
                resources_table(std::slice::from_ref(&r))
            )
        }
        AdminCommand::ResourceList => resources_table(&store.list_resources(true).await?),
        AdminCommand::ResourceDiscover { host, gpus } => {
            discover(store, &service, &host, &gpus).await?
        }
        AdminCommand::ResourceDisable { name } => {
            let r = store
                .resource_by_name(&name)
                .await
                .with_context(|| format!("no resource named {name:?}"))?;
            let update = ResourceUpdate {
                active: Some(false),
                ..ResourceUpdate::default()
            };
            let r = service
                .update_resource(None, r.id, update)
                .await
                .map_err(api)?;
            format!(
                "{} is disabled: it cannot be booked; its reservations stay\n",
                r.name
            )
        }
    })
}

/// Creates or updates one resource per GPU (`gpu<index>`, or
/// `<host>-gpu<index>` when another host already has that name), keyed by
/// UUID so that running it again changes nothing. GPUs that disappeared are
/// reported, not deleted: their reservations are history.
async fn discover(
    store: &Store,
    service: &Service,
    host: &str,
    gpus: &[crate::gpu::GpuSample],
) -> Result<String> {
    let api = |e: crate::service::ServiceError| anyhow::anyhow!("{}", crate::rpc::to_api(e));
    let existing = store.list_resources(true).await?;
    let mut out = String::new();
    if gpus.is_empty() {
        out.push_str("no GPUs found on this host\n");
    }
    for g in gpus {
        let index = i32::try_from(g.index).context("GPU index out of range")?;
        let description = g.name.clone();
        if let Some(r) = existing
            .iter()
            .find(|r| r.gpu_uuid.as_deref() == Some(g.uuid.as_str()))
        {
            if r.gpu_index == Some(index) && r.host == host {
                let _ = writeln!(out, "unchanged {} ({})", r.name, g.uuid);
                continue;
            }
            let update = ResourceUpdate {
                gpu_index: Some(Some(index)),
                host: Some(host.to_owned()),
                ..ResourceUpdate::default()
            };
            service
                .update_resource(None, r.id, update)
                .await
                .map_err(api)?;
            let _ = writeln!(out, "updated {} (index {index}, host {host})", r.name);
            continue;
        }
        let plain = format!("gpu{index}");
        let claimable = existing
            .iter()
            .find(|r| r.name == plain && r.host == host && r.gpu_uuid.is_none());
        if let Some(r) = claimable {
            let update = ResourceUpdate {
                gpu_index: Some(Some(index)),
                gpu_uuid: Some(Some(g.uuid.clone())),
                ..ResourceUpdate::default()
            };
            service
                .update_resource(None, r.id, update)
                .await
                .map_err(api)?;
            let _ = writeln!(out, "updated {} (UUID {})", r.name, g.uuid);
            continue;
        }
        let name = if existing.iter().any(|r| r.name == plain) {
            format!("{host}-gpu{index}")
        } else {
            plain
        };
        let new = NewResource {
            name,
            host: host.to_owned(),
            kind: ResourceKind::Gpu,
            gpu_index: Some(index),
            gpu_uuid: Some(g.uuid.clone()),
            description,
        };
        let r = service.create_resource(None, new).await.map_err(api)?;
        let _ = writeln!(out, "added {} ({}, {})", r.name, g.name, g.uuid);
    }
    for r in existing
        .iter()
        .filter(|r| r.host == host && r.kind == ResourceKind::Gpu)
    {
        if let Some(uuid) = &r.gpu_uuid
            && !gpus.iter().any(|g| &g.uuid == uuid)
        {
            let _ = writeln!(
                out,
                "missing {} ({uuid}): not seen on this host; `gpures-daemon resource disable {}` retires it",
                r.name, r.name
            );
        }
    }
    Ok(out)
}

/// A new GPU or server resource from the `resource add` flags.
pub fn new_resource(
    name: String,
    host: String,
    gpu_index: Option<i32>,
    gpu_uuid: Option<String>,
    description: Option<String>,
) -> NewResource {
    let kind = if gpu_index.is_some() || gpu_uuid.is_some() || name.starts_with("gpu") {
        ResourceKind::Gpu
    } else {
        ResourceKind::Server
    };
    NewResource {
        name,
        host,
        kind,
        gpu_index,
        gpu_uuid,
        description: description.unwrap_or_default(),
    }
}

fn users_table(users: &[UserInfo]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<32} {:<24} {:<7} {:<12} STATE",
        "ID", "EMAIL", "NAME", "ROLE", "UNIX USER"
    );
    for u in users {
        let _ = writeln!(
            out,
            "{:<5} {:<32} {:<24} {:<7} {:<12} {}",
            u.id,
            u.email,
            u.display_name,
            u.role,
            u.unix_user,
            if u.disabled { "disabled" } else { "active" }
        );
    }
    if users.is_empty() {
        out.push_str("(no users yet: lab members run `gpures register`)\n");
    }
    out
}

fn resources_table(resources: &[Resource]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<12} {:<7} {:<12} {:<5} {:<10} DESCRIPTION",
        "ID", "NAME", "KIND", "HOST", "GPU", "STATE"
    );
    for r in resources {
        let _ = writeln!(
            out,
            "{:<5} {:<12} {:<7} {:<12} {:<5} {:<10} {}",
            r.id,
            r.name,
            r.kind.as_str(),
            r.host,
            r.gpu_index
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            if r.active { "active" } else { "disabled" },
            r.description
        );
    }
    if resources.is_empty() {
        out.push_str("(no resources yet: `gpures-daemon resource add gpu0 --gpu-index 0`)\n");
    }
    out
}
