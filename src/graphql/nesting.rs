//! How deep a query's brackets nest, read from its text before any parser
//! sees it.
//!
//! async-graphql's parser recurses once per level of a value (`[[[1]]]`,
//! `{a: {a: ..}}`), of a list type (`[[Int]]`) and of a selection set, and
//! only selection sets have a limit of their own. A few kilobytes of `[`
//! overflow a worker thread's stack, which aborts the whole process: no
//! panic handler can catch that. So the text is measured first, in one
//! pass that cannot recurse.

/// The deepest a query may nest selections, arguments, values and list
/// types, all counted together.
pub const MAX_NESTING: usize = 64;

/// Whether `query` nests `{`, `[` and `(` deeper than `limit` levels.
/// Brackets inside strings, block strings and comments do not count.
pub fn nests_deeper_than(query: &str, limit: usize) -> bool {
    let mut rest = query.as_bytes();
    let mut depth = 0usize;
    while let Some((&byte, after)) = rest.split_first() {
        rest = match byte {
            b'#' => skip_comment(after),
            b'"' if after.starts_with(b"\"\"") => skip_block_string(&after[2..]),
            b'"' => skip_string(after),
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
                after
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                after
            }
            _ => after,
        };
    }
    false
}

fn skip_comment(text: &[u8]) -> &[u8] {
    match text.iter().position(|&b| b == b'\n' || b == b'\r') {
        Some(end) => &text[end..],
        None => &[],
    }
}

/// The text after a string's closing quote (a string ends at its line).
fn skip_string(mut text: &[u8]) -> &[u8] {
    while let Some((&byte, after)) = text.split_first() {
        match byte {
            b'"' | b'\n' | b'\r' => return after,
            b'\\' => text = after.get(1..).unwrap_or_default(),
            _ => text = after,
        }
    }
    text
}

/// The text after a block string's closing `"""` (`\"""` does not close it).
fn skip_block_string(mut text: &[u8]) -> &[u8] {
    while !text.is_empty() {
        if text.starts_with(b"\\\"\"\"") {
            text = &text[4..];
        } else if text.starts_with(b"\"\"\"") {
            return &text[3..];
        } else {
            text = &text[1..];
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, close: &str, levels: usize) -> String {
        format!(
            "{{ f(x: {}1{}) }}",
            open.repeat(levels),
            close.repeat(levels)
        )
    }

    #[test]
    fn counts_values_selections_and_arguments_together() {
        // The selection set and the argument list are two levels.
        assert!(!nests_deeper_than(&nested("[", "]", 62), 64));
        assert!(nests_deeper_than(&nested("[", "]", 63), 64));
        assert!(nests_deeper_than(&nested("{a: ", "}", 3_000), 64));
        assert!(nests_deeper_than(&"{ a ".repeat(65), 64));
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let deep = "[".repeat(500);
        assert!(!nests_deeper_than(&format!("{{ f(x: \"{deep}\") }}"), 64));
        assert!(!nests_deeper_than(
            &format!("{{ f(x: \"\\\"{deep}\") }}"),
            64
        ));
        assert!(!nests_deeper_than(
            &format!("{{ f(x: \"\"\"{deep} \\\"\"\" {deep}\"\"\") }}"),
            64
        ));
        assert!(!nests_deeper_than(&format!("# {deep}\n{{ f }}"), 64));
        // A string ends at its line: what follows counts again.
        assert!(nests_deeper_than(
            &format!("{{ f(x: \"open\n{deep}) }}"),
            64
        ));
    }

    #[test]
    fn unterminated_text_ends_the_scan_without_a_panic() {
        for text in ["\"", "\"\"\"", "\"\\", "#", "\"\"\"\\\"\"", "{{{"] {
            assert!(!nests_deeper_than(text, 64), "{text:?}");
        }
    }
}
