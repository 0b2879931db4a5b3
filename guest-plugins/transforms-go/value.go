// serde_json's Value, as the Rust library reads and writes it: numbers decoded the way
// serde_json decodes them (without its float_roundtrip feature), and the compact form it
// writes. Re-serialized documents must match the Rust plugin byte for byte.
package main

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
)

var errOutOfRange = errors.New("not valid JSON: number out of range")

// num is a decoded number: serde_json's u64, i64 or f64.
type num struct {
	kind byte // 'u', 'i' or 'f'
	u    uint64
	i    int64
	f    float64
}

// pow10 holds the correctly rounded 1e0..1e308, like serde_json's table (math.Pow10 is not
// always correctly rounded).
var pow10 = func() []float64 {
	t := make([]float64, 309)
	for i := range t {
		t[i], _ = strconv.ParseFloat("1e"+strconv.Itoa(i), 64)
	}
	return t
}()

// overflows says whether acc*10 + d exceeds u64.
func overflows(acc, d uint64) bool {
	const limit = math.MaxUint64
	return acc >= limit/10 && (acc > limit/10 || d > limit%10)
}

// value decodes n (a valid JSON number) as serde_json does: an integer that fits u64 or i64
// stays one; otherwise the significand's first 19-20 digits as an integer, then one
// multiplication or division by a power of ten (not always correctly rounded).
func (n number) value() (num, error) {
	s := string(n)
	positive := s[0] != '-'
	if !positive {
		s = s[1:]
	}
	i, sig, exp, long := 0, uint64(0), 0, false
	for ; i < len(s) && isDigit(s[i]); i++ {
		d := uint64(s[i] - '0')
		if overflows(sig, d) {
			// a long integer: further digits only raise the exponent
			for ; i < len(s) && isDigit(s[i]); i++ {
				exp++
			}
			long = true
			break
		}
		sig = sig*10 + d
	}
	if i == len(s) && !long {
		switch {
		case positive:
			return num{kind: 'u', u: sig}, nil
		case sig > 0 && sig <= 1<<63:
			return num{kind: 'i', i: int64(-sig)}, nil
		default:
			return num{kind: 'f', f: -float64(sig)}, nil // -0 is a float
		}
	}
	if i < len(s) && s[i] == '.' {
		for i++; i < len(s) && isDigit(s[i]); i++ {
			d := uint64(s[i] - '0')
			if overflows(sig, d) {
				for i < len(s) && isDigit(s[i]) {
					i++
				}
				break
			}
			sig = sig*10 + d
			exp--
		}
	}
	if i < len(s) { // the exponent
		i++
		positiveExp := true
		if s[i] == '+' || s[i] == '-' {
			positiveExp = s[i] == '+'
			i++
		}
		e := 0
		for ; i < len(s); i++ {
			d := int(s[i] - '0')
			if e >= math.MaxInt32/10 && (e > math.MaxInt32/10 || d > math.MaxInt32%10) {
				// an exponent past i32: zero, or out of range
				if sig != 0 && positiveExp {
					return num{}, errOutOfRange
				}
				if positive {
					return num{kind: 'f'}, nil
				}
				return num{kind: 'f', f: math.Copysign(0, -1)}, nil
			}
			e = e*10 + d
		}
		if positiveExp {
			exp += e
		} else {
			exp -= e
		}
	}
	f, err := f64FromParts(positive, sig, exp)
	return num{kind: 'f', f: f}, err
}

// f64FromParts is serde_json's f64_from_parts.
func f64FromParts(positive bool, sig uint64, exp int) (float64, error) {
	f := float64(sig)
	for {
		if a := max(exp, -exp); a < len(pow10) {
			if exp >= 0 {
				if f *= pow10[a]; math.IsInf(f, 0) {
					return 0, errOutOfRange
				}
			} else {
				f /= pow10[a]
			}
			break
		}
		if f == 0 {
			break
		}
		if exp >= 0 {
			return 0, errOutOfRange
		}
		f /= 1e308
		exp += 308
	}
	if !positive {
		f = -f
	}
	return f, nil
}

// tree reads a parsed value as serde_json's Value: map[string]any (a repeated key keeps its
// last value), []any, string, num, bool or nil. Every key, string and number is decoded, and
// every array and object counts towards the recursion limit, so this fails where
// serde_json's from_slice::<Value> would. depth is the number of arrays and objects around v.
func tree(v any, depth int) (any, error) {
	switch v := v.(type) {
	case *object:
		depth, err := nested(depth)
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, len(v.pairs))
		for _, kv := range v.pairs {
			if kv.key.loneSurrogate {
				return nil, errLoneSurrogate
			}
			x, err := tree(kv.value, depth)
			if err != nil {
				return nil, err
			}
			m[kv.key.s] = x
		}
		return m, nil
	case []any:
		depth, err := nested(depth)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(v))
		for i, x := range v {
			if out[i], err = tree(x, depth); err != nil {
				return nil, err
			}
		}
		return out, nil
	case jstring:
		if v.loneSurrogate {
			return nil, errLoneSurrogate
		}
		return v.s, nil
	case number:
		return v.value()
	}
	return v, nil
}

// dumps writes a Value as serde_json does: compact, object keys sorted (Go compares strings
// by UTF-8 bytes, which is code point order, as Rust does).
func dumps(v any) string {
	var b strings.Builder
	dump(&b, v)
	return b.String()
}

func dump(b *strings.Builder, v any) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			dumpStr(b, k)
			b.WriteByte(':')
			dump(b, v[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, x := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			dump(b, x)
		}
		b.WriteByte(']')
	case string:
		dumpStr(b, v)
	case num:
		switch v.kind {
		case 'u':
			b.WriteString(strconv.FormatUint(v.u, 10))
		case 'i':
			b.WriteString(strconv.FormatInt(v.i, 10))
		default:
			b.WriteString(formatFloat(v.f))
		}
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case nil:
		b.WriteString("null")
	}
}

// dumpStr escapes only `"`, `\` and control characters, as serde_json does.
func dumpStr(b *strings.Builder, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.WriteString(s[start:i])
		start = i + 1
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// formatFloat writes a finite f64 as serde_json does (ryu): the shortest digits that read
// back, as a decimal up to 16 integer digits or 4 leading zeros, else with an exponent.
func formatFloat(f float64) string {
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if f < 0 {
		sign = "-"
	}
	mant, exp, _ := strings.Cut(strconv.FormatFloat(math.Abs(f), 'e', -1, 64), "e")
	digits := strings.TrimRight(strings.Replace(mant, ".", "", 1), "0")
	e, _ := strconv.Atoi(exp)
	point := e + 1 // the value is 0.digits * 10^point
	n := len(digits)
	switch {
	case point > 0 && point <= 16:
		if n <= point {
			return sign + digits + strings.Repeat("0", point-n) + ".0"
		}
		return sign + digits[:point] + "." + digits[point:]
	case point > -5 && point <= 0:
		return sign + "0." + strings.Repeat("0", -point) + digits
	}
	m := digits
	if n > 1 {
		m = digits[:1] + "." + digits[1:]
	}
	if e > 0 {
		return sign + m + "e+" + strconv.Itoa(e)
	}
	return sign + m + "e-" + strconv.Itoa(-e)
}
