// keyword-filter in Go: keeps the tweets that mention a keyword (see ../keyword-filter). A
// port of the Rust library in guest-plugins/transforms, held to the same test vectors
// (guest-plugins/vectors): same config keys, same matching rules, same outcomes.
package main

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type filter struct {
	matcher  *matcher
	paths    *paths
	fields   [][]*string // nil: the default fields
	caseSens bool
	invert   bool
}

var current *filter

func initTransform(pairs [][2]string) error {
	f, err := newFilter(pairs)
	if err != nil {
		return err
	}
	logInfo(f.summary())
	current = f
	return nil
}

const notInitialised = "not initialised: process was called before a successful init"

func apply(value []byte) (byte, []byte) {
	if current == nil {
		return caseFail, []byte(notInitialised)
	}
	keep, err := current.apply(value)
	switch {
	case err != nil:
		return caseFail, []byte(err.Error())
	case keep:
		return caseKeep, nil
	default:
		return caseDrop, nil
	}
}

// ---- config -------------------------------------------------------------------------------

var knownKeys = []string{"keywords", "fields", "case_sensitive", "whole_word", "invert"}

type config map[string]string

func newConfig(pairs [][2]string) (config, error) {
	c := config{}
	for _, p := range pairs {
		if !slices.Contains(knownKeys, p[0]) {
			return nil, fmt.Errorf("unknown config key `%s` (known keys: %s)", p[0], strings.Join(knownKeys, ", "))
		}
		if _, seen := c[p[0]]; seen {
			return nil, fmt.Errorf("config key `%s` is given more than once", p[0])
		}
		c[p[0]] = p[1]
	}
	return c, nil
}

func (c config) boolean(key string, dflt bool) (bool, error) {
	raw, ok := c[key]
	if !ok {
		return dflt, nil
	}
	switch asciiLower(strings.TrimFunc(raw, unicode.IsSpace)) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, fmt.Errorf("config key `%s`: expected true or false, got %s", key, rustDebug(raw))
}

func (c config) list(key string) ([]string, error) {
	raw, ok := c[key]
	if !ok {
		return nil, nil
	}
	items := splitList(raw)
	if len(items) == 0 {
		return nil, fmt.Errorf("config key `%s`: the list is empty", key)
	}
	return items, nil
}

func rustDebug(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u{%x}`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func splitList(raw string) []string {
	var items []string
	var cur strings.Builder
	push := func() {
		if item := strings.TrimFunc(cur.String(), unicode.IsSpace); item != "" {
			items = append(items, item)
		}
		cur.Reset()
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '\\' && i+1 < len(raw):
			if raw[i+1] == ',' {
				cur.WriteByte(',')
			} else {
				cur.WriteByte('\\')
				cur.WriteByte(raw[i+1])
			}
			i++
		case c == ',':
			push()
		default:
			cur.WriteByte(c)
		}
	}
	push()
	return items
}

func newFilter(pairs [][2]string) (*filter, error) {
	c, err := newConfig(pairs)
	if err != nil {
		return nil, err
	}
	f := &filter{}
	if f.caseSens, err = c.boolean("case_sensitive", false); err != nil {
		return nil, err
	}
	wholeWord, err := c.boolean("whole_word", true)
	if err != nil {
		return nil, err
	}
	fields, err := c.list("fields")
	if err != nil {
		return nil, err
	}
	var parsed [][]*string
	for _, item := range fields {
		p, err := parsePath(item)
		if err != nil {
			return nil, fmt.Errorf("config key `fields`: %w", err)
		}
		parsed = append(parsed, p)
	}
	keywords, err := c.list("keywords")
	if err != nil {
		return nil, err
	}
	if keywords == nil {
		if _, ok := c["fields"]; ok {
			return nil, errors.New("config key `fields` needs `keywords`")
		}
		return nil, errors.New("config key `keywords` is required: comma-separated keywords, e.g. \"bts,방탄소년단\"")
	}
	for i, k := range keywords {
		keywords[i] = strings.ReplaceAll(k, `\\`, `\`)
	}
	f.matcher = newMatcher(keywords, f.caseSens, wholeWord)
	f.fields = parsed
	if parsed == nil {
		for _, p := range defaultPaths() {
			pp, _ := parsePath(p)
			parsed = append(parsed, pp)
		}
	}
	f.paths = &paths{list: parsed, cache: map[string]*state{}}
	if f.invert, err = c.boolean("invert", false); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *filter) summary() string {
	verb := "keeps only"
	if f.invert {
		verb = "drops"
	}
	where := "the default tweet text fields"
	if f.fields != nil {
		var names []string
		for _, p := range f.fields {
			names = append(names, pathString(p))
		}
		where = strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s tweets matching %s, case_sensitive=%t, in %s", verb, f.matcher.describe(), f.caseSens, where)
}

func (f *filter) apply(value []byte) (bool, error) {
	doc, err := objectDoc(value)
	if err != nil {
		return false, err
	}
	found := false
	err = walk(doc, f.paths, f.paths.start(), func(s string) {
		if !found {
			found = f.matcher.matchesAny(s)
		}
	})
	if err != nil {
		return false, err
	}
	return found != f.invert, nil
}

// ---- paths --------------------------------------------------------------------------------

// A path is a list of segments; nil stands for `*`.
func parsePath(raw string) ([]*string, error) {
	var segs []*string
	var key strings.Builder
	escaped := false
	s := []rune(strings.TrimFunc(raw, unicode.IsSpace))
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
// streaming walk decodes something it cannot.
func walk(v any, p *paths, s *state, f func(string)) error {
	switch v := v.(type) {
	case *object:
		for _, kv := range v.pairs {
			next := everything
			if s != everything {
				if kv.key.loneSurrogate {
					return errLoneSurrogate
				}
				next = p.child(s, kv.key.s)
			}
			if next != nil {
				if err := walk(kv.value, p, next, f); err != nil {
					return err
				}
			}
		}
	case []any:
		for _, x := range v {
			if err := walk(x, p, s, f); err != nil {
				return err
			}
		}
	case number:
		return v.check()
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

// ---- keyword matching -----------------------------------------------------------------------

type keyword struct {
	original, needle                      string
	needsFolding, asciiCI, checkL, checkR bool
}

type matcher struct {
	keywords  []keyword
	wholeWord bool
}

func newMatcher(words []string, caseSens, wholeWord bool) *matcher {
	m := &matcher{wholeWord: wholeWord}
	for _, original := range words {
		needle, needs := original, false
		if !caseSens {
			for _, r := range original {
				if r >= 0x80 && !caseless(r) {
					needs = true
				}
			}
			needle = fold(original)
		}
		if needle == "" || slices.ContainsFunc(m.keywords, func(k keyword) bool { return k.needle == needle }) {
			continue
		}
		first, _ := utf8.DecodeRuneInString(needle)
		last, _ := utf8.DecodeLastRuneInString(needle)
		m.keywords = append(m.keywords, keyword{original, needle, needs, !caseSens && !needs,
			wholeWord && bounded(first), wholeWord && bounded(last)})
	}
	return m
}

func (m *matcher) describe() string {
	var names []string
	for _, k := range m.keywords {
		names = append(names, k.original)
	}
	return fmt.Sprintf("%d keyword(s) [%s], whole_word=%t", len(names), strings.Join(names, ", "), m.wholeWord)
}

func (m *matcher) matchesAny(text string) bool {
	folded := ""
	haveFolded := false
	for _, k := range m.keywords {
		hay := text
		if k.needsFolding {
			if !haveFolded {
				folded, haveFolded = fold(text), true
			}
			hay = folded
		}
		if k.find(hay) {
			return true
		}
	}
	return false
}

// Like the Rust matcher: overlapping candidates in the ASCII case-insensitive scan,
// non-overlapping ones (memmem's find_iter) otherwise. Works on the UTF-8 bytes.
func (k *keyword) find(text string) bool {
	n := len(k.needle)
	step := n
	if k.asciiCI {
		step = 1
	}
	for from := 0; from+n <= len(text); {
		var at int
		if k.asciiCI {
			at = indexASCIIFold(text[from:], k.needle)
		} else {
			at = strings.Index(text[from:], k.needle)
		}
		if at < 0 {
			return false
		}
		start := from + at
		end := start + n
		leftOK := true
		if k.checkL && start > 0 {
			r, _ := utf8.DecodeLastRuneInString(text[:start])
			leftOK = !bounded(r)
		}
		rightOK := true
		if k.checkR && end < len(text) {
			r, _ := utf8.DecodeRuneInString(text[end:])
			rightOK = !bounded(r)
		}
		if leftOK && rightOK {
			return true
		}
		from = start + step
	}
	return false
}

// The first index where needle (ASCII-lowercase already) occurs in s, ASCII letters compared
// without case and every other byte exactly.
func indexASCIIFold(s, needle string) int {
	for i := 0; i+len(needle) <= len(s); i++ {
		ok := true
		for j := 0; j < len(needle); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 32
			}
			if c != needle[j] {
				ok = false
				break
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// Unicode lowercase as Rust's char::to_lowercase (İ becomes i + combining dot), final sigma
// as sigma.
func fold(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r < 0x80:
			if 'A' <= r && r <= 'Z' {
				r += 32
			}
			b.WriteRune(r)
		case r == 0x130:
			b.WriteString("i\u0307")
		default:
			l := unicode.ToLower(r)
			if l == 'ς' {
				l = 'σ'
			}
			b.WriteRune(l)
		}
	}
	return b.String()
}

func caseless(r rune) bool {
	return unicode.ToLower(r) == r && unicode.ToUpper(r) == r && unicode.SimpleFold(r) == r
}

type span struct{ lo, hi rune }

var unspaced = []span{{0x0E00, 0x0EFF}, {0x1000, 0x109F}, {0x1100, 0x11FF}, {0x1780, 0x17FF},
	{0x3000, 0x303F}, {0x3040, 0x30FF}, {0x3130, 0x318F}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF},
	{0x4E00, 0x9FFF}, {0xA960, 0xA97F}, {0xAC00, 0xD7FF}, {0xF900, 0xFAFF}, {0xFF66, 0xFFDC},
	{0x20000, 0x3FFFF}}
var diacritic = []span{{0x0300, 0x036F}, {0x0591, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F},
	{0x0670, 0x0670}, {0x06D6, 0x06ED}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF}, {0x20D0, 0x20FF},
	{0xFE20, 0xFE2F}}

func inSpans(spans []span, r rune) bool {
	for _, s := range spans {
		if s.lo <= r && r <= s.hi {
			return true
		}
	}
	return false
}

// isAlnum: Rust's char::is_alphanumeric, from the table `cargo xtask plugins` generates
// (alnumRanges: sorted half-open ranges, flattened).
func isAlnum(r rune) bool {
	i, _ := slices.BinarySearch(alnumRanges, uint32(r)+1)
	return i%2 == 1
}

// A word character that takes part in whole-word boundaries.
func bounded(r rune) bool {
	if r < 0x80 {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_'
	}
	return isAlnum(r) && !inSpans(unspaced, r) && !inSpans(diacritic, r)
}

// ---- JSON ---------------------------------------------------------------------------------

var errLoneSurrogate = errors.New("not valid JSON: lone surrogate in hex escape")

type jstring struct {
	s             string
	loneSurrogate bool
}

type number string

type pair struct {
	key   jstring
	value any
}

type object struct{ pairs []pair }

// check fails where serde_json would: a number beyond f64's range.
func (n number) check() error {
	f, _, err := big.ParseFloat(string(n), 10, 64, big.ToNearestEven)
	if err != nil {
		return err
	}
	if x, _ := f.Float64(); math.IsInf(x, 0) {
		return errors.New("not valid JSON: number out of range")
	}
	return nil
}

func utf8Error(b []byte) string {
	for i := 0; i < len(b); {
		first := b[i]
		if first < 0x80 {
			i++
			continue
		}
		var width int
		switch {
		case first >= 0xC2 && first <= 0xDF:
			width = 2
		case first >= 0xE0 && first <= 0xEF:
			width = 3
		case first >= 0xF0 && first <= 0xF4:
			width = 4
		default:
			return fmt.Sprintf("invalid utf-8 sequence of 1 bytes from index %d", i)
		}
		for k := 1; k < width; k++ {
			if i+k >= len(b) {
				return fmt.Sprintf("incomplete utf-8 byte sequence from index %d", i)
			}
			lo, hi := byte(0x80), byte(0xBF)
			if k == 1 {
				switch first {
				case 0xE0:
					lo = 0xA0
				case 0xED:
					hi = 0x9F
				case 0xF0:
					lo = 0x90
				case 0xF4:
					hi = 0x8F
				}
			}
			if c := b[i+k]; c < lo || c > hi {
				return fmt.Sprintf("invalid utf-8 sequence of %d bytes from index %d", k, i)
			}
		}
		i += width
	}
	return ""
}

func objectDoc(value []byte) (*object, error) {
	if msg := utf8Error(value); msg != "" {
		return nil, errors.New("not valid UTF-8: " + msg)
	}
	p := &parser{s: value}
	doc, err := p.document()
	if err != nil {
		return nil, err
	}
	if obj, ok := doc.(*object); ok {
		return obj, nil
	}
	kind := "a number"
	switch doc.(type) {
	case []any:
		kind = "an array"
	case jstring:
		kind = "a string"
	case bool:
		kind = "a boolean"
	case nil:
		kind = "null"
	}
	return nil, errors.New("not a JSON object: the document is " + kind)
}

type parser struct {
	s []byte
	i int
}

func (p *parser) fail(what string) error {
	return fmt.Errorf("not valid JSON: %s at position %d", what, p.i)
}

func (p *parser) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *parser) document() (any, error) {
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.s) {
		return nil, p.fail("trailing characters")
	}
	return v, nil
}

func (p *parser) value() (any, error) {
	p.ws()
	if p.i >= len(p.s) {
		return nil, p.fail("EOF while parsing a value")
	}
	switch c := p.s[p.i]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == 't':
		return p.word("true", true)
	case c == 'f':
		return p.word("false", false)
	case c == 'n':
		return p.word("null", nil)
	default:
		return p.number()
	}
}

func (p *parser) word(w string, v any) (any, error) {
	if strings.HasPrefix(string(p.s[p.i:min(len(p.s), p.i+len(w))]), w) {
		p.i += len(w)
		return v, nil
	}
	return nil, p.fail("expected ident")
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func (p *parser) number() (any, error) {
	start := p.i
	if p.i < len(p.s) && p.s[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.s) && p.s[p.i] == '0':
		p.i++
	case p.i < len(p.s) && isDigit(p.s[p.i]):
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	default:
		return nil, p.fail("expected value")
	}
	if p.i < len(p.s) && p.s[p.i] == '.' {
		p.i++
		if p.i >= len(p.s) || !isDigit(p.s[p.i]) {
			return nil, p.fail("invalid number")
		}
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	}
	if p.i < len(p.s) && (p.s[p.i] == 'e' || p.s[p.i] == 'E') {
		p.i++
		if p.i < len(p.s) && (p.s[p.i] == '+' || p.s[p.i] == '-') {
			p.i++
		}
		if p.i >= len(p.s) || !isDigit(p.s[p.i]) {
			return nil, p.fail("invalid number")
		}
		for p.i < len(p.s) && isDigit(p.s[p.i]) {
			p.i++
		}
	}
	return number(p.s[start:p.i]), nil
}

func (p *parser) object() (any, error) {
	p.i++
	obj := &object{}
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return obj, nil
	}
	for {
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, p.fail("key must be a string")
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, p.fail("expected `:`")
		}
		p.i++
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		obj.pairs = append(obj.pairs, pair{k.(jstring), v})
		p.ws()
		if p.i >= len(p.s) {
			return nil, p.fail("EOF while parsing an object")
		}
		c := p.s[p.i]
		p.i++
		if c == '}' {
			return obj, nil
		}
		if c != ',' {
			return nil, p.fail("expected `,` or `}`")
		}
	}
}

func (p *parser) array() (any, error) {
	p.i++
	items := []any{}
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return items, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		items = append(items, v)
		p.ws()
		if p.i >= len(p.s) {
			return nil, p.fail("EOF while parsing a list")
		}
		c := p.s[p.i]
		p.i++
		if c == ']' {
			return items, nil
		}
		if c != ',' {
			return nil, p.fail("expected `,` or `]`")
		}
	}
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(v), err == nil
}

func (p *parser) str() (any, error) {
	p.i++
	var b strings.Builder
	lone := false
	for {
		start := p.i
		for p.i < len(p.s) && p.s[p.i] != '"' && p.s[p.i] != '\\' && p.s[p.i] >= 0x20 {
			p.i++
		}
		b.Write(p.s[start:p.i])
		if p.i >= len(p.s) {
			return nil, p.fail("EOF while parsing a string")
		}
		switch c := p.s[p.i]; {
		case c == '"':
			p.i++
			return jstring{b.String(), lone}, nil
		case c < 0x20:
			return nil, p.fail("control character found while parsing a string")
		}
		if p.i+1 >= len(p.s) {
			return nil, p.fail("EOF while parsing a string")
		}
		e := p.s[p.i+1]
		p.i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := hex4(p.s[p.i:])
			if !ok {
				return nil, p.fail("invalid escape")
			}
			p.i += 4
			if r >= 0xD800 && r <= 0xDBFF && p.i+6 <= len(p.s) && p.s[p.i] == '\\' && p.s[p.i+1] == 'u' {
				if low, ok := hex4(p.s[p.i+2:]); ok && low >= 0xDC00 && low <= 0xDFFF {
					p.i += 6
					b.WriteRune((r-0xD800)<<10 + (low - 0xDC00) + 0x10000)
					continue
				}
			}
			if r >= 0xD800 && r <= 0xDFFF {
				lone = true
				b.WriteRune(utf8.RuneError)
				continue
			}
			b.WriteRune(r)
		default:
			return nil, p.fail("invalid escape")
		}
	}
}
