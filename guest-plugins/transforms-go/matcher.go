// Keyword matching as guest-plugins/transforms/src/matcher.rs and keyword.rs do it: the
// `keywords`, `fields`, `case_sensitive` and `whole_word` config keys, case folding and the
// whole-word rule.
package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// search is what the keyword config keys make: a matcher (nil when no keywords are given)
// and the paths of the strings it reads.
type search struct {
	matcher  *matcher
	paths    *paths
	fields   [][]*string // nil: the default fields
	caseSens bool
}

func newSearch(c config) (*search, error) {
	s := &search{}
	var err error
	if s.caseSens, err = c.boolean("case_sensitive", false); err != nil {
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
	for _, item := range fields {
		p, err := parsePath(item)
		if err != nil {
			return nil, fmt.Errorf("config key `fields`: %w", err)
		}
		s.fields = append(s.fields, p)
	}
	keywords, err := c.list("keywords")
	if err != nil {
		return nil, err
	}
	if keywords == nil {
		if _, ok := c["fields"]; ok {
			return nil, errors.New("config key `fields` needs `keywords`")
		}
		return s, nil
	}
	for i, k := range keywords {
		keywords[i] = strings.ReplaceAll(k, `\\`, `\`)
	}
	s.matcher = newMatcher(keywords, s.caseSens, wholeWord)
	list := s.fields
	if list == nil {
		for _, p := range defaultPaths() {
			pp, _ := parsePath(p)
			list = append(list, pp)
		}
	}
	s.paths = &paths{list: list, cache: map[string]*state{}}
	return s, nil
}

func (s *search) describe() string {
	where := "the default tweet text fields"
	if s.fields != nil {
		var names []string
		for _, p := range s.fields {
			names = append(names, pathString(p))
		}
		where = strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s, case_sensitive=%t, in %s", s.matcher.describe(), s.caseSens, where)
}

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

// mark sets found[i] for every keyword i not found yet that text contains. The text is
// folded at most once, and only if a keyword needs it.
func (m *matcher) mark(text string, found []bool) {
	folded, haveFolded := "", false
	for i, k := range m.keywords {
		if found[i] {
			continue
		}
		hay := text
		if k.needsFolding {
			if !haveFolded {
				folded, haveFolded = fold(text), true
			}
			hay = folded
		}
		found[i] = k.find(hay)
	}
}

func (m *matcher) matchesAny(text string) bool {
	found := make([]bool, len(m.keywords))
	m.mark(text, found)
	return slices.Contains(found, true)
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
