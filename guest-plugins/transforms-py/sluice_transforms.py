"""Sluice's keyword-filter and enrich transforms in Python, for componentize-py plugins.

A port of the Rust library in guest-plugins/transforms: same config keys, same matching
rules, same outcomes and, for `set-value`, the same bytes (see guest-plugins/vectors). The
plugins (guest-plugins/keyword-filter-py, guest-plugins/enrich-py) are thin wrappers.

An outcome is ("keep",), ("drop",), ("set", bytes) or ("fail", reason).
"""

import bisect
import json
import re
from json.decoder import scanstring

KEEP = ("keep",)
DROP = ("drop",)


class Fail(Exception):
    """The record cannot be processed: dead-lettered with this reason."""


class DataError(Exception):
    """A type the fast enrich path does not expect: enrich re-reads the whole tree."""


class JObj(list):
    """A JSON object as its (key, value) pairs, in document order, duplicates kept."""


class JNum:
    """A JSON number, kept as its lexeme."""

    __slots__ = ("lex",)

    def __init__(self, lex):
        self.lex = lex


# ---- input checks ------------------------------------------------------------------------


def _utf8_error(b):
    """Rust's `Utf8Error` message for the first invalid sequence of `b`."""
    i, n = 0, len(b)
    while i < n:
        first = b[i]
        if first < 0x80:
            i += 1
            continue
        if 0xC2 <= first <= 0xDF:
            width = 2
        elif 0xE0 <= first <= 0xEF:
            width = 3
        elif 0xF0 <= first <= 0xF4:
            width = 4
        else:
            return f"invalid utf-8 sequence of 1 bytes from index {i}"
        for k in range(1, width):
            if i + k >= n:
                return f"incomplete utf-8 byte sequence from index {i}"
            c = b[i + k]
            if k == 1:
                lo, hi = 0x80, 0xBF
                if first == 0xE0:
                    lo = 0xA0
                elif first == 0xED:
                    hi = 0x9F
                elif first == 0xF0:
                    lo = 0x90
                elif first == 0xF4:
                    hi = 0x8F
            else:
                lo, hi = 0x80, 0xBF
            if not lo <= c <= hi:
                return f"invalid utf-8 sequence of {k} bytes from index {i}"
        i += width
    return "invalid utf-8"


def utf8(value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise Fail("not valid UTF-8: " + _utf8_error(value)) from None


def _reject_constant(name):
    raise ValueError(f"invalid number {name}")


def _number(lex):
    if not lex.isascii():  # the pure-Python scanner's \d also takes other scripts' digits
        raise ValueError(f"invalid number {lex}")
    return JNum(lex)


# Strings (even unterminated) and everything else that is not a bracket.
_NOT_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[^"\[\]{}]+', re.S)
_PAIR = re.compile(r"\[\]|\{\}")


def _shallow(text):
    """Whether the arrays and objects of text nest less than 128 deep."""
    if text.count("[") + text.count("{") < 128:
        return True
    brackets = _NOT_BRACKETS.sub("", text)
    for _ in range(128):
        if not brackets:
            return True
        brackets, n = _PAIR.subn("", brackets)
        if not n:
            return False
    return False


def parse(text):
    """Parses JSON into JObj / list / str / JNum / bool / None, or fails. json.loads recurses,
    so a document nested deeper than serde_json reads (it skips such values) goes to
    _parse_deep."""
    if not _shallow(text):
        return _parse_deep(text)
    try:
        return json.loads(
            text,
            object_pairs_hook=JObj,
            parse_int=_number,
            parse_float=_number,
            parse_constant=_reject_constant,
        )
    except ValueError as e:
        raise Fail(f"not valid JSON: {e}") from None


_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}


def _invalid(what, i):
    return Fail(f"not valid JSON: {what} at position {i}")


def _key(text, i):
    """An object key at i, then the colon: the key and where its value starts."""
    if text[i:i + 1] != '"':
        raise _invalid("key must be a string", i)
    key, i = scanstring(text, i + 1, True)
    i = _SPACE.match(text, i).end()
    if text[i:i + 1] != ":":
        raise _invalid("expected `:`", i)
    return key, _SPACE.match(text, i + 1).end()


def _parse_deep(text):
    """parse, iteratively: serde_json skips a value nobody reads however deep it is (see
    nested). What is inside an array or object nested 128 deep is checked but not kept:
    reading it fails anyway, and freeing a deeper tree would exhaust the stack."""
    # The open containers, innermost last: [container, its pending key (objects)].
    stack = []
    i = _SPACE.match(text).end()
    try:
        while True:
            c = text[i:i + 1]
            if c == "[" or c == "{":
                i = _SPACE.match(text, i + 1).end()
                if text[i:i + 1] == ("]" if c == "[" else "}"):
                    value = [] if c == "[" else JObj()
                    i += 1
                elif c == "[":
                    stack.append([[], None])
                    continue
                else:
                    key, i = _key(text, i)
                    stack.append([JObj(), key])
                    continue
            elif c == '"':
                value, i = scanstring(text, i + 1, True)
            elif c in _LITERALS and text.startswith(_LITERALS[c][0], i):
                word, value = _LITERALS[c]
                i += len(word)
            elif m := _NUMBER.match(text, i):
                value, i = JNum(m.group()), m.end()
            else:
                raise _invalid("expected value", i)
            # value is complete: add it to its container, and close those that end here.
            while stack:
                top = stack[-1]
                container = top[0]
                if len(stack) < 128:
                    container.append(value if top[1] is None else (top[1], value))
                i = _SPACE.match(text, i).end()
                c = text[i:i + 1]
                if c == ",":
                    i = _SPACE.match(text, i + 1).end()
                    if top[1] is not None:
                        top[1], i = _key(text, i)
                    break
                if c != ("]" if top[1] is None else "}"):
                    raise _invalid("expected `,` or a closing bracket", i)
                stack.pop()
                value = container
                i += 1
            else:
                i = _SPACE.match(text, i).end()
                if i != len(text):
                    raise _invalid("trailing characters", i)
                return value
    except ValueError as e:  # scanstring's errors
        raise Fail(f"not valid JSON: {e}") from None


_WS = " \t\n\r"


def object_doc(value):
    """The record as a parsed JSON object, or a failure with the Rust library's reason."""
    text = utf8(value)
    stripped = text.lstrip(_WS)
    doc = parse(text)
    if stripped[:1] == "{":
        return text, doc
    first = stripped[:1]
    kind = {"[": "an array", '"': "a string", "t": "a boolean", "f": "a boolean", "n": "null"}
    raise Fail(f"not a JSON object: the document is {kind.get(first, 'a number')}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def read_str(s):
    """A string the Rust parser decodes (rather than skips): a lone surrogate fails there."""
    if _SURROGATE.search(s):
        raise Fail("not valid JSON: lone surrogate in hex escape")
    return s


def nested(depth):
    """The depth inside one more array or object that the Rust parser reads (rather than skips).
    serde_json's recursion limit fails the 128th, counting the document's object; a skipped
    value is not counted, however deep. (parse keeps nothing inside the 128th.)"""
    if depth + 1 >= 128:
        raise Fail("not valid JSON: recursion limit exceeded")
    return depth + 1


_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)
_POW10 = [float("1e%d" % i) for i in range(309)]


def _out_of_range():
    return Fail("not valid JSON: number out of range")


def _f64_from_parts(positive, significand, exponent):
    """serde_json's float assembly (without its `float_roundtrip` feature): the significand,
    then one multiplication or division by a power of ten. Not always correctly rounded, and
    reproduced here so that re-serialized floats match the Rust plugin's bytes."""
    f = float(significand)
    while True:
        if abs(exponent) < len(_POW10):
            pow10 = _POW10[abs(exponent)]
            if exponent >= 0:
                f *= pow10
                if f == float("inf"):
                    raise _out_of_range()
            else:
                f /= pow10
            break
        if f == 0.0:
            break
        if exponent >= 0:
            raise _out_of_range()
        f /= 1e308
        exponent += 308
    return f if positive else -f


def _overflows(acc, digit, limit):
    return acc >= limit // 10 and (acc > limit // 10 or digit > limit % 10)


def number(lex):
    """A number as serde_json reads it: ("u", int), ("i", int) or ("f", float); fails when out
    of range. `lex` is a valid JSON number."""
    positive = lex[0] != "-"
    s = lex if positive else lex[1:]
    n, i, sig, exp = len(s), 0, 0, 0

    def exponent_part(i, sig, exp):
        # s[i] is 'e' or 'E'
        i += 1
        positive_exp = True
        if s[i] in "+-":
            positive_exp = s[i] == "+"
            i += 1
        e = 0
        while i < n:
            d = ord(s[i]) - 48
            if _overflows(e, d, 2**31 - 1):
                if sig != 0 and positive_exp:
                    raise _out_of_range()
                return 0.0 if positive else -0.0
            e = e * 10 + d
            i += 1
        exp = exp + e if positive_exp else exp - e
        return _f64_from_parts(positive, sig, exp)

    def decimal_part(i, sig, exp):
        # s[i] is '.'
        i += 1
        while i < n and s[i].isdigit():
            d = ord(s[i]) - 48
            if _overflows(sig, d, _U64_MAX):
                while i < n and s[i].isdigit():
                    i += 1
                break
            sig = sig * 10 + d
            exp -= 1
            i += 1
        if i < n:
            return exponent_part(i, sig, exp)
        return _f64_from_parts(positive, sig, exp)

    while i < n and s[i].isdigit():
        d = ord(s[i]) - 48
        if _overflows(sig, d, _U64_MAX):
            # a long integer: further digits only raise the exponent
            while i < n and s[i].isdigit():
                exp += 1
                i += 1
            break
        sig = sig * 10 + d
        i += 1
    else:
        if i == n and exp == 0:
            if positive:
                return ("u", sig)
            if 0 < sig <= 1 << 63:
                return ("i", -sig)
            return ("f", -float(sig))
    if i < n and s[i] == ".":
        return ("f", decimal_part(i, sig, exp))
    if i < n:
        return ("f", exponent_part(i, sig, exp))
    return ("f", _f64_from_parts(positive, sig, exp))


# ---- canonical serialization (serde_json's compact form) ---------------------------------

_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESC = re.compile('["\\\\\x00-\x1f]')


def _esc_char(m):
    c = m.group(0)
    return _ESC.get(c) or "\\u%04x" % ord(c)


def dump_str(s):
    return '"' + _NEEDS_ESC.sub(_esc_char, s) + '"'


def format_float(f):
    """A finite f64 the way serde_json writes it (shortest round trip)."""
    if f == 0:
        return "-0.0" if str(f).startswith("-") else "0.0"
    sign = "-" if f < 0 else ""
    mant, _, exp = repr(abs(f)).partition("e")
    int_part, _, frac = mant.partition(".")
    digits = (int_part + frac).lstrip("0")
    # The value is 0.digits * 10^point.
    point = len(int_part.lstrip("0")) if int_part.strip("0") else -(len(frac) - len(frac.lstrip("0")))
    point += int(exp or 0)
    digits = digits.rstrip("0")
    n = len(digits)
    if 0 < point <= 16:
        if n <= point:
            return sign + digits + "0" * (point - n) + ".0"
        return sign + digits[:point] + "." + digits[point:]
    if -5 < point <= 0:
        return sign + "0." + "0" * (-point) + digits
    e = point - 1
    mant = digits[0] + ("." + digits[1:] if n > 1 else "")
    return sign + mant + "e" + ("+" if e > 0 else "-") + str(abs(e))


def dump(v, out):
    """Appends the canonical JSON of a tree value: objects with unique keys in sorted order."""
    if isinstance(v, JObj):
        out.append("{")
        for i, (k, x) in enumerate(sorted(dict(v).items())):
            if i:
                out.append(",")
            out.append(dump_str(k))
            out.append(":")
            dump(x, out)
        out.append("}")
    elif isinstance(v, JNum):
        kind, n = number(v.lex)
        out.append(str(n) if kind != "f" else format_float(n))
    elif isinstance(v, str):
        out.append(dump_str(v))
    elif isinstance(v, list):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            dump(x, out)
        out.append("]")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif v is None:
        out.append("null")
    else:
        raise TypeError(type(v))


def dumps(v):
    out = []
    dump(v, out)
    return "".join(out)


def check_tree(v, depth=0):
    """What serde_json checks when it reads a whole document into a Value."""
    if isinstance(v, JObj):
        depth = nested(depth)
        for k, x in v:
            read_str(k)
            check_tree(x, depth)
    elif isinstance(v, JNum):
        number(v.lex)
    elif isinstance(v, str):
        read_str(v)
    elif isinstance(v, list):
        depth = nested(depth)
        for x in v:
            check_tree(x, depth)


# ---- config ------------------------------------------------------------------------------


class Config:
    def __init__(self, pairs, known):
        seen = set()
        for key, _ in pairs:
            if key not in known:
                raise Fail(f"unknown config key `{key}` (known keys: {', '.join(known)})")
            if key in seen:
                raise Fail(f"config key `{key}` is given more than once")
            seen.add(key)
        self.pairs = dict(pairs)

    def get(self, key):
        return self.pairs.get(key)

    def bool(self, key, default):
        raw = self.get(key)
        if raw is None:
            return default
        v = _rust_trim(raw).lower()
        if v in ("true", "yes", "on", "1"):
            return True
        if v in ("false", "no", "off", "0"):
            return False
        raise Fail(f"config key `{key}`: expected true or false, got {rust_debug(raw)}")

    def list(self, key):
        raw = self.get(key)
        if raw is None:
            return None
        items = split_list(raw)
        if not items:
            raise Fail(f"config key `{key}`: the list is empty")
        return items


def rust_debug(s):
    """Rust's `{:?}` of a string, for the common characters."""
    out = ['"']
    for c in s:
        if c in '"\\':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append("\\u{%x}" % ord(c))
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _rust_trim(s):
    return s.strip(" \t\n\r\x0b\x0c\x85\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                   "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")


def split_list(raw):
    items, cur, i = [], [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\":
            if i + 1 < len(raw):
                nxt = raw[i + 1]
                cur.append("," if nxt == "," else "\\" + nxt)
                i += 2
                continue
            cur.append("\\")
        elif c == ",":
            item = _rust_trim("".join(cur))
            if item:
                items.append(item)
            cur = []
        else:
            cur.append(c)
        i += 1
    item = _rust_trim("".join(cur))
    if item:
        items.append(item)
    return items


# ---- paths -------------------------------------------------------------------------------

ANY = None


def parse_path(raw):
    segs, key, escaped, i = [], [], False, 0
    s = _rust_trim(raw)
    while True:
        c = s[i] if i < len(s) else None
        i += 1
        if c == "\\":
            nxt = s[i] if i < len(s) else None
            i += 1
            if nxt in (".", "*", "\\", ","):
                key.append(nxt)
                escaped = True
            elif nxt is None:
                raise Fail(f"path {rust_debug(raw)}: ends with a lone backslash")
            else:
                raise Fail(f"path {rust_debug(raw)}: unknown escape `\\{nxt}` (use \\. \\* or \\\\)")
        elif c == "." or c is None:
            if not key:
                raise Fail(f"path {rust_debug(raw)}: empty segment")
            seg = "".join(key)
            segs.append(ANY if seg == "*" and not escaped else seg)
            key, escaped = [], False
            if c is None:
                return tuple(segs)
        else:
            key.append(c)


def path_str(p):
    out = []
    for seg in p:
        if seg is ANY:
            out.append("*")
        else:
            out.append("".join("\\" + c if c in ".*\\" else c for c in seg))
    return ".".join(out)


class Paths:
    """Many paths matched at once, as a lazily built deterministic automaton: a state is the set
    of (path, position) pairs still alive; reaching the end of a path covers the subtree."""

    def __init__(self, paths):
        self.paths = paths
        self.start = frozenset((i, 0) for i in range(len(paths)))
        self.cache = {}

    def child(self, state, key):
        """The state after `key`: None if no path goes on, True if one ends there."""
        memo = (state, key)
        if memo in self.cache:
            return self.cache[memo]
        nxt = set()
        for i, pos in state:
            seg = self.paths[i][pos]
            if seg is ANY or seg == key:
                if pos + 1 == len(self.paths[i]):
                    nxt = True
                    break
                nxt.add((i, pos + 1))
        result = nxt if nxt is True else (frozenset(nxt) if nxt else None)
        self.cache[memo] = result
        return result


def walk_strings(v, paths, state, f, depth=0):
    """Calls f on every string at or beneath a path (arrays transparent), checking what the
    Rust streaming walk decodes: every key of an object it reads, even beneath a path."""
    if isinstance(v, JObj):
        depth = nested(depth)
        for k, x in v:
            read_str(k)
            nxt = True if state is True else paths.child(state, k)
            if nxt is not None:
                walk_strings(x, paths, nxt, f, depth)
    elif isinstance(v, list):
        depth = nested(depth)
        for x in v:
            walk_strings(x, paths, state, f, depth)
    elif isinstance(v, JNum):
        number(v.lex)
    elif isinstance(v, str):
        read_str(v)
        if state is True:
            f(v)


def walk_strings_tree(v, paths, state, f):
    """The same over the last-wins view of a document (enrich's Value path)."""
    if isinstance(v, JObj):
        for k, x in dict(v).items():
            nxt = True if state is True else paths.child(state, k)
            if nxt is not None:
                walk_strings_tree(x, paths, nxt, f)
    elif isinstance(v, list):
        for x in v:
            walk_strings_tree(x, paths, state, f)
    elif isinstance(v, str) and state is True:
        f(v)


_V1_FIELDS = ["text", "full_text", "extended_tweet.full_text", "entities.hashtags.text",
              "extended_tweet.entities.hashtags.text"]
_V1_STATUSES = ["", "retweeted_status.", "quoted_status.", "retweeted_status.quoted_status."]
_V2_FIELDS = ["data.text", "data.note_tweet.text", "data.entities.hashtags.tag",
              "data.note_tweet.entities.hashtags.tag", "includes.tweets.text",
              "includes.tweets.note_tweet.text", "includes.tweets.entities.hashtags.tag"]
DEFAULT_PATHS = [s + f for s in _V1_STATUSES for f in _V1_FIELDS] + _V2_FIELDS


# ---- keyword matching --------------------------------------------------------------------

# The non-ASCII characters for which Rust's `char::is_alphanumeric` holds, as a flat list of
# inclusive ranges [lo0, hi0, lo1, hi1, ...]. `cargo xtask plugins` generates the module from
# the Rust toolchain's own tables, so every language agrees with the Rust plugin.
from sluice_alnum import ALNUM  # noqa: E402


def _is_alnum(c):
    # An odd insertion point means the character falls inside a range.
    return bisect.bisect_right(ALNUM, ord(c)) % 2 == 1


_UNSPACED = [(0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1100, 0x11FF), (0x1780, 0x17FF),
             (0x3000, 0x303F), (0x3040, 0x30FF), (0x3130, 0x318F), (0x31F0, 0x31FF),
             (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F), (0xAC00, 0xD7FF),
             (0xF900, 0xFAFF), (0xFF66, 0xFFDC), (0x20000, 0x3FFFF)]
_DIACRITIC = [(0x0300, 0x036F), (0x0591, 0x05C7), (0x0610, 0x061A), (0x064B, 0x065F),
              (0x0670, 0x0670), (0x06D6, 0x06ED), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF),
              (0x20D0, 0x20FF), (0xFE20, 0xFE2F)]


def _in(ranges, o):
    return any(lo <= o <= hi for lo, hi in ranges)


def bounded(c):
    """A word character that takes part in whole-word boundaries."""
    o = ord(c)
    if o < 0x80:
        return c.isalnum() or c == "_"
    return _is_alnum(c) and not _in(_UNSPACED, o) and not _in(_DIACRITIC, o)


def fold(s):
    return s.lower().replace("ς", "σ")


def _caseless(c):
    return c.lower() == c and c.upper() == c


_ASCII_LOWER = {i: i + 32 for i in range(65, 91)}


class Keyword:
    def __init__(self, original, needle, needs_folding, ascii_ci, check_left, check_right):
        self.original = original
        self.needle = needle
        self.needs_folding = needs_folding
        self.ascii_ci = ascii_ci
        self.check_left = check_left
        self.check_right = check_right

    def find_in(self, text, cache):
        if self.needs_folding:
            hay = cache.get("fold")
            if hay is None:
                hay = cache["fold"] = fold(text)
            return self._find(hay, hay)
        if self.ascii_ci:
            hay = cache.get("ascii")
            if hay is None:
                hay = cache["ascii"] = text.translate(_ASCII_LOWER)
            return self._find(hay, text)
        return self._find(text, text)

    def _find(self, hay, text):
        # Like the Rust matcher: overlapping candidates in the ASCII case-insensitive scan,
        # non-overlapping ones (memmem's find_iter) otherwise.
        needle = self.needle
        step = 1 if self.ascii_ci else len(needle)
        start = hay.find(needle)
        while start >= 0:
            end = start + len(needle)
            if not (self.check_left and start > 0 and bounded(text[start - 1])) and not (
                self.check_right and end < len(text) and bounded(text[end])
            ):
                return True
            start = hay.find(needle, start + step)
        return False


class Matcher:
    def __init__(self, keywords, case_sensitive, whole_word):
        self.whole_word = whole_word
        self.keywords = []
        for original in keywords:
            if case_sensitive:
                needle, needs = original, False
            else:
                needs = any(ord(c) >= 0x80 and not _caseless(c) for c in original)
                needle = fold(original)
            if any(k.needle == needle for k in self.keywords) or not needle:
                continue
            self.keywords.append(Keyword(
                original, needle, needs, not case_sensitive and not needs,
                whole_word and bounded(needle[0]), whole_word and bounded(needle[-1])))

    def matches_any(self, text):
        cache = {}
        return any(k.find_in(text, cache) for k in self.keywords)

    def mark(self, text, found):
        cache = {}
        for i, k in enumerate(self.keywords):
            if not found[i] and k.find_in(text, cache):
                found[i] = True

    def describe(self):
        names = [k.original for k in self.keywords]
        return f"{len(names)} keyword(s) [{', '.join(names)}], whole_word={str(self.whole_word).lower()}"


class KeywordSearch:
    def __init__(self, c):
        case_sensitive = c.bool("case_sensitive", False)
        whole_word = c.bool("whole_word", True)
        fields = c.list("fields")
        if fields is not None:
            parsed = []
            for item in fields:
                try:
                    parsed.append(parse_path(item))
                except Fail as e:
                    raise Fail(f"config key `fields`: {e}") from None
            fields = parsed
        keywords = c.list("keywords")
        if keywords is None:
            if c.get("fields") is not None:
                raise Fail("config key `fields` needs `keywords`")
            self.matcher = None
            return
        keywords = [k.replace("\\\\", "\\") for k in keywords]
        self.matcher = Matcher(keywords, case_sensitive, whole_word)
        self.fields = fields
        self.case_sensitive = case_sensitive
        self.paths = Paths(fields if fields is not None else [parse_path(p) for p in DEFAULT_PATHS])

    def describe(self):
        if self.fields is None:
            where = "the default tweet text fields"
        else:
            where = ", ".join(path_str(p) for p in self.fields)
        return f"{self.matcher.describe()}, case_sensitive={str(self.case_sensitive).lower()}, in {where}"


# ---- keyword-filter ----------------------------------------------------------------------


class KeywordFilter:
    KEYS = ["keywords", "fields", "case_sensitive", "whole_word", "invert"]

    def __init__(self, pairs):
        c = Config(pairs, self.KEYS)
        self.search = KeywordSearch(c)
        if self.search.matcher is None:
            raise Fail('config key `keywords` is required: comma-separated keywords, e.g. "bts,방탄소년단"')
        self.invert = c.bool("invert", False)

    def summary(self):
        verb = "drops" if self.invert else "keeps only"
        return f"{verb} tweets matching {self.search.describe()}"

    def apply(self, value):
        try:
            _, doc = object_doc(value)
            found = [False]
            matcher = self.search.matcher

            def visit(s):
                if not found[0]:
                    found[0] = matcher.matches_any(s)

            walk_strings(doc, self.search.paths, self.search.paths.start, visit)
        except Fail as e:
            return ("fail", str(e))
        return KEEP if found[0] != self.invert else DROP


# ---- time --------------------------------------------------------------------------------

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]


def _days_from_civil(y, m, d):
    y = y - 1 if m <= 2 else y
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(days):
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def _dim(y, m):
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _epoch(y, mo, d, h, mi, s, ms, off):
    if not 1 <= mo <= 12 or d == 0 or d > _dim(y, mo) or h > 23 or mi > 59 or s > 60 or ms > 999:
        return None
    return (_days_from_civil(y, mo, d) * 86400000 + (h * 3600 + mi * 60 + s) * 1000 + ms
            - off * 60000)


def format_iso(ms):
    days, msd = divmod(ms, 86400000)
    y, m, d = _civil_from_days(days)
    if not 0 <= y <= 9999:
        return None
    s = msd // 1000
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (y, m, d, s // 3600, s // 60 % 60, s % 60, msd % 1000)


def _digits(s):
    return int(s) if s and s.isascii() and s.isdigit() else None


def _offset(s):
    if not s or s[0] not in "+-":
        return None
    sign = 1 if s[0] == "+" else -1
    r = s[1:]
    if len(r) == 4:
        h, m = r[:2], r[2:]
    elif len(r) == 5 and r[2] == ":":
        h, m = r[:2], r[3:]
    else:
        return None
    h, m = _digits(h), _digits(m)
    if h is None or m is None or h > 23 or m > 59:
        return None
    return sign * (h * 60 + m)


def _clock(s):
    if len(s) != 8 or s[2] != ":" or s[5] != ":":
        return None
    parts = (_digits(s[:2]), _digits(s[3:5]), _digits(s[6:]))
    return None if None in parts else parts


def parse_v1_time(s):
    if not s.isascii():
        return None
    parts = s.split(" ")
    if len(parts) != 6:
        return None
    wd, mon, day, clock, off, year = parts
    if len(wd) != 3 or not wd.isalpha():
        return None
    if mon.lower() not in _MONTHS or len(day) > 2 or len(year) != 4:
        return None
    c = _clock(clock)
    y, d, o = _digits(year), _digits(day), _offset(off)
    if c is None or y is None or d is None or o is None:
        return None
    return _epoch(y, _MONTHS.index(mon.lower()) + 1, d, c[0], c[1], c[2], 0, o)


def parse_rfc3339(s):
    if not s.isascii() or len(s) < 20 or s[4] != "-" or s[7] != "-" or s[10] not in "Tt ":
        return None
    y, mo, d = _digits(s[:4]), _digits(s[5:7]), _digits(s[8:10])
    c = _clock(s[11:19])
    if y is None or mo is None or d is None or c is None:
        return None
    rest, ms = s[19:], 0
    if rest.startswith("."):
        frac = rest[1:]
        n = len(frac) - len(frac.lstrip("0123456789"))
        if n == 0:
            return None
        ms = int((frac[: min(n, 3)] + "00")[:3])
        rest = frac[n:]
    off = 0 if rest in ("Z", "z") else _offset(rest)
    if off is None:
        return None
    return _epoch(y, mo, d, c[0], c[1], c[2], ms, off)


_I64 = re.compile(r"[+-]?[0-9]+\Z")


def parse_i64(s):
    if not _I64.match(s):
        return None
    v = int(s)
    return v if _I64_MIN <= v <= (1 << 63) - 1 else None


# ---- enrich: the fast path's strict reading (mirrors the Rust serde structures) ------------

TEXT, ID, MILLIS, KIND = "text", "id", "millis", "kind"


def vec(t):
    return ("vec", t)


TAG = ("Tag", [("text", TEXT), ("tag", TEXT)])
MENTION = ("Mention", [("screen_name", TEXT), ("username", TEXT)])
ENTITIES = ("Entities", [("hashtags", vec(TAG)), ("user_mentions", vec(MENTION)),
                         ("mentions", vec(MENTION))])
EXTENDED = ("Extended", [("full_text", TEXT), ("entities", ENTITIES)])
NOTE = ("Note", [("text", TEXT), ("entities", ENTITIES)])
V1_NESTED = ("V1Nested", [("entities", ENTITIES), ("extended_tweet", EXTENDED)])
V1_USER = ("V1User", [("screen_name", TEXT)])
REFERENCE = ("Reference", [("type", TEXT), ("id", TEXT)])
V2_DATA = ("V2Data", [("id", TEXT), ("text", TEXT), ("created_at", TEXT), ("author_id", TEXT),
                      ("entities", ENTITIES), ("note_tweet", NOTE),
                      ("referenced_tweets", vec(REFERENCE))])
V2_USER = ("V2User", [("id", TEXT), ("username", TEXT)])
V2_INCLUDED = ("V2Included", [("id", TEXT), ("entities", ENTITIES), ("note_tweet", NOTE)])
V2_INCLUDES = ("V2Includes", [("users", vec(V2_USER)), ("tweets", vec(V2_INCLUDED))])
TOP_FIELDS = {
    "id_str": ID, "id": ID, "text": TEXT, "full_text": TEXT, "created_at": TEXT,
    "timestamp_ms": MILLIS, "user": V1_USER, "entities": ENTITIES, "extended_tweet": EXTENDED,
    "retweeted_status": V1_NESTED, "is_quote_status": KIND, "quoted_status": KIND,
    "data": V2_DATA, "includes": V2_INCLUDES,
}


def strict(v, t):
    """Reads `v` as the Option<t> of the Rust structures: None for null, else the typed value;
    DataError on an unexpected type, Fail where serde_json would report a syntax error."""
    if v is None:
        return None
    return strict_some(v, t)


def strict_some(v, t):
    if t == TEXT:
        if isinstance(v, str):
            return read_str(v)
        if isinstance(v, JNum):
            number(v.lex)
        raise DataError()
    if t == ID:
        if isinstance(v, JNum):
            kind, n = number(v.lex)
            return str(n) if kind == "u" else None
        if isinstance(v, str):
            return read_str(v) or None
        if isinstance(v, (JObj, list)):
            raise DataError()
        return None
    if t == MILLIS:
        if isinstance(v, JNum):
            kind, n = number(v.lex)
            return n if kind != "f" and n <= (1 << 63) - 1 else None
        if isinstance(v, str):
            return parse_i64(read_str(v))
        if isinstance(v, (JObj, list)):
            raise DataError()
        return None
    if t == KIND:
        if isinstance(v, JObj):
            for k, _ in v:  # read, while the values are skipped
                read_str(k)
            return "object"
        if isinstance(v, JNum):
            number(v.lex)
        elif isinstance(v, str):
            read_str(v)
        return "true" if v is True else "other"
    if t[0] == "vec":
        if not isinstance(v, list) or isinstance(v, JObj):
            if isinstance(v, JNum):
                number(v.lex)
            elif isinstance(v, str):
                read_str(v)
            raise DataError()
        return [strict_some(x, t[1]) for x in v]
    return strict_struct(v, t)


def strict_struct(v, t):
    _, fields = t
    out = {}
    if isinstance(v, JObj):
        types = dict(fields)
        for k, x in v:
            k = read_str(k)
            if k in types:
                if k in out:
                    raise DataError()
                out[k] = strict(x, types[k])
        return out
    if isinstance(v, list):
        # serde's derived structs also read a sequence, field by field in declaration order.
        if len(v) < len(fields):
            for i, x in enumerate(v):
                strict(x, fields[i][1])
            raise DataError()
        for i, (name, ft) in enumerate(fields):
            out[name] = strict(v[i], ft)
        if len(v) > len(fields):
            raise Fail("not valid JSON: trailing characters")
        return out
    if isinstance(v, JNum):
        number(v.lex)
    elif isinstance(v, str):
        read_str(v)
    raise DataError()


def read_top(doc, target):
    top = {"keys": 0, "has_timestamp": False, "has_target": False, "v1": False}
    # Fields given a value other than null, even one that reads as no id or time: a second
    # occurrence is serde's duplicate_field.
    given = set()
    for k, x in doc:
        k = read_str(k)
        top["keys"] += 1
        t = TOP_FIELDS.get(k)
        if t is not None:
            if k in given:
                raise DataError()
            if x is not None:
                given.add(k)
            top[k] = strict(x, t)
        elif k == "@timestamp":
            top["has_timestamp"] = True
        if k == target:
            top["has_target"] = True
        if k in ("id_str", "id", "text", "full_text", "created_at"):
            top["v1"] = True
    return top


def push_folded(lst, value):
    if value:
        f = value.lower()
        if f not in lst:
            lst.append(f)


def _g(d, *keys):
    for k in keys:
        if d is None:
            return None
        d = d.get(k)
    return d


def streamed_facts(top):
    f = {"hashtags": [], "mentions": [], "id": None, "author": None, "is_retweet": False,
         "is_quote": False, "full_text": None, "ms": None}
    data = top.get("data")
    if data is not None:
        refs = [(r["type"], r["id"]) for r in data.get("referenced_tweets") or []
                if r.get("type") is not None and r.get("id") is not None]
        rt_id = next((i for kind, i in refs if kind == "retweeted"), None)
        includes = top.get("includes")
        retweeted = None
        if rt_id is not None and includes is not None:
            retweeted = next((t for t in includes.get("tweets") or [] if t.get("id") == rt_id), None)
        for ent in (data.get("entities"), _g(data, "note_tweet", "entities"),
                    _g(retweeted, "entities"), _g(retweeted, "note_tweet", "entities")):
            if ent is None:
                continue
            for h in ent.get("hashtags") or []:
                if h.get("tag") is not None:
                    push_folded(f["hashtags"], h["tag"])
            for m in ent.get("mentions") or []:
                if m.get("username") is not None:
                    push_folded(f["mentions"], m["username"])
        f["id"] = data.get("id") or None
        author = data.get("author_id")
        if author is not None and includes is not None:
            user = next((u for u in includes.get("users") or [] if u.get("id") == author), None)
            f["author"] = _g(user, "username") or None
        f["is_retweet"] = rt_id is not None
        f["is_quote"] = any(kind == "quoted" for kind, _ in refs)
        note = _g(data, "note_tweet", "text")
        f["full_text"] = note if note is not None else data.get("text")
        created = data.get("created_at")
        f["ms"] = parse_rfc3339(created) if created is not None else None
        return "v2", f
    if not top["v1"]:
        return "unknown", f
    rt = top.get("retweeted_status")
    for ent in (top.get("entities"), _g(top.get("extended_tweet"), "entities"),
                _g(rt, "entities"), _g(rt, "extended_tweet", "entities")):
        if ent is None:
            continue
        for h in ent.get("hashtags") or []:
            if h.get("text") is not None:
                push_folded(f["hashtags"], h["text"])
        for m in ent.get("user_mentions") or []:
            if m.get("screen_name") is not None:
                push_folded(f["mentions"], m["screen_name"])
    f["id"] = top.get("id_str") or top.get("id")
    f["author"] = _g(top.get("user"), "screen_name") or None
    f["is_retweet"] = rt is not None
    f["is_quote"] = top.get("is_quote_status") == "true" or top.get("quoted_status") == "object"
    for text in (_g(top.get("extended_tweet"), "full_text"), top.get("full_text"), top.get("text")):
        if text is not None:
            f["full_text"] = text
            break
    created = top.get("created_at")
    ms = parse_v1_time(created) if created is not None else None
    f["ms"] = ms if ms is not None else top.get("timestamp_ms")
    return "v1.1", f


# ---- enrich: the Value path (last key wins) ----------------------------------------------


def as_map(v):
    return dict(v) if isinstance(v, JObj) else None


def get_path(m, path):
    v = m
    for k in path.split("."):
        if not isinstance(v, dict):
            return None
        v = v.get(k)
        v = as_map(v) if isinstance(v, JObj) else v
    return v


def get_text(m, path):
    v = get_path(m, path)
    return v if isinstance(v, str) else None


def objects(v):
    if isinstance(v, JObj):
        return [dict(v)]
    if isinstance(v, list):
        return [dict(x) for x in v if isinstance(x, JObj)]
    return []


def collect(lst, entities, kind, field):
    items = entities.get(kind) if isinstance(entities, dict) else None
    for item in objects(items):
        value = item.get(field)
        if isinstance(value, str):
            push_folded(lst, value)


def id_string(v):
    if isinstance(v, JNum):
        kind, n = number(v.lex)
        return str(n) if kind == "u" else None
    if isinstance(v, str):
        return v or None
    return None


def tree_facts(doc, shape):
    f = {"hashtags": [], "mentions": [], "id": None, "author": None, "is_retweet": False,
         "is_quote": False, "full_text": None, "ms": None}
    if shape == "v1.1":
        rt = as_map(doc.get("retweeted_status"))
        for status in [doc] + ([rt] if rt is not None else []):
            for ent in (as_map(status.get("entities")), get_path(status, "extended_tweet.entities")):
                collect(f["hashtags"], ent, "hashtags", "text")
                collect(f["mentions"], ent, "user_mentions", "screen_name")
        f["id"] = id_string(doc.get("id_str")) or id_string(doc.get("id"))
        f["author"] = get_text(doc, "user.screen_name") or None
        f["is_retweet"] = rt is not None
        f["is_quote"] = doc.get("is_quote_status") is True or isinstance(doc.get("quoted_status"), JObj)
        for p in ("extended_tweet.full_text", "full_text", "text"):
            t = get_text(doc, p)
            if t is not None:
                f["full_text"] = t
                break
        created = get_text(doc, "created_at")
        ms = parse_v1_time(created) if created is not None else None
        if ms is None:
            tms = doc.get("timestamp_ms")
            if isinstance(tms, JNum):
                kind, n = number(tms.lex)
                ms = n if kind != "f" and n <= (1 << 63) - 1 else None
            elif isinstance(tms, str):
                ms = parse_i64(tms)
        f["ms"] = ms
    elif shape == "v2":
        data = as_map(doc.get("data"))
        refs = []
        for r in objects(data.get("referenced_tweets")):
            kind, rid = r.get("type"), r.get("id")
            if isinstance(kind, str) and isinstance(rid, str) \
                   :
                refs.append((kind, rid))
        rt_id = next((i for kind, i in refs if kind == "retweeted"), None)
        rt = None
        if rt_id is not None:
            rt = next((t for t in objects(get_path(doc, "includes.tweets"))
                       if t.get("id") == rt_id), None)
        for tweet in [data] + ([rt] if rt is not None else []):
            for ent in (as_map(tweet.get("entities")), get_path(tweet, "note_tweet.entities")):
                collect(f["hashtags"], ent, "hashtags", "tag")
                collect(f["mentions"], ent, "mentions", "username")
        f["id"] = get_text(data, "id") or None
        author = get_text(data, "author_id")
        if author is not None:
            user = next((u for u in objects(get_path(doc, "includes.users"))
                         if u.get("id") == author), None)
            f["author"] = get_text(user, "username") if user is not None else None
            f["author"] = f["author"] or None
        f["is_retweet"] = rt_id is not None
        f["is_quote"] = any(kind == "quoted" for kind, _ in refs)
        note = get_text(data, "note_tweet.text")
        f["full_text"] = note if note is not None else get_text(data, "text")
        created = get_text(data, "created_at")
        f["ms"] = parse_rfc3339(created) if created is not None else None
    return f


def tree_shape(doc):
    if isinstance(doc.get("data"), JObj):
        return "v2"
    if any(k in doc for k in ("id_str", "id", "text", "full_text", "created_at")):
        return "v1.1"
    return "unknown"


def derived(shape, f, matched):
    """The derived fields as a JObj in sorted key order, and the @timestamp string or None."""
    out = {"hashtags": list(f["hashtags"]), "mentions": list(f["mentions"])}
    if matched is not None:
        out["matched_keywords"] = matched
    if f["id"] is not None:
        out["tweet_url"] = f"https://twitter.com/{f['author'] or 'i/web'}/status/{f['id']}"
    out["is_retweet"] = f["is_retweet"]
    out["is_quote"] = f["is_quote"]
    if f["full_text"] is not None:
        out["text_length"] = JNum(str(len(f["full_text"])))
    out["shape"] = shape
    ts = format_iso(f["ms"]) if f["ms"] is not None else None
    return JObj(sorted(out.items())), ts


class Enrich:
    KEYS = ["keywords", "fields", "case_sensitive", "whole_word", "target"]

    def __init__(self, pairs):
        c = Config(pairs, self.KEYS)
        raw = c.get("target")
        target = _rust_trim(raw) if raw is not None else "sluice"
        if not target or target == "@timestamp":
            raise Fail(f"config key `target`: {rust_debug(target)} cannot hold the derived fields")
        self.search = KeywordSearch(c)
        self.target = target

    def summary(self):
        if self.search.matcher is not None:
            kw = "matched_keywords from " + self.search.describe()
        else:
            kw = "no keywords"
        return f"derived fields in `{self.target}`, {kw}"

    def _matched(self, found):
        return [k.original for k, f in zip(self.search.matcher.keywords, found) if f]

    def apply(self, value):
        try:
            text, doc = object_doc(value)
            try:
                return self._streaming(value, text, doc)
            except DataError:
                return self._tree(doc)
        except Fail as e:
            return ("fail", str(e))

    def _streaming(self, value, text, doc):
        top = read_top(doc, self.target)
        if top["has_timestamp"] or top["has_target"]:
            raise DataError()
        shape, f = streamed_facts(top)
        matched = None
        if self.search.matcher is not None:
            found = [False] * len(self.search.matcher.keywords)
            walk_strings(doc, self.search.paths, self.search.paths.start,
                         lambda s: self.search.matcher.mark(s, found))
            matched = self._matched(found)
        fields, ts = derived(shape, f, matched)
        close = len(text.rstrip(_WS)) - 1
        parts = [text[:close]]
        first = top["keys"] == 0
        if ts is not None:
            parts.append(("" if first else ",") + '"@timestamp":' + dump_str(ts))
            first = False
        parts.append(("" if first else ",") + dump_str(self.target) + ":" + dumps(fields))
        parts.append(text[close:])
        return ("set", "".join(parts).encode("utf-8"))

    def _tree(self, doc):
        check_tree(doc)
        m = dict(doc)
        shape = tree_shape(m)
        f = tree_facts(m, shape)
        matched = None
        if self.search.matcher is not None:
            found = [False] * len(self.search.matcher.keywords)
            walk_strings_tree(doc, self.search.paths, self.search.paths.start,
                              lambda s: self.search.matcher.mark(s, found))
            matched = self._matched(found)
        fields, ts = derived(shape, f, matched)
        changed = False
        if ts is not None and not (isinstance(m.get("@timestamp"), str)
                                  
                                   and m["@timestamp"] == ts):
            m["@timestamp"] = ts
            changed = True
        existing = m.get(self.target)
        if isinstance(existing, JObj):
            merged = dict(existing)
            for k, v in fields:
                if k not in merged or dumps(merged[k]) != dumps(v):
                    merged[k] = v
                    changed = True
            m[self.target] = JObj(merged.items())
        else:
            m[self.target] = fields
            changed = True
        if not changed:
            return KEEP
        return ("set", dumps(JObj(m.items())).encode("utf-8"))
