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

/// A zone whose tzdata, as chrono-tz compiles it, has negative daylight saving time (Ireland's
/// winter, Morocco's Ramadan, Namibia 1994-2017, Czechoslovakia's 1946-47 winter). Java compiles
/// tzdata's "rearguard" form instead, where these zones have a lower standard offset and only
/// positive DST; so from `since` on, Java calls any offset above `standard` daylight time (Dublin
/// at +01:00 is "IST", Irish Summer Time's daylight name; Casablanca at +01:00 is "WEST").
/// Checked against what Java 17 prints for these zones from 1900 to 2035.
pub(crate) struct NegativeDstZone {
    pub id: &'static str,
    /// Java's standard offset, seconds east of UTC.
    standard: i32,
    /// Epoch seconds from which the rearguard reading holds (before it: standard time).
    since: i64,
}

impl NegativeDstZone {
    /// Whether Java counts `offset_seconds` in force at `epoch_seconds` as daylight time.
    pub(crate) fn daylight(&self, epoch_seconds: i64, offset_seconds: i32) -> bool {
        epoch_seconds >= self.since && offset_seconds > self.standard
    }
}

const NEGATIVE_DST_ZONES: [NegativeDstZone; 7] = [
    NegativeDstZone {
        id: "Africa/Casablanca",
        standard: 0,
        since: i64::MIN,
    },
    NegativeDstZone {
        id: "Africa/El_Aaiun",
        standard: 0,
        since: i64::MIN,
    },
    // From independence (1990-03-21 00:00 local) Java reads Namibia's +02:00 as +01:00 plus
    // daylight time; before it, +02:00 (SAST) was standard time.
    NegativeDstZone {
        id: "Africa/Windhoek",
        standard: H,
        since: 637_970_400,
    },
    NegativeDstZone {
        id: "Eire",
        standard: 0,
        since: i64::MIN,
    },
    NegativeDstZone {
        id: "Europe/Bratislava",
        standard: H,
        since: i64::MIN,
    },
    NegativeDstZone {
        id: "Europe/Dublin",
        standard: 0,
        since: i64::MIN,
    },
    NegativeDstZone {
        id: "Europe/Prague",
        standard: H,
        since: i64::MIN,
    },
];

/// The rearguard reading of `id`, when its tzdata has negative DST.
pub(crate) fn negative_dst_zone(id: &str) -> Option<&'static NegativeDstZone> {
    NEGATIVE_DST_ZONES.iter().find(|zone| zone.id == id)
}

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
