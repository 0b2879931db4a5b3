"""Writes inputs.json, the shared test inputs (run from this directory; output is committed).

Each input is {"name", "why", and one of: "text" (the value's exact bytes as UTF-8),
"base64" (bytes that are not UTF-8), "repeat" ({"head", "unit", "count", "tail"}: a big value
built as head + unit * count + tail, with "{i}" in the unit replaced by 0, 1, 2, ...)}.
"""

import base64
import json

FIXTURES = "../transforms/fixtures/tweets.ndjson"
NAMES = ["v1_extended", "v1_retweet", "v1_quote", "v1_unrelated", "v2_tweet", "v2_retweet",
         "v2_unrelated"]

inputs = []


def add(name, why, text=None, raw=None, repeat=None):
    item = {"name": name, "why": why}
    if text is not None:
        item["text"] = text
    elif raw is not None:
        item["base64"] = base64.b64encode(raw).decode()
    else:
        item["repeat"] = repeat
    inputs.append(item)


with open(FIXTURES, encoding="utf-8") as f:
    for name, line in zip(NAMES, f.read().splitlines()):
        add(f"fixture-{name}", "realistic tweet from guest-plugins/transforms/fixtures", line)

with open("../transforms/fixtures/v1_extended.json", encoding="utf-8") as f:
    add("fixture-v1_extended-pretty", "pretty-printed document: enrich keeps its bytes", f.read())

add("v1-minimal", "v1.1 with entities, numeric id", '{"created_at":"Wed Oct 10 20:19:24 +0000 2018","id":1050118621198921728,"text":"Hello #World @Jack 👋🏽 BTS","user":{"screen_name":"jack"},"entities":{"hashtags":[{"text":"World"}],"user_mentions":[{"screen_name":"Jack"}]}}')
add("v2-minimal", "v2 with author lookup and note_tweet", '{"data":{"id":"1","text":"short","created_at":"2022-03-04T05:06:07.891+09:00","author_id":"9","note_tweet":{"text":"long text about 방탄소년단이 컴백","entities":{"hashtags":[{"tag":"BTS"}],"mentions":[{"username":"BTS_twt"}]}},"referenced_tweets":[{"type":"quoted","id":"2"}]},"includes":{"users":[{"id":"8","username":"other"},{"id":"9","username":"ara"}]}}')
add("v2-retweet-included", "keyword only in the retweeted tweet of includes.tweets", '{"data":{"id":"3","text":"RT @x: …","referenced_tweets":[{"type":"retweeted","id":"4"}]},"includes":{"tweets":[{"id":"4","text":"I love BTS","entities":{"hashtags":[{"tag":"Army"}]}}]}}')
add("emoji", "emoji, skin tone, ZWJ sequences around the keyword", '{"text":"🎉BTS🎉 👩‍👩‍👧 💜💜 I purple you","id_str":"10"}')
add("emoji-escaped", "surrogate-pair escapes as the v1.1 API sends them", '{"text":"\\ud83c\\udf89BTS\\ud83c\\udf89 \\u00e9","id_str":"11"}')
add("rtl-arabic", "Arabic with harakat (RTL)", '{"text":"مرحباً بالعالم BTS","lang":"ar","id_str":"12"}')
add("rtl-hebrew", "Hebrew (RTL), keyword absent", '{"text":"שלום עולם, מזג האוויר","lang":"he"}')
add("hangul-particle", "Korean particle glued to the keyword", '{"text":"BTS의 새 앨범 방탄소년단이 최고"}')
add("word-boundaries", "keyword inside words and handles", '{"text":"@BTS_twt BTSfan subts bts2"}')
add("word-overlap", "repeated candidates where only a later one is a whole word", '{"text":"xbts-bts","full_text":"a-a-a xa-a-a"}')
add("case-folding", "Greek final sigma, accents, Cyrillic", '{"text":"η ΟΔΟΣ CAFÉ au lait МОСКВА 2024"}')
add("kelvin", "non-ASCII letter that lowercases to ASCII", '{"text":"\u212aelvin bts"}')
add("quoted-status-only", "v1.1 quote: keyword only in quoted_status", '{"text":"look","is_quote_status":true,"quoted_status":{"text":"BTS!"}}')
add("user-fields", "keyword only in the user's bio (not searched by default)", '{"text":"hi","user":{"description":"BTS fan","screen_name":"x"}}')
add("missing-fields", "object without any tweet field", '{"foo":1,"bar":[true,null]}')
add("empty-object", "{}", "{}")
add("whitespace-object", "object with surrounding whitespace", " \t{ } \n")
add("nulls", "tweet fields that are null", '{"text":null,"id_str":null,"created_at":null,"user":null,"entities":null,"data":null}')
add("wrong-types", "tweet fields of unexpected types (enrich re-reads the tree)", '{"text":5,"entities":{"hashtags":{"text":"Solo"}},"id":-5,"created_at":"yesterday","timestamp_ms":"1539202764123"}')
add("duplicate-keys", "a key given twice", '{"text":"nothing","text":"BTS","id_str":"7"}')
add("duplicate-keys-first", "a key given twice, the keyword in the first value (JSON.parse keeps the last)", '{"text":"BTS","text":"nothing","id_str":"8"}')
add("duplicate-id", "an id given twice, the first not an id (serde: duplicate field, enrich re-reads the tree)", '{"id":1.5, "id":2,"text":"x"}')
add("duplicate-timestamp-ms", "timestamp_ms given twice, the first not a time", '{"timestamp_ms":1.5, "timestamp_ms":2,"text":"x"}')
add("out-of-range-searched", "a number out of f64 range in a searched field", '{"text":"BTS","entities":{"hashtags":[{"text":"x"},{"text":1e400}]}}')
add("near-limit-searched", "a number near f64's limit in a searched field: in range", '{"text":"BTS","full_text":1e308}')
add("existing-timestamp", "document that already has @timestamp and sluice", '{"text":"BTS","@timestamp":"2000-01-01T00:00:00.000Z","created_at":"Wed Oct 10 20:19:24 +0000 2018","sluice":{"pipeline":"p1","shape":"old"},"n":[1.50,1e2,-0,12345678901234567890123,1E-7,0.1e-5,-9223372036854775809,18446744073709551615]}')
add("already-enriched", "enriched output fed back in: enrich keeps it", '{"@timestamp":"2018-10-10T20:19:24.000Z","created_at":"Wed Oct 10 20:19:24 +0000 2018","id_str":"5","sluice":{"hashtags":[],"is_quote":false,"is_retweet":false,"mentions":[],"shape":"v1.1","text_length":11,"tweet_url":"https://twitter.com/i/web/status/5"},"text":"hello world"}')
add("escapes", "escaped quotes, slashes, control escapes and \\u00XX in strings", '{"text":"a \\"quoted\\" \\/ \\t tab \\u0001 BTS","entities":{"hashtags":[{"text":"Q\\"uote"},{"text":"q\\"UOTE"}],"user_mentions":[{"screen_name":"Tab\\tName"}]}}')
add("timestamp-ms", "v1.1 date from timestamp_ms when created_at is unreadable", '{"text":"x","created_at":"Wed Feb 30 20:19:24 +0000 2018","timestamp_ms":1539202764123}')
add("timestamp-offset", "v1.1 date with a non-UTC offset", '{"text":"x","created_at":"Sun Dec 31 23:30:00 -0130 2023"}')
add("deep-nesting", "arrays nested 100 deep in a field nobody reads", '{"text":"bts","x":' + "[" * 100 + "]" * 100 + "}")
add("deep-126-searched", "arrays nested 126 deep in the searched text: 127 with the object, as deep as serde_json reads", '{"text":' + "[" * 126 + '"bts"' + "]" * 126 + "}")
add("deep-127-searched", "arrays nested 127 deep in the searched text: serde_json's recursion limit", '{"text":' + "[" * 127 + '"bts"' + "]" * 127 + "}")
add("deep-3000-unsearched", "arrays nested 3,000 deep in a field nobody reads: skipped at any depth", '{"text":"bts","x":' + "[" * 3000 + "]" * 3000 + "}")
add("deep-3000-top-level", "a top-level array nested 3,000 deep: valid JSON, not an object", "[" * 3000 + "]" * 3000)
add("invalid-utf8-field", "a broken UTF-8 sequence inside a string field", raw=b'{"text":"BTS \xff here"}')
add("invalid-utf8-truncated", "a UTF-8 sequence cut at the end", raw=b'{"text":"BTS"} \xe2\x82')
add("invalid-utf8-surrogate", "an encoded surrogate (not UTF-8)", raw=b'{"text":"\xed\xa0\x80"}')
add("not-json", "plain text", "not json at all")
add("truncated-json", "JSON cut in the middle", '{"text":"BTS","user":{"screen')
add("trailing-garbage", "valid object then more", '{"text":"BTS"} x')
add("trailing-comma", "not allowed in JSON", '{"text":"BTS",}')
add("top-level-array", "valid JSON that is not an object", '[{"text":"BTS"}]')
add("top-level-string", "valid JSON that is not an object", '"BTS"')
add("top-level-number", "valid JSON that is not an object", "42")
add("top-level-null", "valid JSON that is not an object", "null")
add("empty", "empty value", "")
add("lone-surrogate-read", "a lone surrogate escape in the searched text", '{"text":"bts \\ud800"}')
add("lone-surrogate-key", "a lone surrogate escape in a key below the searched text: serde_json decodes every key of an object it reads", '{"text":{"\\ud800":"bts"}}')
add("lone-surrogate-key-skipped", "a lone surrogate escape in a key of a field nobody reads", '{"text":"bts","x":{"\\ud800":1}}')
add("lone-surrogate-key-flag", "a lone surrogate escape in a key of is_quote_status, whose keys enrich reads", '{"text":"bts","is_quote_status":{"\\ud800":1}}')
add("control-char", "raw control character inside a string", '{"text":"BTS\u0001"}')
add("huge-text", "a 600 KB text field with the keyword at the very end",
    repeat={"head": '{"id_str":"99","text":"', "unit": "lorem ipsum 방탄 ", "count": 30000,
            "tail": ' BTS","entities":{"hashtags":[{"text":"Big"}]}}'})
add("wide", "1,500 fields", repeat={"head": '{"text":"BTS"', "unit": ',"f{i}":{i}', "count": 1500,
                                    "tail": "}"})

with open("inputs.json", "w", encoding="utf-8") as f:
    json.dump({"inputs": inputs}, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(len(inputs), "inputs")
