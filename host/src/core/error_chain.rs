//! [`error_chain`]: an error and its causes as one line of text, as messages show them.

/// An error followed by each of its causes, `: `-separated (some drivers keep the useful
/// part, such as the server's message, in a cause rather than in their own `Display`).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
