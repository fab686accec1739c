//! ACL files in mosquitto's format (`acl_file`), as the core's [`Authorizer`].
//!
//! ```text
//! # Lines before any `user` line apply to anonymous clients (no user name).
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#          # read, write, readwrite or deny; no access word: readwrite
//! topic deny alice/secret/#
//!
//! # Patterns apply to every client; %c is its client id, %u its user name.
//! pattern write devices/%c/state
//! pattern read devices/%u/commands/#
//! ```
//!
//! Answers are mosquitto 2's for publishing (write) and receiving (read): a client's own rules
//! (its `user` section, or the anonymous one) are tried first, denials before grants, then the
//! patterns, denials before grants; the first rule that matches the topic and either denies or
//! grants the access decides, and nothing granted is denied. A rule without a `$` first level
//! never matches a `$` topic, so `$SYS/#` is readable only where a rule names it. Patterns deny
//! every client whose user name or client id holds `+` or `#` (they could reach other clients'
//! topics through `%u` or `%c`).
//!
//! Subscribing goes past mosquitto, which grants every SUBSCRIBE and filters at delivery: a
//! filter that no readable topic could match is refused (v5 SUBACK 0x87, 3.1.1 0x80), so a
//! client learns at once that it will receive nothing, while a wide filter that covers some
//! readable topics (`#` for a client that may read `public/#`) is granted and delivery keeps
//! the rest from it, as in mosquitto. A filter a deny rule covers entirely is refused too.
//!
//! The file is read when the listener starts and on SIGHUP (`ListenerHandle::reload`), which
//! hands a new [`AclFile`] to new connections; connected clients keep the rules they connected
//! with. (An authorizer whose rules change in place would move [`Authorizer::generation`] so
//! that connections drop what they cached.)

use std::path::{Path, PathBuf};

use midge_broker::filters::{covers, intersects, matches as reaches};
use midge_broker::ports::access::{Action, Authorizer};
use midge_broker::ports::auth::Identity;

/// Why an ACL file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    /// The file cannot be read.
    #[error("cannot read acl_file {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in this message, not a source: it is printed once).
        error: std::io::Error,
    },
    /// A line is not an ACL line.
    #[error("acl_file {path}, line {line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants(self, wanted: Access) -> bool {
        match self {
            Access::ReadWrite => wanted != Access::Deny,
            Access::Deny => false,
            own => own == wanted,
        }
    }
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    /// The topic filter (for a pattern, with `%c` and `%u` still in it).
    filter: String,
}

/// The rules of one `user` section, or of the anonymous one.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Section {
    /// Denials first, then grants, each in file order.
    rules: Vec<Rule>,
}

impl Section {
    fn push(&mut self, rule: Rule) {
        if rule.access == Access::Deny {
            let first_grant = self.rules.iter().position(|r| r.access != Access::Deny).unwrap_or(self.rules.len());
            self.rules.insert(first_grant, rule);
        } else {
            self.rules.push(rule);
        }
    }
}

/// A parsed ACL file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AclFile {
    /// The rules before any `user` line.
    anonymous: Section,
    /// Each user's rules (a user named twice has its rules in one section, as in mosquitto).
    users: std::collections::HashMap<String, Section>,
    /// `pattern` lines, from anywhere in the file.
    patterns: Section,
}

impl AclFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, AclFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| AclFileError::Read { path: path.to_owned(), error })?;
        Self::parse(&text).map_err(|(line, problem)| AclFileError::Line { path: path.to_owned(), line, problem })
    }

    /// Parses the file's text; an error gives the line number and the problem.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |problem: String| Err((index + 1, problem));
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return fail("`user` without a user name".to_owned());
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (first, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    // One word is the filter, with readwrite access (as mosquitto reads it, so
                    // `topic read` is the topic "read").
                    let (access, filter) = match first {
                        _ if after.trim().is_empty() => (Access::ReadWrite, first),
                        "read" => (Access::Read, after.trim()),
                        "write" => (Access::Write, after.trim()),
                        "readwrite" => (Access::ReadWrite, after.trim()),
                        "deny" => (Access::Deny, after.trim()),
                        other => {
                            return fail(format!(
                                "access {other:?} is not read, write, readwrite or deny (`{keyword} [ACCESS] FILTER`)"
                            ))
                        }
                    };
                    if filter.is_empty() {
                        return fail(format!("`{keyword}` without a topic filter"));
                    }
                    if let Err(problem) = check_filter(filter) {
                        return fail(format!("topic filter {filter:?}: {problem}"));
                    }
                    let rule = Rule { access, filter: filter.to_owned() };
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            Some(name) => acl.users.entry(name.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        }
                    }
                }
                other => return fail(format!("unknown keyword {other:?}: expected topic, pattern or user")),
            }
        }
        Ok(acl)
    }

    /// The verdict on `wanted` access to the topic name `topic`.
    fn decide(&self, identity: &Identity, client_id: &str, wanted: Access, topic: &str) -> bool {
        let own = match &identity.username {
            Some(name) => self.users.get(&**name),
            None => Some(&self.anonymous),
        };
        for rule in own.into_iter().flat_map(|section| &section.rules) {
            if reaches(&rule.filter, topic) {
                if rule.access == Access::Deny {
                    return false;
                }
                if rule.access.grants(wanted) {
                    return true;
                }
            }
        }
        if self.patterns.rules.is_empty() || dangerous(identity, client_id) {
            return false;
        }
        for rule in &self.patterns.rules {
            let Some(filter) = substitute(&rule.filter, identity, client_id) else { continue };
            if reaches(&filter, topic) {
                if rule.access == Access::Deny {
                    return false;
                }
                if rule.access.grants(wanted) {
                    return true;
                }
            }
        }
        false
    }

    /// Whether `filter` may be subscribed to: some readable topic could match it, and no deny
    /// rule covers all of it.
    fn may_subscribe(&self, identity: &Identity, client_id: &str, filter: &str) -> bool {
        let filter = filter.strip_prefix("$share/").and_then(|rest| rest.split_once('/')).map_or(filter, |s| s.1);
        let own = match &identity.username {
            Some(name) => self.users.get(&**name),
            None => Some(&self.anonymous),
        };
        let patterns: Vec<Rule> = if dangerous(identity, client_id) {
            Vec::new()
        } else {
            self.patterns
                .rules
                .iter()
                .filter_map(|r| Some(Rule { access: r.access, filter: substitute(&r.filter, identity, client_id)? }))
                .collect()
        };
        let rules = || own.into_iter().flat_map(|section| section.rules.iter()).chain(patterns.iter());
        if rules().any(|rule| rule.access == Access::Deny && covers(&rule.filter, filter)) {
            return false;
        }
        rules().any(|rule| rule.access.grants(Access::Read) && intersects(&rule.filter, filter))
    }
}

impl Authorizer for AclFile {
    fn allows(&self, identity: &Identity, client_id: &str, action: Action, topic: &str) -> bool {
        match action {
            Action::Publish => self.decide(identity, client_id, Access::Write, topic),
            Action::Receive => self.decide(identity, client_id, Access::Read, topic),
            Action::Subscribe => self.may_subscribe(identity, client_id, topic),
        }
    }
}

/// A user name or client id with `+` or `#` could reach other clients' topics through a
/// pattern: mosquitto denies such clients every pattern.
fn dangerous(identity: &Identity, client_id: &str) -> bool {
    let bad = |s: &str| s.contains(['+', '#']);
    bad(client_id) || identity.username.as_deref().is_some_and(bad)
}

/// A pattern with `%c` and `%u` replaced; `None` when it names `%u` and the client has none.
fn substitute(pattern: &str, identity: &Identity, client_id: &str) -> Option<String> {
    if !pattern.contains('%') {
        return Some(pattern.to_owned());
    }
    if pattern.contains("%u") && identity.username.is_none() {
        return None;
    }
    let with_client = pattern.replace("%c", client_id);
    Some(match &identity.username {
        Some(name) => with_client.replace("%u", name),
        None => with_client,
    })
}

/// Checks an ACL filter as a subscription filter: `#` only as the whole last level, `+` only
/// as a whole level.
fn check_filter(filter: &str) -> Result<(), &'static str> {
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err("`#` must be the whole last level");
        }
        if level.contains('+') && *level != "+" {
            return Err("`+` must be a whole level");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const FILE: &str = "
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic $SYS/broker/uptime

user bob
topic write bob/out

pattern write devices/%c/state
pattern read devices/%u/commands/#
";

    fn user(name: &str) -> Identity {
        Identity { username: Some(Arc::from(name)), grants: None }
    }

    fn anonymous() -> Identity {
        Identity::default()
    }

    #[test]
    fn anonymous_rules_come_before_any_user_line() {
        let acl = AclFile::parse(FILE).unwrap();
        assert!(acl.allows(&anonymous(), "c", Action::Receive, "public/news"));
        assert!(!acl.allows(&anonymous(), "c", Action::Publish, "public/news"), "read only");
        assert!(!acl.allows(&user("bob"), "c", Action::Receive, "public/news"), "not bob's rule");
    }

    #[test]
    fn denials_win_over_grants_whatever_their_order() {
        let acl = AclFile::parse(FILE).unwrap();
        assert!(acl.allows(&user("alice"), "c", Action::Publish, "alice/notes"));
        assert!(!acl.allows(&user("alice"), "c", Action::Receive, "alice/secret/key"));
        assert!(!acl.allows(&user("alice"), "c", Action::Publish, "alice/secret"), "# reaches the parent level");
    }

    #[test]
    fn dollar_topics_only_where_a_rule_names_them() {
        let acl = AclFile::parse("user root\ntopic #\ntopic read $SYS/#\n").unwrap();
        assert!(acl.allows(&user("root"), "c", Action::Receive, "$SYS/broker/uptime"));
        let acl = AclFile::parse("user root\ntopic #\n").unwrap();
        assert!(!acl.allows(&user("root"), "c", Action::Receive, "$SYS/broker/uptime"), "# does not reach $SYS");
        assert!(acl.allows(&user("root"), "c", Action::Receive, "anything/else"));
    }

    #[test]
    fn patterns_substitute_client_id_and_user_name() {
        let acl = AclFile::parse(FILE).unwrap();
        assert!(acl.allows(&user("bob"), "sensor-7", Action::Publish, "devices/sensor-7/state"));
        assert!(!acl.allows(&user("bob"), "sensor-7", Action::Publish, "devices/sensor-8/state"));
        assert!(acl.allows(&user("bob"), "x", Action::Receive, "devices/bob/commands/reboot"));
        assert!(!acl.allows(&anonymous(), "x", Action::Receive, "devices/bob/commands/reboot"), "%u needs a name");
        assert!(
            !acl.allows(&user("b+"), "sensor", Action::Publish, "devices/sensor/state"),
            "a + in the user name could reach other clients' topics"
        );
        assert!(!acl.allows(&user("bob"), "#", Action::Publish, "devices/#/state"));
    }

    #[test]
    fn nothing_granted_is_denied_and_unknown_users_get_patterns_only() {
        let acl = AclFile::parse(FILE).unwrap();
        assert!(!acl.allows(&user("carol"), "c", Action::Receive, "public/news"));
        assert!(acl.allows(&user("carol"), "dev", Action::Publish, "devices/dev/state"));
        assert!(!acl.allows(&user("bob"), "c", Action::Receive, "bob/out"), "write only");
    }

    #[test]
    fn a_subscription_is_refused_only_where_nothing_readable_could_match() {
        let acl = AclFile::parse(FILE).unwrap();
        let alice = user("alice");
        assert!(acl.allows(&alice, "c", Action::Subscribe, "alice/#"));
        assert!(acl.allows(&alice, "c", Action::Subscribe, "#"), "wide, but covers readable topics");
        assert!(acl.allows(&alice, "c", Action::Subscribe, "+/notes"));
        assert!(!acl.allows(&alice, "c", Action::Subscribe, "bob/#"), "nothing readable under it");
        assert!(!acl.allows(&alice, "c", Action::Subscribe, "alice/secret/#"), "a deny rule covers it");
        assert!(!acl.allows(&alice, "c", Action::Subscribe, "alice/secret/+"), "covered by the deny rule");
        assert!(acl.allows(&alice, "c", Action::Subscribe, "$SYS/broker/uptime"));
        assert!(!acl.allows(&alice, "c", Action::Subscribe, "$SYS/broker/load"));
        assert!(!acl.allows(&user("bob"), "c", Action::Subscribe, "bob/out"), "write only");
        assert!(acl.allows(&alice, "c", Action::Subscribe, "$share/group/alice/x"), "a share's filter counts");
    }

    #[test]
    fn bad_lines_name_their_number() {
        assert_eq!(AclFile::parse("topic read a\nuser\n").unwrap_err().0, 2);
        assert_eq!(AclFile::parse("\n\ntopic sometimes a/b\n").unwrap_err().0, 3);
        assert_eq!(AclFile::parse("topic read a/#/b\n").unwrap_err().0, 1);
        assert_eq!(AclFile::parse("topics read a\n").unwrap_err().0, 1);
        assert_eq!(AclFile::parse("topic\n").unwrap_err(), (1, "`topic` without a topic filter".to_owned()));
        let one_word = AclFile::parse("topic read\n").unwrap();
        assert!(one_word.allows(&anonymous(), "c", Action::Publish, "read"), "one word is a readwrite filter");
    }
}
