//! The simulated records: what they look like and how they are stored.
//!
//! A record's JSON is a pure function of its kind, id, revision and dates, so the store keeps
//! only those facts and the serialised bytes (rendered once per change, spliced into pages as
//! they are). Shapes follow ConnectWise Manage 2022.1: nested references carry `_info` hrefs,
//! dates are `yyyy-MM-dd'T'HH:mm:ss'Z'`, contacts have `_info.lastUpdated` but no
//! `_info.dateEntered`, companies and tickets have both.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;

use super::RecordKind;

/// One stored record: the facts queries look at, and its JSON.
#[derive(Debug, Clone)]
pub(super) struct StoredRecord {
    pub revision: u32,
    pub date_entered: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    pub json: Box<[u8]>,
}

/// The records of one kind, by id (ids ascend in creation order, as in ConnectWise).
#[derive(Debug, Default)]
pub(super) struct RecordTable {
    pub last_id: u64,
    pub records: BTreeMap<u64, StoredRecord>,
}

/// Renders the JSON of a record. `base_url` makes the `_info` hrefs absolute, as ConnectWise's are.
pub(super) fn render(
    kind: RecordKind,
    base_url: &str,
    id: u64,
    revision: u32,
    date_entered: DateTime<Utc>,
    last_updated: DateTime<Utc>,
) -> Box<[u8]> {
    let facts = Facts {
        base_url,
        id,
        revision,
        date_entered,
        last_updated,
    };
    // Sized for a contact with long hrefs, so the buffer rarely regrows.
    let mut bytes = Vec::with_capacity(2048);
    let written = match kind {
        RecordKind::Contact => serde_json::to_writer(&mut bytes, &contact(&facts)),
        RecordKind::Company => serde_json::to_writer(&mut bytes, &company(&facts)),
        RecordKind::Ticket => serde_json::to_writer(&mut bytes, &ticket(&facts)),
    };
    written.expect("records serialise to JSON");
    bytes.into_boxed_slice()
}

/// Formats an instant the way ConnectWise does: UTC, second precision.
pub(super) fn format_date(instant: DateTime<Utc>) -> String {
    instant.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

struct Facts<'a> {
    base_url: &'a str,
    id: u64,
    revision: u32,
    date_entered: DateTime<Utc>,
    last_updated: DateTime<Utc>,
}

impl Facts<'_> {
    fn href(&self, key: &'static str, path: String) -> Href {
        Href {
            key,
            url: format!("{}{path}", self.base_url),
        }
    }

    /// A stable pick from `list`, different for each record and salt.
    fn pick<T: Copy>(&self, list: &[T], salt: u64) -> T {
        let mixed = self.id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ salt;
        list[(mixed % list.len() as u64) as usize]
    }
}

/// An `_info` object with one href, e.g. `{"company_href": "https://…/company/companies/7"}`.
struct Href {
    key: &'static str,
    url: String,
}

impl Serialize for Href {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(self.key, &self.url)?;
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<String>,
    name: String,
    #[serde(rename = "_info")]
    info: Href,
}

const FIRST_NAMES: [&str; 16] = [
    "Ava", "Liam", "Olivia", "Noah", "Emma", "Mateo", "Sophia", "Lucas", "Mia", "Ethan", "Zoë",
    "James", "Amara", "Kenji", "Ingrid", "Rafael",
];
const LAST_NAMES: [&str; 16] = [
    "Smith",
    "Garcia",
    "Nguyen",
    "Müller",
    "Okafor",
    "Johansson",
    "Rossi",
    "Kowalski",
    "Patel",
    "O'Brien",
    "Tanaka",
    "Dubois",
    "Silva",
    "Cohen",
    "Novak",
    "Fischer",
];
const TITLES: [&str; 8] = [
    "IT Manager",
    "Office Manager",
    "Chief Financial Officer",
    "Systems Administrator",
    "Operations Director",
    "Help Desk Lead",
    "Purchasing Agent",
    "Owner",
];
const CITIES: [(&str, &str, &str); 6] = [
    ("Tampa", "FL", "33602"),
    ("Austin", "TX", "78701"),
    ("Denver", "CO", "80202"),
    ("Columbus", "OH", "43215"),
    ("Portland", "OR", "97204"),
    ("Raleigh", "NC", "27601"),
];
const STREETS: [&str; 6] = [
    "Main St",
    "Oak Avenue",
    "Harbor Blvd",
    "Elm Street",
    "Market Square",
    "Cedar Lane",
];
const COMPANY_WORDS: [&str; 8] = [
    "Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay",
];
const TICKET_STATUSES: [&str; 5] = [
    "New",
    "In Progress",
    "Waiting on Client",
    "Scheduled",
    "Resolved",
];
const TICKET_SUMMARIES: [&str; 6] = [
    "Printer offline on 2nd floor",
    "VPN drops every few minutes",
    "New hire laptop setup",
    "Email quarantine false positive",
    "Backup job failed overnight",
    "Firewall firmware update",
];

/// The company a contact or ticket belongs to: one of 50 per thousand ids.
fn company_id_of(id: u64) -> u64 {
    1 + (id % 50)
}

fn company_name(company_id: u64) -> (String, String) {
    let word = COMPANY_WORDS[(company_id % COMPANY_WORDS.len() as u64) as usize];
    (
        format!("{word}{company_id}"),
        format!("{word} Corporation {company_id}"),
    )
}

fn company_reference(facts: &Facts, company_id: u64) -> Reference {
    let (identifier, name) = company_name(company_id);
    Reference {
        id: company_id,
        identifier: Some(identifier),
        name,
        info: facts.href("company_href", format!("/company/companies/{company_id}")),
    }
}

fn plain_reference(facts: &Facts, id: u64, name: &str, key: &'static str, path: &str) -> Reference {
    Reference {
        id,
        identifier: None,
        name: name.to_string(),
        info: facts.href(key, format!("{path}/{id}")),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommunicationItem {
    id: u64,
    #[serde(rename = "type")]
    kind: Reference,
    value: String,
    default_flag: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    domain: Option<String>,
    communication_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactInfo {
    last_updated: String,
    updated_by: &'static str,
    communications_href: String,
    notes_href: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Contact {
    id: u64,
    first_name: &'static str,
    last_name: &'static str,
    company: Reference,
    site: Reference,
    address_line1: String,
    city: &'static str,
    state: &'static str,
    zip: &'static str,
    country: Reference,
    title: &'static str,
    inactive_flag: bool,
    default_phone_type: &'static str,
    default_phone_nbr: String,
    communication_items: Vec<CommunicationItem>,
    types: Vec<Reference>,
    mobile_guid: String,
    #[serde(rename = "_info")]
    info: ContactInfo,
}

fn contact(facts: &Facts) -> Contact {
    let id = facts.id;
    let first_name = facts.pick(&FIRST_NAMES, 1);
    let last_name = facts.pick(&LAST_NAMES, 2);
    let (city, state, zip) = facts.pick(&CITIES, 3);
    let company_id = company_id_of(id);
    let (company_identifier, _) = company_name(company_id);
    let domain = format!("{}.example", company_identifier.to_lowercase());
    let email_user = format!("{}.{}", first_name, last_name)
        .to_lowercase()
        .replace('\'', "");
    let phone = format!("555{:07}", id % 10_000_000);
    Contact {
        id,
        first_name,
        last_name,
        company: company_reference(facts, company_id),
        site: plain_reference(
            facts,
            company_id * 10,
            "Main",
            "site_href",
            &format!("/company/companies/{company_id}/sites"),
        ),
        address_line1: format!("{} {}", 100 + id % 900, facts.pick(&STREETS, 4)),
        city,
        state,
        zip,
        country: plain_reference(
            facts,
            1,
            "United States",
            "country_href",
            "/company/countries",
        ),
        // The revision moves the title, so an update changes content as well as the date.
        title: TITLES[((id + u64::from(facts.revision)) % TITLES.len() as u64) as usize],
        inactive_flag: false,
        default_phone_type: "Direct",
        default_phone_nbr: phone.clone(),
        communication_items: vec![
            CommunicationItem {
                id: id * 2,
                kind: plain_reference(
                    facts,
                    2,
                    "Direct",
                    "type_href",
                    "/company/communicationTypes",
                ),
                value: phone,
                default_flag: true,
                domain: None,
                communication_type: "Phone",
            },
            CommunicationItem {
                id: id * 2 + 1,
                kind: plain_reference(
                    facts,
                    1,
                    "Email",
                    "type_href",
                    "/company/communicationTypes",
                ),
                value: format!("{email_user}@{domain}"),
                default_flag: true,
                domain: Some(format!("@{domain}")),
                communication_type: "Email",
            },
        ],
        types: vec![plain_reference(
            facts,
            1,
            "Client",
            "type_href",
            "/company/contacts/types",
        )],
        mobile_guid: format!("{:08x}-5e7a-4c1d-9b2f-{:012x}", id as u32, id),
        info: ContactInfo {
            last_updated: format_date(facts.last_updated),
            updated_by: "simapi",
            communications_href: format!("{}/company/contacts/{id}/communications", facts.base_url),
            notes_href: format!("{}/company/contacts/{id}/notes", facts.base_url),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnteredInfo {
    last_updated: String,
    updated_by: &'static str,
    date_entered: String,
    entered_by: &'static str,
}

impl EnteredInfo {
    fn of(facts: &Facts) -> Self {
        EnteredInfo {
            last_updated: format_date(facts.last_updated),
            updated_by: "simapi",
            date_entered: format_date(facts.date_entered),
            entered_by: "simapi",
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Company {
    id: u64,
    identifier: String,
    name: String,
    status: Reference,
    address_line1: String,
    city: &'static str,
    state: &'static str,
    zip: &'static str,
    country: Reference,
    phone_number: String,
    website: String,
    territory: Reference,
    number_of_employees: u64,
    types: Vec<Reference>,
    deleted_flag: bool,
    #[serde(rename = "_info")]
    info: EnteredInfo,
}

fn company(facts: &Facts) -> Company {
    let id = facts.id;
    let (identifier, name) = company_name(id);
    let (city, state, zip) = facts.pick(&CITIES, 5);
    Company {
        id,
        website: format!("www.{}.example", identifier.to_lowercase()),
        identifier,
        name,
        status: plain_reference(
            facts,
            1,
            "Active",
            "status_href",
            "/company/companies/statuses",
        ),
        address_line1: format!("{} {}", 1 + id % 999, facts.pick(&STREETS, 6)),
        city,
        state,
        zip,
        country: plain_reference(
            facts,
            1,
            "United States",
            "country_href",
            "/company/countries",
        ),
        phone_number: format!("555{:07}", (id * 7) % 10_000_000),
        territory: plain_reference(
            facts,
            1 + id % 3,
            "Main",
            "location_href",
            "/system/locations",
        ),
        // Changes on every update, like an edited field would.
        number_of_employees: 10 + u64::from(facts.revision),
        types: vec![plain_reference(
            facts,
            1,
            "Client",
            "type_href",
            "/company/companies/types",
        )],
        deleted_flag: false,
        info: EnteredInfo::of(facts),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ticket {
    id: u64,
    summary: &'static str,
    record_type: &'static str,
    board: Reference,
    status: Reference,
    company: Reference,
    contact: Reference,
    priority: Reference,
    severity: &'static str,
    impact: &'static str,
    closed_flag: bool,
    #[serde(rename = "_info")]
    info: EnteredInfo,
}

fn ticket(facts: &Facts) -> Ticket {
    let id = facts.id;
    let status_index = facts.revision as usize % TICKET_STATUSES.len();
    let status = TICKET_STATUSES[status_index];
    let contact_id = 1 + id % 1000;
    let contact_name = format!(
        "{} {}",
        facts.pick(&FIRST_NAMES, 7),
        facts.pick(&LAST_NAMES, 8)
    );
    Ticket {
        id,
        summary: facts.pick(&TICKET_SUMMARIES, 9),
        record_type: "ServiceTicket",
        board: plain_reference(facts, 1, "Help Desk", "board_href", "/service/boards"),
        status: plain_reference(
            facts,
            1 + status_index as u64,
            status,
            "status_href",
            "/service/boards/1/statuses",
        ),
        company: company_reference(facts, company_id_of(id)),
        contact: plain_reference(
            facts,
            contact_id,
            &contact_name,
            "contact_href",
            "/company/contacts",
        ),
        priority: plain_reference(
            facts,
            3,
            "Priority 3 - Normal",
            "priority_href",
            "/service/priorities",
        ),
        severity: "Medium",
        impact: "Medium",
        closed_flag: status == "Resolved",
        info: EnteredInfo::of(facts),
    }
}
