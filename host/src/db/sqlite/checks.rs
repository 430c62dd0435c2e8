//! The `CHECK` constraints of a SQLite `CREATE TABLE` text, which SQLite keeps nowhere else:
//! no `pragma` lists them. Each is found by its keyword at the table's own level (a column's
//! or the table's), outside quotes and comments, with its parenthesised expression.
//!
//! SQLite stores the text as written and `ALTER TABLE` edits it in place, so two databases
//! built by the same statements hold the same text; whitespace runs count as one space.

/// The expressions of the `CHECK` constraints in `create_table`, in order, each as
/// `check (…)` with its whitespace runs made one space.
pub(super) fn checks(create_table: &str) -> Vec<String> {
    let chars: Vec<char> = create_table.chars().collect();
    let mut found = Vec::new();
    let mut depth = 0usize;
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        if let Some(end) = skipped(&chars, at) {
            at = end;
            continue;
        }
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 1 && starts_word(&chars, at, "check") => {
                let open = skip_space(&chars, at + "check".len());
                if chars.get(open) == Some(&'(') {
                    let close = closing(&chars, open);
                    let expression: String = chars[open + 1..close.min(chars.len())].iter().collect();
                    found.push(format!("check ({})", expression.split_whitespace().collect::<Vec<_>>().join(" ")));
                    at = close + 1;
                    continue;
                }
            }
            _ => {}
        }
        at += 1;
    }
    found
}

/// Where a quoted string or identifier, or a comment, starting at `at` ends (one past it);
/// `None` when none starts there.
fn skipped(chars: &[char], at: usize) -> Option<usize> {
    let end_of = |close: char, from: usize| {
        // A doubled closing quote inside is part of the text.
        let mut i = from;
        while i < chars.len() {
            if chars[i] == close {
                if close != ']' && chars.get(i + 1) == Some(&close) {
                    i += 2;
                    continue;
                }
                return i + 1;
            }
            i += 1;
        }
        chars.len()
    };
    match (chars[at], chars.get(at + 1)) {
        (quote @ ('\'' | '"' | '`'), _) => Some(end_of(quote, at + 1)),
        ('[', _) => Some(end_of(']', at + 1)),
        ('-', Some('-')) => Some(chars[at..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| at + n + 1)),
        ('/', Some('*')) => {
            let rest: String = chars[at + 2..].iter().collect();
            Some(rest.find("*/").map_or(chars.len(), |n| at + 2 + rest[..n].chars().count() + 2))
        }
        _ => None,
    }
}

/// Whether the keyword `word` (lower case) starts at `at` as a whole word.
fn starts_word(chars: &[char], at: usize, word: &str) -> bool {
    let is_word = |c: &char| c.is_alphanumeric() || *c == '_' || *c == '$';
    let before = at.checked_sub(1).and_then(|i| chars.get(i));
    let len = word.chars().count();
    before.is_none_or(|c| !is_word(c))
        && chars.len() >= at + len
        && chars[at..at + len].iter().zip(word.chars()).all(|(c, w)| c.to_ascii_lowercase() == w)
        && chars.get(at + len).is_none_or(|c| !is_word(c))
}

fn skip_space(chars: &[char], mut at: usize) -> usize {
    while at < chars.len() {
        match skipped(chars, at) {
            Some(end) if matches!(chars[at], '-' | '/') => at = end,
            _ if chars[at].is_whitespace() => at += 1,
            _ => break,
        }
    }
    at
}

/// The index of the `)` closing the `(` at `open` (the text's end when it is unbalanced).
fn closing(chars: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    let mut at = open;
    while at < chars.len() {
        if let Some(end) = skipped(chars, at) {
            at = end;
            continue;
        }
        match chars[at] {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return at;
                }
            }
            _ => {}
        }
        at += 1;
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::checks;

    #[test]
    fn column_and_table_checks_are_found_with_their_nested_parentheses() {
        let sql = "CREATE TABLE t (\n  a INTEGER CHECK (a > 0),\n  b TEXT,\n  CONSTRAINT b_len check(length(b)  <  (10 + 1))\n)";
        assert_eq!(checks(sql), ["check (a > 0)", "check (length(b) < (10 + 1))"]);
    }

    #[test]
    fn the_keyword_in_quotes_comments_and_names_is_not_a_check() {
        let sql = "CREATE TABLE \"check\" (\"check (x)\" TEXT DEFAULT 'check (1)', checked INTEGER, -- check (2)\n \
                   [check] INTEGER /* check (3) */, c TEXT CHECK (c <> ')'))";
        assert_eq!(checks(sql), ["check (c <> ')')"]);
    }

    #[test]
    fn a_table_without_checks_has_none() {
        assert_eq!(checks("CREATE TABLE t (id INTEGER PRIMARY KEY, n TEXT NOT NULL)"), Vec::<String>::new());
    }
}
