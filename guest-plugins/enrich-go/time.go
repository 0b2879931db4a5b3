// Tweet timestamps as guest-plugins/transforms/src/time.rs reads and writes them: v1.1's
// `Wed Oct 10 20:19:24 +0000 2018`, v2's RFC 3339, and `@timestamp` as RFC 3339 UTC with
// milliseconds. Epoch milliseconds are int64; ok is false where Rust returns None.
package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// daysFromCivil and civilFromDays are Howard Hinnant's proleptic Gregorian algorithms.
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := m + 9
	if m > 2 {
		mp = m - 3
	}
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func civilFromDays(days int64) (y, m, d int64) {
	z := days + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if mp >= 10 {
		m = mp - 9
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return y, m, d
}

func daysInMonth(y, m int64) int64 {
	switch m {
	case 2:
		if y%4 == 0 && y%100 != 0 || y%400 == 0 {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// epoch is the time in epoch milliseconds; a leap second (60) is let through, as in Rust.
func epoch(y, mo, d, h, mi, s, ms, offMinutes int64) (int64, bool) {
	if mo < 1 || mo > 12 || d == 0 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 60 || ms > 999 {
		return 0, false
	}
	return daysFromCivil(y, mo, d)*86_400_000 + (h*3600+mi*60+s)*1000 + ms - offMinutes*60_000, true
}

// formatISO writes epoch milliseconds as `2018-10-10T20:19:24.000Z`; years outside 0..9999
// have no such form.
func formatISO(ms int64) (string, bool) {
	days := floorDiv(ms, 86_400_000)
	if days < -800_000 || days > 3_000_000 {
		return "", false
	}
	y, m, d := civilFromDays(days)
	if y < 0 || y > 9999 {
		return "", false
	}
	t := ms - days*86_400_000
	s := t / 1000
	return fmt.Sprintf("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", y, m, d, s/3600, s/60%60, s%60, t%1000), true
}

// digits reads an unsigned decimal of ASCII digits only.
func digits(s string) (int64, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// parseOffset reads `+hhmm` or `+hh:mm` as minutes east of UTC.
func parseOffset(s string) (int64, bool) {
	if s == "" || s[0] != '+' && s[0] != '-' {
		return 0, false
	}
	r := s[1:]
	var hs, ms string
	switch {
	case len(r) == 4:
		hs, ms = r[:2], r[2:]
	case len(r) == 5 && r[2] == ':':
		hs, ms = r[:2], r[3:]
	default:
		return 0, false
	}
	h, ok1 := digits(hs)
	m, ok2 := digits(ms)
	if !ok1 || !ok2 || h > 23 || m > 59 {
		return 0, false
	}
	if s[0] == '-' {
		return -(h*60 + m), true
	}
	return h*60 + m, true
}

// parseClock reads `hh:mm:ss`.
func parseClock(s string) (c [3]int64, ok bool) {
	if len(s) != 8 || s[2] != ':' || s[5] != ':' {
		return c, false
	}
	for i, part := range []string{s[:2], s[3:5], s[6:]} {
		if c[i], ok = digits(part); !ok {
			return c, false
		}
	}
	return c, true
}

var months = []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}

// parseV1Time reads v1.1's created_at: `Wed Oct 10 20:19:24 +0000 2018`.
func parseV1Time(s string) (int64, bool) {
	if !isASCII(s) {
		return 0, false
	}
	parts := strings.Split(s, " ")
	if len(parts) != 6 {
		return 0, false
	}
	wd, mon, day, clock, off, year := parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]
	if len(wd) != 3 || strings.Trim(asciiLower(wd), "abcdefghijklmnopqrstuvwxyz") != "" {
		return 0, false
	}
	month := int64(slices.Index(months, asciiLower(mon)))
	if month < 0 || len(day) > 2 || len(year) != 4 {
		return 0, false
	}
	c, okC := parseClock(clock)
	y, okY := digits(year)
	d, okD := digits(day)
	o, okO := parseOffset(off)
	if !okC || !okY || !okD || !okO {
		return 0, false
	}
	return epoch(y, month+1, d, c[0], c[1], c[2], 0, o)
}

// parseRFC3339 reads v2's created_at, e.g. `2018-10-10T20:19:24.000Z`; digits past
// milliseconds are dropped.
func parseRFC3339(s string) (int64, bool) {
	if !isASCII(s) || len(s) < 20 || s[4] != '-' || s[7] != '-' || !strings.ContainsRune("Tt ", rune(s[10])) {
		return 0, false
	}
	y, okY := digits(s[:4])
	mo, okM := digits(s[5:7])
	d, okD := digits(s[8:10])
	c, okC := parseClock(s[11:19])
	if !okY || !okM || !okD || !okC {
		return 0, false
	}
	rest := s[19:]
	var ms int64
	if frac, ok := strings.CutPrefix(rest, "."); ok {
		n := len(frac) - len(strings.TrimLeft(frac, "0123456789"))
		if n == 0 {
			return 0, false
		}
		ms, _ = strconv.ParseInt((frac[:min(n, 3)] + "00")[:3], 10, 64)
		rest = frac[n:]
	}
	off, ok := int64(0), rest == "Z" || rest == "z"
	if !ok {
		if off, ok = parseOffset(rest); !ok {
			return 0, false
		}
	}
	return epoch(y, mo, d, c[0], c[1], c[2], ms, off)
}

// parseI64 reads a timestamp_ms given as a string: an optional sign, then digits.
func parseI64(s string) (int64, bool) {
	body := strings.TrimLeft(s, "+-")
	if len(s)-len(body) > 1 || body == "" || strings.Trim(body, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil
}
