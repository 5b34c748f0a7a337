//! Text from outside kt made safe to print on an operator's terminal.
//!
//! Certificate names, backup status records and an MTA's replies come from
//! whoever wrote them; printed as they are, an escape sequence in them
//! could rewrite what the operator sees (hide a failure, fake a line).

/// `text` with control characters escaped (`\u{1b}`, `\n`), everything
/// else as it is.
pub fn printable(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(super::printable("250 2.0.0 Ok: queued as 4Fx"), "250 2.0.0 Ok: queued as 4Fx");
        assert_eq!(super::printable("ok\u{1b}[2Jgone\r\nx"), "ok\\u{1b}[2Jgone\\r\\nx");
        assert_eq!(super::printable("Zürich"), "Zürich");
    }
}
