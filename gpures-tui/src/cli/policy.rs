//! `gpures policy`, `gpures groups`, `gpures admin group …` and
//! `gpures admin policy …`.

use gpures_proto::policy::PolicyWords;
use gpures_proto::{Group, GroupChange, Policy, PolicyScope, PolicySet, text};
use serde::Serialize;

use super::{AdminGroup, AdminMember, AdminPolicy, CliResult, Ctx, Failure, RuleScope};
use crate::output::table;

/// A rule as `--json` prints it.
#[derive(Serialize)]
struct PolicyJson {
    rule: &'static str,
    value: i64,
    unit: &'static str,
    /// Cooldown: minutes that make a reservation long.
    after_minutes: Option<i64>,
    scope: String,
    host: Option<String>,
    /// From gpures.toml rather than set by an admin.
    default: bool,
    applies_to_me: bool,
}

/// A group as `--json` prints it.
#[derive(Serialize)]
struct GroupJson<'a> {
    name: &'a str,
    description: &'a str,
    members: Vec<&'a str>,
}

/// `gpures policy`: every rule, with the ones that apply to the caller
/// marked.
pub(super) async fn show(ctx: &Ctx) -> CliResult<()> {
    let policies = ctx.api(ctx.client.policies().await)?;
    let me = ctx.api(ctx.client.whoami().await)?;
    let groups = ctx.api(ctx.client.groups().await)?;
    let mine: Vec<&str> = groups
        .iter()
        .filter(|g| g.members.iter().any(|m| m.id == me.id))
        .map(|g| g.name.as_str())
        .collect();
    let applies = |p: &Policy| match &p.scope {
        PolicyScope::Everyone => true,
        PolicyScope::Group(g) => mine.contains(&g.as_str()),
        PolicyScope::User(u) => u.id == me.id,
    };
    print_policies(ctx, &policies, applies)?;
    if !ctx.json && !mine.is_empty() {
        outln!("your groups: {}", text::sanitize(&mine.join(", ")));
    }
    Ok(())
}

/// `gpures groups`.
pub(super) async fn groups(ctx: &Ctx) -> CliResult<()> {
    let groups = ctx.api(ctx.client.groups().await)?;
    print_groups(ctx, &groups)
}

fn print_groups(ctx: &Ctx, groups: &[Group]) -> CliResult<()> {
    if ctx.json {
        let json: Vec<GroupJson> = groups
            .iter()
            .map(|g| GroupJson {
                name: &g.name,
                description: &g.description,
                members: g.members.iter().map(|m| m.email.as_str()).collect(),
            })
            .collect();
        return ctx.print_json(&json);
    }
    if groups.is_empty() {
        outln!("no groups yet (an admin adds them: gpures admin group add NAME)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let members: Vec<String> = g
                .members
                .iter()
                .map(|m| format!("{} <{}>", m.display_name, m.email))
                .collect();
            vec![g.name.clone(), members.join(", "), g.description.clone()]
        })
        .collect();
    out!("{}", table(&["GROUP", "MEMBERS", "DESCRIPTION"], &rows));
    Ok(())
}

fn print_policies(
    ctx: &Ctx,
    policies: &[Policy],
    applies: impl Fn(&Policy) -> bool,
) -> CliResult<()> {
    if ctx.json {
        let json: Vec<PolicyJson> = policies
            .iter()
            .map(|p| PolicyJson {
                rule: p.rule.as_str(),
                value: p.value,
                unit: if p.rule.is_count() {
                    "count"
                } else {
                    "minutes"
                },
                after_minutes: p.threshold,
                scope: p.scope.to_string(),
                host: p.host.clone(),
                default: p.id == 0,
                applies_to_me: applies(p),
            })
            .collect();
        return ctx.print_json(&json);
    }
    if policies.is_empty() {
        outln!("no lab policy: you may book anything free (up to the host's booking limits)");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = policies
        .iter()
        .map(|p| {
            let [rule, value, scope, host] = p.cells();
            let mark = if applies(p) { "•" } else { "" };
            vec![mark.to_owned(), rule, value, scope, host]
        })
        .collect();
    out!("{}", table(&["", "RULE", "LIMIT", "FOR", "WHERE"], &rows));
    outln!(
        "• applies to you; your own rule beats your groups' (the most generous wins), which beat everyone's"
    );
    Ok(())
}

/// `gpures admin group …`.
pub(super) async fn admin_group(ctx: &Ctx, cmd: AdminGroup) -> CliResult<()> {
    let changes = match cmd {
        AdminGroup::List => {
            let groups = ctx.api(ctx.client.groups().await)?;
            return print_groups(ctx, &groups);
        }
        AdminGroup::Add { name, description } => vec![GroupChange::Create { name, description }],
        AdminGroup::Rm { name } => vec![GroupChange::Delete { name }],
        AdminGroup::Member(AdminMember::Add { group, emails }) => emails
            .into_iter()
            .map(|email| GroupChange::AddMember {
                name: group.clone(),
                email,
            })
            .collect(),
        AdminGroup::Member(AdminMember::Rm { group, emails }) => emails
            .into_iter()
            .map(|email| GroupChange::RemoveMember {
                name: group.clone(),
                email,
            })
            .collect(),
    };
    let mut last = None;
    for change in changes {
        let said = match &change {
            GroupChange::Create { name, .. } => format!("group {name} created"),
            GroupChange::Delete { name } => format!("group {name} deleted"),
            GroupChange::AddMember { name, email } => format!("{email} added to {name}"),
            GroupChange::RemoveMember { name, email } => format!("{email} removed from {name}"),
        };
        last = Some(ctx.api(ctx.client.change_group(change).await)?);
        if !ctx.json {
            outln!("{}", text::sanitize(&said));
        }
    }
    match last {
        Some(g) if ctx.json => print_groups(ctx, &[g]),
        _ => Ok(()),
    }
}

/// `gpures admin policy …`.
pub(super) async fn admin_policy(ctx: &Ctx, cmd: AdminPolicy) -> CliResult<()> {
    let policies = match cmd {
        AdminPolicy::List => ctx.api(ctx.client.policies().await)?,
        AdminPolicy::Set {
            rule,
            value,
            scope,
            after,
        } => {
            let words = words(&rule, Some(&value), after.as_deref(), scope);
            let set = PolicySet::from_words(words).map_err(Failure::usage)?;
            ctx.api(ctx.client.set_policy(set).await)?
        }
        AdminPolicy::Unset { rule, scope } => {
            let set =
                PolicySet::from_words(words(&rule, None, None, scope)).map_err(Failure::usage)?;
            ctx.api(ctx.client.set_policy(set).await)?
        }
    };
    print_policies(ctx, &policies, |_| false)
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
