//! Key bindings as data: [`BINDINGS`] maps a key in a [`Scope`] to an
//! [`Action`]; the help overlay is drawn from the same table, so it always
//! lists every key. Text fields (forms, the filter prompt) take characters
//! before this table is consulted.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Quit,
    NextScreen,
    PrevScreen,
    Left,
    Right,
    Up,
    Down,
    PageLeft,
    PageRight,
    JumpNow,
    ZoomIn,
    ZoomOut,
    ToggleMark,
    NewBooking,
    Edit,
    Cancel,
    Release,
    Filter,
    Help,
    Refresh,
    ToggleRole,
    DisableUser,
}

/// Where a binding applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    Timeline,
    List,
    Admin,
}

pub struct Binding {
    pub scope: Scope,
    pub code: KeyCode,
    pub action: Action,
    pub help: &'static str,
}

const fn b(scope: Scope, code: KeyCode, action: Action, help: &'static str) -> Binding {
    Binding {
        scope,
        code,
        action,
        help,
    }
}

/// Every key of the TUI. The first binding of an action is the one shown in
/// the footer.
pub const BINDINGS: &[Binding] = &[
    b(Scope::Global, KeyCode::Char('q'), Action::Quit, "quit"),
    b(
        Scope::Global,
        KeyCode::Tab,
        Action::NextScreen,
        "next screen",
    ),
    b(
        Scope::Global,
        KeyCode::BackTab,
        Action::PrevScreen,
        "previous screen",
    ),
    b(
        Scope::Global,
        KeyCode::Char('?'),
        Action::Help,
        "show or hide this help",
    ),
    b(
        Scope::Global,
        KeyCode::F(5),
        Action::Refresh,
        "reload from the daemon",
    ),
    b(Scope::Timeline, KeyCode::Left, Action::Left, "earlier"),
    b(Scope::Timeline, KeyCode::Char('h'), Action::Left, "earlier"),
    b(Scope::Timeline, KeyCode::Right, Action::Right, "later"),
    b(Scope::Timeline, KeyCode::Char('l'), Action::Right, "later"),
    b(
        Scope::Timeline,
        KeyCode::Up,
        Action::Up,
        "previous resource",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('k'),
        Action::Up,
        "previous resource",
    ),
    b(
        Scope::Timeline,
        KeyCode::Down,
        Action::Down,
        "next resource",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('j'),
        Action::Down,
        "next resource",
    ),
    b(
        Scope::Timeline,
        KeyCode::PageUp,
        Action::PageLeft,
        "a screen earlier",
    ),
    b(
        Scope::Timeline,
        KeyCode::PageDown,
        Action::PageRight,
        "a screen later",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('t'),
        Action::JumpNow,
        "jump to now",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('+'),
        Action::ZoomIn,
        "zoom in (week, 3 days, day)",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('='),
        Action::ZoomIn,
        "zoom in",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('-'),
        Action::ZoomOut,
        "zoom out",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char(' '),
        Action::ToggleMark,
        "mark this GPU for a multi-GPU booking",
    ),
    b(
        Scope::Timeline,
        KeyCode::Enter,
        Action::NewBooking,
        "book the cell (or the marked GPUs)",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('n'),
        Action::NewBooking,
        "new booking here",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('e'),
        Action::Edit,
        "edit the reservation here",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('x'),
        Action::Cancel,
        "cancel the reservation here (asks first)",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('r'),
        Action::Release,
        "release the reservation here now",
    ),
    b(
        Scope::Timeline,
        KeyCode::Char('/'),
        Action::Filter,
        "filter by user",
    ),
    b(Scope::List, KeyCode::Up, Action::Up, "previous row"),
    b(Scope::List, KeyCode::Char('k'), Action::Up, "previous row"),
    b(Scope::List, KeyCode::Down, Action::Down, "next row"),
    b(Scope::List, KeyCode::Char('j'), Action::Down, "next row"),
    b(
        Scope::List,
        KeyCode::Char('e'),
        Action::Edit,
        "edit the selected reservation",
    ),
    b(
        Scope::List,
        KeyCode::Char('x'),
        Action::Cancel,
        "cancel the selected reservation",
    ),
    b(
        Scope::List,
        KeyCode::Char('r'),
        Action::Release,
        "release the selected reservation",
    ),
    b(Scope::Admin, KeyCode::Up, Action::Up, "previous user"),
    b(Scope::Admin, KeyCode::Down, Action::Down, "next user"),
    b(
        Scope::Admin,
        KeyCode::Char('p'),
        Action::ToggleRole,
        "make the user admin / member",
    ),
    b(
        Scope::Admin,
        KeyCode::Char('d'),
        Action::DisableUser,
        "disable the user (asks first)",
    ),
];

/// The action for `key` in `scope` (global bindings apply everywhere).
pub fn action_for(scope: Scope, key: &KeyEvent) -> Option<Action> {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Some(Action::Quit);
    }
    // Shifted characters arrive as the character itself ('?', '+').
    BINDINGS
        .iter()
        .find(|b| b.code == key.code && (b.scope == scope || b.scope == Scope::Global))
        .map(|b| b.action)
}

/// How a key is written in the help.
pub fn key_name(code: KeyCode) -> String {
    match code {
        KeyCode::Char(' ') => "Space".into(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Tab => "Tab".into(),
        KeyCode::BackTab => "S-Tab".into(),
        KeyCode::Enter => "Enter".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::F(n) => format!("F{n}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for (i, a) in BINDINGS.iter().enumerate() {
            for b in &BINDINGS[i + 1..] {
                let clash = a.code == b.code
                    && (a.scope == b.scope || a.scope == Scope::Global || b.scope == Scope::Global);
                assert!(!clash, "{:?} bound twice", a.code);
            }
        }
    }
}
