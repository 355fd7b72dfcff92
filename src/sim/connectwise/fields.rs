//! `fields`: ConnectWise's way of asking for only some fields of each record.
//!
//! `fields=id,_info/lastUpdated` answers `{"id": 7, "_info": {"lastUpdated": "…"}}`: paths are
//! comma-separated, a nested field is named by its path joined with `/`, names are
//! case-insensitive (as in `conditions`). A field a record lacks is left out; a path through an
//! array selects in each of its elements. Conditions and paging are unaffected: they look at the
//! whole record, and only the answer is cut down.

use serde_json::{Map, Value};

/// More paths than anyone writes; beyond this, 400.
const MAX_PATHS: usize = 64;
/// Deeper than any simulated record; beyond this, 400.
const MAX_DEPTH: usize = 8;

/// A parsed `fields` value.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Fields {
    root: Selection,
    /// Just `id`: answered without parsing the stored record, as reconcile scans ask for it.
    id_only: bool,
}

/// The fields selected under one object.
#[derive(Debug, Default, PartialEq, Eq)]
struct Selection {
    /// The whole value is selected (its path was named in full).
    whole: bool,
    /// Selected fields beneath, by name as written.
    children: Vec<(String, Selection)>,
}

impl Selection {
    fn child(&self, name: &str) -> Option<&Selection> {
        self.children
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, selection)| selection)
    }

    fn child_mut(&mut self, name: &str) -> &mut Selection {
        let position = self
            .children
            .iter()
            .position(|(key, _)| key.eq_ignore_ascii_case(name));
        let position = position.unwrap_or_else(|| {
            self.children.push((name.to_string(), Selection::default()));
            self.children.len() - 1
        });
        &mut self.children[position].1
    }
}

impl Fields {
    /// Parses `text`; `None` when it names no field (empty, or only commas and spaces), which
    /// answers whole records.
    pub fn parse(text: &str) -> Result<Option<Fields>, String> {
        let paths: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|path| !path.is_empty())
            .collect();
        if paths.is_empty() {
            return Ok(None);
        }
        if paths.len() > MAX_PATHS {
            return Err(format!("at most {MAX_PATHS} fields, not {}", paths.len()));
        }
        let mut root = Selection::default();
        for path in &paths {
            let names: Vec<&str> = path.split('/').map(str::trim).collect();
            let well_formed = names.len() <= MAX_DEPTH
                && names.iter().all(|name| {
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            if !well_formed {
                return Err(format!(
                    "'{path}' is not a field path like _info/lastUpdated"
                ));
            }
            let mut selection = &mut root;
            for name in names {
                selection = selection.child_mut(name);
            }
            selection.whole = true;
        }
        let id_only = matches!(root.children.as_slice(), [(name, only)]
            if name.eq_ignore_ascii_case("id") && only.whole);
        Ok(Some(Fields { root, id_only }))
    }

    /// A guess at the projected size of one record, to size page buffers.
    pub fn record_size_hint(&self) -> usize {
        if self.id_only { 24 } else { 1100 }
    }

    /// The record `json` (whose id is `id`) holding only the selected fields.
    pub fn project(&self, id: u64, json: &[u8]) -> Vec<u8> {
        if self.id_only {
            return format!("{{\"id\":{id}}}").into_bytes();
        }
        let record: Value = serde_json::from_slice(json).expect("stored records are JSON");
        let projected = project(&record, &self.root).unwrap_or_else(|| Value::Object(Map::new()));
        serde_json::to_vec(&projected).expect("JSON values serialise")
    }
}

/// The part of `value` that `selection` selects; `None` when nothing selected is there.
fn project(value: &Value, selection: &Selection) -> Option<Value> {
    if selection.whole {
        return Some(value.clone());
    }
    match value {
        Value::Object(object) => {
            let kept: Map<String, Value> = object
                .iter()
                .filter_map(|(key, field)| {
                    let below = selection.child(key)?;
                    Some((key.clone(), project(field, below)?))
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|item| project(item, selection))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        // A path that goes on below a number or a string selects nothing.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn projected(fields: &str, record: &Value) -> Value {
        let fields = Fields::parse(fields).unwrap().expect("some fields");
        let id = record["id"].as_u64().unwrap();
        serde_json::from_slice(&fields.project(id, &serde_json::to_vec(record).unwrap())).unwrap()
    }

    #[test]
    fn paths_select_nested_fields_and_missing_ones_are_left_out() {
        let record = json!({
            "id": 7, "name": "n", "items": [{"value": 1, "x": 2}, {"x": 3}],
            "_info": {"lastUpdated": "2024-01-01T00:00:00Z", "updatedBy": "a"}
        });
        assert_eq!(projected("id", &record), json!({"id": 7}));
        assert_eq!(
            projected(" id , _INFO/lastUpdated,nothing,name/deeper ", &record),
            json!({"id": 7, "_info": {"lastUpdated": "2024-01-01T00:00:00Z"}})
        );
        assert_eq!(
            projected("items/value", &record),
            json!({"items": [{"value": 1}]})
        );
        assert_eq!(
            projected("_info,_info/updatedBy", &record),
            json!({"_info": record["_info"]})
        );
        assert_eq!(projected("nothing", &record), json!({}));
    }

    #[test]
    fn only_well_formed_paths_parse() {
        assert_eq!(Fields::parse(" , ").unwrap(), None);
        assert!(Fields::parse("id").unwrap().unwrap().id_only);
        assert!(!Fields::parse("id,name").unwrap().unwrap().id_only);
        assert!(!Fields::parse("id/x").unwrap().unwrap().id_only);
        for bad in ["id/", "/id", "a b", "a//b", "id;drop", "a/b/c/d/e/f/g/h/i"] {
            assert!(Fields::parse(bad).is_err(), "{bad}");
        }
        let many = vec!["id"; MAX_PATHS + 1].join(",");
        assert!(Fields::parse(&many).is_err());
    }
}
