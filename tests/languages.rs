//! The small languages instance files are written in: Java date patterns against what Java
//! printed (`dates_java`), URL templates (`url_templates`) and CEQL `where` clauses (`ceql`). One
//! crate, so the suite links one binary for them.

mod support;

#[path = "languages/ceql.rs"]
mod ceql;
#[path = "languages/dates_java.rs"]
mod dates_java;
#[path = "languages/url_templates.rs"]
mod url_templates;
