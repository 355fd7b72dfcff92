//! TEMPORARY stub with the agreed API; replaced by the real templates from the `dates` branch.
use chrono::{DateTime, Utc};
#[derive(Clone, Debug)]
pub struct UrlTemplate(String);
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}
impl UrlTemplate {
    pub fn parse(template: &str) -> Result<UrlTemplate, TemplateError> {
        if let Some(p) = template.find("${") {
            if !template[p..].contains('}') {
                return Err(TemplateError {
                    offset: p,
                    message: "unclosed `${`".into(),
                });
            }
        }
        Ok(UrlTemplate(template.into()))
    }
    pub fn render(&self, lower_bound: DateTime<Utc>) -> String {
        let _ = lower_bound;
        self.0.clone()
    }
    pub fn source(&self) -> &str {
        &self.0
    }
}
