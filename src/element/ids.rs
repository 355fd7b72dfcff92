//! What a reconcile reads ([`crate::poller::reconcile`]): the resource's records, as little of
//! each as the element can ask for, paged so that records changing during the scan are neither
//! skipped nor repeated.

use super::Element;
use crate::config::{Paging, ResourceSpec};
use crate::template::UrlTemplate;

/// The id listing of one resource.
pub struct IdListing<'a> {
    /// The resource as the listing's pages are fetched (its paging may differ).
    pub resource: ResourceSpec,
    template: &'a UrlTemplate,
    /// ConnectWise's `fields` value that leaves only the id in each record.
    fields: Option<String>,
}

impl Element {
    /// ConnectWise: the resource's own URL with `fields=<idField>`, paged by id (keyset paging
    /// never skips a record when others are deleted mid-scan). `http`: the resource's `idsUrl`
    /// when it has one, else its URL, paged as the resource says.
    pub fn id_listing<'a>(&self, resource: &'a ResourceSpec) -> IdListing<'a> {
        let mut listed = resource.clone();
        match self {
            Element::ConnectWise(_) => {
                listed.paging = Paging::Keyset;
                IdListing {
                    resource: listed,
                    template: &resource.url,
                    fields: Some(resource.id_field.as_str().replace('.', "/")),
                }
            }
            Element::Http(_) => {
                let ids_url = resource
                    .deleted_check
                    .as_ref()
                    .and_then(|c| c.ids_url.as_ref());
                IdListing {
                    resource: listed,
                    template: ids_url.unwrap_or(&resource.url),
                    fields: None,
                }
            }
        }
    }
}

impl IdListing<'_> {
    /// The listing's URL from `lower_bound`, as [`Element::fetch_page`] takes it.
    pub fn render(&self, lower_bound: chrono::DateTime<chrono::Utc>) -> String {
        let url = self.template.render(lower_bound);
        match &self.fields {
            Some(fields) => with_fields(&url, fields),
            None => url,
        }
    }
}

/// `url` with its `fields` parameter, if any, replaced by `fields=<fields>`.
fn with_fields(url: &str, fields: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split('=').next() != Some("fields"))
        .collect();
    let own = format!("fields={fields}");
    pairs.push(&own);
    format!("{path}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_parameter_is_set_once_whatever_the_url_had() {
        assert_eq!(
            with_fields("/hubs/crm/contacts", "id"),
            "/hubs/crm/contacts?fields=id"
        );
        assert_eq!(
            with_fields(
                "/hubs/crm/contacts?where=a>1&fields=id,name&pageSize=5",
                "id"
            ),
            "/hubs/crm/contacts?where=a>1&pageSize=5&fields=id"
        );
    }
}
