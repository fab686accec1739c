//! Router tests: every matching rule of MQTT section 4.7 (with the spec's own examples), shared
//! groups, overlapping filters, pruning, and a property test against a naive matcher.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// The system allocator, counting allocations per thread, so a test can prove that a call does
/// not allocate while other tests run on other threads.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to `System`; the counter is a thread-local `Cell`
// with a const initialiser, which itself never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above; `ptr` came from `System` through `alloc` or `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Allocations made by this thread so far.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// The naive matcher the trie is checked against: split both into vectors and compare level by
/// level. Written from the spec text, sharing no code with the trie.
pub(crate) fn reference_matches(filter: &str, topic: &str) -> bool {
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    // [MQTT-4.7.2-1]
    if topic[0].starts_with('$') && (filter[0] == "+" || filter[0] == "#") {
        return false;
    }
    for (i, f) in filter.iter().enumerate() {
        if *f == "#" && i == filter.len() - 1 {
            // `#` matches the parent (levels 0..i, all matched) and any number of children.
            return true;
        }
        match topic.get(i) {
            None => return false,
            Some(t) if *f != "+" && f != t => return false,
            Some(_) => {}
        }
    }
    filter.len() == topic.len()
}

/// A match flattened for comparison: (group, filter, key), one row per shared member.
type Row = (Option<String>, String, u32);

fn rows(router: &Router<u32, u8>, topic: &str) -> Vec<Row> {
    let mut out = Vec::new();
    router.match_topic(topic, |m| match m {
        Match::Direct { filter, key, .. } => out.push((None, filter.to_owned(), *key)),
        Match::Shared { group, filter, members, .. } => {
            assert!(!members.is_empty(), "a stored group is never empty");
            for (key, _) in members {
                out.push((Some(group.to_owned()), filter.to_owned(), *key));
            }
        }
    });
    out.sort();
    out
}

/// Direct matches of `topic` as sorted filters (each subscriber of these tests is key 1).
fn filters_matching(router: &Router<u32, u8>, topic: &str) -> Vec<String> {
    rows(router, topic).into_iter().map(|(_, f, _)| f).collect()
}

fn router_with(filters: &[&str]) -> Router<u32, u8> {
    let mut router = Router::new();
    for filter in filters {
        assert_eq!(router.subscribe(filter, 1, 0), None, "{filter} subscribed twice");
    }
    router
}

fn assert_matches(filter: &str, topic: &str, expected: bool) {
    let router = router_with(&[filter]);
    let got = !rows(&router, topic).is_empty();
    assert_eq!(got, expected, "filter {filter:?} vs topic {topic:?}");
    assert_eq!(reference_matches(filter, topic), expected, "reference: {filter:?} vs {topic:?}");
}

#[test]
fn exact_filter_matches_only_the_same_topic() {
    // [MQTT-4.7.3-4]: no normalisation; case, spaces, leading and trailing `/` all count.
    assert_matches("a/b", "a/b", true);
    assert_matches("a/b", "a/b/", false);
    assert_matches("a/b", "a/b/c", false);
    assert_matches("a/b", "a", false);
    assert_matches("a/b", "a//b", false);
    assert_matches("a/b", "A/b", false);
    assert_matches("ACCOUNTS", "Accounts", false);
    assert_matches("Accounts payable", "Accounts payable", true);
    assert_matches("/finance", "finance", false);
    assert_matches("finance", "/finance", false);
    assert_matches("/finance", "/finance", true);
}

#[test]
fn empty_levels_are_levels() {
    assert_matches("a//b", "a//b", true);
    assert_matches("a//b", "a/b", false);
    assert_matches("a/+/b", "a//b", true);
    assert_matches("/", "/", true);
    assert_matches("+/+", "/", true);
    assert_matches("/+", "/", true);
    assert_matches("+", "/", false);
    assert_matches("#", "/", true);
    assert_matches("/#", "/", true);
    assert_matches("/#", "/a/b", true);
    assert_matches("/#", "a", false);
    assert_matches("a/", "a/", true);
    assert_matches("a/", "a", false);
}

#[test]
fn multi_level_wildcard_spec_examples() {
    // [MQTT-4.7.1-2] non-normative examples, section 4.7.1.2.
    let f = "sport/tennis/player1/#";
    assert_matches(f, "sport/tennis/player1", true);
    assert_matches(f, "sport/tennis/player1/ranking", true);
    assert_matches(f, "sport/tennis/player1/score/wimbledon", true);
    assert_matches(f, "sport/tennis/player2", false);
    assert_matches(f, "sport/tennis", false);
    // "sport/#" also matches the singular "sport", since # includes the parent level.
    assert_matches("sport/#", "sport", true);
    assert_matches("sport/#", "sport/", true);
    assert_matches("sport/#", "sports", false);
    // "#" is valid and receives every message (except `$` topics, below).
    for topic in ["sport", "sport/tennis", "/", "a//b", "x/y/z/w"] {
        assert_matches("#", topic, true);
    }
    assert_matches("sport/tennis/#", "sport/tennis/player1/ranking", true);
}

#[test]
fn single_level_wildcard_spec_examples() {
    // [MQTT-4.7.1-3] non-normative examples, section 4.7.1.3.
    assert_matches("sport/tennis/+", "sport/tennis/player1", true);
    assert_matches("sport/tennis/+", "sport/tennis/player2", true);
    assert_matches("sport/tennis/+", "sport/tennis/player1/ranking", false);
    // "sport/+" does not match "sport" but it does match "sport/".
    assert_matches("sport/+", "sport", false);
    assert_matches("sport/+", "sport/", true);
    assert_matches("+", "sport", true);
    assert_matches("+/tennis/#", "sport/tennis/player1", true);
    assert_matches("sport/+/player1", "sport/tennis/player1", true);
    assert_matches("sport/+/player1", "sport/tennis/player2", false);
    // "/finance" matches "+/+" and "/+", but not "+".
    assert_matches("+/+", "/finance", true);
    assert_matches("/+", "/finance", true);
    assert_matches("+", "/finance", false);
    assert_matches("+", "finance/", false);
    assert_matches("+/+/+", "a/b", false);
    assert_matches("+/b/+", "a/b/c", true);
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    // [MQTT-4.7.2-1] and the non-normative examples of section 4.7.2.
    assert_matches("#", "$SYS/monitor/Clients", false);
    assert_matches("#", "$SYS", false);
    assert_matches("+/monitor/Clients", "$SYS/monitor/Clients", false);
    assert_matches("+", "$SYS", false);
    assert_matches("+/#", "$SYS/x", false);
    assert_matches("$SYS/#", "$SYS/monitor/Clients", true);
    assert_matches("$SYS/#", "$SYS", true);
    assert_matches("$SYS/monitor/+", "$SYS/monitor/Clients", true);
    assert_matches("$SYS/#", "$SYSTEM/x", false);
    assert_matches("$SYS/#", "SYS/x", false);
    // Only the first level counts: a `$` deeper down is an ordinary character.
    assert_matches("+/$x", "a/$x", true);
    assert_matches("a/+", "a/$x", true);
    assert_matches("a/#", "a/$x/y", true);
    // A topic merely containing `$` later in its first level is still a `$` topic.
    assert_matches("#", "$", false);
    assert_matches("$", "$", true);

    // To receive both, a client subscribes to both "#" and "$SYS/#".
    let router = router_with(&["#", "$SYS/#"]);
    assert_eq!(filters_matching(&router, "$SYS/broker/uptime"), ["$SYS/#"]);
    assert_eq!(filters_matching(&router, "sport"), ["#"]);
}

#[test]
fn a_subscriber_gets_one_match_per_overlapping_filter() {
    let filters = ["#", "a/#", "a/+", "+/b", "a/b", "+/+", "a/b/#", "+/#"];
    let router = router_with(&filters);
    let mut expected = filters.to_vec();
    expected.sort();
    assert_eq!(filters_matching(&router, "a/b"), expected);
    assert_eq!(filters_matching(&router, "a"), ["#", "+/#", "a/#"]);
    assert_eq!(filters_matching(&router, "c/b/d"), ["#", "+/#"]);
}

#[test]
fn many_subscribers_of_one_filter_are_all_visited() {
    let mut router = Router::new();
    // Past the point where the subscriber list gets an index.
    for key in 0..100 {
        router.subscribe("a/+", key, (key % 3) as u8);
    }
    let mut seen = Vec::new();
    router.match_topic("a/b", |m| match m {
        Match::Direct { key, value, filter } => {
            assert_eq!(filter, "a/+");
            assert_eq!(*value, (*key % 3) as u8);
            seen.push(*key);
        }
        Match::Shared { .. } => panic!("no shared subscription here"),
    });
    seen.sort();
    assert_eq!(seen, (0..100).collect::<Vec<_>>());
    for key in (0..100).step_by(2) {
        assert_eq!(router.unsubscribe("a/+", &key), Some((key % 3) as u8));
    }
    let remaining: Vec<u32> = rows(&router, "a/b").into_iter().map(|(_, _, k)| k).collect();
    assert_eq!(remaining, (1..100).step_by(2).collect::<Vec<_>>());
}

#[test]
fn subscribing_again_replaces() {
    // [MQTT-3.8.4-3]: a new subscription to an existing filter replaces it.
    let mut router = Router::new();
    assert_eq!(router.subscribe("a/+", 7, 0), None);
    let generation = router.generation();
    assert_eq!(router.subscribe("a/+", 7, 2), Some(0));
    assert!(router.generation() > generation, "a replaced value may change delivery");
    assert_eq!(router.len(), 1);
    let mut values = Vec::new();
    router.match_topic("a/x", |m| {
        if let Match::Direct { value, .. } = m {
            values.push(*value)
        }
    });
    assert_eq!(values, [2]);
}

#[test]
fn generation_moves_on_every_change_only() {
    let mut router: Router<u32, u8> = Router::new();
    let g0 = router.generation();
    router.subscribe("a", 1, 0);
    let g1 = router.generation();
    assert!(g1 > g0);
    assert_eq!(router.unsubscribe("b", &1), None);
    assert_eq!(router.unsubscribe("a", &2), None);
    assert_eq!(router.unsubscribe("$share/g/a", &1), None);
    assert_eq!(router.generation(), g1, "no-op unsubscribes change nothing");
    router.match_topic("a", |_| {});
    assert_eq!(router.generation(), g1);
    assert_eq!(router.unsubscribe("a", &1), Some(0));
    assert!(router.generation() > g1);
}

#[test]
fn shared_group_gets_one_match_with_all_members() {
    // [MQTT-4.8.2]: `$share/{group}/{filter}`.
    let mut router = Router::new();
    router.subscribe("$share/g/a/+", 1, 0);
    router.subscribe("$share/g/a/+", 2, 1);
    router.subscribe("$share/h/a/+", 3, 0);
    router.subscribe("a/+", 4, 0);

    let mut shared = Vec::new();
    let mut direct = Vec::new();
    router.match_topic("a/b", |m| match m {
        Match::Direct { key, filter, .. } => direct.push((*key, filter.to_owned())),
        Match::Shared { group, filter, members, .. } => {
            let mut keys: Vec<u32> = members.iter().map(|(k, _)| *k).collect();
            keys.sort();
            shared.push((group.to_owned(), filter.to_owned(), keys));
        }
    });
    shared.sort();
    assert_eq!(direct, [(4, "a/+".to_owned())]);
    assert_eq!(shared, [("g".to_owned(), "a/+".to_owned(), vec![1, 2]), ("h".to_owned(), "a/+".to_owned(), vec![3])]);
    assert_eq!(router.len(), 4);
    assert!(rows(&router, "a").is_empty());
    assert!(rows(&router, "b/b").is_empty());
}

#[test]
fn shared_group_round_robin_alternates_members() {
    let mut router = Router::new();
    router.subscribe("$share/g/t", 1, 0);
    router.subscribe("$share/g/t", 2, 0);
    router.subscribe("$share/g/t", 3, 0);
    let mut picked = Vec::new();
    for _ in 0..6 {
        router.match_topic("t", |m| {
            if let Match::Shared { members, cursor, .. } = m {
                let (key, _) = pick_round_robin(members, cursor).expect("groups are never empty");
                picked.push(*key);
            }
        });
    }
    let mut first_round = picked[..3].to_vec();
    first_round.sort();
    assert_eq!(first_round, [1, 2, 3], "each member once per round");
    assert_eq!(picked[..3], picked[3..], "the same order every round");
    assert_eq!(pick_round_robin::<u32>(&[], &AtomicUsize::new(0)), None);
}

#[test]
fn shared_subscription_filters_follow_the_same_rules() {
    let mut router = Router::new();
    router.subscribe("$share/g/#", 1, 0);
    router.subscribe("$share/g/$SYS/#", 2, 0);
    router.subscribe("$share/g/sport/#", 3, 0);
    let keys = |topic| rows(&router, topic).into_iter().map(|(_, _, k)| k).collect::<Vec<_>>();
    // [MQTT-4.7.2-1] applies to the filter after `$share/{group}/`.
    assert_eq!(keys("$SYS/x"), [2]);
    assert_eq!(keys("sport"), [1, 3]);
    assert_eq!(keys("x"), [1]);
}

#[test]
fn shared_and_direct_subscriptions_of_one_key_are_distinct() {
    let mut router = Router::new();
    router.subscribe("a", 1, 0);
    router.subscribe("$share/g/a", 1, 1);
    router.subscribe("$share/h/a", 1, 2);
    assert_eq!(router.len(), 3);
    assert_eq!(rows(&router, "a").len(), 3);
    assert_eq!(router.unsubscribe("$share/g/a", &1), Some(1));
    assert_eq!(router.unsubscribe("$share/g/a", &1), None);
    assert_eq!(router.unsubscribe("a", &1), Some(0));
    assert_eq!(rows(&router, "a"), [(Some("h".to_owned()), "a".to_owned(), 1)]);
    assert_eq!(router.unsubscribe("$share/h/a", &1), Some(2));
    assert_eq!(router.node_count(), 1);
}

#[test]
fn malformed_shared_filters_do_not_panic() {
    // The caller refuses these [MQTT-4.8.2-1, MQTT-4.8.2-2]; the router must merely survive them.
    let mut router = Router::new();
    for filter in ["$share/g", "$share/", "$share//a", "$share/g+/a", "$share/#/a", "$share/g/"] {
        router.subscribe(filter, 1, 0);
        router.match_topic("a", |_| {});
        router.match_topic(filter, |_| {});
    }
    // `$share/g` has no filter part: it is kept as an ordinary filter.
    assert_eq!(filters_matching(&router, "$share/g"), ["$share/g"]);
    // `$share//a`: group "" under filter "a".
    assert!(rows(&router, "a").contains(&(Some(String::new()), "a".to_owned(), 1)));
    for filter in ["$share/g", "$share/", "$share//a", "$share/g+/a", "$share/#/a", "$share/g/"] {
        assert_eq!(router.unsubscribe(filter, &1), Some(0), "{filter}");
    }
    assert!(router.is_empty());
    assert_eq!(router.node_count(), 1);
}

#[test]
fn invalid_filters_and_topics_do_not_panic() {
    // Refused by the caller [MQTT-4.7.1-1..3, MQTT-4.7.3-1]; matched literally here.
    let filters = ["", "a/#/b", "sport+", "a#", "#/#", "++", "/#/"];
    let mut router = Router::new();
    for filter in filters {
        router.subscribe(filter, 1, 0);
    }
    for topic in ["", "a/#/b", "+", "#", "/", "a/+/b"] {
        router.match_topic(topic, |_| {});
    }
    // A `#` that is not the last level is an ordinary level.
    assert_eq!(filters_matching(&router, "a/#/b"), ["a/#/b"]);
    assert_eq!(filters_matching(&router, "#/x/y"), ["#/#"]);
    for filter in filters {
        assert_eq!(router.unsubscribe(filter, &1), Some(0), "{filter}");
    }
    assert_eq!(router.node_count(), 1);
}

#[test]
fn deep_topics_match_without_overflowing() {
    let topic = "/".repeat(10_000);
    let mut router = Router::new();
    router.subscribe("#", 1, 0);
    router.subscribe("+/+/#", 2, 0);
    router.subscribe(&topic, 3, 0);
    // More pending `+` branches than the inline stack holds.
    let plus_filter = vec!["+"; 40].join("/");
    router.subscribe(&plus_filter, 4, 0);
    for i in 0..40 {
        let mut levels = vec!["+"; 40];
        levels[i] = "";
        router.subscribe(&levels.join("/"), 5 + i as u32, 0);
    }
    assert_eq!(rows(&router, &topic).len(), 3);
    assert_eq!(rows(&router, &"/".repeat(39)).len(), 2 + 1 + 40);
}

#[test]
fn the_last_group_leaving_frees_the_group_list() {
    let mut router = Router::new();
    router.subscribe("$share/g/a/b", 1, 0);
    router.subscribe("$share/h/a/b", 2, 0);
    router.subscribe("a/b", 3, 0);
    assert_eq!(router.unsubscribe("$share/g/a/b", &1), Some(0));
    assert_eq!(router.unsubscribe("$share/h/a/b", &2), Some(0));
    assert_eq!(router.unsubscribe("$share/h/a/b", &2), None, "the group list is gone");
    assert_eq!(rows(&router, "a/b"), [(None, "a/b".to_owned(), 3)]);
    // A group can come back after the list was freed.
    router.subscribe("$share/g/a/b", 1, 0);
    assert_eq!(rows(&router, "a/b"), [(None, "a/b".to_owned(), 3), (Some("g".to_owned()), "a/b".to_owned(), 1)]);
    router.unsubscribe("a/b", &3);
    router.unsubscribe("$share/g/a/b", &1);
    assert!(router.is_empty());
    assert_eq!(router.node_count(), 1, "pruned once both the direct list and the groups are empty");
}

#[test]
fn unsubscribe_prunes_back_to_the_root() {
    let filters = [
        "a/b/c",
        "a/b/#",
        "a/+/c",
        "+/+/+",
        "#",
        "a",
        "a/b",
        "/",
        "a//b",
        "$SYS/#",
        "x/y/z/w/v",
        "$share/g/a/b/c",
        "$share/g/+/#",
    ];
    let mut router = Router::new();
    for (key, filter) in filters.iter().enumerate() {
        router.subscribe(filter, key as u32, 0);
    }
    assert_eq!(router.len(), filters.len());
    // Nodes for the wildcard filters (root, a, a/b, a/+, a/+/c, +, +/+, +/+/+, $SYS); the exact
    // ones are in the exact index, `a/b/c` once for its direct subscriber and its group.
    assert_eq!(router.node_count(), 9);
    assert_eq!(router.exact.len(), 6);
    // Remove in an order different from insertion, checking the rest still match.
    for (key, filter) in filters.iter().enumerate().rev() {
        assert_eq!(router.unsubscribe(filter, &(key as u32)), Some(0), "{filter}");
        assert_eq!(router.unsubscribe(filter, &(key as u32)), None, "{filter} twice");
    }
    assert!(router.is_empty());
    assert_eq!(router.node_count(), 1, "only the root is left");
    assert_eq!(router.exact.len(), 0);
}

#[test]
fn a_subtree_is_kept_while_it_holds_subscriptions() {
    let mut router = router_with(&["a/b/c/#", "a/b/#"]);
    assert_eq!(router.node_count(), 4);
    router.unsubscribe("a/b/#", &1);
    assert_eq!(router.node_count(), 4, "a/b is still on the way to a/b/c");
    assert_eq!(filters_matching(&router, "a/b/c"), ["a/b/c/#"]);
    router.unsubscribe("a/b/c/#", &1);
    assert_eq!(router.node_count(), 1);
}

#[test]
fn exact_filters_take_no_trie_node() {
    // Filters with no `+` and no final `#` are indexed by the topic they match; `#` elsewhere
    // and `$share/{group}` without a filter are ordinary levels, exact too.
    let exact = ["a/b", "a", "/", "a//b", "$SYS/x", "a/#/c", "$share/g", "$share/g/a/b"];
    let mut router = router_with(&exact);
    assert_eq!(router.node_count(), 1);
    assert_eq!(router.exact.len(), exact.len() - 1, "a/b once, with a direct subscriber and a group");
    assert_eq!(rows(&router, "a/b"), [(None, "a/b".to_owned(), 1), (Some("g".to_owned()), "a/b".to_owned(), 1)]);
    assert_eq!(filters_matching(&router, "a/#/c"), ["a/#/c"]);
    assert_eq!(filters_matching(&router, "$share/g"), ["$share/g"]);
    assert!(filters_matching(&router, "a/b/").is_empty());
    // Beside wildcard filters matching the same topic, each is visited once.
    router.subscribe("a/+", 1, 0);
    router.subscribe("a/#", 1, 0);
    assert_eq!(filters_matching(&router, "a/b"), ["a/#", "a/+", "a/b", "a/b"]);
    for filter in exact {
        assert_eq!(router.unsubscribe(filter, &1), Some(0), "{filter}");
    }
    assert_eq!(router.exact.len(), 0);
    assert_eq!(router.len(), 2);
}

#[test]
fn churn_reuses_node_slots() {
    let mut router = Router::new();
    // Enough children under one node to switch its level map to a hash map and back.
    for round in 0..50u32 {
        for i in 0..40u32 {
            router.subscribe(&format!("site/{i}/dev/{round}/+"), i, 0);
            router.subscribe(&format!("$share/g{}/site/{i}/#", i % 3), i, 0);
        }
        for i in 0..40u32 {
            assert_eq!(router.unsubscribe(&format!("site/{i}/dev/{round}/+"), &i), Some(0));
            assert_eq!(router.unsubscribe(&format!("$share/g{}/site/{i}/#", i % 3), &i), Some(0));
        }
        assert_eq!(router.node_count(), 1);
    }
    // One round needs 1 + 1 + 40 * 4 slots; later rounds reuse them.
    assert_eq!(router.nodes.slots(), 1 + 1 + 40 * 4);
}

#[test]
fn level_map_promotion_keeps_children_reachable() {
    let mut router = Router::new();
    // A wildcard below each, so that the levels are trie nodes (exact filters are not).
    for i in 0..100u32 {
        router.subscribe(&format!("n/{i}/+"), i, 0);
    }
    for i in 0..100u32 {
        assert_eq!(rows(&router, &format!("n/{i}/x")), [(None, format!("n/{i}/+"), i)]);
    }
    for i in 0..97u32 {
        router.unsubscribe(&format!("n/{i}/+"), &i);
    }
    for i in 97..100u32 {
        assert_eq!(rows(&router, &format!("n/{i}/x")), [(None, format!("n/{i}/+"), i)]);
    }
    assert_eq!(router.node_count(), 1 + 1 + 3 * 2);
}

#[test]
fn match_borrows_outlive_the_visitor() {
    // The broker collects targets under the read lock and enqueues after releasing it: the
    // references handed out must live as long as the router borrow, not the callback.
    let router = router_with(&["a/+", "a/#"]);
    let mut targets: SmallVec<[Match<'_, u32, u8>; 8]> = SmallVec::new();
    router.match_topic("a/b", |m| targets.push(m));
    assert_eq!(targets.len(), 2);
    let mut filters: Vec<&str> = targets.iter().map(|m| m.filter()).collect();
    filters.sort();
    assert_eq!(filters, ["a/#", "a/+"]);
}

#[test]
fn matching_does_not_allocate() {
    let mut router = Router::new();
    let mut key = 0;
    for n in 0..50 {
        for filter in [
            format!("site/{n}/dev/+/temp"),
            format!("site/+/dev/{n}/temp"),
            format!("site/{n}/#"),
            format!("site/{n}/dev/{n}/temp"),
            format!("$share/g{}/site/{n}/dev/{n}/+", n % 3),
            format!("$SYS/{n}/#"),
        ] {
            for _ in 0..20 {
                key += 1;
                router.subscribe(&filter, key, 0);
            }
        }
    }
    router.subscribe("#", 0, 0);
    router.subscribe("+/+/+/+/+", 0, 0);
    let topics: Vec<String> =
        (0..50).flat_map(|n| [format!("site/{n}/dev/{n}/temp"), format!("$SYS/{n}/x"), format!("x/{n}")]).collect();
    let before = allocations();
    let mut found = 0;
    for topic in &topics {
        router.match_topic(topic, |_| found += 1);
    }
    assert_eq!(allocations(), before, "match_topic allocated");
    assert!(found > 50 * 100, "the walk did visit subscriptions: {found}");
}

#[test]
fn a_topic_of_inline_stack_levels_does_not_spill() {
    // A `+` beside every literal level of `a/a/.../a`: walking the literal path stacks one `+`
    // branch per level, the most the stack can hold for a topic this deep.
    let mut router = Router::new();
    let topic = vec!["a"; INLINE_STACK].join("/");
    router.subscribe(&topic, 0, 0);
    for depth in 0..INLINE_STACK {
        let mut levels = vec!["a"; depth];
        levels.push("+");
        router.subscribe(&levels.join("/"), 1 + depth as u32, 0);
    }
    let before = allocations();
    let mut found = 0;
    router.match_topic(&topic, |_| found += 1);
    assert_eq!(allocations(), before, "match_topic allocated");
    // The exact filter, and `a/.../a/+` with the `+` at the last level.
    assert_eq!(found, 2);
}

#[test]
fn a_node_fits_a_cache_line() {
    // Matching touches one node per level; keeping each within 64 bytes keeps it one cache miss.
    assert_eq!(std::mem::size_of::<LevelMap>(), 32);
    assert!(std::mem::size_of::<Node<u64, u8>>() <= 64);
    assert_eq!(std::mem::align_of::<Node<u64, u8>>(), 64);
    // A filter's subscriptions fit one 64-byte allocator block with its 8-byte header.
    assert_eq!(std::mem::size_of::<Subscriptions<u64, u8>>(), 56);
}

// ---- property tests -------------------------------------------------------------------------

/// A topic level from a small alphabet, so random topics and filters collide often. Includes the
/// empty level and `$` levels.
fn topic_level() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "", "$SYS", "$a", "A"])
}

pub(crate) fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(topic_level(), 1..5).prop_map(|levels| levels.join("/"))
}

/// A valid filter: levels from the topic alphabet or `+`, optionally ending in `#`.
pub(crate) fn filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![3 => topic_level(), 1 => Just("+")];
    (prop::collection::vec(level, 0..4), any::<bool>()).prop_map(|(mut levels, hash)| {
        if hash || levels.is_empty() {
            levels.push("#");
        }
        levels.join("/")
    })
}

/// A subscription: filter, subscriber key, and an optional shared group.
fn subscription() -> impl Strategy<Value = (String, u32, Option<&'static str>)> {
    (filter(), 0..4u32, prop::option::weighted(0.25, prop::sample::select(vec!["g", "h"])))
}

proptest! {
    #[test]
    fn match_topic_agrees_with_the_reference(
        subscriptions in prop::collection::vec(subscription(), 0..40),
        removals in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        topics in prop::collection::vec(topic(), 1..20),
    ) {
        let mut router = Router::new();
        // The model: (group, filter, key) -> value.
        let mut model: BTreeMap<(Option<String>, String, u32), u8> = BTreeMap::new();
        for (i, (filter, key, group)) in subscriptions.iter().enumerate() {
            let full = match group {
                Some(g) => format!("$share/{g}/{filter}"),
                None => filter.clone(),
            };
            let value = i as u8;
            let previous = model.insert((group.map(str::to_owned), filter.clone(), *key), value);
            prop_assert_eq!(router.subscribe(&full, *key, value), previous);
        }
        if !subscriptions.is_empty() {
            for index in &removals {
                let (filter, key, group) = index.get(&subscriptions);
                let full = match group {
                    Some(g) => format!("$share/{g}/{filter}"),
                    None => filter.clone(),
                };
                let previous = model.remove(&(group.map(str::to_owned), filter.clone(), *key));
                prop_assert_eq!(router.unsubscribe(&full, key), previous);
            }
        }
        prop_assert_eq!(router.len(), model.len());

        for topic in &topics {
            let mut got = Vec::new();
            router.match_topic(topic, |m| match m {
                Match::Direct { filter, key, value } => {
                    got.push((None, filter.to_owned(), *key, *value))
                }
                Match::Shared { group, filter, members, .. } => {
                    for (key, value) in members {
                        got.push((Some(group.to_owned()), filter.to_owned(), *key, *value));
                    }
                }
            });
            got.sort();
            let expected: Vec<_> = model
                .iter()
                .filter(|((_, filter, _), _)| reference_matches(filter, topic))
                .map(|((group, filter, key), value)| (group.clone(), filter.clone(), *key, *value))
                .collect();
            prop_assert_eq!(got, expected, "topic {:?}", topic);
        }

        for ((group, filter, key), value) in std::mem::take(&mut model) {
            let full = match group {
                Some(g) => format!("$share/{g}/{filter}"),
                None => filter,
            };
            prop_assert_eq!(router.unsubscribe(&full, &key), Some(value));
        }
        prop_assert_eq!(router.len(), 0);
        prop_assert_eq!(router.node_count(), 1);
    }
}
