//! Which characters user-typed text may carry (invariant 5 of the design).
//!
//! Names and notes are shown on other users' terminals. [`sanitize`] removes
//! terminal escape sequences whole (CSI, OSC, DCS and two-byte ESC sequences),
//! every other C0/C1 control character, and the Unicode bidi overrides that
//! can make text display in a different order than it is stored. Tabs and
//! line breaks become single spaces. The daemon applies it before storing;
//! clients apply it again before drawing, so a row stored by an older daemon
//! or written into the database by hand cannot reach a terminal raw.

const ESC: char = '\u{1b}';
const BEL: char = '\u{07}';

/// Returns `s` without escape sequences, control characters or bidi controls.
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ESC => match chars.next() {
                // CSI: parameters and intermediates, then one final byte.
                Some('[') => skip_csi(&mut chars),
                // OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (ESC \).
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Any other ESC x pair (and a lone ESC at the end) goes whole.
                _ => {}
            },
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\t' | '\n' | '\r' => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c if c.is_control() || is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Like [`sanitize`], then trims surrounding whitespace.
pub fn sanitize_trimmed(s: &str) -> String {
    sanitize(s).trim().to_owned()
}

/// True when `s` would be changed by [`sanitize`].
pub fn needs_sanitizing(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() || is_bidi_control(c) || c == '\u{9b}')
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('\u{40}'..='\u{7e}').contains(&c) {
            return;
        }
        // A CSI never contains anything outside 0x20..0x7e: stop at garbage
        // rather than swallowing the rest of the text.
        if !('\u{20}'..='\u{3f}').contains(&c) {
            return;
        }
    }
}

fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            BEL | '\u{9c}' => return,
            ESC => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_plain_and_wide_text() {
        assert_eq!(sanitize("김민수 (Kim Minsu)"), "김민수 (Kim Minsu)");
        assert_eq!(sanitize("plain ascii"), "plain ascii");
    }

    #[test]
    fn removes_csi_sequences_whole() {
        assert_eq!(sanitize("\u{1b}[31mred\u{1b}[0m"), "red");
        assert_eq!(sanitize("a\u{1b}[2J\u{1b}[Hb"), "ab");
        assert_eq!(sanitize("x\u{9b}31my"), "xy");
    }

    #[test]
    fn removes_osc_sequences_whole() {
        assert_eq!(sanitize("\u{1b}]0;pwned title\u{07}name"), "name");
        assert_eq!(
            sanitize("\u{1b}]8;;http://evil\u{1b}\\link\u{1b}]8;;\u{1b}\\"),
            "link"
        );
    }

    #[test]
    fn removes_controls_and_bidi() {
        assert_eq!(sanitize("a\u{0}b\u{7f}c\u{85}d"), "abcd");
        assert_eq!(sanitize("evil\u{202e}txt.exe"), "eviltxt.exe");
        assert_eq!(sanitize("line\none\ttab"), "line one tab");
        assert_eq!(sanitize("trailing esc\u{1b}"), "trailing esc");
    }

    #[test]
    fn detects_what_needs_sanitizing() {
        assert!(needs_sanitizing("a\u{1b}[1m"));
        assert!(needs_sanitizing("\u{202e}"));
        assert!(!needs_sanitizing("김민수"));
    }
}
