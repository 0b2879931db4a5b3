// The fast path's reading of a tweet (guest-plugins/transforms/src/facts.rs): the fields enrich
// needs, read with the strict types of the Rust serde structures. A type those structures do
// not accept is errType, which sends the record to the tree path; where serde_json would
// report a syntax error instead, the error is the record's failure.
package main

import (
	"errors"
	"slices"
	"strconv"
)

var errType = errors.New("a field has an unexpected type")

type kind int

const (
	kText   kind = iota // Option<String>
	kID                 // a tweet id: a u64 or a non-empty string, anything else is none
	kMillis             // timestamp_ms: an i64 or a string of one
	kFlag               // is_quote_status / quoted_status: "true", "object" or "other"
	kVec
	kStruct
)

// A schema is one of the Rust structures: a read gives string, int64, []any or
// map[string]any (a struct's fields, nil for null or absent), or nil for JSON null.
type schema struct {
	kind   kind
	elem   *schema // kVec
	fields []field // kStruct, in declaration order
}

type field struct {
	name string
	t    *schema
}

func vec(t *schema) *schema          { return &schema{kind: kVec, elem: t} }
func record(fields ...field) *schema { return &schema{kind: kStruct, fields: fields} }

var (
	textT    = &schema{kind: kText}
	tag      = record(field{"text", textT}, field{"tag", textT})
	mention  = record(field{"screen_name", textT}, field{"username", textT})
	entities = record(field{"hashtags", vec(tag)}, field{"user_mentions", vec(mention)},
		field{"mentions", vec(mention)})
	note       = record(field{"text", textT}, field{"entities", entities})
	extended   = record(field{"full_text", textT}, field{"entities", entities})
	v2Included = record(field{"id", textT}, field{"entities", entities}, field{"note_tweet", note})
	topFields  = map[string]*schema{
		"id_str":           {kind: kID},
		"id":               {kind: kID},
		"text":             textT,
		"full_text":        textT,
		"created_at":       textT,
		"timestamp_ms":     {kind: kMillis},
		"user":             record(field{"screen_name", textT}),
		"entities":         entities,
		"extended_tweet":   extended,
		"retweeted_status": record(field{"entities", entities}, field{"extended_tweet", extended}),
		"is_quote_status":  {kind: kFlag},
		"quoted_status":    {kind: kFlag},
		"data": record(field{"id", textT}, field{"text", textT}, field{"created_at", textT},
			field{"author_id", textT}, field{"entities", entities}, field{"note_tweet", note},
			field{"referenced_tweets", vec(record(field{"type", textT}, field{"id", textT}))}),
		"includes": record(
			field{"users", vec(record(field{"id", textT}, field{"username", textT}))},
			field{"tweets", vec(v2Included)}),
	}
	v1Keys = []string{"id_str", "id", "text", "full_text", "created_at"}
)

// touch decodes what serde_json decodes while it reports an unexpected type: a string or a
// number, which can fail on their own.
func touch(v any) error {
	switch v := v.(type) {
	case number:
		_, err := v.value()
		return err
	case jstring:
		if v.loneSurrogate {
			return errLoneSurrogate
		}
	}
	return nil
}

// typeError is errType, unless decoding v fails first.
func typeError(v any) error {
	if err := touch(v); err != nil {
		return err
	}
	return errType
}

// strict reads v as Option<t>.
func strict(v any, t *schema) (any, error) {
	if v == nil {
		return nil, nil
	}
	return strictSome(v, t)
}

func strictSome(v any, t *schema) (any, error) {
	compound := false
	switch v.(type) {
	case *object, []any:
		compound = true
	}
	switch t.kind {
	case kText:
		if s, ok := v.(jstring); ok {
			if s.loneSurrogate {
				return nil, errLoneSurrogate
			}
			return s.s, nil
		}
		return nil, typeError(v)
	case kID:
		switch v := v.(type) {
		case number:
			n, err := v.value()
			if err != nil || n.kind != 'u' {
				return nil, err
			}
			return strconv.FormatUint(n.u, 10), nil
		case jstring:
			if v.loneSurrogate {
				return nil, errLoneSurrogate
			}
			if v.s == "" {
				return nil, nil
			}
			return v.s, nil
		}
		if compound {
			return nil, errType
		}
		return nil, nil
	case kMillis:
		switch v := v.(type) {
		case number:
			n, err := v.value()
			if err != nil {
				return nil, err
			}
			return millis(n), nil
		case jstring:
			if v.loneSurrogate {
				return nil, errLoneSurrogate
			}
			if ms, ok := parseI64(v.s); ok {
				return ms, nil
			}
			return nil, nil
		}
		if compound {
			return nil, errType
		}
		return nil, nil
	case kFlag:
		if obj, ok := v.(*object); ok {
			for _, kv := range obj.pairs { // read, while the values are skipped
				if kv.key.loneSurrogate {
					return nil, errLoneSurrogate
				}
			}
			return "object", nil
		}
		if err := touch(v); err != nil {
			return nil, err
		}
		if v == true {
			return "true", nil
		}
		return "other", nil
	case kVec:
		items, ok := v.([]any)
		if !ok {
			return nil, typeError(v)
		}
		out := make([]any, len(items))
		for i, x := range items {
			var err error
			if out[i], err = strictSome(x, t.elem); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return strictStruct(v, t)
}

// millis is a number as timestamp_ms: an integer that fits i64, else none.
func millis(n num) any {
	switch {
	case n.kind == 'i':
		return n.i
	case n.kind == 'u' && n.u <= 1<<63-1:
		return int64(n.u)
	}
	return nil
}

func strictStruct(v any, t *schema) (any, error) {
	out := map[string]any{}
	switch v := v.(type) {
	case *object:
		for _, kv := range v.pairs {
			if kv.key.loneSurrogate {
				return nil, errLoneSurrogate
			}
			i := fieldIndex(t, kv.key.s)
			if i < 0 {
				continue
			}
			if _, dup := out[kv.key.s]; dup {
				return nil, errType // serde: duplicate field
			}
			x, err := strict(kv.value, t.fields[i].t)
			if err != nil {
				return nil, err
			}
			out[kv.key.s] = x
		}
		return out, nil
	case []any:
		// serde's derived structs also read a sequence, field by field in declaration order.
		for i, f := range t.fields {
			if i == len(v) {
				return nil, errType // too few elements
			}
			x, err := strict(v[i], f.t)
			if err != nil {
				return nil, err
			}
			out[f.name] = x
		}
		if len(v) > len(t.fields) {
			return nil, errors.New("not valid JSON: trailing characters")
		}
		return out, nil
	}
	return nil, typeError(v)
}

func fieldIndex(t *schema, name string) int {
	for i, f := range t.fields {
		if f.name == name {
			return i
		}
	}
	return -1
}

// top is the fast path's reading of the document's top level.
type top struct {
	keys         int // pairs, repeats included
	hasTimestamp bool
	hasTarget    bool
	v1           bool // a key only v1.1 tweets have
	fields       map[string]any
}

func readTop(doc *object, target string) (*top, error) {
	t := &top{keys: len(doc.pairs), fields: map[string]any{}}
	given := map[string]bool{} // fields read as Some: any value but null, even an id that is none
	for _, kv := range doc.pairs {
		if kv.key.loneSurrogate {
			return nil, errLoneSurrogate
		}
		k := kv.key.s
		if s, ok := topFields[k]; ok {
			if given[k] {
				return nil, errType // serde's duplicate_field
			}
			given[k] = kv.value != nil
			x, err := strict(kv.value, s)
			if err != nil {
				return nil, err
			}
			t.fields[k] = x
		} else if k == "@timestamp" {
			t.hasTimestamp = true
		}
		t.hasTarget = t.hasTarget || k == target
		t.v1 = t.v1 || slices.Contains(v1Keys, k)
	}
	return t, nil
}

// g follows keys through nested structs; nil where one is missing or null.
func g(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// gs is g for a string field ("" when missing).
func gs(v any, keys ...string) (string, bool) {
	s, ok := g(v, keys...).(string)
	return s, ok
}

func gl(v any, keys ...string) []any {
	l, _ := g(v, keys...).([]any)
	return l
}

// findByID is the first of items whose `id` is id.
func findByID(items []any, id string) any {
	for _, x := range items {
		if s, ok := gs(x, "id"); ok && s == id {
			return x
		}
	}
	return nil
}

func entityFacts(f *facts, ent any, tagField, mentionsKey, mentionField string) {
	for _, h := range gl(ent, "hashtags") {
		if s, ok := gs(h, tagField); ok {
			f.hashtags = pushFolded(f.hashtags, s)
		}
	}
	for _, m := range gl(ent, mentionsKey) {
		if s, ok := gs(m, mentionField); ok {
			f.mentions = pushFolded(f.mentions, s)
		}
	}
}

// streamedFacts derives the facts from the strict reading, as facts.rs does.
func streamedFacts(t *top) (string, *facts) {
	f := &facts{}
	if data := t.fields["data"]; data != nil {
		includes := t.fields["includes"]
		rtID, hasRT := "", false
		for _, r := range gl(data, "referenced_tweets") {
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
		var retweeted any
		if hasRT {
			retweeted = findByID(gl(includes, "tweets"), rtID)
		}
		for _, ent := range []any{g(data, "entities"), g(data, "note_tweet", "entities"),
			g(retweeted, "entities"), g(retweeted, "note_tweet", "entities")} {
			entityFacts(f, ent, "tag", "mentions", "username")
		}
		f.id, _ = gs(data, "id")
		if author, ok := gs(data, "author_id"); ok {
			f.author, _ = gs(findByID(gl(includes, "users"), author), "username")
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
		return "v2", f
	}
	if !t.v1 {
		return "unknown", f
	}
	rt := t.fields["retweeted_status"]
	for _, ent := range []any{t.fields["entities"], g(t.fields["extended_tweet"], "entities"),
		g(rt, "entities"), g(rt, "extended_tweet", "entities")} {
		entityFacts(f, ent, "text", "user_mentions", "screen_name")
	}
	if f.id, _ = t.fields["id_str"].(string); f.id == "" {
		f.id, _ = t.fields["id"].(string)
	}
	f.author, _ = gs(t.fields["user"], "screen_name")
	f.isRetweet = rt != nil
	f.isQuote = t.fields["is_quote_status"] == "true" || t.fields["quoted_status"] == "object"
	for _, s := range []any{g(t.fields["extended_tweet"], "full_text"), t.fields["full_text"], t.fields["text"]} {
		if s, ok := s.(string); ok {
			f.setText(s)
			break
		}
	}
	if created, ok := t.fields["created_at"].(string); ok {
		f.ms, f.hasMs = parseV1Time(created)
	}
	if !f.hasMs {
		f.ms, f.hasMs = t.fields["timestamp_ms"].(int64)
	}
	return "v1.1", f
}
