//! CEQL `where` → ConnectWise `conditions`, and hub URL → native request (SPEC §4).

use pollerd::ceql::{CeqlError, where_to_conditions};
use pollerd::hubs::{HubError, NativeRequest, native_path_for, native_request};

fn translate(ceql: &str) -> String {
    where_to_conditions(ceql).unwrap_or_else(|error| panic!("{ceql:?} failed: {error}"))
}

#[test]
fn seed_where_clause_becomes_bracketed_date() {
    assert_eq!(
        translate("lastUpdated>'2024-01-01T00:00:00Z'"),
        "lastUpdated>[2024-01-01T00:00:00Z]"
    );
}

#[test]
fn translation_table() {
    let table = [
        // dates compared with a field
        (
            "lastUpdated >= '2024-01-01T00:00:00Z'",
            "lastUpdated>=[2024-01-01T00:00:00Z]",
        ),
        (
            "lastUpdated > '2024-01-01'",
            "lastUpdated>[2024-01-01T00:00:00Z]",
        ),
        (
            "lastUpdated>'2024-03-05T10:20:30.250Z'",
            "lastUpdated>[2024-03-05T10:20:30.250Z]",
        ),
        (
            "lastUpdated>'2024-03-05T10:20:30+02:00'",
            "lastUpdated>[2024-03-05T08:20:30Z]",
        ),
        (
            "lastUpdated>'2024-03-05T10:20:30-0130'",
            "lastUpdated>[2024-03-05T11:50:30Z]",
        ),
        (
            "lastUpdated>'2024-03-05T10:20'",
            "lastUpdated>[2024-03-05T10:20:00Z]",
        ),
        (
            "'2024-01-01T00:00:00Z'<lastUpdated",
            "[2024-01-01T00:00:00Z]<lastUpdated",
        ),
        // dotted paths
        (
            "_info.lastUpdated>'2024-01-01T00:00:00Z'",
            "_info/lastUpdated>[2024-01-01T00:00:00Z]",
        ),
        ("company.identifier = 'Acme'", "company/identifier=\"Acme\""),
        ("company/name = 'Acme'", "company/name=\"Acme\""),
        // strings
        ("name = 'Acme'", "name=\"Acme\""),
        ("name = 'O''Brien'", "name=\"O'Brien\""),
        ("name = 'say \"hi\"'", "name=\"say \\\"hi\\\"\""),
        ("name = \"double\"", "name=\"double\""),
        ("name = \"a\"\"b\"", "name=\"a\\\"b\""),
        ("path = 'C:\\temp'", "path=\"C:\\\\temp\""),
        ("name = 'Zoë'", "name=\"Zoë\""),
        // a date-shaped string not compared with a field stays a string
        ("name like '2024-01-01%'", "name like \"2024-01-01%\""),
        (
            "summary contains '2024-01-01'",
            "summary contains \"2024-01-01\"",
        ),
        (
            "'2024-01-01' = '2024-01-01'",
            "\"2024-01-01\"=\"2024-01-01\"",
        ),
        ("version = '2024-13-45'", "version=\"2024-13-45\""),
        // numbers, booleans, null, operators
        ("id = 42", "id=42"),
        ("id >= -3.5", "id>=-3.5"),
        ("id <> 7", "id!=7"),
        ("id != 7", "id!=7"),
        ("id <= 7 AND id < 9", "id<=7 and id<9"),
        ("inactiveFlag = TRUE", "inactiveFlag=true"),
        ("inactiveFlag = false", "inactiveFlag=false"),
        ("parentId = null", "parentId=null"),
        ("parentId is null", "parentId=null"),
        ("parentId IS NOT NULL", "parentId!=null"),
        // and / or / not / parentheses / in-lists
        (
            "lastUpdated>'2024-01-01T00:00:00Z' and (name like 'Ac%' or id in (1, 2,3))",
            "lastUpdated>[2024-01-01T00:00:00Z] and (name like \"Ac%\" or id in (1,2,3))",
        ),
        ("not (id = 1 Or id = 2)", "not (id=1 or id=2)"),
        ("((id = 1))", "((id=1))"),
        (
            "status.name not in ('Closed', 'Done')",
            "status/name not in (\"Closed\",\"Done\")",
        ),
        ("name not like 'X%'", "name not like \"X%\""),
        (
            "dateEntered in ('2024-01-01', '2024-01-02T12:00:00Z')",
            "dateEntered in ([2024-01-01T00:00:00Z],[2024-01-02T12:00:00Z])",
        ),
        ("  id=1\tand\nid=2  ", "id=1 and id=2"),
    ];
    for (ceql, expected) in table {
        assert_eq!(translate(ceql), expected, "translating {ceql:?}");
    }
}

#[test]
fn errors_carry_offsets_and_messages() {
    let cases: [(&str, usize, &str); 12] = [
        ("name = 'Acme", 7, "unterminated string"),
        ("name = \"Acme", 7, "unterminated string"),
        ("name = 'O''Brien", 7, "unterminated string"),
        ("id = 1 ; id = 2", 7, "unexpected character ';'"),
        ("id # 1", 3, "unexpected character '#'"),
        ("(id = 1", 0, "unbalanced parentheses"),
        (
            "id = 1 and (id = 2 or (id = 3)",
            11,
            "unbalanced parentheses",
        ),
        ("id = 1)", 6, "unbalanced parentheses"),
        ("id = ", 5, "expected a value after '='"),
        ("id 1", 3, "expected a comparison operator"),
        ("id = 1 id = 2", 7, "unexpected field 'id'"),
        ("", 0, "expected a field"),
    ];
    for (ceql, offset, message) in cases {
        let error: CeqlError = where_to_conditions(ceql).expect_err(ceql);
        assert_eq!(error.offset, offset, "offset for {ceql:?}: {error}");
        assert!(
            error.message.contains(message),
            "message for {ceql:?}: {error}"
        );
        let shown = error.to_string();
        assert!(shown.contains(&format!("byte {offset}")), "{shown}");
    }
}

#[test]
fn error_offsets_are_bytes_not_characters() {
    let error = where_to_conditions("name = 'Zoë' and ^").expect_err("caret");
    assert_eq!(error.offset, 18);
}

#[test]
fn hub_objects_map_to_native_paths() {
    let table = [
        ("contacts", "/company/contacts"),
        ("organizations", "/company/companies"),
        ("accounts", "/company/companies"),
        ("incidents", "/service/tickets"),
        ("opportunities", "/sales/opportunities"),
        ("activities", "/sales/activities"),
        ("time-entries", "/time/entries"),
        ("configurations", "/company/configurations"),
    ];
    for (object, native) in table {
        assert_eq!(native_path_for(object), Some(native), "{object}");
        let request = native_request(&format!("/hubs/crm/{object}")).expect(object);
        assert_eq!(
            request,
            NativeRequest {
                path: native.to_string(),
                query: vec![]
            }
        );
        let with_id = native_request(&format!("/hubs/crm/{object}/42")).expect(object);
        assert_eq!(with_id.path, format!("{native}/42"));
    }
    assert_eq!(native_path_for("widgets"), None);
}

#[test]
fn native_paths_pass_through() {
    let request = native_request("/company/contacts?pageSize=50&orderBy=id asc").unwrap();
    assert_eq!(request.path, "/company/contacts");
    assert_eq!(
        request.query,
        vec![
            ("pageSize".to_string(), "50".to_string()),
            ("orderBy".to_string(), "id asc".to_string())
        ]
    );
    assert_eq!(
        native_request("/service/tickets/7/notes").unwrap().path,
        "/service/tickets/7/notes"
    );
}

#[test]
fn unknown_hub_object_names_the_supported_ones() {
    let error = native_request("/hubs/crm/widgets?where=id=1").unwrap_err();
    assert!(matches!(error, HubError::UnknownObject { ref object, .. } if object == "widgets"));
    let shown = error.to_string();
    for object in [
        "widgets",
        "contacts",
        "organizations",
        "incidents",
        "time-entries",
    ] {
        assert!(shown.contains(object), "{shown}");
    }
    let missing = native_request("/hubs/crm").unwrap_err();
    assert!(
        matches!(missing, HubError::MissingObject { .. }),
        "{missing}"
    );
}

#[test]
fn where_becomes_conditions_in_place() {
    let request = native_request(
        "/hubs/crm/contacts?pageSize=1000&where=lastUpdated>'2024-01-01T00:00:00Z'&fields=id,_info",
    )
    .unwrap();
    assert_eq!(request.path, "/company/contacts");
    assert_eq!(
        request.query,
        vec![
            ("pageSize".to_string(), "1000".to_string()),
            (
                "conditions".to_string(),
                "lastUpdated>[2024-01-01T00:00:00Z]".to_string()
            ),
            ("fields".to_string(), "id,_info".to_string()),
        ]
    );
}

#[test]
fn encoded_where_is_decoded_and_raw_percent_survives() {
    let encoded = native_request(
        "/hubs/crm/incidents?where=lastUpdated%3E%272024-01-01T00%3A00%3A00Z%27%20and%20summary%3D%27a%26b%27",
    )
    .unwrap();
    assert_eq!(encoded.path, "/service/tickets");
    assert_eq!(
        encoded.query,
        vec![(
            "conditions".to_string(),
            "lastUpdated>[2024-01-01T00:00:00Z] and summary=\"a&b\"".to_string()
        )]
    );
    // `%ab` looks like an escape but does not decode to UTF-8: the raw text is kept.
    let raw = native_request("/hubs/crm/contacts?where=firstName like '%abc%'").unwrap();
    assert_eq!(raw.query[0].1, "firstName like \"%abc%\"");
    // A `+` stays a `+` (offsets of rendered dates).
    let offset =
        native_request("/hubs/crm/contacts?where=lastUpdated>'2024-01-01T02:00:00+02:00'").unwrap();
    assert_eq!(offset.query[0].1, "lastUpdated>[2024-01-01T00:00:00Z]");
}

#[test]
fn bad_where_is_an_error_with_the_url_and_offset() {
    let error = native_request("/hubs/crm/contacts?where=lastUpdated>'2024").unwrap_err();
    let HubError::Where { ref source, .. } = error else {
        panic!("{error:?}")
    };
    assert_eq!(source.offset, 12);
    let shown = error.to_string();
    assert!(
        shown.contains("/hubs/crm/contacts") && shown.contains("unterminated string"),
        "{shown}"
    );
}
