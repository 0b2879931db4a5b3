// JSON as the transforms read it: parsed without decoding numbers or checking strings, since
// serde_json fails on a lone surrogate or a number out of range only where a transform reads
// it (see guest-plugins/vectors/README.md).
package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

var (
	errLoneSurrogate = errors.New("not valid JSON: lone surrogate in hex escape")
	errTooDeep       = errors.New("not valid JSON: recursion limit exceeded")
)

// nested is the depth inside one more array or object that serde_json reads (rather than
// skips). Its recursion limit fails the 128th, counting the document's object; a skipped value
// is not counted, however deep.
func nested(depth int) (int, error) {
	if depth+1 >= 128 {
		return 0, errTooDeep
	}
	return depth + 1, nil
}

type jstring struct {
	s             string
	loneSurrogate bool
}

// number is a number as written; value() reads it as serde_json does.
type number string

type pair struct {
	key   jstring
	value any
}

type object struct{ pairs []pair }

// utf8Error is the message of Rust's Utf8Error for b ("" when b is valid UTF-8).
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

// objectDoc parses a record value that must be a JSON object.
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

// parser is a strict JSON parser (RFC 8259, as serde_json reads it) that keeps what the
// transforms need: object pairs in order with repeats, numbers as written, and lone surrogate
// escapes marked, since serde_json only fails on them where a transform reads them.
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

// document parses the whole input. It is iterative, with no depth limit: serde_json skips a
// value nobody reads however deep it is (see nested), and deep recursion would exhaust the
// wasm stack. What is inside an array or object nested 128 deep is checked but not kept,
// since reading it fails anyway.
func (p *parser) document() (any, error) {
	// open is a container being read: an object, with its pending key, or an array's items.
	type open struct {
		obj   *object
		items []any
		key   jstring
	}
	var closers []byte // of every open array and object, innermost last
	var kept []*open   // the outermost 128 of them
	var err error
	for {
		p.ws()
		var v any
		if c := p.peek(); c == '[' || c == '{' {
			p.i++
			p.ws()
			closer := byte(']')
			if c == '{' {
				closer = '}'
			}
			if p.peek() == closer {
				p.i++
				v = []any{}
				if c == '{' {
					v = &object{}
				}
			} else {
				closers = append(closers, closer)
				o := &open{}
				if c == '{' {
					o.obj = &object{}
					if o.key, err = p.key(); err != nil {
						return nil, err
					}
				}
				if len(closers) <= 128 {
					kept = append(kept, o)
				}
				continue
			}
		} else if v, err = p.scalar(); err != nil {
			return nil, err
		}
		// v is complete: add it to its container, and close those that end here.
		for {
			depth := len(closers)
			if depth == 0 {
				p.ws()
				if p.i != len(p.s) {
					return nil, p.fail("trailing characters")
				}
				return v, nil
			}
			var top *open
			if depth <= 128 {
				top = kept[depth-1]
			}
			if depth < 128 {
				if top.obj != nil {
					top.obj.pairs = append(top.obj.pairs, pair{top.key, v})
				} else {
					top.items = append(top.items, v)
				}
			}
			p.ws()
			c := p.peek()
			p.i++
			if c == ',' {
				if closers[depth-1] == '}' {
					key, err := p.key()
					if err != nil {
						return nil, err
					}
					if top != nil {
						top.key = key
					}
				}
				break
			}
			if c != closers[depth-1] {
				return nil, p.fail("expected `,` or a closing bracket")
			}
			closers = closers[:depth-1]
			if top != nil {
				kept = kept[:depth-1]
				v = top.items
				if top.obj != nil {
					v = top.obj
				}
			}
		}
	}
}

// peek is the next byte, or 0 at the end.
func (p *parser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

// key reads an object key and its colon.
func (p *parser) key() (jstring, error) {
	p.ws()
	if p.peek() != '"' {
		return jstring{}, p.fail("key must be a string")
	}
	k, err := p.str()
	if err != nil {
		return jstring{}, err
	}
	p.ws()
	if p.peek() != ':' {
		return jstring{}, p.fail("expected `:`")
	}
	p.i++
	return k.(jstring), nil
}

func (p *parser) scalar() (any, error) {
	if p.i >= len(p.s) {
		return nil, p.fail("EOF while parsing a value")
	}
	switch p.s[p.i] {
	case '"':
		return p.str()
	case 't':
		return p.word("true", true)
	case 'f':
		return p.word("false", false)
	case 'n':
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
