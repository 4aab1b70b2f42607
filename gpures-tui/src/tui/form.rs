//! Text fields shared by the login screen and the booking form: [`Fields`]
//! holds them with the focus and applies the editing actions (next and
//! previous field, typing, deleting) in one place.

use super::keys::Action;

/// A text field of a form.
#[derive(Clone, Debug, Default)]
pub struct Field {
    pub label: &'static str,
    pub value: String,
    pub secret: bool,
    pub read_only: bool,
}

impl Field {
    pub fn new(label: &'static str, value: impl Into<String>) -> Field {
        Field {
            label,
            value: value.into(),
            ..Field::default()
        }
    }
}

/// What an editing action did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// The focus moved.
    Moved,
    /// A value changed.
    Changed,
    /// Not an editing action (or a read-only field).
    Ignored,
}

/// Applies a typed character or Backspace to a one-line prompt's `input`;
/// `false` for any other action.
pub fn edit_line(input: &mut String, action: &Action) -> bool {
    match action {
        Action::Type(c) => input.push(*c),
        Action::Backspace => {
            input.pop();
        }
        _ => return false,
    }
    true
}

/// Fields with one of them focused.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    pub fields: Vec<Field>,
    pub focus: usize,
}

impl Fields {
    /// Applies Tab/↑↓ (focus), a typed character or Backspace.
    pub fn edit(&mut self, action: Action) -> Edit {
        let n = self.fields.len().max(1);
        match action {
            Action::NextField => self.focus = (self.focus + 1) % n,
            Action::PrevField => self.focus = (self.focus + n - 1) % n,
            Action::Type(_) | Action::Backspace => {
                return match self.fields.get_mut(self.focus) {
                    Some(f) if !f.read_only => {
                        edit_line(&mut f.value, &action);
                        Edit::Changed
                    }
                    _ => Edit::Ignored,
                };
            }
            _ => return Edit::Ignored,
        }
        Edit::Moved
    }

    /// The value of the field labelled `label` (empty when there is none).
    pub fn value(&self, label: &str) -> String {
        self.fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.value.clone())
            .unwrap_or_default()
    }

    /// Whether the focus is on the last field.
    pub fn on_last(&self) -> bool {
        self.focus + 1 >= self.fields.len()
    }
}
