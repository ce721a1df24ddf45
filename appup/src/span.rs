//! Source positions: turning byte offsets from the TOML parser into 1-based line and column.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A 1-based line and column inside one file, kept on parsed items so that later checks
/// (validation, planning) can point at the text that caused a problem.
///
/// Positions never take part in equality: two items that differ only in where they were
/// written compare equal (so a generated appup equals its own re-parsed text).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Pos {
    /// 1-based line number (0 when the item was not parsed from text).
    pub line: usize,
    /// 1-based column, counted in characters (0 when the item was not parsed from text).
    pub column: usize,
}

impl PartialEq for Pos {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for Pos {}

impl Pos {
    /// The position of byte `offset` in `src` (clamped to the text; never panics).
    pub fn at(src: &str, offset: usize) -> Pos {
        let mut offset = offset.min(src.len());
        while offset > 0 && !src.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = src.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before.get(line_start..).unwrap_or("").chars().count() + 1;
        Pos { line, column }
    }
}

/// A file name with a line and column: where an error is, printed as `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The file name the caller gave with the text.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

impl Location {
    /// A location in `file` at `pos`.
    pub fn new(file: &str, pos: Pos) -> Location {
        Location {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Turns byte offsets of one text into [`Pos`] and [`Location`] values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) text: &'a str,
    pub(crate) file: &'a str,
}

impl<'a> Source<'a> {
    pub(crate) fn new(text: &'a str, file: &'a str) -> Self {
        Source { text, file }
    }

    pub(crate) fn pos(&self, span: &std::ops::Range<usize>) -> Pos {
        Pos::at(self.text, span.start)
    }

    pub(crate) fn loc(&self, span: &std::ops::Range<usize>) -> Location {
        Location::new(self.file, self.pos(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(
            (Pos::at(src, 0).line, Pos::at(src, 0).column),
            (1, 1),
            "start"
        );
        let p = Pos::at(src, src.find('=').unwrap_or(0));
        assert_eq!((p.line, p.column), (1, 3));
        let p = Pos::at(src, src.rfind('2').unwrap_or(0));
        assert_eq!((p.line, p.column), (2, 6));
    }

    #[test]
    fn offsets_out_of_range_or_inside_a_char_do_not_panic() {
        let src = "é";
        let _ = Pos::at(src, 1);
        let _ = Pos::at(src, 100);
        let _ = Pos::at("", 5);
    }
}
