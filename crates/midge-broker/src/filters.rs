//! Topic filters compared with topic names and with each other, outside the router: for rules
//! that name filters (ACL files, token grants), where one filter is checked at a time.
//!
//! The matching rules are the router's (see its module doc): `+` is one level, `#` its parent
//! level and every level below, and a filter whose first level is a wildcard never reaches a
//! topic whose first level starts with `$` [MQTT-4.7.2-1].

/// Whether `filter` matches the topic name `topic`.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && !filter.starts_with('$') {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether some topic name matches both filters. A filter reaches `$` topics only when its first
/// level is a `$...` literal (a wildcard first level never does), so filters on either side of
/// that line meet nowhere.
pub fn intersects(a: &str, b: &str) -> bool {
    if a.starts_with('$') != b.starts_with('$') {
        return false;
    }
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    loop {
        match (a_levels.next(), b_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (Some("+"), Some(_)) | (Some(_), Some("+")) => {}
            (Some(x), Some(y)) if x == y => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic name `inner` matches is matched by `outer`.
pub fn covers(outer: &str, inner: &str) -> bool {
    if outer.starts_with('$') != inner.starts_with('$') {
        return false;
    }
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(level)) if level != "#" => {}
            (Some(x), Some(y)) if x == y && y != "#" && y != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_matches_topics_as_the_router_does() {
        assert!(matches("a/#", "a"));
        assert!(matches("a/+/c", "a//c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("+/x", "$SYS/x"), "MQTT-4.7.2-1");
        assert!(!matches("#", "$SYS"));
        assert!(matches("$SYS/#", "$SYS/broker"));
    }

    #[test]
    fn filters_meet_where_some_topic_matches_both() {
        assert!(intersects("a/+/c", "a/b/#"));
        assert!(intersects("a/#", "a"));
        assert!(!intersects("a/b", "a/c/#"));
        assert!(!intersects("$SYS/#", "#"));
        assert!(intersects("$SYS/#", "$SYS/+"));
    }

    #[test]
    fn a_filter_covers_another_when_it_matches_all_it_matches() {
        assert!(covers("a/#", "a/+/c"));
        assert!(covers("a/#", "a"));
        assert!(!covers("a/+", "a/#"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("#", "$SYS/#"));
    }
}
