//! `gpures-daemon group …` and `gpures-daemon policy …`.

use std::fmt::Write as _;

use anyhow::Result;
use gpures_proto::policy::PolicyWords;
use gpures_proto::{GroupChange, Policy, PolicySet};

use crate::cli::{GroupCommand, MemberCommand, PolicyCommand, RuleScope};
use crate::service::{Actor, Service};

/// Runs a `group` command.
///
/// # Errors
/// The service's refusal, with its cause.
pub async fn group(svc: &Service, actor: &Actor, cmd: GroupCommand) -> Result<String> {
    let mut out = String::new();
    match cmd {
        GroupCommand::List => {
            let groups = svc.groups(actor).await?;
            if groups.is_empty() {
                out.push_str("no groups yet: gpures-daemon group add NAME\n");
            }
            for g in groups {
                let members: Vec<&str> = g.members.iter().map(|m| m.email.as_str()).collect();
                let _ = writeln!(
                    out,
                    "{}{}: {}",
                    g.name,
                    if g.description.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", g.description)
                    },
                    if members.is_empty() {
                        "no members".to_owned()
                    } else {
                        members.join(", ")
                    }
                );
            }
        }
        GroupCommand::Add { name, description } => {
            let g = svc
                .change_group(actor, GroupChange::Create { name, description })
                .await?;
            let _ = writeln!(out, "group {} created", g.name);
        }
        GroupCommand::Rm { name } => {
            let g = svc
                .change_group(actor, GroupChange::Delete { name })
                .await?;
            let _ = writeln!(out, "group {} deleted", g.name);
        }
        GroupCommand::Member(MemberCommand::Add { group, emails }) => {
            for email in emails {
                let name = group.clone();
                svc.change_group(
                    actor,
                    GroupChange::AddMember {
                        name,
                        email: email.clone(),
                    },
                )
                .await?;
                let _ = writeln!(out, "{email} added to {group}");
            }
        }
        GroupCommand::Member(MemberCommand::Rm { group, emails }) => {
            for email in emails {
                let name = group.clone();
                svc.change_group(
                    actor,
                    GroupChange::RemoveMember {
                        name,
                        email: email.clone(),
                    },
                )
                .await?;
                let _ = writeln!(out, "{email} removed from {group}");
            }
        }
    }
    Ok(out)
}

/// Runs a `policy` command.
///
/// # Errors
/// A rule or value that does not parse; the service's refusal.
pub async fn policy(svc: &Service, actor: &Actor, cmd: PolicyCommand) -> Result<String> {
    let policies = match cmd {
        PolicyCommand::List => svc.policies(actor).await?,
        PolicyCommand::Set {
            rule,
            value,
            scope,
            after,
        } => {
            let words = words(&rule, Some(&value), after.as_deref(), scope);
            let set = PolicySet::from_words(words).map_err(anyhow::Error::msg)?;
            svc.set_policy(actor, set).await?
        }
        PolicyCommand::Unset { rule, scope } => {
            let set = PolicySet::from_words(words(&rule, None, None, scope))
                .map_err(anyhow::Error::msg)?;
            svc.set_policy(actor, set).await?
        }
    };
    Ok(table(&policies))
}

fn words<'a>(
    rule: &'a str,
    value: Option<&'a str>,
    after: Option<&'a str>,
    scope: RuleScope,
) -> PolicyWords<'a> {
    PolicyWords {
        rule,
        value,
        after,
        group: scope.group,
        user: scope.user,
        host: scope.host,
    }
}

/// The rules in force, one per line.
fn table(policies: &[Policy]) -> String {
    if policies.is_empty() {
        return "no lab policy: members may book anything free (within [booking] of gpures.toml)\n"
            .to_owned();
    }
    let mut out = String::new();
    for p in policies {
        let [rule, value, scope, host] = p.cells();
        let _ = writeln!(out, "{rule:<15} {value:<22} {scope:<30} {host}");
    }
    out
}
