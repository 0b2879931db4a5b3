//! Deterministic synthetic tweet generator.
//!
//! Feeds the host's `generate` source, its tests and its benchmarks with a stream of single-line
//! JSON tweets in one of two shapes:
//!
//! * **v1.1 status** — the shape Logstash's `twitter` input emits with `full_tweet => true`
//!   (`created_at`, `id`/`id_str`, `text` truncated to 140 chars with `extended_tweet` for long
//!   ones, a full `user` object, `entities`, `retweeted_status`, `quoted_status`, …).
//! * **v2 filtered-stream payload** — `{"data": …, "includes": …, "matching_rules": […]}`.
//!
//! The output depends only on [`GenerateOptions`]: the same options with a fixed `start_time`
//! always produce the same byte sequence (the randomness comes from a ChaCha8 stream seeded with
//! `seed`). The default `start_time` is `"now"`, the moment the generator is created, so that
//! generated tweets are recent whatever the date: a reproducible run names a fixed time.
//!
//! Ground truth for keyword filters: [`Generated::mentions_bts`] is `true` exactly when the tweet's
//! text contains "bts" as a whole word (case-insensitively). Tweets that do not mention BTS contain
//! no `bts` substring anywhere in their JSON, in any letter case, and no "방탄소년단".
//!
//! "Wide" tweets carry an extra deep object (a unified `card` with many `binding_values` plus a
//! per-locale `translations` map) that adds 1200–2000 distinct leaf field paths, which pushes the
//! flattened field count well past Elasticsearch's default 1000-field mapping limit.

use chrono::{DateTime, Datelike, Timelike, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// Options of the `generate` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateOptions {
    /// Seed of the random stream; the same options always yield the same bytes.
    pub seed: u64,
    /// Share of tweets that mention BTS (0.0..=1.0).
    pub bts_share: f64,
    /// Share of tweets in API v2 filtered-stream shape; the rest are v1.1 statuses.
    pub v2_share: f64,
    /// Share of tweets that are retweets.
    pub retweet_share: f64,
    /// Share of tweets that quote another tweet (a retweet may retweet a quote tweet).
    pub quote_share: f64,
    /// Share of "very wide" tweets with well over 1000 distinct field paths.
    pub wide_share: f64,
    /// `created_at` of the first tweet: an RFC 3339 timestamp, or `"now"` (the default: the
    /// moment the generator is created, to the second).
    pub start_time: String,
    /// `created_at` advances by this many milliseconds per tweet.
    pub interval_ms: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            bts_share: 0.3,
            v2_share: 0.5,
            retweet_share: 0.3,
            quote_share: 0.15,
            wide_share: 0.0,
            start_time: NOW.to_string(),
            interval_ms: 250,
        }
    }
}

impl GenerateOptions {
    /// Checks that every share lies in `0.0..=1.0` and that `start_time` is RFC 3339 or `now`.
    /// The error message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let shares = [
            ("bts_share", self.bts_share),
            ("v2_share", self.v2_share),
            ("retweet_share", self.retweet_share),
            ("quote_share", self.quote_share),
            ("wide_share", self.wide_share),
        ];
        for (name, value) in shares {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!(
                    "generate option `{name}` must be between 0.0 and 1.0, got {value}"
                ));
            }
        }
        parse_start_ms(&self.start_time).map_err(|e| {
            format!(
                "generate option `start_time` must be \"now\" or an RFC 3339 timestamp such \
                 as \"2018-10-10T20:19:24Z\", got {:?}: {e}",
                self.start_time
            )
        })?;
        Ok(())
    }
}

/// The `start_time` that means the moment the generator is created.
pub const NOW: &str = "now";

/// `start_time` as Unix milliseconds; `now` is read from the clock, to the whole second.
fn parse_start_ms(s: &str) -> Result<i64, chrono::ParseError> {
    if s == NOW {
        return Ok(Utc::now().timestamp() * 1000);
    }
    Ok(DateTime::parse_from_rfc3339(s)?.timestamp_millis())
}

/// What [`TweetGenerator::next_into`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    /// Tweet id (strictly increasing across calls).
    pub id: u64,
    /// Ground truth: the text mentions "bts" as a whole word, case-insensitively.
    pub mentions_bts: bool,
    /// The tweet is in API v2 filtered-stream shape (otherwise v1.1).
    pub v2: bool,
    /// The tweet carries the wide `card`/`translations` blob.
    pub wide: bool,
    /// `created_at` as Unix milliseconds.
    pub created_at_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// Built-in corpus. Nothing here may contain "bts" (any case) except the BTS-only lists.
// ---------------------------------------------------------------------------------------------

/// Built-in corpus and lookup tables (hand-packed; rustfmt would put one item per line).
#[rustfmt::skip]
mod corpus {
    use super::{PlaceDef, place};

    pub(super) const EN_WORDS: &[&str] = &[
        "today", "finally", "can't wait", "the new album", "is out", "so proud", "of them",
        "listening to", "on repeat", "this song", "hits different", "happy", "Thanksgiving",
        "family", "dinner", "pumpkin pie", "Black Friday", "deals", "coffee", "good morning",
        "tonight", "concert", "tickets", "sold out", "again", "who else", "is watching", "live",
        "stage", "performance", "vocals", "choreo", "dance practice", "behind the scenes", "teaser",
        "comeback", "streaming party", "goals", "lol", "omg", "literally", "crying", "screaming",
        "the moment", "when", "I love", "you all", "thank you", "for everything", "we did it",
        "number one", "on the charts", "Billboard", "new record", "award", "nominated", "vote",
        "right now", "link below", "weekend", "weather", "rain", "first snow", "city lights",
        "subway", "work", "meeting", "deadline", "code review", "the bug", "is fixed", "pizza",
        "tacos", "game day", "final score", "what a goal", "new season", "episode", "anime",
        "manga", "reading", "a book", "world", "peace", "purple", "sky", "ocean", "moon", "stars",
        "dream", "forever", "young", "the best", "day ever", "so good", "honestly",
        "can we talk about", "this outfit", "the visuals", "my heart", "is full", "grateful",
    ];

    pub(super) const KO_WORDS: &[&str] = &[
        "오늘", "진짜", "너무", "좋아", "사랑해", "앨범", "노래", "무대", "콘서트", "티켓팅",
        "성공", "실패", "행복", "하루", "커피", "날씨", "추워요", "감사합니다", "축하해", "최고",
        "대박", "기다릴게", "보고 싶어", "같이", "듣자", "라이브", "방송", "뮤직비디오", "컴백",
        "음원", "차트", "1위", "투표", "해주세요", "여러분", "모두", "응원합니다", "서울", "주말",
        "야근", "퇴근", "맛집", "점심", "저녁", "ㅋㅋㅋ", "ㅠㅠ", "아미", "보라해", "첫눈", "행운",
    ];

    pub(super) const JA_WORDS: &[&str] = &[
        "今日は", "本当に", "最高", "ありがとう", "新しいアルバム", "楽しみ", "ライブ",
        "行ってきました", "感動した", "おはようございます", "お疲れ様です", "かわいい",
        "かっこいい", "泣いた", "好きすぎる", "聴いてる", "ずっと", "みんな", "応援してます",
        "東京", "大阪", "雨", "寒い", "コーヒー", "ラーメン", "美味しい", "週末", "仕事",
        "頑張ろう", "アニメ", "今期", "推し", "尊い", "待ってる", "よろしく", "チケット", "当選",
        "落選", "配信", "ドーム",
    ];

    pub(super) const ES_WORDS: &[&str] = &[
        "hoy", "por fin", "nuevo", "álbum", "canción", "me encanta", "qué bonito", "los amo",
        "gracias", "por todo", "concierto", "entradas", "agotadas", "otra vez", "mañana", "noche",
        "fiesta", "familia", "fútbol", "partido", "golazo", "increíble", "orgullosa", "de ellos",
        "escuchando", "en bucle", "mejor", "día", "vida", "amor", "corazón", "sueño", "España",
        "México", "Argentina", "¡Feliz jueves!", "¿Quién más", "está viendo?", "café", "trabajo",
        "lluvia", "frío", "calor", "playa", "música", "escenario", "baile", "voz", "premio",
        "votar", "ahora", "ya salió", "no puedo más", "qué nervios", "te quiero",
    ];

    pub(super) const AR_WORDS: &[&str] = &[
        "اليوم", "أحبكم", "شكرا", "جميل", "جدا", "أغنية", "جديدة", "ألبوم", "حفلة", "تذاكر",
        "مبروك", "صباح الخير", "مساء الخير", "رائع", "أفضل", "فرقة", "موسيقى", "نحن", "فخورين",
        "بكم", "انتظار", "قريبا", "الرياض", "دبي", "القاهرة", "عطلة", "نهاية الأسبوع", "قهوة", "حب",
        "سعادة", "أصدقاء", "العائلة", "كرة القدم", "مباراة", "هدف",
    ];

    pub(super) const EMOJI: &[&str] = &[
        "💜", "✨", "😭", "🥺", "🔥", "💯", "🎉", "🙏", "😂", "❤️", "🫶", "👀", "🎶", "🌙", "⭐",
        "💙", "🥰", "😍", "🇰🇷", "🇯🇵", "🇪🇸", "🇲🇽", "🦃", "🍂", "☕", "🎤", "📸", "🏆", "🧑‍🎤",
        "👏🏽", "💜💜💜",
    ];

    pub(super) const EN_TAGS: &[&str] = &[
        "NewMusic", "NowPlaying", "Thanksgiving", "BlackFriday", "kpop", "KPOP", "StrayKids",
        "BLACKPINK", "TWICE", "NewJeans", "SEVENTEEN", "ENHYPEN", "Grammys", "MAMA2026", "AMAs",
        "MusicMonday", "ThrowbackThursday", "GameDay", "RustLang", "100DaysOfCode",
    ];

    pub(super) const KO_TAGS: &[&str] = &[
        "케이팝", "일상", "맛집", "오늘의노래", "컴백", "음악", "kpop",
    ];

    pub(super) const JA_TAGS: &[&str] = &[
        "音楽", "今日の一枚", "推し活", "アニメ", "拡散希望", "ライブ",
    ];

    pub(super) const ES_TAGS: &[&str] = &[
        "NuevaMúsica", "Fútbol", "LaLiga", "Música", "FelizJueves", "kpop",
    ];

    pub(super) const AR_TAGS: &[&str] = &["موسيقى", "الرياض", "كرة_القدم", "كيبوب"];

    pub(super) const CASHTAGS: &[&str] = &["AAPL", "TSLA", "NVDA", "SONY", "BTC", "ETH"];

    /// Extra hashtags used only in tweets that mention BTS.
    pub(super) const BTS_TAGS: &[&str] = &[
        "BTSARMY", "BTS_twt", "JIMIN", "JungKook", "정국", "지민", "BTS2026", "방탄소년단", "ARMY",
        "BTSFESTA",
    ];

    pub(super) const EN_PUNCT: &[&str] = &[",", ".", "!", "?", "...", "!!"];

    pub(super) const KO_PUNCT: &[&str] = &[".", "!", "~", "..", "!!"];

    pub(super) const JA_PUNCT: &[&str] = &["、", "。", "！", "…", "♪"];

    pub(super) const ES_PUNCT: &[&str] = &[",", ".", "!", "...", "!!"];

    pub(super) const AR_PUNCT: &[&str] = &["،", ".", "!", "؟"];

    pub(super) const NAME_PARTS: &[&str] = &[
        "민지", "서연", "지우", "하은", "윤아", "さくら", "ゆき", "はると", "María", "José",
        "Lucía", "Carlos", "Valentina", "ليلى", "محمد", "نور", "Sarah", "Emily", "Jess", "Alex",
        "Mia", "Noah", "Olivia", "Liam", "Ana", "Hana", "Yuna", "Dani",
    ];

    pub(super) const NAME_DECOR: &[&str] = &[
        "", "", "", "", " ✨", " 💜", " 🌙", " | fan account", " 🐰", " ⁷", " (slow)", " 🎧",
    ];

    pub(super) const SCREEN_BASES: &[&str] = &[
        "minji", "seoyeon", "jiwoo", "haeun", "yuna", "sakura", "yuki", "haruto", "maria", "jose",
        "lucia", "carlos", "vale", "layla", "mohamed", "noor", "sarah", "emily", "jess", "alex",
        "mia", "noah", "olivia", "liam", "ana", "hana", "dani", "purple", "moon", "star", "galaxy",
        "kookie", "army", "borahae", "daily", "music", "kpop", "stan", "fan", "news", "updates",
        "ot7", "sunny", "coffee", "dream",
    ];

    pub(super) const LOCATIONS: &[&str] = &[
        "Seoul, Republic of Korea", "서울", "東京", "大阪", "Madrid, España", "CDMX",
        "Buenos Aires", "الرياض", "Dubai", "Los Angeles, CA", "New York, NY", "London", "Manila",
        "Jakarta", "São Paulo", "she/her", "🌙", "in my room", "everywhere", "Earth", "💜",
    ];

    pub(super) const BIO_PARTS: &[&str] = &[
        "fan account", "music lover", "coffee first", "he/him", "she/her", "they/them", "not a bot",
        "views are my own", "student", "software engineer", "dreamer", "K-pop & anime", "🇰🇷🇯🇵🇪🇸",
        "음악이 좋아", "毎日ゆるく", "amo la música", "أحب الموسيقى", "photography",
        "streaming daily", "fan de la música", "✨ good vibes only ✨", "1999", "ot7", "아미",
        "推し活中",
    ];

    pub(super) const PROFILE_COLORS: &[&str] = &[
        "1DA1F2", "F5F8FA", "C0DEED", "DDEEF6", "333333", "000000", "FFFFFF", "9266CC", "FF691F",
        "ABB8C2", "E81C4F", "19CF86", "3B94D9", "91D2FA",
    ];

    pub(super) const SOURCES: &[&str] = &[
        "<a href=\"http://twitter.com/download/iphone\" rel=\"nofollow\">Twitter for iPhone</a>",
        "<a href=\"http://twitter.com/download/android\" rel=\"nofollow\">Twitter for Android</a>",
        "<a href=\"https://mobile.twitter.com\" rel=\"nofollow\">Twitter Web App</a>",
        "<a href=\"http://twitter.com/#!/download/ipad\" rel=\"nofollow\">Twitter for iPad</a>",
        "<a href=\"https://about.twitter.com/products/tweetdeck\" rel=\"nofollow\">TweetDeck</a>",
        "<a href=\"https://www.hootsuite.com\" rel=\"nofollow\">Hootsuite Inc.</a>",
    ];

    pub(super) const PLACES: &[PlaceDef] = &[
        place("Seoul", "Seoul, Republic of Korea", "Republic of Korea", "KR", "city", [126_978_000, 37_566_000, 180_000, 120_000]),
        place("Busan", "Busan, Republic of Korea", "Republic of Korea", "KR", "city", [129_075_000, 35_179_000, 150_000, 120_000]),
        place("Shibuya-ku", "Shibuya-ku, Tokyo", "Japan", "JP", "city", [139_702_000, 35_664_000, 30_000, 30_000]),
        place("Osaka-shi", "Osaka-shi, Osaka", "Japan", "JP", "city", [135_502_000, 34_693_000, 80_000, 70_000]),
        place("Madrid", "Madrid, España", "España", "ES", "city", [-3_703_000, 40_416_000, 150_000, 120_000]),
        place("Ciudad de México", "Ciudad de México, México", "México", "MX", "city", [-99_133_000, 19_432_000, 200_000, 200_000]),
        place("Buenos Aires", "Buenos Aires, Argentina", "Argentina", "AR", "city", [-58_381_000, -34_603_000, 120_000, 100_000]),
        place("Riyadh", "Riyadh, Kingdom of Saudi Arabia", "Kingdom of Saudi Arabia", "SA", "city", [46_675_000, 24_713_000, 250_000, 250_000]),
        place("Dubai", "Dubai, United Arab Emirates", "United Arab Emirates", "AE", "city", [55_270_000, 25_204_000, 200_000, 150_000]),
        place("Los Angeles", "Los Angeles, CA", "United States", "US", "city", [-118_243_000, 34_052_000, 250_000, 200_000]),
        place("Manhattan", "Manhattan, NY", "United States", "US", "city", [-73_971_000, 40_783_000, 60_000, 120_000]),
        place("London", "London, England", "United Kingdom", "GB", "city", [-127_000, 51_507_000, 250_000, 150_000]),
        place("Manila", "Manila, National Capital Region", "Republic of the Philippines", "PH", "city", [120_984_000, 14_599_000, 50_000, 50_000]),
        place("Jakarta", "Jakarta, Indonesia", "Indonesia", "ID", "city", [106_845_000, -6_208_000, 150_000, 150_000]),
        place("São Paulo", "São Paulo, Brasil", "Brasil", "BR", "city", [-46_633_000, -23_550_000, 250_000, 250_000]),
        place("SoFi Stadium", "SoFi Stadium", "United States", "US", "poi", [-118_339_000, 33_953_000, 1_000, 1_000]),
    ];

    /// Filtered-stream rules: (id, tag). The first is the BTS rule.
    pub(super) const BTS_RULE: (&str, &str) = ("1861234567890123000", "bts");

    pub(super) const OTHER_RULES: &[(&str, &str)] = &[
        ("1861234567890123001", "kpop"),
        ("1861234567890123002", "music"),
        ("1861234567890123003", "thanksgiving"),
        ("1861234567890123004", "anime"),
        ("1861234567890123005", "futbol"),
        ("1861234567890123006", "news"),
    ];

    /// v2 context annotations: (domain id, domain name, domain description, entity id, entity name).
    /// Entries from `CTX_BTS_FROM` on are used only for tweets that mention BTS.
    pub(super) const CTX: &[(&str, &str, &str, &str, &str)] = &[
        ("131", "Unified Twitter Taxonomy", "A taxonomy view into the Semantic Core knowledge graph",
         "847868745150119936", "Home & family"),
        ("65", "Interests and Hobbies Vertical",
         "Top level interests and hobbies groupings, like Food or Travel", "847528391163092993", "Food"),
        ("3", "TV Shows", "Television shows from around the world", "10000607734", "Anime"),
        ("11", "Sport", "Types of Sports, like Soccer and Basketball", "847888632711061504", "Soccer"),
        ("29", "Events [Entity Service]", "Real world events.", "1594001124018749440",
         "Thanksgiving 2026"),
        ("55", "Music Genre", "A category for a musical style, like Pop, Rock, or Rap",
         "810938279801470977", "K-pop"),
        ("54", "Musician", "A musician that is listed on the charts", "1220701888179359745", "BTS"),
        ("10", "Person", "Named people in the world like Nelson Mandela", "1220701888179359746",
         "Jimin"),
    ];

    pub(super) const CTX_BTS_FROM: usize = 6;

    pub(super) const LOCALES: &[&str] = &[
        "af", "ar", "ar-SA", "bg", "bn", "ca", "cs", "cy", "da", "de", "de-AT", "de-CH", "el", "en",
        "en-AU", "en-CA", "en-GB", "en-IN", "en-US", "es", "es-419", "es-AR", "es-ES", "es-MX",
        "et", "eu", "fa", "fi", "fil", "fr", "fr-CA", "ga", "gl", "gu", "he", "hi", "hr", "hu",
        "id", "it", "ja", "kn", "ko", "lt", "lv", "ml", "mr", "ms", "nb", "nl", "pl", "pt", "pt-BR",
        "pt-PT", "ro", "ru", "sk", "sl", "sr", "sv", "sw", "ta", "te", "th", "tr", "uk", "ur", "vi",
        "zh", "zh-CN", "zh-HK", "zh-TW", "zu",
    ];

    pub(super) const CARD_COMPONENTS: &[&str] = &[
        "player", "thumbnail", "summary_photo", "app", "promo", "header", "footer", "button",
        "media", "carousel", "poll", "event", "site", "creator", "description", "title", "domain",
        "vanity_url", "details", "cta",
    ];

    pub(super) const CARD_ATTRS: &[&str] = &[
        "image_large", "image_small", "image_original", "image_color", "url", "title", "text",
        "alt", "label", "id", "count", "enabled",
    ];

    pub(super) const TRANSLATION_ENGINES: &[&str] = &["gmt", "nmt-v4", "nmt-v5", "llm-2026-10"];
}

use corpus::*;

struct PlaceDef {
    name: &'static str,
    full_name: &'static str,
    country: &'static str,
    country_code: &'static str,
    place_type: &'static str,
    /// Centre and half extents in micro-degrees.
    lon: i64,
    lat: i64,
    half_w: i64,
    half_h: i64,
}

const fn place(
    name: &'static str,
    full_name: &'static str,
    country: &'static str,
    country_code: &'static str,
    place_type: &'static str,
    center_and_half: [i64; 4],
) -> PlaceDef {
    PlaceDef {
        name,
        full_name,
        country,
        country_code,
        place_type,
        lon: center_and_half[0],
        lat: center_and_half[1],
        half_w: center_and_half[2],
        half_h: center_and_half[3],
    }
}

/// Alphabet of t.co codes, media keys and image names. It has no `s`/`S`, so random codes can
/// never spell "bts".
const CODE_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRTUVWXYZabcdefghijklmnopqrtuvwxyz0123456789";

/// Twitter's snowflake epoch (2010-11-04T01:42:54.657Z).
const TWEPOCH_MS: i64 = 1_288_834_974_657;
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Number of special (BTS) accounts at the start of the user table.
const SPECIAL_USERS: usize = 2;
/// Number of ordinary accounts generated per generator.
const POOL_USERS: usize = 2048;

// ---------------------------------------------------------------------------------------------
// Randomness helpers
// ---------------------------------------------------------------------------------------------

struct Rand(ChaCha8Rng);

impl Rand {
    fn f(&mut self) -> f64 {
        self.0.random::<f64>()
    }
    fn chance(&mut self, p: f64) -> bool {
        self.f() < p
    }
    fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        self.0.random_range(lo..=hi_inclusive)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }
    /// Roughly log-uniform count in `0..10^max_exp`.
    fn log_count(&mut self, max_exp: f64) -> u64 {
        (10f64.powf(self.f() * max_exp) - 1.0) as u64
    }
    /// Appends `len` random characters from [`CODE_ALPHABET`].
    fn code(&mut self, out: &mut String, len: usize) {
        for _ in 0..len {
            out.push(CODE_ALPHABET[self.below(CODE_ALPHABET.len())] as char);
        }
    }
    /// A delay in milliseconds, log-distributed between ~1 s and ~3 days.
    fn delay_ms(&mut self) -> i64 {
        1_000 + (10f64.powf(self.f() * 5.4) * 1_000.0) as i64
    }
}

fn snowflake(ms: i64, low_bits: u64) -> u64 {
    let since = (ms.saturating_sub(TWEPOCH_MS)).clamp(0, (1i64 << 41) - 1) as u64;
    (since << 22) | (low_bits & 0x3f_ffff)
}

/// SplitMix64 finaliser, used to derive stable codes from ids without touching the rng.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes a deterministic `len`-character code derived from `seed`.
fn derived_code(o: &mut Vec<u8>, seed: u64, len: usize) {
    let mut x = mix64(seed);
    for i in 0..len {
        if i % 8 == 7 {
            x = mix64(x);
        }
        o.push(CODE_ALPHABET[(x % CODE_ALPHABET.len() as u64) as usize]);
        x /= CODE_ALPHABET.len() as u64;
    }
}

const SALT_WEB: u64 = 0x5745_4201;
const SALT_PERMALINK: u64 = 0x5045_524d;
const SALT_PIC: u64 = 0x5049_4301;

fn contains_bts(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w.eq_ignore_ascii_case(b"bts"))
}

// ---------------------------------------------------------------------------------------------
// JSON writing helpers (hand-written for throughput)
// ---------------------------------------------------------------------------------------------

/// Writes a separating comma unless the buffer is at the start of an object or array.
#[inline]
fn comma(o: &mut Vec<u8>) {
    if let Some(&b) = o.last()
        && b != b'{'
        && b != b'['
    {
        o.push(b',');
    }
}

#[inline]
fn key(o: &mut Vec<u8>, k: &str) {
    comma(o);
    o.push(b'"');
    o.extend_from_slice(k.as_bytes());
    o.extend_from_slice(b"\":");
}

/// Appends `s` JSON-escaped, without surrounding quotes.
fn escape(o: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        o.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            o.extend_from_slice(b"\\u00");
            o.push(HEX[(b >> 4) as usize]);
            o.push(HEX[(b & 15) as usize]);
        } else {
            o.extend_from_slice(esc);
        }
        start = i + 1;
    }
    o.extend_from_slice(&bytes[start..]);
}

#[inline]
fn str_val(o: &mut Vec<u8>, s: &str) {
    o.push(b'"');
    escape(o, s);
    o.push(b'"');
}

#[inline]
fn kstr(o: &mut Vec<u8>, k: &str, v: &str) {
    key(o, k);
    str_val(o, v);
}

fn w_u64(o: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    o.extend_from_slice(&buf[i..]);
}

fn w_i64(o: &mut Vec<u8>, v: i64) {
    if v < 0 {
        o.push(b'-');
    }
    w_u64(o, v.unsigned_abs());
}

#[inline]
fn knum(o: &mut Vec<u8>, k: &str, v: u64) {
    key(o, k);
    w_u64(o, v);
}

/// `"k":"123"`
#[inline]
fn kidstr(o: &mut Vec<u8>, k: &str, v: u64) {
    key(o, k);
    o.push(b'"');
    w_u64(o, v);
    o.push(b'"');
}

#[inline]
fn kbool(o: &mut Vec<u8>, k: &str, v: bool) {
    key(o, k);
    o.extend_from_slice(if v { b"true" } else { b"false" });
}

#[inline]
fn knull(o: &mut Vec<u8>, k: &str) {
    key(o, k);
    o.extend_from_slice(b"null");
}

#[inline]
fn kopt_str(o: &mut Vec<u8>, k: &str, v: Option<&str>) {
    match v {
        Some(v) => kstr(o, k, v),
        None => knull(o, k),
    }
}

#[inline]
fn kobj(o: &mut Vec<u8>, k: &str) {
    key(o, k);
    o.push(b'{');
}

#[inline]
fn karr(o: &mut Vec<u8>, k: &str) {
    key(o, k);
    o.push(b'[');
}

/// Starts an object element inside an array.
#[inline]
fn elem_obj(o: &mut Vec<u8>) {
    comma(o);
    o.push(b'{');
}

/// `[a,b]`
fn pair(o: &mut Vec<u8>, a: u64, b: u64) {
    o.push(b'[');
    w_u64(o, a);
    o.push(b',');
    w_u64(o, b);
    o.push(b']');
}

/// Writes micro-degrees as a decimal number with six fractional digits.
fn w_micro(o: &mut Vec<u8>, v: i64) {
    if v < 0 {
        o.push(b'-');
    }
    let a = v.unsigned_abs();
    w_u64(o, a / 1_000_000);
    o.push(b'.');
    let frac = a % 1_000_000;
    let mut digits = [b'0'; 6];
    let mut f = frac;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (f % 10) as u8;
        f /= 10;
    }
    o.extend_from_slice(&digits);
}

/// Writes a value in thousandths as `0.xyz`.
fn w_milli(o: &mut Vec<u8>, v: u64) {
    w_u64(o, v / 1000);
    o.push(b'.');
    let f = v % 1000;
    o.push(b'0' + (f / 100) as u8);
    o.push(b'0' + (f / 10 % 10) as u8);
    o.push(b'0' + (f % 10) as u8);
}

fn two(o: &mut Vec<u8>, v: u32) {
    o.push(b'0' + (v / 10 % 10) as u8);
    o.push(b'0' + (v % 10) as u8);
}

fn year(o: &mut Vec<u8>, y: i32) {
    if (0..10_000).contains(&y) {
        let y = y as u32;
        two(o, y / 100);
        two(o, y % 100);
    } else {
        w_i64(o, i64::from(y));
    }
}

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

/// `"Wed Oct 10 20:19:24 +0000 2018"`
fn w_v1_date(o: &mut Vec<u8>, ms: i64) {
    let t = utc(ms);
    o.push(b'"');
    o.extend_from_slice(WEEKDAYS[t.weekday().num_days_from_monday() as usize].as_bytes());
    o.push(b' ');
    o.extend_from_slice(MONTHS[t.month0() as usize].as_bytes());
    o.push(b' ');
    two(o, t.day());
    o.push(b' ');
    two(o, t.hour());
    o.push(b':');
    two(o, t.minute());
    o.push(b':');
    two(o, t.second());
    o.extend_from_slice(b" +0000 ");
    year(o, t.year());
    o.push(b'"');
}

/// `"2026-11-26T00:00:00.000Z"`
fn w_iso(o: &mut Vec<u8>, ms: i64) {
    let t = utc(ms);
    o.push(b'"');
    year(o, t.year());
    o.push(b'-');
    two(o, t.month());
    o.push(b'-');
    two(o, t.day());
    o.push(b'T');
    two(o, t.hour());
    o.push(b':');
    two(o, t.minute());
    o.push(b':');
    two(o, t.second());
    o.push(b'.');
    let milli = t.timestamp_subsec_millis();
    o.push(b'0' + (milli / 100 % 10) as u8);
    two(o, milli % 100);
    o.extend_from_slice(b"Z\"");
}

// ---------------------------------------------------------------------------------------------
// Data model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lang {
    En,
    Ko,
    Ja,
    Es,
    Ar,
    /// Emoji-only tweets.
    Und,
}

impl Lang {
    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ko => "ko",
            Lang::Ja => "ja",
            Lang::Es => "es",
            Lang::Ar => "ar",
            Lang::Und => "und",
        }
    }
    fn words(self) -> &'static [&'static str] {
        match self {
            Lang::En | Lang::Und => EN_WORDS,
            Lang::Ko => KO_WORDS,
            Lang::Ja => JA_WORDS,
            Lang::Es => ES_WORDS,
            Lang::Ar => AR_WORDS,
        }
    }
    fn tags(self) -> &'static [&'static str] {
        match self {
            Lang::En | Lang::Und => EN_TAGS,
            Lang::Ko => KO_TAGS,
            Lang::Ja => JA_TAGS,
            Lang::Es => ES_TAGS,
            Lang::Ar => AR_TAGS,
        }
    }
    fn punct(self) -> &'static [&'static str] {
        match self {
            Lang::En | Lang::Und => EN_PUNCT,
            Lang::Ko => KO_PUNCT,
            Lang::Ja => JA_PUNCT,
            Lang::Es => ES_PUNCT,
            Lang::Ar => AR_PUNCT,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Hashtag,
    Cashtag,
    /// Index into the user table.
    Mention(u32),
    /// Index into `Status::links`.
    Url(u16),
    Media,
}

/// An entity, with char offsets (for indices) and byte offsets (for slicing).
#[derive(Clone, Copy, Debug)]
struct Ent {
    kind: Kind,
    start: u32,
    end: u32,
    bstart: u32,
    bend: u32,
}

#[derive(Clone)]
struct Link {
    expanded: String,
    display: String,
}

struct MediaItem {
    id: u64,
    code: String,
    w: u32,
    h: u32,
}

struct Media {
    video: bool,
    duration_ms: u64,
    items: Vec<MediaItem>,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    retweet: u64,
    favorite: u64,
    reply: u64,
    quote: u64,
    bookmark: u64,
    impression: u64,
}

struct Status {
    id: u64,
    ms: i64,
    user: u32,
    lang: Lang,
    source: u8,
    bts: bool,
    /// Full text (for retweets: the already truncated "RT @x: …" text).
    text: String,
    chars: u32,
    ents: Vec<Ent>,
    links: Vec<Link>,
    /// Char offset just past the BTS mention (0 when none); truncation never cuts before it.
    bts_end: u32,
    display_start: u32,
    display_end: u32,
    /// (status id, user) replied to.
    reply_to: Option<(u64, u32)>,
    conversation_id: u64,
    media: Option<Media>,
    place: Option<u8>,
    /// Exact point (lon, lat) in micro-degrees.
    point: Option<(i64, i64)>,
    counts: Counts,
    sensitive: bool,
    /// Indices into [`CTX`], `u8::MAX` for none.
    ctx: [u8; 2],
    quoted: Option<Box<Status>>,
    retweeted: Option<Box<Status>>,
}

impl Status {
    fn new(id: u64, ms: i64, user: u32, lang: Lang, bts: bool) -> Self {
        Status {
            id,
            ms,
            user,
            lang,
            source: 0,
            bts,
            text: String::with_capacity(160),
            chars: 0,
            ents: Vec::new(),
            links: Vec::new(),
            bts_end: 0,
            display_start: 0,
            display_end: 0,
            reply_to: None,
            conversation_id: id,
            media: None,
            place: None,
            point: None,
            counts: Counts::default(),
            sensitive: false,
            ctx: [u8::MAX; 2],
            quoted: None,
            retweeted: None,
        }
    }

    fn push(&mut self, t: &str) {
        self.text.push_str(t);
        self.chars += t.chars().count() as u32;
    }

    /// A space, unless at the start or right after whitespace.
    fn sep(&mut self) {
        if !matches!(self.text.as_bytes().last(), None | Some(b' ') | Some(b'\n')) {
            self.text.push(' ');
            self.chars += 1;
        }
    }

    /// Appends `prefix` + `body` as an entity of `kind`.
    fn ent(&mut self, prefix: &str, body: &str, kind: Kind) {
        let (start, bstart) = (self.chars, self.text.len() as u32);
        self.push(prefix);
        self.push(body);
        self.ents.push(Ent {
            kind,
            start,
            end: self.chars,
            bstart,
            bend: self.text.len() as u32,
        });
    }

    fn slice(&self, e: &Ent, skip_prefix: bool) -> &str {
        let s = e.bstart as usize + usize::from(skip_prefix);
        &self.text[s..e.bend as usize]
    }

    fn has_links(&self) -> bool {
        self.ents
            .iter()
            .any(|e| matches!(e.kind, Kind::Url(_) | Kind::Media))
    }

    /// Quoted status of this tweet, or of the retweeted one.
    fn effective_quote(&self) -> Option<&Status> {
        self.quoted
            .as_deref()
            .or_else(|| self.retweeted.as_ref().and_then(|r| r.quoted.as_deref()))
    }
}

/// Returns `(chars, bytes)` of the prefix of `text` to keep when cutting at `limit` chars:
/// never inside an entity, optionally backed off to a word boundary, never before `min_keep`.
fn prefix_cut(text: &str, ents: &[Ent], limit: u32, min_keep: u32, backoff: bool) -> (u32, usize) {
    let mut k = limit;
    for e in ents {
        if e.start < k && k < e.end {
            k = e.start;
        }
    }
    if backoff {
        let mut last_ws = None;
        for (ci, ch) in text.chars().enumerate() {
            let ci = ci as u32;
            if ci > k {
                break;
            }
            if ci >= min_keep && (ch == ' ' || ch == '\n') {
                last_ws = Some(ci);
            }
        }
        if let Some(p) = last_ws
            && p + 24 >= k
        {
            k = p;
        }
    }
    let k = k.max(min_keep);
    let bytes = text
        .char_indices()
        .nth(k as usize)
        .map_or(text.len(), |(b, _)| b);
    (k, bytes)
}

struct User {
    id: u64,
    screen_name: String,
    name: String,
    /// Pre-serialised v1.1 user object.
    v1: Vec<u8>,
    /// Pre-serialised v2 user object.
    v2: Vec<u8>,
}

struct UserSpec<'a> {
    id: u64,
    screen_name: String,
    name: String,
    location: Option<&'a str>,
    description: Option<String>,
    url: Option<String>,
    verified: bool,
    followers: u64,
    friends: u64,
    listed: u64,
    favourites: u64,
    statuses: u64,
    media: u64,
    created_ms: i64,
    image_dir: u64,
    image_code: String,
    banner: Option<u64>,
    colors: [&'a str; 5],
    default_profile: bool,
    geo_enabled: bool,
}

impl UserSpec<'_> {
    fn build(self) -> User {
        let mut v1 = Vec::with_capacity(1400);
        let o = &mut v1;
        o.push(b'{');
        knum(o, "id", self.id);
        kidstr(o, "id_str", self.id);
        kstr(o, "name", &self.name);
        kstr(o, "screen_name", &self.screen_name);
        kopt_str(o, "location", self.location);
        kopt_str(o, "url", self.url.as_deref());
        kopt_str(o, "description", self.description.as_deref());
        kstr(o, "translator_type", "none");
        kbool(o, "protected", false);
        kbool(o, "verified", self.verified);
        knum(o, "followers_count", self.followers);
        knum(o, "friends_count", self.friends);
        knum(o, "listed_count", self.listed);
        knum(o, "favourites_count", self.favourites);
        knum(o, "statuses_count", self.statuses);
        key(o, "created_at");
        w_v1_date(o, self.created_ms);
        knull(o, "utc_offset");
        knull(o, "time_zone");
        kbool(o, "geo_enabled", self.geo_enabled);
        knull(o, "lang");
        kbool(o, "contributors_enabled", false);
        kbool(o, "is_translator", false);
        kstr(o, "profile_background_color", self.colors[0]);
        kstr(o, "profile_background_image_url", "");
        kstr(o, "profile_background_image_url_https", "");
        kbool(o, "profile_background_tile", false);
        kstr(o, "profile_link_color", self.colors[1]);
        kstr(o, "profile_sidebar_border_color", self.colors[2]);
        kstr(o, "profile_sidebar_fill_color", self.colors[3]);
        kstr(o, "profile_text_color", self.colors[4]);
        kbool(o, "profile_use_background_image", true);
        for (k, scheme) in [
            ("profile_image_url", "http"),
            ("profile_image_url_https", "https"),
        ] {
            key(o, k);
            self.image_url(o, scheme);
        }
        if let Some(b) = self.banner {
            key(o, "profile_banner_url");
            o.extend_from_slice(b"\"https://pbs.twimg.com/profile_banners/");
            w_u64(o, self.id);
            o.push(b'/');
            w_u64(o, b);
            o.push(b'"');
        }
        kbool(o, "default_profile", self.default_profile);
        kbool(o, "default_profile_image", false);
        knull(o, "following");
        knull(o, "follow_request_sent");
        knull(o, "notifications");
        karr(o, "withheld_in_countries");
        o.push(b']');
        o.push(b'}');

        let mut v2 = Vec::with_capacity(600);
        let o = &mut v2;
        o.push(b'{');
        kidstr(o, "id", self.id);
        kstr(o, "name", &self.name);
        kstr(o, "username", &self.screen_name);
        key(o, "created_at");
        w_iso(o, self.created_ms);
        kstr(o, "description", self.description.as_deref().unwrap_or(""));
        if let Some(l) = self.location {
            kstr(o, "location", l);
        }
        kstr(o, "url", self.url.as_deref().unwrap_or(""));
        kbool(o, "verified", self.verified);
        kstr(
            o,
            "verified_type",
            if self.verified { "blue" } else { "none" },
        );
        kbool(o, "protected", false);
        key(o, "profile_image_url");
        self.image_url(o, "https");
        kobj(o, "public_metrics");
        knum(o, "followers_count", self.followers);
        knum(o, "following_count", self.friends);
        knum(o, "tweet_count", self.statuses);
        knum(o, "listed_count", self.listed);
        knum(o, "like_count", self.favourites);
        knum(o, "media_count", self.media);
        o.push(b'}');
        o.push(b'}');

        User {
            id: self.id,
            screen_name: self.screen_name,
            name: self.name,
            v1,
            v2,
        }
    }

    fn image_url(&self, o: &mut Vec<u8>, scheme: &str) {
        o.push(b'"');
        o.extend_from_slice(scheme.as_bytes());
        o.extend_from_slice(b"://pbs.twimg.com/profile_images/");
        w_u64(o, self.image_dir);
        o.push(b'/');
        o.extend_from_slice(self.image_code.as_bytes());
        o.extend_from_slice(b"_normal.jpg\"");
    }
}

struct Place {
    def: &'static PlaceDef,
    v1: Vec<u8>,
    v2: Vec<u8>,
    id: String,
}

impl Place {
    fn build(idx: usize, def: &'static PlaceDef) -> Place {
        let id = format!("{:016x}", mix64(0x504c_4143_4500 + idx as u64));
        let (w, e) = (def.lon - def.half_w, def.lon + def.half_w);
        let (s, n) = (def.lat - def.half_h, def.lat + def.half_h);
        let point = |o: &mut Vec<u8>, lon: i64, lat: i64| {
            comma(o);
            o.push(b'[');
            w_micro(o, lon);
            o.push(b',');
            w_micro(o, lat);
            o.push(b']');
        };
        let mut v1 = Vec::with_capacity(512);
        let o = &mut v1;
        o.push(b'{');
        kstr(o, "id", &id);
        key(o, "url");
        o.extend_from_slice(b"\"https://api.twitter.com/1.1/geo/id/");
        o.extend_from_slice(id.as_bytes());
        o.extend_from_slice(b".json\"");
        kstr(o, "place_type", def.place_type);
        kstr(o, "name", def.name);
        kstr(o, "full_name", def.full_name);
        kstr(o, "country_code", def.country_code);
        kstr(o, "country", def.country);
        kobj(o, "bounding_box");
        kstr(o, "type", "Polygon");
        karr(o, "coordinates");
        o.push(b'[');
        point(o, w, s);
        point(o, w, n);
        point(o, e, n);
        point(o, e, s);
        o.extend_from_slice(b"]]}");
        kobj(o, "attributes");
        o.extend_from_slice(b"}}");

        let mut v2 = Vec::with_capacity(300);
        let o = &mut v2;
        o.push(b'{');
        kstr(o, "id", &id);
        kstr(o, "full_name", def.full_name);
        kstr(o, "name", def.name);
        kstr(o, "country", def.country);
        kstr(o, "country_code", def.country_code);
        kstr(o, "place_type", def.place_type);
        kobj(o, "geo");
        kstr(o, "type", "Feature");
        karr(o, "bbox");
        for (i, v) in [w, s, e, n].into_iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            w_micro(o, v);
        }
        o.push(b']');
        kobj(o, "properties");
        o.extend_from_slice(b"}}}");
        Place { def, v1, v2, id }
    }
}

// ---------------------------------------------------------------------------------------------
// Generator
// ---------------------------------------------------------------------------------------------

/// Deterministic synthetic tweet stream; see the module docs.
pub struct TweetGenerator {
    r: Rand,
    bts_share: f64,
    v2_share: f64,
    retweet_share: f64,
    quote_share: f64,
    wide_share: f64,
    start_ms: i64,
    interval_ms: u64,
    index: u64,
    last_id: u64,
    users: Vec<User>,
    places: Vec<Place>,
    /// Scratch list of user indices for v2 `includes.users`.
    scratch_users: Vec<u32>,
}

impl TweetGenerator {
    /// Creates a generator. `opts` is assumed validated; an unparsable `start_time` falls back to
    /// now.
    pub fn new(opts: &GenerateOptions) -> Self {
        let start_ms =
            parse_start_ms(&opts.start_time).unwrap_or_else(|_| Utc::now().timestamp() * 1000);
        let mut r = Rand(ChaCha8Rng::seed_from_u64(opts.seed));
        let mut users = Vec::with_capacity(SPECIAL_USERS + POOL_USERS);
        users.extend(special_users());
        for _ in 0..POOL_USERS {
            users.push(random_user(&mut r));
        }
        let places = PLACES
            .iter()
            .enumerate()
            .map(|(i, d)| Place::build(i, d))
            .collect();
        TweetGenerator {
            r,
            bts_share: opts.bts_share,
            v2_share: opts.v2_share,
            retweet_share: opts.retweet_share,
            quote_share: opts.quote_share,
            wide_share: opts.wide_share,
            start_ms,
            interval_ms: opts.interval_ms,
            index: 0,
            last_id: 0,
            users,
            places,
            scratch_users: Vec::with_capacity(16),
        }
    }

    /// Appends one tweet's JSON (a single line, no newline) to `out`, which is cleared first.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Generated {
        out.clear();
        let n = self.index;
        self.index += 1;
        let offset = (i128::from(n) * i128::from(self.interval_ms)).min(i128::from(i64::MAX));
        let ms = self.start_ms.saturating_add(offset as i64);

        let bts = self.r.chance(self.bts_share);
        let v2 = self.r.chance(self.v2_share);
        let retweet = self.r.chance(self.retweet_share);
        let quote = self.r.chance(self.quote_share);
        let wide = self.r.chance(self.wide_share);

        let low = (self.r.range(0, 1023) << 12) | (n & 0xfff);
        let mut id = snowflake(ms, low);
        if id <= self.last_id {
            id = self.last_id + 1;
        }
        self.last_id = id;

        let author = self.pool_user();
        let st = if retweet {
            let ims = ms - self.r.delay_ms();
            let iid = snowflake(ims, self.r.range(0, (1 << 22) - 1));
            let iauthor = self.author_for(bts, 0.3);
            let inner = self.make_status(iid, ims, bts, iauthor, quote, true);
            self.make_retweet(id, ms, author, inner)
        } else {
            self.make_status(id, ms, bts, author, quote, false)
        };

        if v2 {
            self.write_v2(out, &st, wide);
        } else {
            out.push(b'{');
            self.write_v1_fields(out, &st, true);
            if wide {
                self.write_wide(out, st.lang);
            }
            out.push(b'}');
        }
        Generated {
            id,
            mentions_bts: bts,
            v2,
            wide,
            created_at_ms: ms,
        }
    }

    fn pool_user(&mut self) -> u32 {
        (SPECIAL_USERS + self.r.below(POOL_USERS)) as u32
    }

    fn special_user(&mut self) -> u32 {
        self.r.below(SPECIAL_USERS) as u32
    }

    /// Author of a status: a BTS account with probability `p` when it mentions BTS.
    fn author_for(&mut self, bts: bool, p: f64) -> u32 {
        if bts && self.r.chance(p) {
            self.special_user()
        } else {
            self.pool_user()
        }
    }

    fn random_lang(&mut self) -> Lang {
        let x = self.r.f();
        match x {
            x if x < 0.36 => Lang::En,
            x if x < 0.56 => Lang::Ko,
            x if x < 0.71 => Lang::Ja,
            x if x < 0.86 => Lang::Es,
            x if x < 0.96 => Lang::Ar,
            _ => Lang::Und,
        }
    }

    fn random_source(&mut self) -> u8 {
        let x = self.r.f();
        match x {
            x if x < 0.45 => 0,
            x if x < 0.80 => 1,
            x if x < 0.93 => 2,
            _ => 3 + self.r.below(SOURCES.len() - 3) as u8,
        }
    }

    fn make_status(
        &mut self,
        id: u64,
        ms: i64,
        bts: bool,
        author: u32,
        quote: bool,
        nested: bool,
    ) -> Status {
        let lang = self.random_lang();
        let mut st = Status::new(id, ms, author, lang, bts);
        st.source = self.random_source();
        let reply_user = if !quote && self.r.chance(0.1) {
            let u = self.pool_user();
            let rms = ms - self.r.delay_ms();
            let rid = snowflake(rms, self.r.range(0, (1 << 22) - 1));
            st.reply_to = Some((rid, u));
            st.conversation_id = if self.r.chance(0.6) {
                rid
            } else {
                snowflake(rms - self.r.delay_ms(), self.r.range(0, (1 << 22) - 1))
            };
            Some(u)
        } else {
            None
        };
        let with_media = self.r.chance(0.15);
        self.fill_text(&mut st, reply_user, with_media);
        if with_media {
            st.media = Some(self.make_media(ms));
        }
        if self.r.chance(0.06) {
            let p = self.r.below(self.places.len());
            st.place = Some(p as u8);
            if self.r.chance(0.3) {
                let d = self.places[p].def;
                let lon = d.lon - d.half_w + self.r.range(0, 2 * d.half_w as u64) as i64;
                let lat = d.lat - d.half_h + self.r.range(0, 2 * d.half_h as u64) as i64;
                st.point = Some((lon, lat));
            }
        }
        st.counts = if nested {
            let retweet = self.r.log_count(5.0);
            Counts {
                retweet,
                favorite: retweet * self.r.range(2, 8) + self.r.log_count(3.5),
                reply: self.r.log_count(3.5),
                quote: self.r.log_count(3.0),
                bookmark: self.r.log_count(3.0),
                impression: retweet * self.r.range(20, 200) + self.r.log_count(4.0),
            }
        } else if self.r.chance(0.1) {
            Counts {
                retweet: self.r.range(0, 3),
                favorite: self.r.range(0, 9),
                reply: self.r.range(0, 2),
                quote: 0,
                bookmark: self.r.range(0, 1),
                impression: self.r.range(1, 60),
            }
        } else {
            Counts::default()
        };
        st.sensitive = st.has_links() && self.r.chance(0.03);
        if self.r.chance(0.4) {
            let pool = if bts { CTX.len() } else { CTX_BTS_FROM };
            st.ctx[0] = self.r.below(pool) as u8;
            if self.r.chance(0.4) {
                let second = self.r.below(pool) as u8;
                if second != st.ctx[0] {
                    st.ctx[1] = second;
                }
            }
        }
        if quote {
            let qms = ms - self.r.delay_ms();
            let qid = snowflake(qms, self.r.range(0, (1 << 22) - 1));
            let qbts = bts && self.r.chance(0.5);
            let qauthor = self.author_for(qbts, 0.3);
            st.quoted = Some(Box::new(
                self.make_status(qid, qms, qbts, qauthor, false, true),
            ));
        }
        st
    }

    fn make_retweet(&mut self, id: u64, ms: i64, retweeter: u32, inner: Status) -> Status {
        let mut st = Status::new(id, ms, retweeter, inner.lang, inner.bts);
        st.source = self.random_source();
        st.push("RT ");
        let screen = &self.users[inner.user as usize].screen_name;
        st.ent("@", screen, Kind::Mention(inner.user));
        st.push(": ");
        let (pchars, pbytes) = (st.chars, st.text.len() as u32);
        let (keep_chars, keep_bytes, cut) = if pchars + inner.chars > 140 {
            let (c, b) = prefix_cut(&inner.text, &inner.ents, 139 - pchars, inner.bts_end, false);
            (c, b, true)
        } else {
            (inner.chars, inner.text.len(), false)
        };
        st.text.push_str(&inner.text[..keep_bytes]);
        st.chars += keep_chars;
        if cut {
            st.push("…");
        }
        for e in &inner.ents {
            if e.end <= keep_chars && e.kind != Kind::Media {
                st.ents.push(Ent {
                    kind: e.kind,
                    start: e.start + pchars,
                    end: e.end + pchars,
                    bstart: e.bstart + pbytes,
                    bend: e.bend + pbytes,
                });
            }
        }
        st.links = inner.links.clone();
        st.bts_end = if inner.bts { inner.bts_end + pchars } else { 0 };
        st.display_end = st.chars;
        st.sensitive = inner.sensitive;
        st.retweeted = Some(Box::new(inner));
        st
    }

    // ---- text ---------------------------------------------------------------------------------

    fn fill_text(&mut self, st: &mut Status, reply_user: Option<u32>, with_media: bool) {
        let lang = st.lang;
        if let Some(u) = reply_user {
            st.ent("@", &self.users[u as usize].screen_name, Kind::Mention(u));
            st.push(" ");
            st.display_start = st.chars;
        }
        let target = if lang == Lang::Und {
            self.r.range(4, 40) as u32
        } else {
            let x = self.r.f();
            if x < 0.70 {
                self.r.range(15, 125) as u32
            } else if x < 0.94 {
                self.r.range(150, 270) as u32
            } else {
                self.r.range(290, 700) as u32
            }
        };
        let mut last_ja = false;
        if st.bts {
            if lang != Lang::Und {
                for _ in 0..self.r.range(0, 2) {
                    if st.chars > 40 {
                        break;
                    }
                    self.word(st, lang, &mut last_ja);
                }
            }
            self.bts_block(st);
            last_ja = false;
        }
        while st.chars < target {
            let x = self.r.f();
            if lang == Lang::Und || x < 0.08 {
                if lang == Lang::Und || self.r.chance(0.5) {
                    st.sep();
                }
                st.push(self.r.pick(EMOJI));
                last_ja = false;
            } else if x < 0.11 {
                st.sep();
                let tag = if st.bts && self.r.chance(0.3) {
                    self.r.pick(BTS_TAGS)
                } else {
                    self.r.pick(lang.tags())
                };
                st.ent("#", tag, Kind::Hashtag);
                last_ja = false;
            } else if x < 0.13 {
                st.sep();
                let u = self.author_for(st.bts, 0.3);
                st.ent("@", &self.users[u as usize].screen_name, Kind::Mention(u));
                last_ja = false;
            } else if x < 0.135 {
                st.sep();
                st.ent("$", self.r.pick(CASHTAGS), Kind::Cashtag);
                last_ja = false;
            } else if x < 0.15 {
                if !matches!(st.text.as_bytes().last(), None | Some(b'\n')) {
                    st.push(if self.r.chance(0.7) { "\n" } else { "\n\n" });
                }
                last_ja = false;
            } else if x < 0.18 {
                // Mixed-language fragment, mostly English (code-switching).
                let other = if self.r.chance(0.7) {
                    Lang::En
                } else {
                    [Lang::Ko, Lang::Ja, Lang::Es, Lang::Ar][self.r.below(4)]
                };
                st.sep();
                st.push(self.r.pick(other.words()));
                last_ja = false;
            } else {
                self.word(st, lang, &mut last_ja);
                if x < 0.28 {
                    st.push(self.r.pick(lang.punct()));
                }
            }
        }
        if st.bts && self.r.chance(0.35) {
            st.sep();
            st.ent("#", self.r.pick(BTS_TAGS), Kind::Hashtag);
        }
        let tags = usize::from(self.r.chance(0.25)) + usize::from(self.r.chance(0.08));
        for _ in 0..tags {
            st.sep();
            st.ent("#", self.r.pick(lang.tags()), Kind::Hashtag);
        }
        if self.r.chance(0.18) {
            let link = self.make_link();
            let mut url = String::with_capacity(24);
            url.push_str("https://t.co/");
            self.r.code(&mut url, 10);
            st.sep();
            st.ent("", &url, Kind::Url(st.links.len() as u16));
            st.links.push(link);
        }
        st.display_end = st.chars;
        if with_media {
            let mut url = String::with_capacity(24);
            url.push_str("https://t.co/");
            self.r.code(&mut url, 10);
            st.sep();
            st.ent("", &url, Kind::Media);
        }
    }

    fn word(&mut self, st: &mut Status, lang: Lang, last_ja: &mut bool) {
        if !(lang == Lang::Ja && *last_ja) {
            st.sep();
        }
        st.push(self.r.pick(lang.words()));
        *last_ja = lang == Lang::Ja;
    }

    /// Mentions BTS in one of several real-world ways; always leaves "bts" as a whole word.
    fn bts_block(&mut self, st: &mut Status) {
        st.sep();
        match self.r.below(8) {
            0 => st.push("BTS"),
            1 => st.push("bts"),
            2 => st.ent(
                "#",
                if self.r.chance(0.75) { "BTS" } else { "bts" },
                Kind::Hashtag,
            ),
            3 => {
                st.ent("#", "방탄소년단", Kind::Hashtag);
                st.sep();
                if self.r.chance(0.5) {
                    st.push("BTS");
                } else {
                    st.ent("#", "BTS", Kind::Hashtag);
                }
            }
            4 => {
                let u = self.special_user();
                st.ent("@", &self.users[u as usize].screen_name, Kind::Mention(u));
                let lang = st.lang;
                for _ in 0..self.r.range(0, 2) {
                    st.sep();
                    st.push(self.r.pick(lang.words()));
                }
                st.sep();
                match self.r.below(3) {
                    0 => st.push("BTS"),
                    1 => st.push("bts"),
                    _ => st.ent("#", "BTS", Kind::Hashtag),
                }
            }
            5 => st.push(self.r.pick(&[
                "BTS!", "(BTS)", "BTS💜", "BTS,", "BTS's", "BTS.", "BTS!!", "BTS 💜",
            ])),
            6 => st.push(self.r.pick(&["Bts", "BTs", "BTS ARMY", "ARMY and BTS"])),
            _ => st.push(
                self.r
                    .pick(&["방탄소년단(BTS)", "방탄소년단 BTS", "BTS (방탄소년단)"]),
            ),
        }
        st.bts_end = st.chars;
    }

    fn make_link(&mut self) -> Link {
        let mut expanded = String::with_capacity(64);
        match self.r.below(7) {
            0 => {
                expanded.push_str("https://open.spotify.com/track/");
                self.r.code(&mut expanded, 22);
            }
            1 => {
                expanded.push_str("https://youtu.be/");
                self.r.code(&mut expanded, 11);
            }
            2 => {
                expanded.push_str("https://music.apple.com/us/album/");
                expanded.push_str(&self.r.range(1_000_000_000, 1_999_999_999).to_string());
            }
            3 => {
                expanded.push_str("https://www.instagram.com/p/");
                self.r.code(&mut expanded, 11);
                expanded.push('/');
            }
            4 => {
                expanded.push_str("https://www.tiktok.com/@");
                expanded.push_str(self.r.pick(SCREEN_BASES));
                expanded.push_str("/video/");
                expanded.push_str(
                    &self
                        .r
                        .range(7_000_000_000_000_000_000, 7_999_999_999_999_999_999)
                        .to_string(),
                );
            }
            5 => {
                expanded.push_str("https://weverse.io/notice/");
                expanded.push_str(&self.r.range(10_000, 99_999).to_string());
            }
            _ => {
                expanded.push_str("https://www.example-news.com/2026/11/26/music/");
                self.r.code(&mut expanded, 8);
                expanded.push_str(".html");
            }
        }
        let bare = expanded.trim_start_matches("https://");
        let display = if bare.chars().count() > 26 {
            let mut d: String = bare.chars().take(25).collect();
            d.push('…');
            d
        } else {
            bare.to_string()
        };
        Link { expanded, display }
    }

    fn make_media(&mut self, ms: i64) -> Media {
        const SIZES: &[(u32, u32)] = &[
            (1200, 1600),
            (1080, 1350),
            (1920, 1080),
            (1280, 720),
            (1600, 900),
            (2048, 1536),
            (1080, 1080),
        ];
        let video = self.r.chance(0.2);
        let n = if video {
            1
        } else {
            [1, 1, 1, 2, 2, 3, 4][self.r.below(7)]
        };
        let mms = ms - self.r.range(500, 60_000) as i64;
        let items = (0..n)
            .map(|_| {
                let mut code = String::with_capacity(15);
                self.r.code(&mut code, 15);
                let (w, h) = if video {
                    [(1280, 720), (720, 1280), (1920, 1080)][self.r.below(3)]
                } else {
                    self.r.pick(SIZES)
                };
                MediaItem {
                    id: snowflake(mms, self.r.range(0, (1 << 22) - 1)),
                    code,
                    w,
                    h,
                }
            })
            .collect();
        Media {
            video,
            duration_ms: if video {
                self.r.range(5_000, 140_000)
            } else {
                0
            },
            items,
        }
    }

    // ---- v1.1 ---------------------------------------------------------------------------------

    /// Writes the fields of a v1.1 status (without the surrounding braces).
    fn write_v1_fields(&self, o: &mut Vec<u8>, st: &Status, top: bool) {
        let user = &self.users[st.user as usize];
        key(o, "created_at");
        w_v1_date(o, st.ms);
        knum(o, "id", st.id);
        kidstr(o, "id_str", st.id);
        let truncated = st.chars > 140;
        let cut = truncated.then(|| prefix_cut(&st.text, &st.ents, 113, st.bts_end, true));
        key(o, "text");
        match cut {
            Some((_, kb)) => {
                o.push(b'"');
                escape(o, &st.text[..kb]);
                o.extend_from_slice("… https://t.co/".as_bytes());
                derived_code(o, st.id ^ SALT_WEB, 10);
                o.push(b'"');
            }
            None => str_val(o, &st.text),
        }
        kstr(o, "source", SOURCES[st.source as usize]);
        kbool(o, "truncated", truncated);
        match st.reply_to {
            Some((rid, ru)) => {
                let ru = &self.users[ru as usize];
                knum(o, "in_reply_to_status_id", rid);
                kidstr(o, "in_reply_to_status_id_str", rid);
                knum(o, "in_reply_to_user_id", ru.id);
                kidstr(o, "in_reply_to_user_id_str", ru.id);
                kstr(o, "in_reply_to_screen_name", &ru.screen_name);
            }
            None => {
                for k in [
                    "in_reply_to_status_id",
                    "in_reply_to_status_id_str",
                    "in_reply_to_user_id",
                    "in_reply_to_user_id_str",
                    "in_reply_to_screen_name",
                ] {
                    knull(o, k);
                }
            }
        }
        key(o, "user");
        o.extend_from_slice(&user.v1);
        match st.point {
            Some((lon, lat)) => {
                for (k, a, b) in [("geo", lat, lon), ("coordinates", lon, lat)] {
                    kobj(o, k);
                    kstr(o, "type", "Point");
                    karr(o, "coordinates");
                    w_micro(o, a);
                    o.push(b',');
                    w_micro(o, b);
                    o.extend_from_slice(b"]}");
                }
            }
            None => {
                knull(o, "geo");
                knull(o, "coordinates");
            }
        }
        match st.place {
            Some(p) => {
                key(o, "place");
                o.extend_from_slice(&self.places[p as usize].v1);
            }
            None => knull(o, "place"),
        }
        knull(o, "contributors");
        if let Some(rt) = &st.retweeted {
            kobj(o, "retweeted_status");
            self.write_v1_fields(o, rt, false);
            o.push(b'}');
        }
        let quoted = st.effective_quote();
        if let Some(q) = quoted {
            knum(o, "quoted_status_id", q.id);
            kidstr(o, "quoted_status_id_str", q.id);
            kobj(o, "quoted_status");
            self.write_v1_fields(o, q, false);
            o.push(b'}');
            let qu = &self.users[q.user as usize];
            kobj(o, "quoted_status_permalink");
            key(o, "url");
            o.extend_from_slice(b"\"https://t.co/");
            derived_code(o, q.id ^ SALT_PERMALINK, 10);
            o.push(b'"');
            key(o, "expanded");
            o.extend_from_slice(b"\"https://twitter.com/");
            o.extend_from_slice(qu.screen_name.as_bytes());
            o.extend_from_slice(b"/status/");
            w_u64(o, q.id);
            o.push(b'"');
            key(o, "display");
            o.extend_from_slice(b"\"twitter.com/");
            o.extend_from_slice(qu.screen_name.as_bytes());
            o.extend_from_slice("/status/…\"".as_bytes());
            o.push(b'}');
        }
        kbool(o, "is_quote_status", quoted.is_some());
        if truncated {
            kobj(o, "extended_tweet");
            kstr(o, "full_text", &st.text);
            key(o, "display_text_range");
            pair(o, u64::from(st.display_start), u64::from(st.display_end));
            key(o, "entities");
            self.write_v1_entities(o, st, u32::MAX, None, true);
            if st.media.is_some() {
                kobj(o, "extended_entities");
                self.write_v1_media_list(o, st, true);
                o.push(b'}');
            }
            o.push(b'}');
        }
        knum(o, "quote_count", st.counts.quote);
        knum(o, "reply_count", st.counts.reply);
        knum(o, "retweet_count", st.counts.retweet);
        knum(o, "favorite_count", st.counts.favorite);
        key(o, "entities");
        match cut {
            Some((k, _)) => self.write_v1_entities(o, st, k, Some(k), false),
            None => self.write_v1_entities(o, st, u32::MAX, None, true),
        }
        if !truncated && st.media.is_some() {
            kobj(o, "extended_entities");
            self.write_v1_media_list(o, st, true);
            o.push(b'}');
        }
        kbool(o, "favorited", false);
        kbool(o, "retweeted", false);
        if st.has_links() {
            kbool(o, "possibly_sensitive", st.sensitive);
        }
        kstr(o, "filter_level", "low");
        kstr(o, "lang", st.lang.code());
        if top {
            key(o, "timestamp_ms");
            o.push(b'"');
            w_i64(o, st.ms);
            o.push(b'"');
        }
    }

    /// v1.1 `entities` object with entities ending at or before `limit`; `web_cut` adds the
    /// "read more" link of a truncated text placed after char `web_cut`.
    fn write_v1_entities(
        &self,
        o: &mut Vec<u8>,
        st: &Status,
        limit: u32,
        web_cut: Option<u32>,
        media: bool,
    ) {
        let within = |e: &&Ent| e.end <= limit;
        o.push(b'{');
        karr(o, "hashtags");
        for e in st.ents.iter().filter(within) {
            if e.kind == Kind::Hashtag {
                elem_obj(o);
                kstr(o, "text", st.slice(e, true));
                key(o, "indices");
                pair(o, e.start.into(), e.end.into());
                o.push(b'}');
            }
        }
        o.push(b']');
        karr(o, "urls");
        for e in st.ents.iter().filter(within) {
            if let Kind::Url(i) = e.kind {
                let link = &st.links[i as usize];
                elem_obj(o);
                kstr(o, "url", st.slice(e, false));
                kstr(o, "expanded_url", &link.expanded);
                kstr(o, "display_url", &link.display);
                key(o, "indices");
                pair(o, e.start.into(), e.end.into());
                o.push(b'}');
            }
        }
        if let Some(k) = web_cut {
            elem_obj(o);
            key(o, "url");
            o.extend_from_slice(b"\"https://t.co/");
            derived_code(o, st.id ^ SALT_WEB, 10);
            o.push(b'"');
            key(o, "expanded_url");
            o.extend_from_slice(b"\"https://twitter.com/i/web/status/");
            w_u64(o, st.id);
            o.push(b'"');
            key(o, "display_url");
            o.extend_from_slice("\"twitter.com/i/web/status/1…\"".as_bytes());
            key(o, "indices");
            pair(o, u64::from(k) + 2, u64::from(k) + 25);
            o.push(b'}');
        }
        o.push(b']');
        karr(o, "user_mentions");
        for e in st.ents.iter().filter(within) {
            if let Kind::Mention(u) = e.kind {
                let u = &self.users[u as usize];
                elem_obj(o);
                kstr(o, "screen_name", &u.screen_name);
                kstr(o, "name", &u.name);
                knum(o, "id", u.id);
                kidstr(o, "id_str", u.id);
                key(o, "indices");
                pair(o, e.start.into(), e.end.into());
                o.push(b'}');
            }
        }
        o.push(b']');
        karr(o, "symbols");
        for e in st.ents.iter().filter(within) {
            if e.kind == Kind::Cashtag {
                elem_obj(o);
                kstr(o, "text", st.slice(e, true));
                key(o, "indices");
                pair(o, e.start.into(), e.end.into());
                o.push(b'}');
            }
        }
        o.push(b']');
        if media
            && st.media.is_some()
            && st.ents.iter().filter(within).any(|e| e.kind == Kind::Media)
        {
            self.write_v1_media_list(o, st, false);
        }
        o.push(b'}');
    }

    /// `"media":[…]` — all items, or only the first (as in `entities.media`).
    fn write_v1_media_list(&self, o: &mut Vec<u8>, st: &Status, all: bool) {
        let (Some(media), Some(ent)) = (
            st.media.as_ref(),
            st.ents.iter().find(|e| e.kind == Kind::Media),
        ) else {
            return;
        };
        let screen = &self.users[st.user as usize].screen_name;
        karr(o, "media");
        for (i, item) in media.items.iter().enumerate() {
            if i > 0 && !all {
                break;
            }
            elem_obj(o);
            knum(o, "id", item.id);
            kidstr(o, "id_str", item.id);
            key(o, "indices");
            pair(o, ent.start.into(), ent.end.into());
            for (k, scheme) in [("media_url", "http"), ("media_url_https", "https")] {
                key(o, k);
                o.push(b'"');
                o.extend_from_slice(scheme.as_bytes());
                if media.video {
                    o.extend_from_slice(b"://pbs.twimg.com/ext_tw_video_thumb/");
                    w_u64(o, item.id);
                    o.extend_from_slice(b"/pu/img/");
                } else {
                    o.extend_from_slice(b"://pbs.twimg.com/media/");
                }
                o.extend_from_slice(item.code.as_bytes());
                o.extend_from_slice(b".jpg\"");
            }
            kstr(o, "url", st.slice(ent, false));
            key(o, "display_url");
            o.extend_from_slice(b"\"pic.twitter.com/");
            derived_code(o, st.id ^ SALT_PIC, 10);
            o.push(b'"');
            key(o, "expanded_url");
            o.extend_from_slice(b"\"https://twitter.com/");
            o.extend_from_slice(screen.as_bytes());
            o.extend_from_slice(b"/status/");
            w_u64(o, st.id);
            o.extend_from_slice(if media.video {
                b"/video/1\""
            } else {
                b"/photo/1\""
            });
            kstr(o, "type", if media.video { "video" } else { "photo" });
            kobj(o, "sizes");
            let (w, h) = (u64::from(item.w), u64::from(item.h));
            let scaled = |max: u64| {
                let m = w.max(h);
                if m <= max {
                    (w, h)
                } else {
                    (w * max / m, h * max / m)
                }
            };
            for (name, (sw, sh), resize) in [
                ("thumb", (150, 150), "crop"),
                ("small", scaled(680), "fit"),
                ("medium", scaled(1200), "fit"),
                ("large", scaled(2048), "fit"),
            ] {
                kobj(o, name);
                knum(o, "w", sw);
                knum(o, "h", sh);
                kstr(o, "resize", resize);
                o.push(b'}');
            }
            o.push(b'}');
            if media.video {
                kobj(o, "video_info");
                let g = gcd(w, h).max(1);
                key(o, "aspect_ratio");
                pair(o, w / g, h / g);
                knum(o, "duration_millis", media.duration_ms);
                karr(o, "variants");
                self.write_video_variants(o, item, "bitrate");
                o.push(b']');
                o.push(b'}');
            }
            o.push(b'}');
        }
        o.push(b']');
    }

    fn write_video_variants(&self, o: &mut Vec<u8>, item: &MediaItem, bitrate_key: &str) {
        for (bitrate, res) in [(2_176_000u64, "1280x720"), (832_000, "640x360"), (0, "")] {
            elem_obj(o);
            if bitrate > 0 {
                knum(o, bitrate_key, bitrate);
                kstr(o, "content_type", "video/mp4");
            } else {
                kstr(o, "content_type", "application/x-mpegURL");
            }
            key(o, "url");
            o.extend_from_slice(b"\"https://video.twimg.com/ext_tw_video/");
            w_u64(o, item.id);
            if bitrate > 0 {
                o.extend_from_slice(b"/pu/vid/avc1/");
                o.extend_from_slice(res.as_bytes());
                o.push(b'/');
                o.extend_from_slice(item.code.as_bytes());
                o.extend_from_slice(b".mp4?tag=12\"");
            } else {
                o.extend_from_slice(b"/pu/pl/");
                o.extend_from_slice(item.code.as_bytes());
                o.extend_from_slice(b".m3u8?tag=12\"");
            }
            o.push(b'}');
        }
    }

    // ---- v2 -----------------------------------------------------------------------------------

    fn write_v2(&mut self, o: &mut Vec<u8>, st: &Status, wide: bool) {
        o.extend_from_slice(b"{\"data\":{");
        self.write_v2_fields(o, st);
        if wide {
            self.write_wide(o, st.lang);
        }
        o.push(b'}');

        // Referenced tweets, in the order the API lists them.
        let mut refs: [Option<&Status>; 3] = [None; 3];
        if let Some(rt) = &st.retweeted {
            refs[0] = Some(rt);
            refs[1] = rt.quoted.as_deref();
        }
        if let Some(q) = &st.quoted {
            refs[2] = Some(q);
        }
        let all = || std::iter::once(st).chain(refs.iter().flatten().copied());

        kobj(o, "includes");
        let mut users = std::mem::take(&mut self.scratch_users);
        users.clear();
        let mut add = |u: u32| {
            if !users.contains(&u) {
                users.push(u);
            }
        };
        for s in all() {
            add(s.user);
            if let Some((_, ru)) = s.reply_to {
                add(ru);
            }
            for e in &s.ents {
                if let Kind::Mention(u) = e.kind {
                    add(u);
                }
            }
        }
        karr(o, "users");
        for &u in &users {
            comma(o);
            o.extend_from_slice(&self.users[u as usize].v2);
        }
        o.push(b']');
        self.scratch_users = users;
        if refs.iter().any(Option::is_some) {
            karr(o, "tweets");
            for s in refs.iter().flatten() {
                elem_obj(o);
                self.write_v2_fields(o, s);
                o.push(b'}');
            }
            o.push(b']');
        }
        if all().any(|s| s.media.is_some()) {
            karr(o, "media");
            for media in all().filter_map(|s| s.media.as_ref()) {
                for item in &media.items {
                    self.write_v2_media(o, media, item);
                }
            }
            o.push(b']');
        }
        if let Some(p) = st.place {
            karr(o, "places");
            o.extend_from_slice(&self.places[p as usize].v2);
            o.push(b']');
        }
        o.push(b'}');

        karr(o, "matching_rules");
        let rule = |o: &mut Vec<u8>, (id, tag): (&str, &str)| {
            elem_obj(o);
            kstr(o, "id", id);
            kstr(o, "tag", tag);
            o.push(b'}');
        };
        if st.bts {
            rule(o, BTS_RULE);
            if self.r.chance(0.3) {
                rule(o, OTHER_RULES[0]);
            }
        } else {
            rule(o, self.r.pick(OTHER_RULES));
        }
        o.extend_from_slice(b"]}");
    }

    fn write_v2_fields(&self, o: &mut Vec<u8>, st: &Status) {
        let user = &self.users[st.user as usize];
        kidstr(o, "id", st.id);
        let note = st.chars > 280;
        let limit = if note {
            let (k, kb) = prefix_cut(&st.text, &st.ents, 275, st.bts_end, true);
            key(o, "text");
            o.push(b'"');
            escape(o, &st.text[..kb]);
            o.extend_from_slice("…\"".as_bytes());
            k
        } else {
            kstr(o, "text", &st.text);
            u32::MAX
        };
        key(o, "created_at");
        w_iso(o, st.ms);
        kidstr(o, "author_id", user.id);
        kidstr(o, "conversation_id", st.conversation_id);
        if let Some((_, ru)) = st.reply_to {
            kidstr(o, "in_reply_to_user_id", self.users[ru as usize].id);
        }
        kstr(o, "lang", st.lang.code());
        kbool(o, "possibly_sensitive", st.sensitive);
        kstr(o, "reply_settings", "everyone");
        karr(o, "edit_history_tweet_ids");
        o.push(b'"');
        w_u64(o, st.id);
        o.extend_from_slice(b"\"]");
        kobj(o, "edit_controls");
        knum(o, "edits_remaining", 5);
        kbool(o, "is_edit_eligible", st.retweeted.is_none());
        key(o, "editable_until");
        w_iso(o, st.ms.saturating_add(3_600_000));
        o.push(b'}');
        kobj(o, "public_metrics");
        knum(o, "retweet_count", st.counts.retweet);
        knum(o, "reply_count", st.counts.reply);
        knum(o, "like_count", st.counts.favorite);
        knum(o, "quote_count", st.counts.quote);
        knum(o, "bookmark_count", st.counts.bookmark);
        knum(o, "impression_count", st.counts.impression);
        o.push(b'}');
        self.write_v2_entities(o, st, limit);
        let referenced: [(&str, Option<u64>); 3] = [
            ("retweeted", st.retweeted.as_ref().map(|r| r.id)),
            ("quoted", st.quoted.as_ref().map(|q| q.id)),
            ("replied_to", st.reply_to.map(|(id, _)| id)),
        ];
        if referenced.iter().any(|(_, id)| id.is_some()) {
            karr(o, "referenced_tweets");
            for (kind, id) in referenced {
                if let Some(id) = id {
                    elem_obj(o);
                    kstr(o, "type", kind);
                    kidstr(o, "id", id);
                    o.push(b'}');
                }
            }
            o.push(b']');
        }
        if let Some(media) = &st.media {
            kobj(o, "attachments");
            karr(o, "media_keys");
            for item in &media.items {
                comma(o);
                media_key(o, media, item);
            }
            o.extend_from_slice(b"]}");
        }
        if let Some(p) = st.place {
            kobj(o, "geo");
            kstr(o, "place_id", &self.places[p as usize].id);
            if let Some((lon, lat)) = st.point {
                kobj(o, "coordinates");
                kstr(o, "type", "Point");
                karr(o, "coordinates");
                w_micro(o, lon);
                o.push(b',');
                w_micro(o, lat);
                o.extend_from_slice(b"]}");
            }
            o.push(b'}');
        }
        if note {
            kobj(o, "note_tweet");
            kstr(o, "text", &st.text);
            self.write_v2_entities(o, st, u32::MAX);
            o.push(b'}');
        }
        if st.ctx[0] != u8::MAX {
            karr(o, "context_annotations");
            for &c in st.ctx.iter().filter(|&&c| c != u8::MAX) {
                let (did, dname, ddesc, eid, ename) = CTX[c as usize];
                elem_obj(o);
                kobj(o, "domain");
                kstr(o, "id", did);
                kstr(o, "name", dname);
                kstr(o, "description", ddesc);
                o.push(b'}');
                kobj(o, "entity");
                kstr(o, "id", eid);
                kstr(o, "name", ename);
                o.extend_from_slice(b"}}");
            }
            o.push(b']');
        }
    }

    /// v2 `entities` (omitted when empty) for entities ending at or before `limit`.
    fn write_v2_entities(&self, o: &mut Vec<u8>, st: &Status, limit: u32) {
        let mut has = [false; 4];
        for e in st.ents.iter().filter(|e| e.end <= limit) {
            let slot = match e.kind {
                Kind::Hashtag => 0,
                Kind::Cashtag => 1,
                Kind::Mention(_) => 2,
                Kind::Url(_) | Kind::Media => 3,
            };
            has[slot] = true;
        }
        if !has.iter().any(|&h| h) {
            return;
        }
        kobj(o, "entities");
        for (slot, group) in ["hashtags", "cashtags", "mentions", "urls"]
            .into_iter()
            .enumerate()
        {
            if !has[slot] {
                continue;
            }
            karr(o, group);
            for e in st.ents.iter().filter(|e| e.end <= limit) {
                let matches = matches!(
                    (slot, e.kind),
                    (0, Kind::Hashtag)
                        | (1, Kind::Cashtag)
                        | (2, Kind::Mention(_))
                        | (3, Kind::Url(_) | Kind::Media)
                );
                if !matches {
                    continue;
                }
                elem_obj(o);
                knum(o, "start", e.start.into());
                knum(o, "end", e.end.into());
                match e.kind {
                    Kind::Hashtag | Kind::Cashtag => kstr(o, "tag", st.slice(e, true)),
                    Kind::Mention(u) => {
                        let u = &self.users[u as usize];
                        kstr(o, "username", &u.screen_name);
                        kidstr(o, "id", u.id);
                    }
                    Kind::Url(i) => {
                        let link = &st.links[i as usize];
                        kstr(o, "url", st.slice(e, false));
                        kstr(o, "expanded_url", &link.expanded);
                        kstr(o, "display_url", &link.display);
                        knum(o, "status", 200);
                        kstr(o, "unwound_url", &link.expanded);
                    }
                    Kind::Media => {
                        kstr(o, "url", st.slice(e, false));
                        let screen = &self.users[st.user as usize].screen_name;
                        key(o, "expanded_url");
                        o.extend_from_slice(b"\"https://twitter.com/");
                        o.extend_from_slice(screen.as_bytes());
                        o.extend_from_slice(b"/status/");
                        w_u64(o, st.id);
                        let video = st.media.as_ref().is_some_and(|m| m.video);
                        o.extend_from_slice(if video { b"/video/1\"" } else { b"/photo/1\"" });
                        key(o, "display_url");
                        o.extend_from_slice(b"\"pic.twitter.com/");
                        derived_code(o, st.id ^ SALT_PIC, 10);
                        o.push(b'"');
                        if let Some(media) = &st.media {
                            key(o, "media_key");
                            media_key(o, media, &media.items[0]);
                        }
                    }
                }
                o.push(b'}');
            }
            o.push(b']');
        }
        o.push(b'}');
    }

    fn write_v2_media(&self, o: &mut Vec<u8>, media: &Media, item: &MediaItem) {
        elem_obj(o);
        key(o, "media_key");
        media_key(o, media, item);
        if media.video {
            kstr(o, "type", "video");
            key(o, "preview_image_url");
            o.extend_from_slice(b"\"https://pbs.twimg.com/ext_tw_video_thumb/");
            w_u64(o, item.id);
            o.extend_from_slice(b"/pu/img/");
            o.extend_from_slice(item.code.as_bytes());
            o.extend_from_slice(b".jpg\"");
            knum(o, "duration_ms", media.duration_ms);
            karr(o, "variants");
            self.write_video_variants(o, item, "bit_rate");
            o.push(b']');
            kobj(o, "public_metrics");
            knum(o, "view_count", item.id % 100_000);
            o.push(b'}');
        } else {
            kstr(o, "type", "photo");
            key(o, "url");
            o.extend_from_slice(b"\"https://pbs.twimg.com/media/");
            o.extend_from_slice(item.code.as_bytes());
            o.extend_from_slice(b".jpg\"");
        }
        knum(o, "width", item.w.into());
        knum(o, "height", item.h.into());
        o.push(b'}');
    }

    // ---- wide blob ----------------------------------------------------------------------------

    /// Writes `"card":{…},"translations":{…}` into the current object: 1200–2000 leaf fields.
    fn write_wide(&mut self, o: &mut Vec<u8>, lang: Lang) {
        let r = &mut self.r;
        let target = r.range(1200, 2000) as usize;

        let n_locales = r.range(30, 60) as usize;
        let first = r.below(LOCALES.len());
        kobj(o, "translations");
        for i in 0..n_locales {
            let loc = LOCALES[(first + i) % LOCALES.len()];
            kobj(o, loc);
            key(o, "text");
            o.push(b'"');
            let words = if i % 2 == 0 { EN_WORDS } else { ES_WORDS };
            for j in 0..3 {
                if j > 0 {
                    o.push(b' ');
                }
                escape(o, r.pick(words));
            }
            o.push(b'"');
            kstr(o, "lang", loc);
            kstr(o, "engine", r.pick(TRANSLATION_ENGINES));
            kstr(o, "model_version", "2026.11.1");
            key(o, "confidence");
            w_milli(o, r.range(600, 999));
            kobj(o, "detected_source");
            kstr(o, "lang", lang.code());
            key(o, "confidence");
            w_milli(o, r.range(800, 999));
            o.push(b'}');
            knum(o, "char_count", r.range(10, 280));
            kbool(o, "reviewed", r.chance(0.05));
            o.push(b'}');
        }
        o.push(b'}');
        let mut leaves = n_locales * 8;

        kobj(o, "card");
        kstr(o, "name", "unified_card");
        key(o, "url");
        o.extend_from_slice(b"\"https://t.co/");
        let mut code = String::with_capacity(10);
        r.code(&mut code, 10);
        o.extend_from_slice(code.as_bytes());
        o.push(b'"');
        kstr(
            o,
            "card_type_url",
            "http://card-type-url-is-deprecated.invalid",
        );
        kobj(o, "card_platform");
        kobj(o, "platform");
        kobj(o, "device");
        kstr(o, "name", "Swift");
        kstr(o, "version", "12");
        o.push(b'}');
        kobj(o, "audience");
        kstr(o, "name", "production");
        o.extend_from_slice(b"}}}");
        leaves += 6;

        kobj(o, "binding_values");
        let mut round = 1u64;
        'fill: loop {
            for comp in CARD_COMPONENTS {
                for attr in CARD_ATTRS {
                    if leaves >= target {
                        break 'fill;
                    }
                    comma(o);
                    o.push(b'"');
                    o.extend_from_slice(comp.as_bytes());
                    o.push(b'_');
                    if round > 1 {
                        w_u64(o, round);
                        o.push(b'_');
                    }
                    o.extend_from_slice(attr.as_bytes());
                    o.extend_from_slice(b"\":{");
                    if attr.starts_with("image_") && *attr != "image_color" {
                        kstr(o, "type", "IMAGE");
                        kobj(o, "image_value");
                        key(o, "url");
                        o.extend_from_slice(b"\"https://pbs.twimg.com/card_img/");
                        w_u64(o, r.range(1_000_000_000, 9_999_999_999));
                        o.push(b'/');
                        code.clear();
                        r.code(&mut code, 8);
                        o.extend_from_slice(code.as_bytes());
                        o.extend_from_slice(b"?format=jpg&name=600x314\"");
                        knum(o, "width", r.range(100, 1200));
                        knum(o, "height", r.range(100, 1200));
                        kstr(o, "alt", r.pick(EN_WORDS));
                        o.push(b'}');
                        leaves += 5;
                    } else if *attr == "image_color" {
                        kstr(o, "type", "IMAGE_COLOR");
                        kobj(o, "image_color_value");
                        knum(o, "red", r.range(0, 255));
                        knum(o, "green", r.range(0, 255));
                        knum(o, "blue", r.range(0, 255));
                        key(o, "percentage");
                        w_milli(o, r.range(1_000, 99_000));
                        o.push(b'}');
                        leaves += 5;
                    } else if *attr == "enabled" {
                        kstr(o, "type", "BOOLEAN");
                        kbool(o, "boolean_value", r.chance(0.5));
                        leaves += 2;
                    } else if *attr == "count" || *attr == "id" {
                        kstr(o, "type", "STRING");
                        key(o, "string_value");
                        o.push(b'"');
                        w_u64(o, r.log_count(7.0));
                        o.push(b'"');
                        kstr(o, "scribe_key", "publisher_id");
                        leaves += 3;
                    } else {
                        kstr(o, "type", "STRING");
                        kstr(o, "string_value", r.pick(lang.words()));
                        leaves += 2;
                    }
                    o.push(b'}');
                }
            }
            round += 1;
        }
        o.extend_from_slice(b"}}");
    }
}

fn media_key(o: &mut Vec<u8>, media: &Media, item: &MediaItem) {
    o.extend_from_slice(if media.video { b"\"7_" } else { b"\"3_" });
    w_u64(o, item.id);
    o.push(b'"');
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn special_users() -> [User; SPECIAL_USERS] {
    let base = |id: u64, screen: &str, name: &str, desc: &str, followers: u64, created: i64| {
        UserSpec {
            id,
            screen_name: screen.to_string(),
            name: name.to_string(),
            location: None,
            description: Some(desc.to_string()),
            url: Some("https://t.co/bighitmuic".to_string()),
            verified: true,
            followers,
            friends: 60,
            listed: 95_000,
            favourites: 310,
            statuses: 11_500,
            media: 9_800,
            created_ms: created,
            image_dir: 1_700_000_000_000_000_000 + id,
            image_code: "XSQzYKqB_400x400".to_string(),
            banner: Some(1_700_000_000),
            colors: ["000000", "9266CC", "000000", "000000", "000000"],
            default_profile: false,
            geo_enabled: false,
        }
        .build()
    };
    [
        base(
            335_141_638,
            "BTS_twt",
            "방탄소년단",
            "We are BTS 💜",
            48_000_000,
            1_309_500_000_000,
        ),
        base(
            227_367_749,
            "bts_bighit",
            "BTS_official",
            "BTS official twitter",
            41_000_000,
            1_292_500_000_000,
        ),
    ]
}

fn random_user(r: &mut Rand) -> User {
    // 2008-01-01 .. 2025-12-31
    let created_ms = r.range(1_199_145_600, 1_767_139_200) as i64 * 1000;
    let id = if created_ms < 1_420_070_400_000 {
        r.range(10_000_000, 3_999_999_999)
    } else {
        snowflake(created_ms, r.range(0, (1 << 22) - 1))
    };
    let screen_name = loop {
        let mut s = String::with_capacity(16);
        s.push_str(r.pick(SCREEN_BASES));
        match r.below(4) {
            0 => {
                s.push('_');
                s.push_str(r.pick(SCREEN_BASES));
            }
            1 => s.push_str(r.pick(SCREEN_BASES)),
            2 => s.push_str(&r.range(1, 9999).to_string()),
            _ => {
                s.push('_');
                s.push_str(&r.range(0, 99).to_string());
            }
        }
        s.truncate(15);
        if !contains_bts(&s) {
            break s;
        }
    };
    let mut name = r.pick(NAME_PARTS).to_string();
    name.push_str(r.pick(NAME_DECOR));
    let description = if r.chance(0.15) {
        None
    } else {
        let n = r.range(1, 3);
        let mut d = String::new();
        for i in 0..n {
            if i > 0 {
                d.push_str(" | ");
            }
            d.push_str(r.pick(BIO_PARTS));
        }
        if r.chance(0.4) {
            d.push(' ');
            d.push_str(r.pick(EMOJI));
        }
        Some(d)
    };
    let location = if r.chance(0.35) {
        None
    } else {
        Some(r.pick(LOCATIONS))
    };
    let url = r.chance(0.15).then(|| {
        let mut u = String::from("https://t.co/");
        r.code(&mut u, 10);
        u
    });
    let statuses = r.log_count(5.3);
    let mut image_code = String::with_capacity(8);
    r.code(&mut image_code, 8);
    let default_profile = r.chance(0.5);
    let colors = if default_profile {
        ["F5F8FA", "1DA1F2", "C0DEED", "DDEEF6", "333333"]
    } else {
        [
            r.pick(PROFILE_COLORS),
            r.pick(PROFILE_COLORS),
            r.pick(PROFILE_COLORS),
            r.pick(PROFILE_COLORS),
            r.pick(PROFILE_COLORS),
        ]
    };
    UserSpec {
        id,
        screen_name,
        name,
        location,
        description,
        url,
        verified: r.chance(0.02),
        followers: r.log_count(5.5),
        friends: r.log_count(3.8),
        listed: r.log_count(2.5),
        favourites: r.log_count(5.0),
        statuses,
        media: statuses / r.range(3, 20),
        created_ms,
        image_dir: snowflake(
            created_ms + r.range(0, 300_000_000_000) as i64,
            r.range(0, 4_194_303),
        ),
        image_code,
        banner: r.chance(0.6).then(|| r.range(1_300_000_000, 1_790_000_000)),
        colors,
        default_profile,
        geo_enabled: r.chance(0.3),
    }
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// A fixed start: the tests compare bytes and dates.
    const START: &str = "2018-10-10T20:19:24Z";

    fn opts(seed: u64) -> GenerateOptions {
        GenerateOptions {
            seed,
            start_time: START.into(),
            ..GenerateOptions::default()
        }
    }

    fn generate(o: &GenerateOptions, n: usize) -> Vec<(Generated, Vec<u8>)> {
        let mut g = TweetGenerator::new(o);
        let mut buf = Vec::new();
        (0..n)
            .map(|_| {
                let info = g.next_into(&mut buf);
                (info, buf.clone())
            })
            .collect()
    }

    /// Distinct leaf paths, with arrays transparent (as Elasticsearch maps them).
    fn leaf_paths(v: &Value, prefix: &mut String, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let len = prefix.len();
                    if !prefix.is_empty() {
                        prefix.push('.');
                    }
                    prefix.push_str(k);
                    leaf_paths(v, prefix, out);
                    prefix.truncate(len);
                }
            }
            Value::Array(a) => {
                if a.is_empty() {
                    out.insert(prefix.clone());
                }
                for v in a {
                    leaf_paths(v, prefix, out);
                }
            }
            _ => {
                out.insert(prefix.clone());
            }
        }
    }

    fn path_count(v: &Value) -> usize {
        let mut set = BTreeSet::new();
        leaf_paths(v, &mut String::new(), &mut set);
        set.len()
    }

    fn is_word_char(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }

    /// Whole-word, case-insensitive "bts".
    fn has_word_bts(text: &str) -> bool {
        let lower = text.to_lowercase();
        lower.match_indices("bts").any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + 3..].chars().next();
            !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
        })
    }

    fn main_texts(v: &Value, info: &Generated) -> Vec<String> {
        let mut texts = Vec::new();
        if info.v2 {
            texts.push(v["data"]["text"].as_str().unwrap().to_string());
            if let Some(t) = v["data"]["note_tweet"]["text"].as_str() {
                texts.push(t.to_string());
            }
        } else {
            texts.push(v["text"].as_str().unwrap().to_string());
            if let Some(t) = v["extended_tweet"]["full_text"].as_str() {
                texts.push(t.to_string());
            }
        }
        texts
    }

    #[test]
    fn deterministic_per_seed() {
        let mut o = opts(7);
        o.wide_share = 0.05;
        let a = generate(&o, 2000);
        let b = generate(&o, 2000);
        assert!(a == b, "same options must produce identical bytes");
        let c = generate(&opts(8), 2000);
        assert!(a.iter().zip(&c).any(|(x, y)| x.1 != y.1));
    }

    #[test]
    fn every_output_is_single_line_json() {
        let mut o = opts(1);
        o.retweet_share = 0.5;
        o.quote_share = 0.5;
        o.wide_share = 0.02;
        let mut g = TweetGenerator::new(&o);
        let mut buf = Vec::new();
        for _ in 0..5000 {
            let info = g.next_into(&mut buf);
            assert!(!buf.contains(&b'\n'));
            let v: Value = serde_json::from_slice(&buf)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&buf)));
            assert!(v.is_object());
            if info.v2 {
                assert_eq!(v["data"]["id"].as_str().unwrap(), info.id.to_string());
            } else {
                assert_eq!(v["id"].as_u64().unwrap(), info.id);
                assert_eq!(v["id_str"].as_str().unwrap(), info.id.to_string());
                assert_eq!(
                    v["timestamp_ms"].as_str().unwrap(),
                    info.created_at_ms.to_string()
                );
            }
        }
    }

    #[test]
    fn ids_unique_and_increasing() {
        for interval in [250, 0] {
            let mut o = opts(3);
            o.interval_ms = interval;
            let mut g = TweetGenerator::new(&o);
            let mut buf = Vec::new();
            let mut last = 0;
            let mut last_ms = i64::MIN;
            for _ in 0..20_000 {
                let info = g.next_into(&mut buf);
                assert!(info.id > last, "ids must increase");
                assert!(info.created_at_ms >= last_ms);
                last = info.id;
                last_ms = info.created_at_ms;
            }
        }
    }

    #[test]
    fn first_tweet_timestamps() {
        let mut g = TweetGenerator::new(&GenerateOptions {
            v2_share: 0.0,
            ..opts(5)
        });
        let mut buf = Vec::new();
        let info = g.next_into(&mut buf);
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["created_at"], "Wed Oct 10 20:19:24 +0000 2018");
        assert_eq!(info.created_at_ms, 1_539_202_764_000);
        let info2 = g.next_into(&mut buf);
        assert_eq!(info2.created_at_ms, info.created_at_ms + 250);

        let mut g = TweetGenerator::new(&GenerateOptions {
            v2_share: 1.0,
            ..opts(5)
        });
        g.next_into(&mut buf);
        let v: Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["data"]["created_at"], "2018-10-10T20:19:24.000Z");
    }

    #[test]
    fn default_start_is_now() {
        let before = Utc::now().timestamp() * 1000;
        let info = TweetGenerator::new(&GenerateOptions::default()).next_into(&mut Vec::new());
        let after = Utc::now().timestamp_millis();
        assert!(
            (before..=after).contains(&info.created_at_ms),
            "{before} <= {} <= {after}",
            info.created_at_ms
        );
    }

    #[test]
    fn bts_share_and_ground_truth() {
        let o = opts(11);
        let mut g = TweetGenerator::new(&o);
        let mut buf = Vec::new();
        let n = 10_000;
        let mut hits = 0;
        for _ in 0..n {
            let info = g.next_into(&mut buf);
            hits += usize::from(info.mentions_bts);
            let line = std::str::from_utf8(&buf).unwrap();
            let lower = line.to_lowercase();
            assert_eq!(
                lower.contains("bts"),
                info.mentions_bts,
                "document-level ground truth: {line}"
            );
            if !info.mentions_bts {
                assert!(!line.contains("방탄소년단"));
            }
            let v: Value = serde_json::from_slice(&buf).unwrap();
            for text in main_texts(&v, &info) {
                assert_eq!(has_word_bts(&text), info.mentions_bts, "text: {text:?}");
            }
        }
        let share = hits as f64 / n as f64;
        assert!((share - 0.3).abs() < 0.03, "bts share {share}");

        for (share, expect) in [(0.0, 0), (1.0, 500)] {
            let o = GenerateOptions {
                bts_share: share,
                ..opts(12)
            };
            let got = generate(&o, 500)
                .iter()
                .filter(|t| t.0.mentions_bts)
                .count();
            assert_eq!(got, expect);
        }
    }

    #[test]
    fn v2_shape() {
        let o = GenerateOptions {
            v2_share: 1.0,
            retweet_share: 0.4,
            quote_share: 0.4,
            ..opts(21)
        };
        let mut saw = [false; 3];
        for (info, bytes) in generate(&o, 3000) {
            assert!(info.v2);
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let data = &v["data"];
            assert!(data.is_object() && v["includes"].is_object());
            assert!(data["id"].is_string() && data["author_id"].is_string());
            assert!(data["text"].as_str().unwrap().chars().count() <= 281);
            let rules = v["matching_rules"].as_array().unwrap();
            assert!(!rules.is_empty());
            let bts_rule = rules.iter().any(|r| r["tag"] == "bts");
            assert_eq!(bts_rule, info.mentions_bts);
            let users = v["includes"]["users"].as_array().unwrap();
            assert!(users.iter().any(|u| u["id"] == data["author_id"]));
            let included: Vec<&Value> = v["includes"]["tweets"]
                .as_array()
                .map(|a| a.iter().map(|t| &t["id"]).collect())
                .unwrap_or_default();
            if let Some(refs) = data["referenced_tweets"].as_array() {
                for r in refs {
                    match r["type"].as_str().unwrap() {
                        "retweeted" => saw[0] = true,
                        "quoted" => saw[1] = true,
                        "replied_to" => continue,
                        other => panic!("unexpected type {other}"),
                    }
                    assert!(included.contains(&&r["id"]));
                }
            }
            if data["note_tweet"].is_object() {
                saw[2] = true;
            }
            check_v2_entities(data);
            for t in v["includes"]["tweets"].as_array().into_iter().flatten() {
                check_v2_entities(t);
            }
        }
        assert_eq!(saw, [true; 3]);
    }

    fn check_v2_entities(t: &Value) {
        let text: Vec<char> = t["text"].as_str().unwrap().chars().collect();
        for (group, prefix) in [("hashtags", '#'), ("mentions", '@'), ("cashtags", '$')] {
            for e in t["entities"][group].as_array().into_iter().flatten() {
                let (s, end) = (
                    e["start"].as_u64().unwrap() as usize,
                    e["end"].as_u64().unwrap() as usize,
                );
                let span: String = text[s..end].iter().collect();
                let name = e["tag"].as_str().or(e["username"].as_str()).unwrap();
                assert_eq!(span, format!("{prefix}{name}"));
            }
        }
        for e in t["entities"]["urls"].as_array().into_iter().flatten() {
            let (s, end) = (
                e["start"].as_u64().unwrap() as usize,
                e["end"].as_u64().unwrap() as usize,
            );
            let span: String = text[s..end].iter().collect();
            assert_eq!(span, e["url"].as_str().unwrap());
        }
    }

    fn check_v1_entities(text: &str, entities: &Value) {
        let chars: Vec<char> = text.chars().collect();
        for (group, prefix, field) in [
            ("hashtags", "#", "text"),
            ("user_mentions", "@", "screen_name"),
            ("symbols", "$", "text"),
            ("urls", "", "url"),
            ("media", "", "url"),
        ] {
            for e in entities[group].as_array().into_iter().flatten() {
                let idx = e["indices"].as_array().unwrap();
                let (s, end) = (
                    idx[0].as_u64().unwrap() as usize,
                    idx[1].as_u64().unwrap() as usize,
                );
                let span: String = chars[s..end].iter().collect();
                assert_eq!(
                    span,
                    format!("{prefix}{}", e[field].as_str().unwrap()),
                    "{text}"
                );
            }
        }
    }

    fn check_v1_status(s: &Value) {
        let text = s["text"].as_str().unwrap();
        assert!(text.chars().count() <= 140, "{text}");
        assert!(s["user"]["screen_name"].is_string());
        assert!(s["user"].as_object().unwrap().len() >= 30);
        check_v1_entities(text, &s["entities"]);
        if s["truncated"] == true {
            let ext = &s["extended_tweet"];
            let full = ext["full_text"].as_str().unwrap();
            assert!(full.chars().count() > 140);
            check_v1_entities(full, &ext["entities"]);
        }
        for nested in ["retweeted_status", "quoted_status"] {
            if s[nested].is_object() {
                check_v1_status(&s[nested]);
            }
        }
    }

    #[test]
    fn v1_shape() {
        let o = GenerateOptions {
            v2_share: 0.0,
            retweet_share: 0.4,
            quote_share: 0.4,
            ..opts(31)
        };
        let (mut rt, mut qt, mut rt_of_quote, mut truncated) = (0, 0, 0, 0);
        for (info, bytes) in generate(&o, 3000) {
            assert!(!info.v2);
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            check_v1_status(&v);
            assert_eq!(v["id_str"].as_str().unwrap(), info.id.to_string());
            if v["retweeted_status"].is_object() {
                rt += 1;
                let name = v["retweeted_status"]["user"]["screen_name"]
                    .as_str()
                    .unwrap();
                assert!(
                    v["text"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("RT @{name}: "))
                );
                if v["retweeted_status"]["quoted_status"].is_object() {
                    rt_of_quote += 1;
                    assert_eq!(v["is_quote_status"], true);
                }
            }
            if v["quoted_status"].is_object() {
                qt += 1;
                assert_eq!(v["quoted_status_id_str"], v["quoted_status"]["id_str"]);
            }
            truncated += usize::from(v["truncated"] == true);
        }
        assert!(rt > 0 && qt > 0 && rt_of_quote > 0 && truncated > 0);
    }

    #[test]
    fn wide_tweets_exceed_field_limit() {
        let o = GenerateOptions {
            wide_share: 0.2,
            ..opts(41)
        };
        let (mut wide, mut narrow) = (0, 0);
        for (info, bytes) in generate(&o, 400) {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let count = path_count(&v);
            if info.wide {
                wide += 1;
                assert!(count > 1000, "wide tweet has only {count} paths");
                assert!(count < 2800, "wide tweet has {count} paths");
            } else {
                narrow += 1;
                assert!(count < 1000, "narrow tweet has {count} paths");
            }
        }
        assert!(wide > 0 && narrow > 0);
    }

    #[test]
    fn extreme_options_do_not_panic() {
        let cases = [
            ("1970-01-01T00:00:00Z", 0),
            ("0001-01-01T00:00:00+09:00", 1),
            ("9999-12-31T23:59:59.999Z", u64::MAX),
        ];
        for (start, interval) in cases {
            for share in [0.0, 1.0] {
                let o = GenerateOptions {
                    bts_share: share,
                    v2_share: share,
                    retweet_share: 1.0 - share,
                    quote_share: 1.0,
                    wide_share: share,
                    start_time: start.into(),
                    interval_ms: interval,
                    ..opts(99)
                };
                o.validate().unwrap();
                let mut last = 0;
                for (info, bytes) in generate(&o, 60) {
                    serde_json::from_slice::<Value>(&bytes).unwrap();
                    assert!(info.id > last);
                    last = info.id;
                }
            }
        }
    }

    #[test]
    fn validate_rejects_bad_options() {
        assert!(GenerateOptions::default().validate().is_ok());
        for field in [
            "bts_share",
            "v2_share",
            "retweet_share",
            "quote_share",
            "wide_share",
        ] {
            for bad in [-0.1, 1.5, f64::NAN] {
                let mut o = GenerateOptions::default();
                match field {
                    "bts_share" => o.bts_share = bad,
                    "v2_share" => o.v2_share = bad,
                    "retweet_share" => o.retweet_share = bad,
                    "quote_share" => o.quote_share = bad,
                    _ => o.wide_share = bad,
                }
                let err = o.validate().unwrap_err();
                assert!(err.contains(field), "{err}");
            }
        }
        let o = GenerateOptions {
            start_time: "yesterday".into(),
            ..GenerateOptions::default()
        };
        assert!(o.validate().unwrap_err().contains("start_time"));
    }

    #[test]
    fn options_deserialize() {
        let o: GenerateOptions = serde_json::from_str(r#"{"seed": 9, "bts_share": 1.0}"#).unwrap();
        assert_eq!(o.seed, 9);
        assert_eq!(o.bts_share, 1.0);
        assert_eq!(o.interval_ms, 250);
        assert_eq!(o.start_time, "now");
        assert!(serde_json::from_str::<GenerateOptions>(r#"{"sed": 9}"#).is_err());
    }

    #[test]
    fn corpus_has_no_bts() {
        let lists: &[&[&str]] = &[
            EN_WORDS,
            KO_WORDS,
            JA_WORDS,
            ES_WORDS,
            AR_WORDS,
            EMOJI,
            EN_TAGS,
            KO_TAGS,
            JA_TAGS,
            ES_TAGS,
            AR_TAGS,
            CASHTAGS,
            NAME_PARTS,
            NAME_DECOR,
            SCREEN_BASES,
            LOCATIONS,
            BIO_PARTS,
            SOURCES,
            LOCALES,
            CARD_COMPONENTS,
            CARD_ATTRS,
            TRANSLATION_ENGINES,
            EN_PUNCT,
            KO_PUNCT,
            JA_PUNCT,
            ES_PUNCT,
            AR_PUNCT,
        ];
        for s in lists.iter().flat_map(|l| l.iter()) {
            assert!(!contains_bts(s) && !s.contains("방탄소년단"), "{s}");
        }
        for (_, tag) in OTHER_RULES {
            assert!(!contains_bts(tag));
        }
        assert!(CTX.len() > CTX_BTS_FROM && PLACES.len() > 10);
        for c in &CTX[..CTX_BTS_FROM] {
            for s in [c.0, c.1, c.2, c.3, c.4] {
                assert!(!contains_bts(s), "{s}");
            }
        }
        for p in PLACES {
            for s in [p.name, p.full_name, p.country] {
                assert!(!contains_bts(s), "{s}");
            }
        }
    }
}
