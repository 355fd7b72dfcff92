//! Turning parsed field values into an instant: defaults, range checks against the calendar,
//! Java's two-digit-year window, and the zone (from the text, or the pattern's zone).

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};

use super::Zone;
use super::names;

/// Field values read from the text; absent ones take Java's defaults (1970-01-01 00:00:00.000).
#[derive(Debug, Default)]
pub(crate) struct Fields {
    pub year: Option<Year>,
    pub month: Option<u32>,
    pub day: Option<u32>,
    pub day_of_year: Option<u32>,
    pub hour_of_day: Option<u32>,
    pub hour_of_half_day: Option<u32>,
    pub pm: Option<bool>,
    pub minute: Option<u32>,
    pub second: Option<u32>,
    pub millisecond: Option<u32>,
    pub offset: Option<ParsedOffset>,
}

#[derive(Debug)]
pub(crate) struct Year {
    pub value: i32,
    /// Exactly two digits under `y`/`yy`: Java's century window applies.
    pub two_digit: bool,
}

#[derive(Debug)]
pub(crate) enum ParsedOffset {
    /// Seconds east of UTC.
    Fixed(i32),
    /// `X` prints whole hours only (`+05` for +05:30); see `resolve_with_year`.
    WholeHours { sign: i32, hours: u32 },
    /// A zone name like `MDT` or `IST`, resolved once the local time is known.
    Name(String),
}

pub(crate) fn resolve(
    fields: &Fields,
    zone: &Zone,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    match &fields.year {
        Some(Year {
            value,
            two_digit: true,
        }) => {
            // Java: the century that starts 80 years before now; a value equal to that start
            // year's last two digits goes to the later century if the date falls before it.
            let century_start = now.checked_sub_months(Months::new(80 * 12)).unwrap_or(now);
            let start_year = century_start.year();
            let ambiguous_digits = start_year % 100;
            let year =
                start_year / 100 * 100 + value + if *value < ambiguous_digits { 100 } else { 0 };
            let instant = resolve_with_year(fields, year, zone)?;
            if *value == ambiguous_digits && instant < century_start {
                return resolve_with_year(fields, year + 100, zone);
            }
            Ok(instant)
        }
        Some(year) => resolve_with_year(fields, year.value, zone),
        None => resolve_with_year(fields, 1970, zone),
    }
}

fn resolve_with_year(fields: &Fields, year: i32, zone: &Zone) -> Result<DateTime<Utc>, String> {
    let first_day =
        NaiveDate::from_ymd_opt(year, 1, 1).ok_or_else(|| format!("year {year} out of range"))?;
    // A month or day of the month decides the date; the day of the year only stands alone.
    let date = if fields.month.is_some() || fields.day.is_some() {
        let month = fields.month.unwrap_or(1);
        let day = fields.day.unwrap_or(1);
        NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| {
            format!(
                "day {day} out of range: {} {year} has {} days",
                names::MONTHS_LONG[month as usize - 1],
                days_in_month(year, month)
            )
        })?
    } else if let Some(day_of_year) = fields.day_of_year {
        NaiveDate::from_yo_opt(year, day_of_year).ok_or_else(|| {
            let days = if first_day.leap_year() { 366 } else { 365 };
            format!("day of year {day_of_year} out of range: {year} has {days} days")
        })?
    } else {
        first_day
    };
    let hour = fields.hour_of_day.unwrap_or_else(|| {
        fields.hour_of_half_day.unwrap_or(0) + if fields.pm == Some(true) { 12 } else { 0 }
    });
    let local = date
        .and_hms_milli_opt(
            hour,
            fields.minute.unwrap_or(0),
            fields.second.unwrap_or(0),
            fields.millisecond.unwrap_or(0),
        )
        .ok_or_else(|| "time of day out of range".to_string())?;

    let offset_seconds = match &fields.offset {
        None => zone.resolve_local(local),
        Some(ParsedOffset::Fixed(offset)) => *offset,
        // The hour-only text lost the zone's minutes (India's +05:30 prints "+05"); when the
        // pattern's zone has an offset at this local time that prints the same way, take it,
        // so the text reads back as the instant that was printed. Java would use +05:00.
        Some(ParsedOffset::WholeHours { sign, hours }) => {
            let printed_as =
                |offset: &i32| offset.signum() == *sign && offset.unsigned_abs() / 3600 == *hours;
            zone.local_offsets(local)
                .into_iter()
                .find(|offset| printed_as(offset) && offset % 3600 != 0)
                .unwrap_or(sign * (*hours as i32) * 3600)
        }
        Some(ParsedOffset::Name(name)) => zone
            .offset_for_abbreviation(name, local)
            .or_else(|| names::abbreviation_offset(name))
            .ok_or_else(|| unknown_zone_name(name))?,
    };
    local
        .and_utc()
        .checked_sub_signed(TimeDelta::seconds(i64::from(offset_seconds)))
        .ok_or_else(|| "date out of range".to_string())
}

fn unknown_zone_name(name: &str) -> String {
    if name == "Z" {
        "\"Z\" is not accepted by z or Z, which read names and offsets like -0700 or \
         GMT-07:00; use X to accept \"Z\""
            .to_string()
    } else {
        format!("unknown time zone name \"{name}\"")
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|first| first.pred_opt())
        .map_or(31, |last| last.day())
}
