//! The three transforms against the realistic fixture tweets in `fixtures/` (both shapes).
//! The expectations here are the ones documented in the crate's README.

use serde_json::{Value, json};
use sluice_transforms::{Enrich, FieldPrune, KeywordFilter, Outcome, Transform};

const FIXTURES: [&str; 7] = [
    "v1_extended.json",
    "v1_retweet.json",
    "v1_quote.json",
    "v1_unrelated.json",
    "v2_tweet.json",
    "v2_retweet.json",
    "v2_unrelated.json",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn outcomes<T: Transform>(pairs: &[(&str, &str)]) -> Vec<(&'static str, Outcome)> {
    let t = T::from_config(&config(pairs)).unwrap();
    FIXTURES
        .iter()
        .map(|name| (*name, t.apply(&fixture(name))))
        .collect()
}

fn set_value(name: &str, outcome: Outcome) -> Value {
    match outcome {
        Outcome::SetValue(bytes) => serde_json::from_slice(&bytes).unwrap(),
        other => panic!("{name}: expected SetValue, got {other:?}"),
    }
}

#[test]
fn ndjson_holds_the_same_documents() {
    let ndjson = fixture("tweets.ndjson");
    let lines: Vec<&[u8]> = ndjson
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), FIXTURES.len());
    for (name, line) in FIXTURES.iter().zip(lines) {
        let from_file: Value = serde_json::from_slice(&fixture(name)).unwrap();
        let from_line: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(from_file, from_line, "{name}");
    }
}

#[test]
fn keyword_filter_default_fields() {
    let expected = [
        ("v1_extended.json", Outcome::Keep),
        ("v1_retweet.json", Outcome::Keep),
        // Only the quoted status mentions BTS.
        ("v1_quote.json", Outcome::Keep),
        // "@BTS_ARMY_Peru" is not the whole word "bts".
        ("v1_unrelated.json", Outcome::Drop),
        ("v2_tweet.json", Outcome::Keep),
        // Only the retweeted tweet in includes.tweets has the keywords.
        ("v2_retweet.json", Outcome::Keep),
        ("v2_unrelated.json", Outcome::Drop),
    ];
    assert_eq!(
        outcomes::<KeywordFilter>(&[("keywords", "bts,방탄소년단")]),
        expected
    );
}

#[test]
fn keyword_filter_options() {
    let own_text_only = outcomes::<KeywordFilter>(&[
        ("keywords", "bts,방탄소년단"),
        (
            "fields",
            "text, extended_tweet.full_text, data.text, data.note_tweet.text",
        ),
    ]);
    let kept: Vec<&str> = own_text_only
        .iter()
        .filter(|(_, o)| *o == Outcome::Keep)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        kept,
        ["v1_extended.json", "v1_retweet.json", "v2_tweet.json"]
    );

    let substrings = outcomes::<KeywordFilter>(&[("keywords", "bts"), ("whole_word", "false")]);
    assert_eq!(substrings[3], ("v1_unrelated.json", Outcome::Keep));

    let inverted = outcomes::<KeywordFilter>(&[("keywords", "bts,방탄소년단"), ("invert", "true")]);
    let kept: Vec<&str> = inverted
        .iter()
        .filter(|(_, o)| *o == Outcome::Keep)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(kept, ["v1_unrelated.json", "v2_unrelated.json"]);

    // Right-to-left scripts: Arabic in v1_quote, Hebrew in v2_unrelated.
    let rtl = outcomes::<KeywordFilter>(&[("keywords", "نيويورك, מטריות")]);
    let kept: Vec<&str> = rtl
        .iter()
        .filter(|(_, o)| *o == Outcome::Keep)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(kept, ["v1_quote.json", "v2_unrelated.json"]);

    let case_sensitive =
        outcomes::<KeywordFilter>(&[("keywords", "bts"), ("case_sensitive", "true")]);
    assert!(case_sensitive.iter().all(|(_, o)| *o == Outcome::Drop));
}

#[test]
fn enrich_derives_fields_for_both_shapes() {
    let results = outcomes::<Enrich>(&[("keywords", "bts,방탄소년단,army")]);
    let expected = [
        json!({
            "@timestamp": "2018-10-10T20:19:24.000Z",
            "hashtags": ["bts", "방탄소년단", "idol", "bts_idol"],
            "mentions": ["bts_twt"],
            "matched_keywords": ["bts", "방탄소년단"],
            "tweet_url": "https://twitter.com/purple_ara/status/1050118621198921728",
            "is_retweet": false, "is_quote": false, "text_length": 193, "shape": "v1.1"
        }),
        json!({
            "@timestamp": "2018-10-11T03:05:12.000Z",
            "hashtags": ["오늘의방탄", "bts", "방탄소년단", "idol_mv_200m"],
            "mentions": ["bts_twt"],
            "matched_keywords": ["bts", "방탄소년단"],
            "tweet_url": "https://twitter.com/army_in_lima/status/1050220746104721408",
            "is_retweet": true, "is_quote": false, "text_length": 139, "shape": "v1.1"
        }),
        json!({
            "@timestamp": "2018-10-07T00:12:44.000Z",
            "hashtags": [],
            "mentions": [],
            "matched_keywords": ["bts"],
            "tweet_url": "https://twitter.com/sara_kpop_ksa/status/1048727583120932864",
            "is_retweet": false, "is_quote": true, "text_length": 81, "shape": "v1.1"
        }),
        json!({
            "@timestamp": "2018-10-28T16:47:09.000Z",
            "hashtags": ["laliga", "elclásico"],
            "mentions": ["laliga", "bts_army_peru"],
            "matched_keywords": [],
            "tweet_url": "https://twitter.com/culer_de_cor/status/1056593419512635392",
            "is_retweet": false, "is_quote": false, "text_length": 96, "shape": "v1.1"
        }),
        json!({
            "@timestamp": "2023-07-14T04:00:12.000Z",
            "hashtags": ["jungkook", "bts", "방탄소년단", "seven_jungkook"],
            "mentions": ["bts_twt"],
            "matched_keywords": ["bts", "방탄소년단", "army"],
            "tweet_url": "https://twitter.com/mina_moon_jk/status/1680000000000000001",
            "is_retweet": false, "is_quote": false, "text_length": 392, "shape": "v2"
        }),
        json!({
            "@timestamp": "2023-06-01T00:05:33.000Z",
            "hashtags": ["방탄소년단", "bts", "2023btsfesta"],
            "mentions": ["bighitmusic"],
            "matched_keywords": ["bts", "방탄소년단"],
            "tweet_url": "https://twitter.com/mina_army_jp/status/1664123456789012480",
            "is_retweet": true, "is_quote": false, "text_length": 61, "shape": "v2"
        }),
        json!({
            "@timestamp": "2023-10-11T07:45:00.321Z",
            "hashtags": [],
            "mentions": [],
            "matched_keywords": [],
            "tweet_url": "https://twitter.com/noa_tlv/status/1712000000000000123",
            "is_retweet": false, "is_quote": true, "text_length": 68, "shape": "v2"
        }),
    ];
    for ((name, outcome), mut want) in results.into_iter().zip(expected) {
        let original: Value = serde_json::from_slice(&fixture(name)).unwrap();
        let mut got = set_value(name, outcome);
        let got_ts = got.as_object_mut().unwrap().remove("@timestamp");
        let want_ts = want.as_object_mut().unwrap().remove("@timestamp");
        assert_eq!(got_ts, want_ts, "{name}: @timestamp");
        let derived = got.as_object_mut().unwrap().remove("sluice");
        assert_eq!(derived, Some(want), "{name}: derived fields");
        assert_eq!(got, original, "{name}: the rest is untouched");
    }
}

#[test]
fn enrich_then_enrich_again_keeps() {
    let e = Enrich::from_config(&config(&[("target", "meta")])).unwrap();
    for name in FIXTURES {
        let once = set_value(name, e.apply(&fixture(name)));
        assert_eq!(
            e.apply(once.to_string().as_bytes()),
            Outcome::Keep,
            "{name}"
        );
    }
}

/// The "ES-safe" allow-list recommended in the README (keep the two in sync).
const ES_SAFE_ALLOW: &str = "
    @timestamp, sluice,
    id_str, created_at, lang, text, full_text, truncated, extended_tweet.full_text,
    user.id_str, user.screen_name, user.name, user.verified, user.followers_count,
    entities.hashtags.text, entities.user_mentions.screen_name, entities.urls.expanded_url,
    extended_tweet.entities.hashtags.text, extended_tweet.entities.user_mentions.screen_name,
    extended_tweet.entities.urls.expanded_url,
    in_reply_to_status_id_str, in_reply_to_screen_name, is_quote_status, quoted_status_id_str,
    retweet_count, favorite_count, quote_count, reply_count, place.full_name, place.country_code,
    retweeted_status.id_str, retweeted_status.user.screen_name, retweeted_status.text,
    retweeted_status.extended_tweet.full_text,
    quoted_status.id_str, quoted_status.user.screen_name, quoted_status.text,
    quoted_status.extended_tweet.full_text,
    data.id, data.text, data.created_at, data.author_id, data.lang, data.conversation_id,
    data.possibly_sensitive, data.referenced_tweets, data.public_metrics, data.note_tweet.text,
    data.entities.hashtags.tag, data.entities.mentions.username, data.entities.urls.expanded_url,
    includes.users.id, includes.users.username, includes.users.name, includes.users.verified,
    includes.tweets.id, includes.tweets.text, includes.tweets.author_id,
    matching_rules.id, matching_rules.tag";

#[test]
fn readme_allow_list_is_the_tested_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../field-prune/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let marker = "allow = \"\"\"";
    let start = readme.find(marker).expect("the README has the allow-list") + marker.len();
    let end = start + readme[start..].find("\"\"\"").unwrap();
    let items = |s: &str| -> Vec<String> {
        s.split(',')
            .map(|i| i.trim().to_string())
            .filter(|i| !i.is_empty())
            .collect()
    };
    assert_eq!(items(&readme[start..end]), items(ES_SAFE_ALLOW));
}

#[test]
fn field_prune_es_safe_allow_list() {
    let results = outcomes::<FieldPrune>(&[
        ("allow", ES_SAFE_ALLOW),
        ("drop_nulls", "true"),
        ("max_fields", "150"),
    ]);
    for (name, outcome) in results {
        let pruned = set_value(name, outcome);
        let text = pruned.to_string();
        for gone in [
            "profile_image_url_https",
            "indices",
            "display_text_range",
            "\"source\"",
        ] {
            assert!(!text.contains(gone), "{name}: {gone} should be pruned");
        }
        if name.starts_with("v1") {
            assert!(pruned["user"]["screen_name"].is_string(), "{name}");
            assert!(pruned["user"].get("description").is_none(), "{name}");
            assert!(
                pruned.get("in_reply_to_status_id_str").is_none() || name == "v1_unrelated.json"
            );
        } else {
            assert!(pruned["data"]["text"].is_string(), "{name}");
            assert!(
                pruned["includes"]["users"][0]["username"].is_string(),
                "{name}"
            );
            assert!(
                pruned["includes"]["users"][0].get("created_at").is_none(),
                "{name}"
            );
            assert!(pruned["matching_rules"][0]["tag"].is_string(), "{name}");
        }
    }
    let v1: Value = serde_json::from_slice(&fixture("v1_retweet.json")).unwrap();
    let prune = FieldPrune::from_config(&config(&[("allow", ES_SAFE_ALLOW)])).unwrap();
    let pruned = set_value("v1_retweet.json", prune.apply(&fixture("v1_retweet.json")));
    assert_eq!(
        pruned["retweeted_status"],
        json!({
            "id_str": v1["retweeted_status"]["id_str"],
            "user": {"screen_name": "BTS_twt"},
            "text": v1["retweeted_status"]["text"],
            "extended_tweet": {"full_text": v1["retweeted_status"]["extended_tweet"]["full_text"]},
        })
    );
    assert_eq!(
        pruned["entities"],
        json!({
            "hashtags": [{"text": "오늘의방탄"}],
            "user_mentions": [{"screen_name": "BTS_twt"}]
        })
    );
}

#[test]
fn field_prune_guards_the_field_count() {
    // The raw v1.1 retweet (two full statuses, two users) has a lot of distinct fields.
    let strict = outcomes::<FieldPrune>(&[("max_fields", "60")]);
    match &strict[1] {
        ("v1_retweet.json", Outcome::Fail(reason)) => {
            assert!(reason.ends_with("fields exceeds max_fields 60"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // The same limit passes once the deep parts are cut.
    let shallow = outcomes::<FieldPrune>(&[
        (
            "deny",
            "retweeted_status, quoted_status, user, *.entities, entities",
        ),
        ("max_fields", "60"),
    ]);
    assert!(
        shallow
            .iter()
            .all(|(_, o)| matches!(o, Outcome::SetValue(_))),
        "{shallow:?}"
    );
}

#[test]
fn invalid_records_fail_for_every_transform() {
    let filter = KeywordFilter::from_config(&config(&[("keywords", "bts")])).unwrap();
    let prune = FieldPrune::from_config(&config(&[("drop_nulls", "true")])).unwrap();
    let enrich = Enrich::from_config(&[]).unwrap();
    let mut truncated = fixture("v2_tweet.json");
    truncated.truncate(truncated.len() / 2);
    let mut bad_utf8 = fixture("v1_extended.json");
    // Cut a multi-byte Hangul character in half inside the text.
    let pos = bad_utf8.iter().position(|&b| b >= 0x80).unwrap();
    bad_utf8[pos + 1] = b'x';
    let cases: [(&[u8], &str); 4] = [
        (&truncated, "not valid JSON: EOF while parsing"),
        (&bad_utf8, "not valid UTF-8: "),
        (b"[{\"text\":\"bts\"}]", "not a JSON object"),
        (
            b"",
            "not valid JSON: EOF while parsing a value at line 1 column 0",
        ),
    ];
    for (input, reason) in cases {
        for outcome in [filter.apply(input), prune.apply(input), enrich.apply(input)] {
            match outcome {
                Outcome::Fail(r) => assert!(r.starts_with(reason), "{r:?} vs {reason:?}"),
                other => panic!("expected a failure starting with {reason:?}, got {other:?}"),
            }
        }
    }
}

#[test]
fn transforms_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<KeywordFilter>();
    shareable::<FieldPrune>();
    shareable::<Enrich>();
}
