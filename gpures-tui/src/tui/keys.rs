//! Key bindings as data: [`BINDINGS`] maps a key (with its modifiers) in a
//! [`Scope`] to an [`Action`]. Every key the TUI reacts to is in the table,
//! form keys, Ctrl-C and confirmations included, and the help overlay is
//! drawn from it, so it always lists every key. Three rules sit beside the
//! table, and the help says them too: in a text scope (a form, the login, the
//! filter prompt) a printable character is typed ([`Action::Type`]); in the
//! help any key closes it; in a confirmation any key but yes means no.

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
    /// Open the notifications.
    Inbox,
    /// Open where notifications go.
    NotifySettings,
    Refresh,
    ToggleRole,
    DisableUser,
    /// Admins: the policy and groups command line.
    Command,
    /// Admins: approve the pending booking here.
    Approve,
    /// Admins: deny the pending booking here (asks why).
    Deny,
    /// A character typed into a text field.
    Type(char),
    Backspace,
    NextField,
    PrevField,
    /// Enter in a form: the next field, or submit on the last.
    Submit,
    /// Esc: close the popup (or leave the login screen).
    Close,
    /// Switch the login form between log in and register.
    ToggleRegister,
    Yes,
    /// In a question about one GPU of a booking: all of its GPUs.
    All,
    No,
}

/// Where a binding applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every screen scope (not forms, prompts or popups, but for Ctrl-C).
    Global,
    Timeline,
    List,
    Admin,
    Report,
    Login,
    Form,
    Filter,
    Confirm,
    Help,
    /// Where notifications go.
    Settings,
}

impl Scope {
    /// Whether printable characters are typed into a field here.
    fn takes_text(self) -> bool {
        matches!(self, Scope::Login | Scope::Form | Scope::Filter)
    }

    /// Whether the global bindings apply here.
    fn has_globals(self) -> bool {
        matches!(
            self,
            Scope::Timeline | Scope::List | Scope::Admin | Scope::Report | Scope::Global
        )
    }

    /// The help overlay's heading.
    pub fn title(self) -> &'static str {
        match self {
            Scope::Global => "Everywhere",
            Scope::Timeline => "Timeline",
            Scope::List => "My reservations",
            Scope::Admin => "Admin",
            Scope::Report => "Report",
            Scope::Login => "Log in / register",
            Scope::Form => "Booking form",
            Scope::Filter => "Filter prompt",
            Scope::Confirm => "Questions",
            Scope::Help => "This help",
            Scope::Settings => "Notification settings",
        }
    }
}

pub struct Binding {
    pub scope: Scope,
    pub code: KeyCode,
    pub mods: KeyModifiers,
    pub action: Action,
    pub help: &'static str,
}

const NONE: KeyModifiers = KeyModifiers::NONE;
const CTRL: KeyModifiers = KeyModifiers::CONTROL;

const fn b(scope: Scope, code: KeyCode, action: Action, help: &'static str) -> Binding {
    Binding {
        scope,
        code,
        mods: NONE,
        action,
        help,
    }
}

const fn ctrl(scope: Scope, c: char, action: Action, help: &'static str) -> Binding {
    Binding {
        scope,
        code: KeyCode::Char(c),
        mods: CTRL,
        action,
        help,
    }
}

use Action as A;
use KeyCode as K;
use Scope as S;

/// Every key of the TUI. The first binding of an action is the one shown in
/// the footer.
pub const BINDINGS: &[Binding] = &[
    b(S::Global, K::Char('q'), A::Quit, "quit"),
    ctrl(S::Global, 'c', A::Quit, "quit, from anywhere"),
    b(S::Global, K::Tab, A::NextScreen, "next screen"),
    b(S::Global, K::BackTab, A::PrevScreen, "previous screen"),
    b(S::Global, K::Char('?'), A::Help, "show this help"),
    b(
        S::Global,
        K::Char('i'),
        A::Inbox,
        "your notifications (marks them read)",
    ),
    b(
        S::Global,
        K::Char('N'),
        A::NotifySettings,
        "where notifications go: webhook, email, terminals, kinds",
    ),
    b(S::Global, K::F(5), A::Refresh, "reload from the daemon"),
    b(S::Timeline, K::Left, A::Left, "earlier"),
    b(S::Timeline, K::Char('h'), A::Left, "earlier"),
    b(S::Timeline, K::Right, A::Right, "later"),
    b(S::Timeline, K::Char('l'), A::Right, "later"),
    b(S::Timeline, K::Up, A::Up, "previous resource"),
    b(S::Timeline, K::Char('k'), A::Up, "previous resource"),
    b(S::Timeline, K::Down, A::Down, "next resource"),
    b(S::Timeline, K::Char('j'), A::Down, "next resource"),
    b(S::Timeline, K::PageUp, A::PageLeft, "a screen earlier"),
    b(S::Timeline, K::PageDown, A::PageRight, "a screen later"),
    b(S::Timeline, K::Char('t'), A::JumpNow, "jump to now"),
    b(
        S::Timeline,
        K::Char('+'),
        A::ZoomIn,
        "zoom in (week, 3 days, day)",
    ),
    b(S::Timeline, K::Char('='), A::ZoomIn, "zoom in"),
    b(S::Timeline, K::Char('-'), A::ZoomOut, "zoom out"),
    b(
        S::Timeline,
        K::Char(' '),
        A::ToggleMark,
        "mark this GPU for a multi-GPU booking",
    ),
    b(
        S::Timeline,
        K::Enter,
        A::NewBooking,
        "book the cell (or the marked GPUs)",
    ),
    b(S::Timeline, K::Char('n'), A::NewBooking, "new booking here"),
    b(
        S::Timeline,
        K::Char('e'),
        A::Edit,
        "edit the reservation here",
    ),
    b(
        S::Timeline,
        K::Char('x'),
        A::Cancel,
        "cancel the reservation here (asks first)",
    ),
    b(
        S::Timeline,
        K::Char('r'),
        A::Release,
        "release the reservation here now",
    ),
    b(
        S::Timeline,
        K::Char('/'),
        A::Filter,
        "filter by user (@host: by host)",
    ),
    b(
        S::Timeline,
        K::Char('A'),
        A::Approve,
        "admins: approve the pending booking here (? on its bar)",
    ),
    b(
        S::Timeline,
        K::Char('D'),
        A::Deny,
        "admins: deny the pending booking here (asks why)",
    ),
    b(S::List, K::Up, A::Up, "previous row"),
    b(S::List, K::Char('k'), A::Up, "previous row"),
    b(S::List, K::Down, A::Down, "next row"),
    b(S::List, K::Char('j'), A::Down, "next row"),
    b(
        S::List,
        K::Char('e'),
        A::Edit,
        "edit the selected reservation",
    ),
    b(
        S::List,
        K::Char('x'),
        A::Cancel,
        "cancel the selected reservation",
    ),
    b(
        S::List,
        K::Char('r'),
        A::Release,
        "release the selected reservation",
    ),
    b(S::Admin, K::Up, A::Up, "previous user"),
    b(S::Admin, K::Down, A::Down, "next user"),
    b(
        S::Admin,
        K::Char('p'),
        A::ToggleRole,
        "make the user admin / member",
    ),
    b(
        S::Admin,
        K::Char('d'),
        A::DisableUser,
        "disable the user (asks first)",
    ),
    b(
        S::Admin,
        K::Char(':'),
        A::Command,
        "a policy or group command (policy set …, group add …)",
    ),
    b(S::Report, K::Left, A::Left, "the month before"),
    b(S::Report, K::Char('h'), A::Left, "the month before"),
    b(S::Report, K::Right, A::Right, "the month after"),
    b(S::Report, K::Char('l'), A::Right, "the month after"),
    b(S::Login, K::Tab, A::NextField, "next field"),
    b(S::Login, K::Down, A::NextField, "next field"),
    b(S::Login, K::BackTab, A::PrevField, "previous field"),
    b(S::Login, K::Up, A::PrevField, "previous field"),
    b(
        S::Login,
        K::Enter,
        A::Submit,
        "next field; log in on the last",
    ),
    b(S::Login, K::Backspace, A::Backspace, "delete a character"),
    ctrl(
        S::Login,
        'r',
        A::ToggleRegister,
        "switch between log in and register",
    ),
    b(S::Login, K::Esc, A::Close, "quit"),
    b(S::Form, K::Tab, A::NextField, "next field"),
    b(S::Form, K::Down, A::NextField, "next field"),
    b(S::Form, K::BackTab, A::PrevField, "previous field"),
    b(S::Form, K::Up, A::PrevField, "previous field"),
    b(S::Form, K::Enter, A::Submit, "save"),
    b(S::Form, K::Backspace, A::Backspace, "delete a character"),
    b(S::Form, K::Esc, A::Close, "close without saving"),
    b(S::Filter, K::Enter, A::Submit, "apply the filter"),
    b(S::Filter, K::Backspace, A::Backspace, "delete a character"),
    b(S::Filter, K::Esc, A::Close, "clear the filter"),
    b(S::Confirm, K::Char('y'), A::Yes, "yes"),
    b(S::Confirm, K::Char('Y'), A::Yes, "yes"),
    b(
        S::Confirm,
        K::Char('a'),
        A::All,
        "all GPUs of the booking (when asked)",
    ),
    b(
        S::Confirm,
        K::Char('n'),
        A::No,
        "no (so does any other key)",
    ),
    b(S::Confirm, K::Esc, A::No, "no"),
    b(S::Settings, K::Down, A::Down, "next setting"),
    b(S::Settings, K::Char('j'), A::Down, "next setting"),
    b(S::Settings, K::Up, A::Up, "previous setting"),
    b(S::Settings, K::Char('k'), A::Up, "previous setting"),
    b(
        S::Settings,
        K::Char(' '),
        A::ToggleMark,
        "switch it on or off",
    ),
    b(
        S::Settings,
        K::Enter,
        A::Submit,
        "switch it (on the webhook: edit the URL)",
    ),
    b(S::Settings, K::Esc, A::Close, "close"),
    b(S::Help, K::Down, A::Down, "scroll down"),
    b(S::Help, K::Char('j'), A::Down, "scroll down"),
    b(S::Help, K::Up, A::Up, "scroll up"),
    b(S::Help, K::Char('k'), A::Up, "scroll up"),
    b(S::Help, K::PageDown, A::PageRight, "a page down"),
    b(S::Help, K::PageUp, A::PageLeft, "a page up"),
    b(S::Help, K::Esc, A::Close, "close (so does any other key)"),
];

/// The action for `key` in `scope`: the table first (the scope's own
/// bindings, then the global ones where they apply), then the rules for
/// text, the help and questions.
pub fn action_for(scope: Scope, key: &KeyEvent) -> Option<Action> {
    let mods = key.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT);
    let bound = |s: Scope| {
        BINDINGS
            .iter()
            .find(|b| b.scope == s && b.code == key.code && b.mods == mods)
            .map(|b| b.action)
    };
    // Ctrl-C quits from anywhere.
    if mods == CTRL && key.code == KeyCode::Char('c') {
        return bound(Scope::Global);
    }
    if let Some(action) = bound(scope) {
        return Some(action);
    }
    if scope.has_globals()
        && let Some(action) = bound(Scope::Global)
    {
        return Some(action);
    }
    match (scope, key.code) {
        (s, KeyCode::Char(c)) if s.takes_text() && mods.is_empty() => Some(Action::Type(c)),
        (Scope::Help, _) => Some(Action::Close),
        (Scope::Confirm, _) => Some(Action::No),
        _ => None,
    }
}

/// How a key is written in the help.
pub fn key_name(code: KeyCode, mods: KeyModifiers) -> String {
    let key = match code {
        KeyCode::Char(' ') => "Space".into(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Tab => "Tab".into(),
        KeyCode::BackTab => "S-Tab".into(),
        KeyCode::Enter => "Enter".into(),
        KeyCode::Esc => "Esc".into(),
        KeyCode::Backspace => "Bksp".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::F(n) => format!("F{n}"),
        other => format!("{other:?}"),
    };
    if mods.contains(CTRL) {
        format!("C-{key}")
    } else {
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_in_one_scope() {
        for (i, a) in BINDINGS.iter().enumerate() {
            for b in &BINDINGS[i + 1..] {
                let overlapping = a.scope == b.scope
                    || (a.scope == Scope::Global && b.scope.has_globals())
                    || (b.scope == Scope::Global && a.scope.has_globals());
                let clash = overlapping && a.code == b.code && a.mods == b.mods;
                assert!(!clash, "{:?} bound twice", a.code);
            }
        }
    }

    #[test]
    fn text_scopes_type_and_ctrl_c_quits_everywhere() {
        let q = KeyEvent::from(KeyCode::Char('q'));
        assert_eq!(action_for(Scope::Form, &q), Some(Action::Type('q')));
        assert_eq!(action_for(Scope::Timeline, &q), Some(Action::Quit));
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for scope in [
            Scope::Form,
            Scope::Login,
            Scope::Confirm,
            Scope::Help,
            Scope::List,
        ] {
            assert_eq!(action_for(scope, &ctrl_c), Some(Action::Quit), "{scope:?}");
        }
        let any = KeyEvent::from(KeyCode::Char('z'));
        assert_eq!(action_for(Scope::Confirm, &any), Some(Action::No));
        assert_eq!(action_for(Scope::Help, &any), Some(Action::Close));
        let upper = KeyEvent::new(KeyCode::Char('Y'), KeyModifiers::SHIFT);
        assert_eq!(action_for(Scope::Confirm, &upper), Some(Action::Yes));
    }
}
