// enrich in Go: adds derived fields to a tweet (see ../enrich). A port of the Rust library in
// guest-plugins/transforms (enrich.rs), held to the same test vectors (guest-plugins/vectors):
// same config keys, same outcomes and, for set-value, the same bytes. The shared code (ABI,
// JSON, config, paths, matcher) is in ../transforms-go.
//
// Two paths, as in Rust. The fast path reads the tweet fields strictly (tweet.go) and splices
// the derived fields in before the closing brace, keeping the document's own bytes. The tree
// path, taken when the document already has `@timestamp` or the target key or when a field
// has an unexpected type, merges them into serde_json's Value and writes it all again.
package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type enrich struct {
	search *search // search.matcher is nil without keywords
	target string
}

var current *enrich

func initTransform(pairs [][2]string) error {
	e, err := newEnrich(pairs)
	if err != nil {
		return err
	}
	logInfo(e.summary())
	current = e
	return nil
}

const notInitialised = "not initialised: process was called before a successful init"

func apply(value []byte) (byte, []byte) {
	if current == nil {
		return caseFail, []byte(notInitialised)
	}
	out, err := current.apply(value)
	switch {
	case err != nil:
		return caseFail, []byte(err.Error())
	case out == nil:
		return caseKeep, nil
	default:
		return caseSetValue, out
	}
}

var knownKeys = []string{"keywords", "fields", "case_sensitive", "whole_word", "target"}

func newEnrich(pairs [][2]string) (*enrich, error) {
	c, err := newConfig(pairs, knownKeys)
	if err != nil {
		return nil, err
	}
	target := "sluice"
	if raw, ok := c["target"]; ok {
		target = trim(raw)
	}
	if target == "" || target == "@timestamp" {
		return nil, fmt.Errorf("config key `target`: %s cannot hold the derived fields", rustDebug(target))
	}
	s, err := newSearch(c)
	if err != nil {
		return nil, err
	}
	return &enrich{search: s, target: target}, nil
}

func (e *enrich) summary() string {
	kw := "no keywords"
	if e.search.matcher != nil {
		kw = "matched_keywords from " + e.search.describe()
	}
	return fmt.Sprintf("derived fields in `%s`, %s", e.target, kw)
}

// apply returns the new value, or nil to keep the record as it is.
func (e *enrich) apply(value []byte) ([]byte, error) {
	doc, err := objectDoc(value)
	if err != nil {
		return nil, err
	}
	out, err := e.fast(value, doc)
	if errors.Is(err, errType) {
		return e.tree(doc)
	}
	return out, err
}

// matched is the keywords found by walk, in config order; nil without keywords.
func (e *enrich) matched(walk func(p *paths, mark func(string)) error) ([]any, error) {
	m := e.search.matcher
	if m == nil {
		return nil, nil
	}
	found := make([]bool, len(m.keywords))
	if err := walk(e.search.paths, func(s string) { m.mark(s, found) }); err != nil {
		return nil, err
	}
	out := []any{}
	for i, k := range m.keywords {
		if found[i] {
			out = append(out, k.original)
		}
	}
	return out, nil
}

func (e *enrich) fast(value []byte, doc *object) ([]byte, error) {
	t, err := readTop(doc, e.target)
	if err != nil {
		return nil, err
	}
	if t.hasTimestamp || t.hasTarget {
		return nil, errType
	}
	shape, f := streamedFacts(t)
	matched, err := e.matched(func(p *paths, mark func(string)) error {
		return walk(doc, p, p.start(), mark, 0)
	})
	if err != nil {
		return nil, err
	}
	fields, ts := derived(shape, f, matched)
	end := len(value) - 1 // the closing brace
	for strings.IndexByte(" \t\n\r", value[end]) >= 0 {
		end--
	}
	var b strings.Builder
	b.Write(value[:end])
	sep := ","
	if t.keys == 0 {
		sep = ""
	}
	if ts != "" {
		b.WriteString(sep + `"@timestamp":`)
		dumpStr(&b, ts)
		sep = ","
	}
	b.WriteString(sep)
	dumpStr(&b, e.target)
	b.WriteByte(':')
	dump(&b, fields)
	b.Write(value[end:])
	return []byte(b.String()), nil
}

func (e *enrich) tree(doc *object) ([]byte, error) {
	v, err := tree(doc, 0)
	if err != nil {
		return nil, err
	}
	m := v.(map[string]any)
	shape := treeShape(m)
	f := treeFacts(m, shape)
	matched, _ := e.matched(func(p *paths, mark func(string)) error {
		walkTree(m, p, p.start(), mark)
		return nil
	})
	fields, ts := derived(shape, f, matched)
	changed := false
	if old, _ := m["@timestamp"].(string); ts != "" && old != ts {
		m["@timestamp"] = ts
		changed = true
	}
	if existing, ok := m[e.target].(map[string]any); ok {
		// merged into: keys of its own stay, and a derived key already equal is no change
		for k, v := range fields {
			if old, ok := existing[k]; !ok || dumps(old) != dumps(v) {
				existing[k] = v
				changed = true
			}
		}
	} else {
		m[e.target] = fields
		changed = true
	}
	if !changed {
		return nil, nil
	}
	return []byte(dumps(m)), nil
}

// facts are what the derived fields are made of; "" is none for id and author.
type facts struct {
	hashtags, mentions []string
	id, author         string
	isRetweet, isQuote bool
	fullText           string
	hasText, hasMs     bool
	ms                 int64
}

func (f *facts) setText(s string) { f.fullText, f.hasText = s, true }

// derived is the target object and the @timestamp ("" for none).
func derived(shape string, f *facts, matched []any) (map[string]any, string) {
	list := func(l []string) []any {
		out := make([]any, len(l))
		for i, s := range l {
			out[i] = s
		}
		return out
	}
	out := map[string]any{
		"hashtags":   list(f.hashtags),
		"mentions":   list(f.mentions),
		"is_retweet": f.isRetweet,
		"is_quote":   f.isQuote,
		"shape":      shape,
	}
	if matched != nil {
		out["matched_keywords"] = matched
	}
	if f.id != "" {
		author := f.author
		if author == "" {
			author = "i/web"
		}
		out["tweet_url"] = "https://twitter.com/" + author + "/status/" + f.id
	}
	if f.hasText {
		out["text_length"] = num{kind: 'u', u: uint64(utf8.RuneCountInString(f.fullText))}
	}
	ts := ""
	if f.hasMs {
		ts, _ = formatISO(f.ms)
	}
	return out, ts
}

// pushFolded adds value lowercased unless it is empty or already there.
func pushFolded(list []string, value string) []string {
	if value == "" {
		return list
	}
	if l := lowercase(value); !slices.Contains(list, l) {
		list = append(list, l)
	}
	return list
}

// ---- the tree path's reading (last key wins, any type) --------------------------------------

func treeShape(doc map[string]any) string {
	if _, ok := doc["data"].(map[string]any); ok {
		return "v2"
	}
	for _, k := range v1Keys {
		if _, ok := doc[k]; ok {
			return "v1.1"
		}
	}
	return "unknown"
}

// objects is v if it is an object, the objects in v if it is an array, else nothing.
func objects(v any) []any {
	switch v := v.(type) {
	case map[string]any:
		return []any{v}
	case []any:
		var out []any
		for _, x := range v {
			if m, ok := x.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	}
	return nil
}

func path(v any, dotted string) any { return g(v, strings.Split(dotted, ".")...) }

func collect(list []string, entities any, kind, field string) []string {
	if _, ok := entities.(map[string]any); !ok {
		return list
	}
	for _, item := range objects(g(entities, kind)) {
		if s, ok := gs(item, field); ok {
			list = pushFolded(list, s)
		}
	}
	return list
}

// idString is a tweet id: a u64 or a non-empty string.
func idString(v any) string {
	switch v := v.(type) {
	case num:
		if v.kind == 'u' {
			return strconv.FormatUint(v.u, 10)
		}
	case string:
		return v
	}
	return ""
}

func treeFacts(doc map[string]any, shape string) *facts {
	f := &facts{}
	switch shape {
	case "v1.1":
		rt, isRT := doc["retweeted_status"].(map[string]any)
		statuses := []any{doc}
		if isRT {
			statuses = append(statuses, rt)
		}
		for _, status := range statuses {
			for _, ent := range []any{g(status, "entities"), path(status, "extended_tweet.entities")} {
				f.hashtags = collect(f.hashtags, ent, "hashtags", "text")
				f.mentions = collect(f.mentions, ent, "user_mentions", "screen_name")
			}
		}
		if f.id = idString(doc["id_str"]); f.id == "" {
			f.id = idString(doc["id"])
		}
		f.author, _ = gs(doc, "user", "screen_name")
		f.isRetweet = isRT
		_, quotes := doc["quoted_status"].(map[string]any)
		f.isQuote = doc["is_quote_status"] == true || quotes
		for _, p := range []string{"extended_tweet.full_text", "full_text", "text"} {
			if s, ok := path(doc, p).(string); ok {
				f.setText(s)
				break
			}
		}
		if created, ok := doc["created_at"].(string); ok {
			f.ms, f.hasMs = parseV1Time(created)
		}
		if !f.hasMs {
			switch ms := doc["timestamp_ms"].(type) {
			case num:
				f.ms, f.hasMs = millis(ms).(int64)
			case string:
				f.ms, f.hasMs = parseI64(ms)
			}
		}
	case "v2":
		data := doc["data"]
		rtID, hasRT := "", false
		for _, r := range objects(g(data, "referenced_tweets")) {
			kind, ok1 := gs(r, "type")
			id, ok2 := gs(r, "id")
			if !ok1 || !ok2 {
				continue
			}
			if kind == "retweeted" && !hasRT {
				rtID, hasRT = id, true
			}
			f.isQuote = f.isQuote || kind == "quoted"
		}
		tweets := []any{data}
		if hasRT {
			if rt := findByID(objects(path(doc, "includes.tweets")), rtID); rt != nil {
				tweets = append(tweets, rt)
			}
		}
		for _, tweet := range tweets {
			for _, ent := range []any{g(tweet, "entities"), path(tweet, "note_tweet.entities")} {
				f.hashtags = collect(f.hashtags, ent, "hashtags", "tag")
				f.mentions = collect(f.mentions, ent, "mentions", "username")
			}
		}
		f.id, _ = gs(data, "id")
		if author, ok := gs(data, "author_id"); ok {
			f.author, _ = gs(findByID(objects(path(doc, "includes.users")), author), "username")
		}
		f.isRetweet = hasRT
		if s, ok := gs(data, "note_tweet", "text"); ok {
			f.setText(s)
		} else if s, ok := gs(data, "text"); ok {
			f.setText(s)
		}
		if created, ok := gs(data, "created_at"); ok {
			f.ms, f.hasMs = parseRFC3339(created)
		}
	}
	return f
}

// ---- lowercase --------------------------------------------------------------------------------

// lowercase is Rust's str::to_lowercase: unicode.ToLower per character, except İ (i and a
// combining dot) and Σ, which is ς at the end of a word.
func lowercase(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == 'İ':
			b.WriteString("i\u0307")
		case r == 'Σ' && casedNext(s[:i], true) && !casedNext(s[i+len("Σ"):], false):
			b.WriteRune('ς')
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// casedNext says whether the first character of s (the last, backwards) that is not
// case-ignorable is cased: Unicode's Final_Sigma context.
func casedNext(s string, backwards bool) bool {
	for s != "" {
		var r rune
		var n int
		if backwards {
			r, n = utf8.DecodeLastRuneInString(s)
			s = s[:len(s)-n]
		} else {
			r, n = utf8.DecodeRuneInString(s)
			s = s[n:]
		}
		if !unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk) &&
			!strings.ContainsRune("'.:·\u0387\u055f\u05f4\u2018\u2019\u2024\u2027\ufe13\ufe52\ufe55\uff07\uff0e\uff1a", r) {
			return unicode.In(r, unicode.Lu, unicode.Ll, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
		}
	}
	return false
}
