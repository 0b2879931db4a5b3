// Config pairs as the Rust library reads them (guest-plugins/transforms/src/config.rs), with
// its error wording: the messages are compared byte for byte by the shared vectors.
package main

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
)

type config map[string]string

// newConfig refuses keys a plugin does not know and keys given twice.
func newConfig(pairs [][2]string, known []string) (config, error) {
	c := config{}
	for _, p := range pairs {
		if !slices.Contains(known, p[0]) {
			return nil, fmt.Errorf("unknown config key `%s` (known keys: %s)", p[0], strings.Join(known, ", "))
		}
		if _, seen := c[p[0]]; seen {
			return nil, fmt.Errorf("config key `%s` is given more than once", p[0])
		}
		c[p[0]] = p[1]
	}
	return c, nil
}

// trim is Rust's str::trim: unicode.IsSpace is the same White_Space property.
func trim(s string) string { return strings.TrimFunc(s, unicode.IsSpace) }

func (c config) boolean(key string, dflt bool) (bool, error) {
	raw, ok := c[key]
	if !ok {
		return dflt, nil
	}
	switch asciiLower(trim(raw)) {
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

// rustDebug is Rust's `{:?}` of a string, for the characters config values hold.
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

// splitList reads a comma-separated list: `\,` is a comma within an item, blank items are
// dropped.
func splitList(raw string) []string {
	var items []string
	var cur strings.Builder
	push := func() {
		if item := trim(cur.String()); item != "" {
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
