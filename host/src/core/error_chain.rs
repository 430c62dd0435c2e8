//! [`error_chain`]: an error and its causes as one line of text, as messages show them.

/// An error followed by each of its causes, `: `-separated (some drivers keep the useful
/// part, such as the server's message, in a cause rather than in their own `Display`). A
/// cause whose words the text already holds (an error that shows its source in its own
/// message) is said once.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        push_cause(&mut text, &cause.to_string());
        source = cause.source();
    }
    text
}

/// Appends `cause` to `text` unless `text` already says it.
pub fn push_cause(text: &mut String, cause: &str) {
    if cause.is_empty() || text.contains(cause) {
        return;
    }
    if !text.is_empty() {
        text.push_str(": ");
    }
    text.push_str(cause);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not take the lock: {source}")]
    struct Outer {
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("terminating connection (code 57P01)")]
    struct Inner;

    #[test]
    fn a_cause_the_message_already_shows_is_said_once() {
        assert_eq!(error_chain(&Outer { source: Inner }), "could not take the lock: terminating connection (code 57P01)");
    }
}
