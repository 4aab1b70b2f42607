//! `gpures admin resource … | user …`.

use gpures_proto::{NewResource, ResourceKind, Role, text};

use super::{AdminCommand, AdminResource, AdminUser, CliResult, Ctx};
use crate::output::{AccountJson, ResourceJson, table};

/// Runs an admin subcommand (the daemon checks the role).
pub(super) async fn admin(ctx: &Ctx, cmd: AdminCommand) -> CliResult<()> {
    match cmd {
        AdminCommand::Group(cmd) => return super::policy::admin_group(ctx, cmd).await,
        AdminCommand::Policy(cmd) => return super::policy::admin_policy(ctx, cmd).await,
        AdminCommand::Block {
            resources,
            from,
            to,
            r#for,
            reason,
            cancel,
        } => {
            let length = super::booking::Length { to, r#for };
            let request = super::blocks::Blocking {
                resources,
                from,
                length,
                reason,
                cancel,
            };
            return super::blocks::block(ctx, request).await;
        }
        AdminCommand::Unblock { id } => return super::blocks::unblock(ctx, &id).await,
        AdminCommand::Pending => {
            let pending = ctx.api(ctx.client.pending_approvals().await)?;
            return ctx.print_reservations(&pending);
        }
        AdminCommand::Approve { id, reason } => {
            return super::booking::decide(ctx, &id, true, reason).await;
        }
        AdminCommand::Deny { id, reason } => {
            return super::booking::decide(ctx, &id, false, Some(reason)).await;
        }
        AdminCommand::Resource(AdminResource::Add {
            name,
            gpu_index,
            gpu_uuid,
            description,
        }) => {
            let kind = if gpu_index.is_some() || gpu_uuid.is_some() {
                ResourceKind::Gpu
            } else {
                ResourceKind::Server
            };
            let r = ctx.api(
                ctx.client
                    .create_resource(NewResource {
                        name,
                        host: String::new(),
                        kind,
                        gpu_index,
                        gpu_uuid,
                        description,
                    })
                    .await,
            )?;
            if ctx.json {
                return ctx.print_json(&ResourceJson::from(&r));
            }
            outln!("added {}", text::sanitize(&r.name));
        }
        AdminCommand::User(AdminUser::List) => {
            let users = ctx.api(ctx.client.users().await)?;
            if ctx.json {
                return ctx.print_json(&users.iter().map(AccountJson::from).collect::<Vec<_>>());
            }
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.email.clone(),
                        u.display_name.clone(),
                        u.role.to_string(),
                        u.unix_user.clone(),
                        if u.disabled {
                            "disabled".into()
                        } else {
                            "active".into()
                        },
                    ]
                })
                .collect();
            out!(
                "{}",
                table(&["EMAIL", "NAME", "ROLE", "UNIX USER", "STATE"], &rows)
            );
        }
        AdminCommand::User(change) => {
            let u = match change {
                AdminUser::Promote { email } => ctx.client.set_role(email, Role::Admin).await,
                AdminUser::Demote { email } => ctx.client.set_role(email, Role::Member).await,
                AdminUser::Disable {
                    email,
                    cancel_future,
                    reason,
                } => {
                    let why = cancel_future.then(|| {
                        reason.unwrap_or_else(|| "the account was disabled by an admin".into())
                    });
                    ctx.client.disable_user(email, why).await
                }
                AdminUser::List => return Ok(()),
            };
            let u = ctx.api(u)?;
            if ctx.json {
                return ctx.print_json(&AccountJson::from(&u));
            }
            outln!(
                "{}: {}{}",
                text::sanitize(&u.email),
                u.role,
                if u.disabled { ", disabled" } else { "" }
            );
        }
    }
    Ok(())
}
