//! `gpures-daemon group …` and `gpures-daemon policy …`.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use gpures_proto::policy::parse_value;
use gpures_proto::{GroupChange, Policy, PolicyRule, PolicySet, PolicyTarget};

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
            let rule = rule_of(&rule)?;
            let value = parse_value(rule, &value).map_err(anyhow::Error::msg)?;
            let threshold = match after {
                Some(a) => {
                    Some(parse_value(PolicyRule::MaxLength, &a).map_err(anyhow::Error::msg)?)
                }
                None => None,
            };
            svc.set_policy(actor, set_of(rule, scope, Some(value), threshold))
                .await?
        }
        PolicyCommand::Unset { rule, scope } => {
            let rule = rule_of(&rule)?;
            svc.set_policy(actor, set_of(rule, scope, None, None))
                .await?
        }
    };
    Ok(table(&policies))
}

fn rule_of(s: &str) -> Result<PolicyRule> {
    match PolicyRule::parse(s) {
        Some(r) => Ok(r),
        None => {
            let names: Vec<&str> = PolicyRule::ALL.iter().map(|r| r.as_str()).collect();
            bail!("unknown rule {s:?}: one of {}", names.join(", "))
        }
    }
}

fn set_of(
    rule: PolicyRule,
    scope: RuleScope,
    value: Option<i64>,
    threshold: Option<i64>,
) -> PolicySet {
    PolicySet {
        rule,
        target: match (scope.group, scope.user) {
            (Some(g), _) => PolicyTarget::Group(g),
            (None, Some(u)) => PolicyTarget::User(u),
            (None, None) => PolicyTarget::Everyone,
        },
        host: scope.host,
        value,
        threshold,
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
