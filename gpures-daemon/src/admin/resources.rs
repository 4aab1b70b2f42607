//! `gpures-daemon resource add|list|disable|discover`.

use std::fmt::Write as _;

use anyhow::Context as _;
use gpures_proto::{NewResource, Resource, ResourceKind, ResourceUpdate};

use crate::cli::ResourceCommand;
use crate::config::Config;
use crate::gpu::{GpuSample, Probe};
use crate::service::resources::Discovered;
use crate::service::{Actor, Result, Service};

/// One resource action of the host admin.
#[derive(Clone, Debug)]
pub enum ResourceAction {
    Add(NewResource),
    List,
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    Rename {
        name: String,
        new_name: String,
    },
    Describe {
        name: String,
        description: String,
    },
    Remove {
        name: String,
    },
    /// One resource per GPU the probe found on `host`.
    Discover {
        host: String,
        gpus: Vec<GpuSample>,
    },
}

/// The action of a `resource` command line; `discover` samples the GPUs here.
///
/// # Errors
/// The probe has no backend or failed.
pub async fn action(config: &Config, cmd: ResourceCommand) -> anyhow::Result<ResourceAction> {
    Ok(match cmd {
        ResourceCommand::Add {
            name,
            host,
            gpu_index,
            gpu_uuid,
            description,
        } => ResourceAction::Add(new_resource(
            name,
            host.unwrap_or_else(|| config.host_name()),
            gpu_index,
            gpu_uuid,
            description,
        )),
        ResourceCommand::List => ResourceAction::List,
        ResourceCommand::Disable { name } => ResourceAction::Disable { name },
        ResourceCommand::Enable { name } => ResourceAction::Enable { name },
        ResourceCommand::Rename { name, new_name } => ResourceAction::Rename { name, new_name },
        ResourceCommand::Describe { name, description } => {
            ResourceAction::Describe { name, description }
        }
        ResourceCommand::Remove { name } => ResourceAction::Remove { name },
        ResourceCommand::Discover { host } => {
            let probe = Probe::new(config.gpu.backend, &config.gpu.nvidia_smi);
            if let Some(note) = probe.note() {
                anyhow::bail!("{note}\n{ADD_BY_HAND}");
            }
            let gpus = tokio::task::spawn_blocking(move || probe.sample())
                .await
                .context("the probe thread failed")??;
            ResourceAction::Discover {
                host: host.unwrap_or_else(|| config.host_name()),
                gpus,
            }
        }
    })
}

/// Runs `action` and returns what to print.
///
/// # Errors
/// Unknown resources, invalid input, store failures.
pub async fn execute(service: &Service, actor: &Actor, action: ResourceAction) -> Result<String> {
    Ok(match action {
        ResourceAction::Add(new) => {
            let r = service.create_resource(actor, new).await?;
            format!(
                "added {}\n{}",
                r.name,
                resources_table(std::slice::from_ref(&r))
            )
        }
        ResourceAction::List => resources_table(&service.list_resources(actor, true).await?),
        ResourceAction::Discover { host, gpus } => {
            let found = service.discover(actor, &host, &gpus).await?;
            discovered(&found, gpus.is_empty())
        }
        ResourceAction::Disable { name } => {
            let update = ResourceUpdate {
                active: Some(false),
                ..ResourceUpdate::default()
            };
            let r = change(service, actor, &name, update).await?;
            format!(
                "{} is disabled: it cannot be booked; its reservations stay\n",
                r.name
            )
        }
        ResourceAction::Enable { name } => {
            let update = ResourceUpdate {
                active: Some(true),
                ..ResourceUpdate::default()
            };
            let r = change(service, actor, &name, update).await?;
            format!("{} is enabled: it can be booked again\n", r.name)
        }
        ResourceAction::Rename { name, new_name } => {
            let update = ResourceUpdate {
                name: Some(new_name),
                ..ResourceUpdate::default()
            };
            let r = change(service, actor, &name, update).await?;
            format!("{name} is now {}; its reservations follow it\n", r.name)
        }
        ResourceAction::Remove { name } => {
            let r = service.remove_resource(actor, &name).await?;
            format!("removed {}\n", r.name)
        }
        ResourceAction::Describe { name, description } => {
            let update = ResourceUpdate {
                description: Some(description),
                ..ResourceUpdate::default()
            };
            let r = change(service, actor, &name, update).await?;
            format!("{}: {}\n", r.name, r.description)
        }
    })
}

/// Applies `update` to the resource called `name`.
async fn change(
    service: &Service,
    actor: &Actor,
    name: &str,
    update: ResourceUpdate,
) -> Result<gpures_proto::Resource> {
    let r = service.resource_by_name(actor, name).await?;
    service.update_resource(actor, r.id, update).await
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

/// What to do when the GPUs cannot be read.
const ADD_BY_HAND: &str = "add resources by hand instead: \
`gpures-daemon resource add gpu0 --gpu-index 0 --description \"H100 80GB\"` \
(one per GPU), or `gpures-daemon resource add NAME` for a whole server";

fn discovered(found: &[Discovered], no_gpus: bool) -> String {
    let mut out = String::new();
    if no_gpus {
        out.push_str("no GPUs found on this host\n");
        out.push_str(ADD_BY_HAND);
        out.push('\n');
    }
    for d in found {
        let _ = match d {
            Discovered::Unchanged { name, uuid } => writeln!(out, "unchanged {name} ({uuid})"),
            Discovered::Moved { name, index, host } => {
                writeln!(out, "updated {name} (index {index}, host {host})")
            }
            Discovered::Claimed { name, uuid } => writeln!(out, "updated {name} (UUID {uuid})"),
            Discovered::Added { name, model, uuid } => {
                writeln!(out, "added {name} ({model}, {uuid})")
            }
            Discovered::Missing { name, uuid } => writeln!(
                out,
                "missing {name} ({uuid}): not seen on this host; `gpures-daemon resource disable {name}` retires it"
            ),
        };
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
