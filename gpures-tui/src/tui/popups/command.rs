//! The Admin screen's command line (`:`): lab policy, groups and resources,
//! in the words of `gpures admin policy …`, `gpures admin group …` and
//! `gpures-daemon resource …`:
//!
//! ```text
//! policy set gpu-hours-week 48 --group vision
//! policy set cooldown 12h --after 24h
//! policy unset max-gpus --user kim@lab.kr --host node2
//! group add vision Vision team
//! group rm vision
//! group member add vision kim@lab.kr
//! group member rm vision kim@lab.kr
//! resource add gpu4 --gpu-index 4 --host node2 H100 80GB
//! resource rename gpu4 big0
//! resource describe big0 H100 80GB, NVLink to big1
//! resource disable big0          (and enable: bookings stay, no new ones)
//! ```

use gpures_proto::{
    GroupChange, NewResource, PolicySet, ResourceKind, ResourceUpdate, policy::PolicyWords, text,
};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};

use crate::tui::component::{Component, Event, Popup};
use crate::tui::form::edit_line;
use crate::tui::keys::{Action, Scope};
use crate::tui::model::{Ctx, Effect};
use crate::tui::style::centered;

/// The command typed so far.
#[derive(Clone, Debug, Default)]
pub struct CommandPrompt {
    pub input: String,
}

/// The call a command line asks for, or what is wrong with it.
///
/// # Errors
/// A sentence saying what to type instead.
pub fn parse(line: &str) -> Result<Effect, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    const USAGE: &str = "policy set RULE VALUE [--group G | --user EMAIL] [--host H] [--after LEN] · policy unset RULE [...] · group add|rm NAME · group member add|rm NAME EMAIL · resource add NAME [--gpu-index N] [--host H] [DESCRIPTION] · resource rename NAME NEW · resource describe NAME TEXT · resource disable|enable NAME";
    let update = |name: &str, update: ResourceUpdate| Effect::UpdateResource {
        name: name.to_owned(),
        update,
    };
    match words.as_slice() {
        ["policy", "set", rule, value, rest @ ..] => policy(rule, Some(value), rest),
        ["policy", "unset", rule, rest @ ..] => policy(rule, None, rest),
        ["group", "add", name, description @ ..] => Ok(Effect::ChangeGroup(GroupChange::Create {
            name: (*name).to_owned(),
            description: description.join(" "),
        })),
        ["group", "rm", name] => Ok(Effect::ChangeGroup(GroupChange::Delete {
            name: (*name).to_owned(),
        })),
        ["group", "member", op @ ("add" | "rm"), name, email] => {
            let (name, email) = ((*name).to_owned(), (*email).to_owned());
            Ok(Effect::ChangeGroup(if *op == "add" {
                GroupChange::AddMember { name, email }
            } else {
                GroupChange::RemoveMember { name, email }
            }))
        }
        ["resource", "add", name, rest @ ..] => resource(name, rest),
        ["resource", "rename", name, new] => Ok(update(
            name,
            ResourceUpdate {
                name: Some((*new).to_owned()),
                ..ResourceUpdate::default()
            },
        )),
        ["resource", "describe", name, text @ ..] => Ok(update(
            name,
            ResourceUpdate {
                description: Some(text.join(" ")),
                ..ResourceUpdate::default()
            },
        )),
        ["resource", op @ ("disable" | "enable"), name] => Ok(update(
            name,
            ResourceUpdate {
                active: Some(*op == "enable"),
                ..ResourceUpdate::default()
            },
        )),
        _ => Err(format!("type one of: {USAGE}")),
    }
}

/// `resource add NAME [--gpu-index N] [--host H] [DESCRIPTION...]`.
fn resource(name: &str, rest: &[&str]) -> Result<Effect, String> {
    let mut new = NewResource {
        name: name.to_owned(),
        host: String::new(),
        kind: ResourceKind::Gpu,
        gpu_index: None,
        gpu_uuid: None,
        description: String::new(),
    };
    let mut it = rest.iter().peekable();
    while let Some(flag) = it.next_if(|w| w.starts_with("--")) {
        let arg = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match *flag {
            "--host" => new.host = (*arg).to_owned(),
            "--gpu-index" => {
                new.gpu_index = Some(
                    arg.parse()
                        .map_err(|_| format!("--gpu-index {arg}: a number from 0"))?,
                );
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    new.description = it.copied().collect::<Vec<_>>().join(" ");
    Ok(Effect::AddResource(new))
}

fn policy(rule: &str, value: Option<&&str>, rest: &[&str]) -> Result<Effect, String> {
    let mut words = PolicyWords {
        rule,
        value: value.copied(),
        after: None,
        group: None,
        user: None,
        host: None,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let arg = it
            .next()
            .copied()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match *flag {
            "--group" => words.group = Some(arg.to_owned()),
            "--user" => words.user = Some(arg.to_owned()),
            "--host" => words.host = Some(arg.to_owned()),
            "--after" => words.after = Some(arg),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if words.group.is_some() && words.user.is_some() {
        return Err("give --group or --user, not both".into());
    }
    PolicySet::from_words(words).map(Effect::SetPolicy)
}

impl Component for CommandPrompt {
    fn scope(&self) -> Scope {
        Scope::Filter
    }

    fn update(&mut self, action: Action, _ctx: &Ctx) -> Vec<Event> {
        match action {
            Action::Submit => match parse(&self.input) {
                Ok(effect) => vec![
                    Event::Close,
                    Event::Say("saving…".into()),
                    Event::Call(effect),
                ],
                Err(e) => vec![Event::Fail(e)],
            },
            Action::Close => vec![Event::Close],
            Action::Quit => vec![Event::Quit],
            other => {
                edit_line(&mut self.input, &other);
                vec![]
            }
        }
    }

    fn hints(&self) -> &'static str {
        "Enter do it · Esc close"
    }

    fn draw(&self, ctx: &Ctx, frame: &mut Frame, size: Rect) {
        let area = centered(size, 76.min(size.width), 10);
        frame.render_widget(Clear, area);
        let mut lines = vec![
            Line::from("policy set|unset RULE [VALUE] [--group G | --user EMAIL] [--host H]"),
            Line::from("group add|rm NAME · group member add|rm NAME EMAIL"),
            Line::from("resource add NAME [--gpu-index N] [--host H] [DESCRIPTION]"),
            Line::from("resource rename NAME NEW · describe NAME TEXT · disable|enable NAME"),
            Line::from(""),
            Line::from(format!(": {}▏", text::sanitize(&self.input))),
        ];
        if let Some(m) = ctx.message.as_ref().filter(|m| m.error) {
            lines.push(Line::from(text::sanitize(&m.text)));
        }
        frame.render_widget(
            Paragraph::new(lines)
                .block(
                    Block::default()
                        .borders(Borders::ALL)
                        .title(" Policy, groups, resources (audited) "),
                )
                .wrap(Wrap { trim: true }),
            area,
        );
    }
}

impl Popup for CommandPrompt {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpures_proto::{PolicyRule, PolicyTarget};

    #[test]
    fn commands_read_like_the_cli() {
        match parse("policy set gpu-hours-week 48 --group vision") {
            Ok(Effect::SetPolicy(s)) => {
                assert_eq!(s.rule, PolicyRule::GpuHoursWeek);
                assert_eq!(s.value, Some(48 * 60));
                assert_eq!(s.target, PolicyTarget::Group("vision".into()));
            }
            other => panic!("{other:?}"),
        }
        match parse("policy unset max-gpus --user kim@lab.kr --host node2") {
            Ok(Effect::SetPolicy(s)) => {
                assert_eq!(s.value, None);
                assert_eq!(s.host.as_deref(), Some("node2"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("group add vision Vision team"),
            Ok(Effect::ChangeGroup(GroupChange::Create { description, .. })) if description == "Vision team"
        ));
        assert!(matches!(
            parse("group member rm vision kim@lab.kr"),
            Ok(Effect::ChangeGroup(GroupChange::RemoveMember { .. }))
        ));
        match parse("resource add gpu4 --gpu-index 4 --host node2 H100 80GB") {
            Ok(Effect::AddResource(r)) => {
                assert_eq!(
                    (r.gpu_index, r.host.as_str(), r.description.as_str()),
                    (Some(4), "node2", "H100 80GB")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("resource disable gpu4"),
            Ok(Effect::UpdateResource {
                update: ResourceUpdate {
                    active: Some(false),
                    ..
                },
                ..
            })
        ));
        for bad in [
            "",
            "policy set",
            "policy set nap-time 3",
            "policy set max-gpus 2 --group",
            "policy set max-gpus 2 --group a --user b",
            "policy set max-gpus 2 --colour red",
            "group member add vision",
            "resource add gpu4 --gpu-index four",
            "resource rename gpu4",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
