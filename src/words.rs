//! Values as pages and mails say them to people.
use chrono::Duration;

/// How long something lasts, in the largest unit it fills whole: "15
/// minutes", "24 hours", "7 days". A day is said in hours up to two of
/// them, as people count a day's deadline. Rounded down, so no page or mail
/// promises longer than a link really works.
pub fn span(length: Duration) -> String {
    let minutes = length.num_minutes();
    if minutes < 1 {
        return "less than a minute".to_owned();
    }
    let hours = minutes / 60;
    let (count, unit) = if hours == 0 || (hours == 1 && minutes % 60 != 0) {
        (minutes, "minute")
    } else if hours < 48 || hours % 24 != 0 {
        (hours, "hour")
    } else {
        (hours / 24, "day")
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::span;

    #[test]
    fn the_links_lifetimes_read_as_people_say_them() {
        for (length, said) in [
            (Duration::minutes(15), "15 minutes"),
            (Duration::minutes(30), "30 minutes"),
            (Duration::hours(1), "1 hour"),
            (Duration::minutes(90), "90 minutes"),
            (Duration::hours(24), "24 hours"),
            (Duration::hours(36), "36 hours"),
            (Duration::hours(72), "3 days"),
            (Duration::days(7), "7 days"),
            (Duration::days(1) + Duration::minutes(1), "24 hours"),
            (Duration::minutes(1), "1 minute"),
        ] {
            assert_eq!(span(length), said, "{length}");
        }
    }

    #[test]
    fn a_span_is_rounded_down_never_up() {
        assert_eq!(
            span(Duration::minutes(15) - Duration::seconds(1)),
            "14 minutes"
        );
        assert_eq!(span(Duration::days(7) - Duration::seconds(1)), "167 hours");
        assert_eq!(span(Duration::seconds(30)), "less than a minute");
        assert_eq!(span(Duration::seconds(-5)), "less than a minute");
    }
}
