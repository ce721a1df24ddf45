//! Change lines: `app:module:key:value`, the value a TOML value.

/// One parsed change line.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeLine {
    /// Application name.
    pub app: String,
    /// Module name.
    pub module: String,
    /// Key name.
    pub key: String,
    /// The value.
    pub value: toml::Value,
}

/// A line of a batch that could not be parsed or validated.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// 1-based line number in its file (0 for a single line given on the command line).
    pub line: usize,
    /// The line as written.
    pub text: String,
    /// Why it was rejected.
    pub reason: String,
}

/// A parsed batch: whether it is atomic, and each change line with its number and text.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// First non-blank line was `# atomic`.
    pub atomic: bool,
    /// Non-comment lines: (line number, text, parse result).
    pub lines: Vec<(usize, String, Result<ChangeLine, String>)>,
}

/// Parses one change line (no comment or blank line); the error says what was expected.
pub fn parse_line(text: &str) -> Result<ChangeLine, String> {
    let text = text.trim();
    let parts: Vec<&str> = text.splitn(4, ':').collect();
    if parts.len() != 4 {
        return Err(format!(
            "expected app:module:key:value (e.g. ticker:ticker_server:ticker:1500), found {text:?}"
        ));
    }
    let names = ["application", "module", "key"];
    for (name, part) in names.iter().zip(&parts) {
        let part = part.trim();
        if part.is_empty() {
            return Err(format!(
                "expected app:module:key:value, the {name} name is empty in {text:?}"
            ));
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        {
            return Err(format!(
                "expected app:module:key:value, the {name} name {part:?} has characters other \
                 than letters, digits, '_', '-' and '.'"
            ));
        }
    }
    let value = parse_value(parts[3].trim())?;
    Ok(ChangeLine {
        app: parts[0].trim().to_string(),
        module: parts[1].trim().to_string(),
        key: parts[2].trim().to_string(),
        value,
    })
}

/// Parses a TOML value such as `1500`, `"text"`, `true`, `[1, 2]` or `{ a = 1 }`.
pub fn parse_value(text: &str) -> Result<toml::Value, String> {
    let expected = || {
        format!(
            "expected a TOML value (e.g. 1500, \"text\", true, [1, 2]; quote strings), \
             found {text:?}"
        )
    };
    if text.is_empty() || text.contains('\n') || text.contains('\r') {
        return Err(expected());
    }
    let mut table: toml::Table = format!("v = {text}\n").parse().map_err(|_| expected())?;
    match (table.len(), table.remove("v")) {
        (1, Some(value)) => Ok(value),
        _ => Err(expected()),
    }
}

/// Splits a `config.toml.new` text into its change lines (comments and blank lines skipped).
pub fn parse_batch(text: &str) -> Batch {
    let mut batch = Batch::default();
    let mut seen_content = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            if !seen_content && comment.trim().eq_ignore_ascii_case("atomic") {
                batch.atomic = true;
            }
            seen_content = true;
            continue;
        }
        seen_content = true;
        batch.lines.push((i + 1, raw.to_string(), parse_line(line)));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_colons_in_values() {
        let c = parse_line("ticker:ticker_server:ticker:1500").unwrap();
        assert_eq!(c.app, "ticker");
        assert_eq!(c.value, toml::Value::Integer(1500));
        let c = parse_line("a:m:url:\"http://x:80\"").unwrap();
        assert_eq!(c.value, toml::Value::String("http://x:80".into()));
        assert!(
            parse_line("broken")
                .unwrap_err()
                .contains("app:module:key:value")
        );
        assert!(
            parse_line("a:m:k:fast")
                .unwrap_err()
                .contains("quote strings")
        );
        assert!(parse_line("a:m:k:1 x = 2").is_err());
        assert!(
            parse_line("a::k:1")
                .unwrap_err()
                .contains("module name is empty")
        );
    }

    #[test]
    fn batches_skip_comments_and_see_atomic() {
        let b = parse_batch("\n# atomic\na:m:k:1\n\n# note\nbad\n");
        assert!(b.atomic);
        assert_eq!(b.lines.len(), 2);
        assert_eq!(b.lines[0].0, 3);
        assert_eq!(b.lines[1].0, 6);
        assert!(b.lines[1].2.is_err());
        assert!(!parse_batch("a:m:k:1\n# atomic\n").atomic);
    }
}
