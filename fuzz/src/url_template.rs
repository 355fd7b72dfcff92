//! URL templates: parse arbitrary text; a template that parses renders any instant without
//! panicking, and text outside placeholders comes through unchanged.

use chrono::DateTime;
use pollerd::template::UrlTemplate;

/// Input layout: eight bytes of epoch milliseconds (little endian), then the UTF-8 template.
/// Panics when the input shows a bug.
pub fn check(data: &[u8]) {
    let Some((millis, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(template) = UrlTemplate::parse(text) else {
        return;
    };
    assert_eq!(template.source(), text);
    let Some(lower_bound) = DateTime::from_timestamp_millis(i64::from_le_bytes(*millis)) else {
        return;
    };
    let rendered = template.render(lower_bound);
    if !text.contains("${") {
        assert_eq!(rendered, text, "a template without placeholders");
    }
}
