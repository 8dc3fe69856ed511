//! Trimming text for payloads: histories carry short excerpts, the artifact store keeps the rest.

/// The first `max_chars` characters of `text`, with a note when something was cut.
/// The start of `text` on one line, cut at `max_chars` with "…" (for one-line descriptions).
pub fn clip(text: &str, max_chars: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(max_chars) {
        None => line,
        Some((cut, _)) => format!("{}…", &line[..cut]),
    }
}

pub fn excerpt(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}… [{} more bytes]", &text[..cut], text.len() - cut),
    }
}

/// The last `max_chars` characters of `text` (where test runners print their failures), with a
/// note when the start was cut.
pub fn tail_excerpt(text: &str, max_chars: usize) -> String {
    let text = text.trim_end();
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_string();
    }
    let skip = total - max_chars;
    let start = text.char_indices().nth(skip).map(|(i, _)| i).unwrap_or(0);
    format!("[… {start} earlier bytes cut]\n{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(excerpt("  hello ", 10), "hello");
        assert_eq!(tail_excerpt("hello\n", 10), "hello");
    }

    #[test]
    fn long_text_is_cut_on_char_boundaries_with_a_note() {
        let s = "ééééé-tail";
        assert_eq!(excerpt(s, 2), "éé… [11 more bytes]");
        let t = tail_excerpt(s, 4);
        assert!(t.ends_with("tail") && t.starts_with("[… 11 earlier bytes cut]"), "{t}");
    }
}
