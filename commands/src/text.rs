//! Text as seatflow keeps it: Unicode NFC with the surrounding whitespace trimmed, so that
//! `alice`, `alice ` and a decomposed `é` are each one user, bounded in characters (not bytes),
//! and free of what makes a name lie on screen: control characters (ANSI escapes start with
//! one), line and paragraph separators, bidirectional overrides, zero-width characters.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use crate::{CommandError, invalid};

/// Most characters of an identifier (a user, an event id, a section, a key).
pub const MAX_ID_CHARS: usize = 128;

/// `value` trimmed and in NFC (borrowed when it already is: the usual ASCII case costs a scan).
pub fn normalized(value: &str) -> Cow<'_, str> {
    let trimmed = value.trim();
    if is_nfc_quick(trimmed.chars()) == IsNormalized::Yes {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(trimmed.nfc().collect())
    }
}

/// A character that must not be in a name: controls, separators other than the plain space,
/// bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C) and zero-width ones.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
                | '\u{061C}' | '\u{FEFF}'
        )
}

/// Text of 1 to `max` characters with no unsafe character, normalized.
pub fn bounded(field: &'static str, value: &str, max: usize) -> Result<String, CommandError> {
    let value = normalized(value);
    if value.is_empty() || value.chars().nth(max).is_some() {
        return Err(invalid(field, format!("must be 1 to {max} characters")));
    }
    if value.chars().any(is_unsafe) {
        return Err(invalid(
            field,
            "must not contain control, zero-width or direction-changing characters",
        ));
    }
    Ok(value.into_owned())
}

/// An identifier: 1 to 128 characters once normalized, none unsafe.
pub fn identifier(field: &'static str, value: &str) -> Result<String, CommandError> {
    bounded(field, value, MAX_ID_CHARS)
}

/// A section's name: an identifier with at least one letter or digit (not `" "` or `".."`)
/// and no `/` (it is a path segment of the seat map's URL).
pub fn section_name(field: &'static str, value: &str) -> Result<String, CommandError> {
    let name = identifier(field, value)?;
    if !name.chars().any(char::is_alphanumeric) {
        return Err(invalid(field, "must contain a letter or a digit"));
    }
    if name.contains('/') {
        return Err(invalid(field, "must not contain '/'"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<String, CommandError>) -> String {
        match result {
            Err(CommandError::Invalid { message, .. }) => message,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn one_name_one_form() {
        assert_eq!(identifier("userId", " alice ").expect("ok"), "alice");
        // "é" as e + combining acute is the same user as the precomposed one.
        assert_eq!(
            identifier("userId", "Rene\u{301}").expect("ok"),
            "Ren\u{e9}"
        );
        // Counted in characters: 128 two-byte letters fit, 129 do not.
        assert!(identifier("userId", &"é".repeat(128)).is_ok());
        assert!(refused(identifier("userId", &"é".repeat(129))).contains("1 to 128 characters"));
        assert!(refused(identifier("userId", "   ")).contains("1 to 128"));
    }

    #[test]
    fn names_that_lie_on_screen_are_refused() {
        for bad in [
            "x\u{1b}[31mred",
            "a\u{0}b",
            "left\u{202e}thgir",
            "zero\u{200b}width",
            "two\nlines",
            "tab\there",
        ] {
            assert!(
                refused(bounded("name", bad, 200)).contains("control"),
                "{bad:?}"
            );
        }
        assert_eq!(
            bounded("name", "Die Ärzte · Live", 200).expect("ok"),
            "Die Ärzte · Live"
        );
    }

    #[test]
    fn a_section_needs_a_letter_or_digit_and_no_slash() {
        assert!(refused(section_name("section", "..")).contains("letter or a digit"));
        assert!(refused(section_name("section", " ")).contains("1 to 128"));
        assert!(refused(section_name("section", "A/B")).contains("'/'"));
        assert_eq!(section_name("section", " Floor 1 ").expect("ok"), "Floor 1");
    }
}
