//! Locale.US names and the zone tables Java uses, kept apart from the logic that reads them.

/// Month names, January first (Java `MMMM` / `MMM`).
pub(crate) const MONTHS_LONG: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
pub(crate) const MONTHS_SHORT: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Day names, Monday first so that index + 1 is Java's `u` (ISO day number).
pub(crate) const DAYS_LONG: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
pub(crate) const DAYS_SHORT: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

pub(crate) const AM_PM: [&str; 2] = ["AM", "PM"];

/// Java's `ZoneId.SHORT_IDS` entries that name a region (EST, MST and HST are fixed offsets in
/// Java's old `TimeZone` and are handled separately).
pub(crate) const JAVA_SHORT_IDS: [(&str, &str); 25] = [
    ("ACT", "Australia/Darwin"),
    ("AET", "Australia/Sydney"),
    ("AGT", "America/Argentina/Buenos_Aires"),
    ("ART", "Africa/Cairo"),
    ("AST", "America/Anchorage"),
    ("BET", "America/Sao_Paulo"),
    ("BST", "Asia/Dhaka"),
    ("CAT", "Africa/Harare"),
    ("CNT", "America/St_Johns"),
    ("CST", "America/Chicago"),
    ("CTT", "Asia/Shanghai"),
    ("EAT", "Africa/Addis_Ababa"),
    ("ECT", "Europe/Paris"),
    ("IET", "America/Indiana/Indianapolis"),
    ("IST", "Asia/Kolkata"),
    ("JST", "Asia/Tokyo"),
    ("MIT", "Pacific/Apia"),
    ("NET", "Asia/Yerevan"),
    ("NST", "Pacific/Auckland"),
    ("PLT", "Asia/Karachi"),
    ("PNT", "America/Phoenix"),
    ("PRT", "America/Puerto_Rico"),
    ("PST", "America/Los_Angeles"),
    ("SST", "Pacific/Guadalcanal"),
    ("VST", "Asia/Ho_Chi_Minh"),
];

/// Java's old fixed-offset ids: (id, offset in seconds). Their `z` name is the id itself.
pub(crate) const JAVA_FIXED_IDS: [(&str, i32); 3] =
    [("EST", -5 * 3600), ("MST", -7 * 3600), ("HST", -10 * 3600)];

const H: i32 = 3600;
const HALF: i32 = 1800;

/// Common zone abbreviations, used when parsing `z` text that the pattern's own zone does not
/// explain. Ambiguous ones take the reading Java's Locale.US tables favour (IST = India).
const ABBREVIATIONS: [(&str, i32); 50] = [
    ("GMT", 0),
    ("UTC", 0),
    ("UT", 0),
    ("WET", 0),
    ("WEST", H),
    ("BST", H),
    ("IST", 5 * H + HALF),
    ("CET", H),
    ("CEST", 2 * H),
    ("MET", H),
    ("MEST", 2 * H),
    ("EET", 2 * H),
    ("EEST", 3 * H),
    ("MSK", 3 * H),
    ("WAT", H),
    ("CAT", 2 * H),
    ("SAST", 2 * H),
    ("EAT", 3 * H),
    ("PKT", 5 * H),
    ("ICT", 7 * H),
    ("WIB", 7 * H),
    ("HKT", 8 * H),
    ("SGT", 8 * H),
    ("AWST", 8 * H),
    ("JST", 9 * H),
    ("KST", 9 * H),
    ("ACST", 9 * H + HALF),
    ("ACDT", 10 * H + HALF),
    ("AEST", 10 * H),
    ("AEDT", 11 * H),
    ("NZST", 12 * H),
    ("NZDT", 13 * H),
    ("NST", -3 * H - HALF),
    ("NDT", -2 * H - HALF),
    ("AST", -4 * H),
    ("ADT", -3 * H),
    ("BRT", -3 * H),
    ("ART", -3 * H),
    ("EST", -5 * H),
    ("EDT", -4 * H),
    ("CST", -6 * H),
    ("CDT", -5 * H),
    ("MST", -7 * H),
    ("MDT", -6 * H),
    ("PST", -8 * H),
    ("PDT", -7 * H),
    ("AKST", -9 * H),
    ("AKDT", -8 * H),
    ("HST", -10 * H),
    ("HDT", -9 * H),
];

/// Offset in seconds east of UTC for a common abbreviation (case-insensitive).
pub(crate) fn abbreviation_offset(name: &str) -> Option<i32> {
    ABBREVIATIONS
        .iter()
        .find(|(abbr, _)| abbr.eq_ignore_ascii_case(name))
        .map(|&(_, offset)| offset)
}

/// Java's name for a zone without a better one: `GMT-08:00`, `GMT+05:30`, `GMT+00:00`.
pub(crate) fn gmt_offset_name(offset_seconds: i32) -> String {
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let minutes = offset_seconds.unsigned_abs() / 60;
    format!("GMT{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}
