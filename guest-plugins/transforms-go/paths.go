// Field paths (`a.b.*.c`, with `\.`, `\*` and `\\` escapes) and the walk over the strings they
// select, as guest-plugins/transforms/src/path.rs does it.
package main

import (
	"fmt"
	"strconv"
	"strings"
)

// A path is a list of segments; nil stands for `*`.
func parsePath(raw string) ([]*string, error) {
	var segs []*string
	var key strings.Builder
	escaped := false
	s := []rune(trim(raw))
	for i := 0; ; i++ {
		if i < len(s) && s[i] == '\\' {
			i++
			if i >= len(s) {
				return nil, fmt.Errorf("path %s: ends with a lone backslash", rustDebug(raw))
			}
			switch s[i] {
			case '.', '*', '\\', ',':
				key.WriteRune(s[i])
				escaped = true
			default:
				return nil, fmt.Errorf("path %s: unknown escape `\\%c` (use \\. \\* or \\\\)", rustDebug(raw), s[i])
			}
			continue
		}
		if i >= len(s) || s[i] == '.' {
			if key.Len() == 0 {
				return nil, fmt.Errorf("path %s: empty segment", rustDebug(raw))
			}
			seg := key.String()
			if seg == "*" && !escaped {
				segs = append(segs, nil)
			} else {
				segs = append(segs, &seg)
			}
			key.Reset()
			escaped = false
			if i >= len(s) {
				return segs, nil
			}
			continue
		}
		key.WriteRune(s[i])
	}
}

func pathString(p []*string) string {
	var parts []string
	for _, seg := range p {
		if seg == nil {
			parts = append(parts, "*")
			continue
		}
		var b strings.Builder
		for _, r := range *seg {
			if r == '.' || r == '*' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		parts = append(parts, b.String())
	}
	return strings.Join(parts, ".")
}

func defaultPaths() []string {
	v1 := []string{"text", "full_text", "extended_tweet.full_text", "entities.hashtags.text", "extended_tweet.entities.hashtags.text"}
	var out []string
	for _, status := range []string{"", "retweeted_status.", "quoted_status.", "retweeted_status.quoted_status."} {
		for _, f := range v1 {
			out = append(out, status+f)
		}
	}
	return append(out, "data.text", "data.note_tweet.text", "data.entities.hashtags.tag",
		"data.note_tweet.entities.hashtags.tag", "includes.tweets.text",
		"includes.tweets.note_tweet.text", "includes.tweets.entities.hashtags.tag")
}

// A state of the lazily built automaton over many paths: the (path, position) pairs alive.
// `all` means a path ended: every string beneath counts.
type state struct {
	alive [][2]int
	all   bool
	id    string
}

type paths struct {
	list  [][]*string
	cache map[string]*state
	begin *state
}

func (p *paths) start() *state {
	if p.begin == nil {
		p.begin = &state{id: "start"}
		for i := range p.list {
			p.begin.alive = append(p.begin.alive, [2]int{i, 0})
		}
	}
	return p.begin
}

var everything = &state{all: true, id: "all"}

func (p *paths) child(s *state, key string) *state {
	memo := s.id + "\x00" + key
	if next, ok := p.cache[memo]; ok {
		return next
	}
	next := &state{}
	for _, a := range s.alive {
		seg := p.list[a[0]][a[1]]
		if seg == nil || *seg == key {
			if a[1]+1 == len(p.list[a[0]]) {
				next = everything
				break
			}
			next.alive = append(next.alive, [2]int{a[0], a[1] + 1})
		}
	}
	if next != everything {
		if len(next.alive) == 0 {
			next = nil
		} else {
			ids := make([]string, len(next.alive))
			for i, a := range next.alive {
				ids[i] = strconv.Itoa(a[0]) + ":" + strconv.Itoa(a[1])
			}
			next.id = strings.Join(ids, ",")
		}
	}
	p.cache[memo] = next
	return next
}

// Calls f on every string at or beneath a path (arrays transparent), failing where the Rust
// streaming walk decodes something it cannot: it reads every key of an object it reads, even
// beneath a path. depth is the number of arrays and objects around v.
func walk(v any, p *paths, s *state, f func(string), depth int) error {
	switch v := v.(type) {
	case *object:
		depth, err := nested(depth)
		if err != nil {
			return err
		}
		for _, kv := range v.pairs {
			if kv.key.loneSurrogate {
				return errLoneSurrogate
			}
			next := everything
			if s != everything {
				next = p.child(s, kv.key.s)
			}
			if next != nil {
				if err := walk(kv.value, p, next, f, depth); err != nil {
					return err
				}
			}
		}
	case []any:
		depth, err := nested(depth)
		if err != nil {
			return err
		}
		for _, x := range v {
			if err := walk(x, p, s, f, depth); err != nil {
				return err
			}
		}
	case number:
		_, err := v.value()
		return err
	case jstring:
		if v.loneSurrogate {
			return errLoneSurrogate
		}
		if s == everything {
			f(v.s)
		}
	}
	return nil
}

// walkTree is walk over serde_json's Value (see value.go): objects keep the last of repeated
// keys, and nothing is left to check.
func walkTree(v any, p *paths, s *state, f func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			next := everything
			if s != everything {
				next = p.child(s, k)
			}
			if next != nil {
				walkTree(x, p, next, f)
			}
		}
	case []any:
		for _, x := range v {
			walkTree(x, p, s, f)
		}
	case string:
		if s == everything {
			f(v)
		}
	}
}
