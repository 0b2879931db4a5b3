//! Streaming extraction of what enrich needs from a tweet, without building a JSON tree.
//!
//! The structures below name only the fields enrich reads; everything else is skipped by the
//! parser, and strings are borrowed from the input unless they contain escapes. The
//! structures are strict about types: a document where, say, `entities.hashtags` is not an
//! array of objects gives a data error, and enrich then falls back to its lenient `Value`
//! path. Both paths must derive the same fields (the tests compare them).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A string, borrowed from the input where possible.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Cow<'de, str>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(TextVisitor).map(Text)
    }
}

impl Text<'_> {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn text<'s>(t: &'s Option<Text<'_>>) -> Option<&'s str> {
    t.as_ref().map(Text::as_str)
}

#[derive(Deserialize)]
pub(crate) struct Entities<'a> {
    #[serde(borrow)]
    hashtags: Option<Vec<Tag<'a>>>,
    /// v1.1
    #[serde(borrow)]
    user_mentions: Option<Vec<Mention<'a>>>,
    /// v2
    #[serde(borrow)]
    mentions: Option<Vec<Mention<'a>>>,
}

#[derive(Deserialize)]
struct Tag<'a> {
    /// v1.1
    #[serde(borrow)]
    text: Option<Text<'a>>,
    /// v2
    #[serde(borrow)]
    tag: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Mention<'a> {
    /// v1.1
    #[serde(borrow)]
    screen_name: Option<Text<'a>>,
    /// v2
    #[serde(borrow)]
    username: Option<Text<'a>>,
}

impl<'a> Entities<'a> {
    pub(crate) fn v1_hashtags(&self) -> impl Iterator<Item = &str> {
        self.hashtags.iter().flatten().filter_map(|t| text(&t.text))
    }

    pub(crate) fn v1_mentions(&self) -> impl Iterator<Item = &str> {
        self.user_mentions
            .iter()
            .flatten()
            .filter_map(|m| text(&m.screen_name))
    }

    pub(crate) fn v2_hashtags(&self) -> impl Iterator<Item = &str> {
        self.hashtags.iter().flatten().filter_map(|t| text(&t.tag))
    }

    pub(crate) fn v2_mentions(&self) -> impl Iterator<Item = &str> {
        self.mentions
            .iter()
            .flatten()
            .filter_map(|m| text(&m.username))
    }
}

/// v1.1 `extended_tweet`.
#[derive(Deserialize)]
pub(crate) struct Extended<'a> {
    #[serde(borrow)]
    pub(crate) full_text: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) entities: Option<Entities<'a>>,
}

/// v2 `note_tweet` (the full text of a long tweet).
#[derive(Deserialize)]
pub(crate) struct Note<'a> {
    #[serde(borrow)]
    pub(crate) text: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) entities: Option<Entities<'a>>,
}

/// The parts of a nested v1.1 status (`retweeted_status`) that enrich reads.
#[derive(Deserialize)]
pub(crate) struct V1Nested<'a> {
    #[serde(borrow)]
    pub(crate) entities: Option<Entities<'a>>,
    #[serde(borrow)]
    pub(crate) extended_tweet: Option<Extended<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct V1User<'a> {
    #[serde(borrow)]
    pub(crate) screen_name: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct V2Data<'a> {
    #[serde(borrow)]
    pub(crate) id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) text: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) created_at: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) author_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) entities: Option<Entities<'a>>,
    #[serde(borrow)]
    pub(crate) note_tweet: Option<Note<'a>>,
    #[serde(borrow)]
    pub(crate) referenced_tweets: Option<Vec<Reference<'a>>>,
}

#[derive(Deserialize)]
pub(crate) struct Reference<'a> {
    #[serde(borrow, rename = "type")]
    pub(crate) kind: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) id: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct V2Includes<'a> {
    #[serde(borrow)]
    pub(crate) users: Option<Vec<V2User<'a>>>,
    #[serde(borrow)]
    pub(crate) tweets: Option<Vec<V2Included<'a>>>,
}

#[derive(Deserialize)]
pub(crate) struct V2User<'a> {
    #[serde(borrow)]
    pub(crate) id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) username: Option<Text<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct V2Included<'a> {
    #[serde(borrow)]
    pub(crate) id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(crate) entities: Option<Entities<'a>>,
    #[serde(borrow)]
    pub(crate) note_tweet: Option<Note<'a>>,
}

/// A tweet id: a non-empty string or an unsigned number; anything else counts as absent.
pub(crate) struct Id<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Option<Cow<'de, str>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a tweet id")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok((!v.is_empty()).then_some(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok((!v.is_empty()).then(|| Cow::Owned(v.to_string())))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        deserializer.deserialize_any(IdVisitor).map(Id)
    }
}

/// `timestamp_ms`: epoch milliseconds as a string or an integer.
pub(crate) struct EpochMillis(pub(crate) Option<i64>);

impl<'de> Deserialize<'de> for EpochMillis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MillisVisitor;
        impl Visitor<'_> for MillisVisitor {
            type Value = Option<i64>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("epoch milliseconds")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(v.parse().ok())
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(i64::try_from(v).ok())
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
        }
        deserializer.deserialize_any(MillisVisitor).map(EpochMillis)
    }
}

/// What kind of JSON value something is, with its contents skipped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    True,
    Other,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl<'de> Visitor<'de> for KindVisitor {
            type Value = Kind;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Kind::Object)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Kind::Other)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Kind, E> {
                Ok(if v { Kind::True } else { Kind::Other })
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Kind, E> {
                Ok(Kind::Other)
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Kind, E> {
                Ok(Kind::Other)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Kind, E> {
                Ok(Kind::Other)
            }
        }
        deserializer.deserialize_any(KindVisitor)
    }
}

/// The top level of a tweet of either shape, as far as enrich is concerned.
#[derive(Default)]
pub(crate) struct TopLevel<'a> {
    /// How many keys the object has.
    pub(crate) keys: usize,
    /// Whether `@timestamp` or the target key is present.
    pub(crate) has_timestamp: bool,
    pub(crate) has_target: bool,
    /// Whether a key that marks a v1.1 status is present.
    pub(crate) v1_marker: bool,
    // v1.1
    pub(crate) id_str: Option<Id<'a>>,
    pub(crate) id: Option<Id<'a>>,
    pub(crate) text: Option<Text<'a>>,
    pub(crate) full_text: Option<Text<'a>>,
    pub(crate) created_at: Option<Text<'a>>,
    pub(crate) timestamp_ms: Option<EpochMillis>,
    pub(crate) user: Option<V1User<'a>>,
    pub(crate) entities: Option<Entities<'a>>,
    pub(crate) extended_tweet: Option<Extended<'a>>,
    pub(crate) retweeted_status: Option<V1Nested<'a>>,
    pub(crate) is_quote_status: Option<Kind>,
    pub(crate) quoted_status: Option<Kind>,
    // v2
    pub(crate) data: Option<V2Data<'a>>,
    pub(crate) includes: Option<V2Includes<'a>>,
}

/// Reads the top-level object; `target` is the enrich target key, whose presence is noted.
#[derive(Clone, Copy)]
pub(crate) struct TopLevelSeed<'t> {
    pub(crate) target: &'t str,
}

impl<'de, 't> DeserializeSeed<'de> for TopLevelSeed<'t> {
    type Value = TopLevel<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<TopLevel<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, 't> Visitor<'de> for TopLevelSeed<'t> {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
        let mut top = TopLevel::default();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            top.keys += 1;
            // A repeated key would be resolved differently by the two paths: leave it to the
            // Value path.
            macro_rules! field {
                ($field:ident) => {{
                    if top.$field.is_some() {
                        return Err(de::Error::duplicate_field(stringify!($field)));
                    }
                    top.$field = map.next_value()?;
                }};
            }
            match key.as_ref() {
                "id_str" => field!(id_str),
                "id" => field!(id),
                "text" => field!(text),
                "full_text" => field!(full_text),
                "created_at" => field!(created_at),
                "timestamp_ms" => field!(timestamp_ms),
                "user" => field!(user),
                "entities" => field!(entities),
                "extended_tweet" => field!(extended_tweet),
                "retweeted_status" => field!(retweeted_status),
                "is_quote_status" => field!(is_quote_status),
                "quoted_status" => field!(quoted_status),
                "data" => field!(data),
                "includes" => field!(includes),
                "@timestamp" => {
                    top.has_timestamp = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if key == self.target {
                top.has_target = true;
            }
            if matches!(
                key.as_ref(),
                "id_str" | "id" | "text" | "full_text" | "created_at"
            ) {
                top.v1_marker = true;
            }
        }
        Ok(top)
    }
}

/// Whether a serde_json error is about the data's types rather than its syntax.
pub(crate) fn is_data_error(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Data
}
