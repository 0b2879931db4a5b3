// Sluice's keyword-filter and enrich transforms in JavaScript, for jco (componentize-js)
// plugins. A port of the Rust library in guest-plugins/transforms: same config keys, same
// matching rules, same outcomes and, for `set-value`, the same bytes (guest-plugins/vectors).
//
// `cargo xtask plugins` bundles this file with the generated `ALNUM` table and one plugin's
// entry (e.g. guest-plugins/keyword-filter-js/plugin.js) into the module jco componentizes.
//
// An outcome is KEEP, DROP, { set: Uint8Array } or { fail: string }.

export const KEEP = { keep: true };
export const DROP = { drop: true };

export class Fail extends Error {}
class DataError extends Error {}

class JObj {
  constructor(pairs) {
    this.pairs = pairs;
  }
  map() {
    return new Map(this.pairs);
  }
}

class JNum {
  constructor(lex) {
    this.lex = lex;
  }
}

// ---- input checks ----------------------------------------------------------------------

function utf8Error(b) {
  let i = 0;
  const n = b.length;
  while (i < n) {
    const first = b[i];
    if (first < 0x80) {
      i += 1;
      continue;
    }
    let width;
    if (first >= 0xc2 && first <= 0xdf) width = 2;
    else if (first >= 0xe0 && first <= 0xef) width = 3;
    else if (first >= 0xf0 && first <= 0xf4) width = 4;
    else return `invalid utf-8 sequence of 1 bytes from index ${i}`;
    for (let k = 1; k < width; k++) {
      if (i + k >= n) return `incomplete utf-8 byte sequence from index ${i}`;
      const c = b[i + k];
      let lo = 0x80;
      let hi = 0xbf;
      if (k === 1) {
        if (first === 0xe0) lo = 0xa0;
        else if (first === 0xed) hi = 0x9f;
        else if (first === 0xf0) lo = 0x90;
        else if (first === 0xf4) hi = 0x8f;
      }
      if (c < lo || c > hi) return `invalid utf-8 sequence of ${k} bytes from index ${i}`;
    }
    i += width;
  }
  return null;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

// Decoding replaces invalid UTF-8 with U+FFFD, so only a text holding U+FFFD needs the
// byte-level check (in JavaScript, slow) that gives Rust's message.
function utf8(value) {
  const text = decoder.decode(value);
  if (text.includes('\ufffd')) {
    const err = utf8Error(value);
    if (err !== null) throw new Fail(`not valid UTF-8: ${err}`);
  }
  return text;
}

// A strict JSON parser (RFC 8259, as serde_json reads it) that keeps what the transforms
// need: object pairs in order with duplicates, numbers as lexemes, lone surrogates as is.
const WS = /[ \t\n\r]*/y;
const PLAIN = /[^"\\\u0000-\u001f]*/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

class Parser {
  constructor(text) {
    this.s = text;
    this.i = 0;
  }
  fail(what) {
    throw new Fail(`not valid JSON: ${what} at position ${this.i}`);
  }
  ws() {
    WS.lastIndex = this.i;
    WS.test(this.s);
    this.i = WS.lastIndex;
  }
  // Iterative, with no depth limit: serde_json skips a value nobody reads however deep it is
  // (see nested()). What is inside an array or object nested 128 deep is checked but not
  // kept, since reading it fails anyway.
  document() {
    // The closing brackets of the open arrays and objects, innermost last, as runs of one
    // bracket ([bracket, count]: a deep chain is one run), and the outermost 128 of them as
    // { items } or { pairs, key } (an object's pending key).
    const runs = [];
    let depth = 0;
    const kept = [];
    for (;;) {
      this.ws();
      const c = this.s[this.i];
      let v;
      if (c === '[' || c === '{') {
        this.i += 1;
        this.ws();
        const closer = c === '[' ? ']' : '}';
        if (this.s[this.i] === closer) {
          this.i += 1;
          v = c === '[' ? [] : new JObj([]);
        } else {
          const run = runs[runs.length - 1];
          if (run && run[0] === closer) run[1] += 1;
          else runs.push([closer, 1]);
          depth += 1;
          const key = c === '{' ? this.key() : null;
          if (depth <= 128) kept.push(c === '[' ? { items: [] } : { pairs: [], key });
          continue;
        }
      } else v = this.scalar(c);
      // v is complete: add it to its container, and close those that end here.
      for (;;) {
        if (depth === 0) {
          this.ws();
          if (this.i !== this.s.length) this.fail('trailing characters');
          return v;
        }
        const top = kept[depth - 1];
        if (depth < 128) {
          if (top.items) top.items.push(v);
          else top.pairs.push([top.key, v]);
        }
        this.ws();
        const d = this.s[this.i];
        this.i += 1;
        const run = runs[runs.length - 1];
        if (d === ',') {
          if (run[0] === '}') {
            const key = this.key();
            if (top) top.key = key;
          }
          break;
        }
        if (d !== run[0]) this.fail(`expected \`,\` or \`${run[0]}\``);
        run[1] -= 1;
        if (run[1] === 0) runs.pop();
        depth -= 1;
        if (top) {
          kept.pop();
          v = top.items || new JObj(top.pairs);
        }
      }
    }
  }
  scalar(c) {
    if (c === '"') return this.string();
    if (c === 't') return this.word('true', true);
    if (c === 'f') return this.word('false', false);
    if (c === 'n') return this.word('null', null);
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (m === null || m[0] === '') this.fail(c === undefined ? 'EOF while parsing a value' : 'expected value');
    this.i = NUMBER.lastIndex;
    return new JNum(m[0]);
  }
  word(w, v) {
    if (this.s.startsWith(w, this.i)) {
      this.i += w.length;
      return v;
    }
    return this.fail('expected ident');
  }
  // An object key and its colon.
  key() {
    this.ws();
    if (this.s[this.i] !== '"') this.fail('key must be a string');
    const k = this.string();
    this.ws();
    if (this.s[this.i] !== ':') this.fail('expected `:`');
    this.i += 1;
    return k;
  }
  string() {
    this.i += 1;
    let out = '';
    for (;;) {
      PLAIN.lastIndex = this.i;
      PLAIN.test(this.s);
      out += this.s.slice(this.i, PLAIN.lastIndex);
      this.i = PLAIN.lastIndex;
      const c = this.s[this.i];
      if (c === '"') {
        this.i += 1;
        return out;
      }
      if (c === undefined) this.fail('EOF while parsing a string');
      if (c !== '\\') this.fail('control character found while parsing a string');
      const e = this.s[this.i + 1];
      if (e === 'u') {
        const hex = this.s.slice(this.i + 2, this.i + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('invalid escape');
        out += String.fromCharCode(parseInt(hex, 16));
        this.i += 6;
      } else if (e in ESCAPES) {
        out += ESCAPES[e];
        this.i += 2;
      } else {
        this.fail('invalid escape');
      }
    }
  }
}

function parse(text) {
  return new Parser(text).document();
}

const WS_CHARS = ' \t\n\r';

function firstNonWs(text) {
  let i = 0;
  while (i < text.length && WS_CHARS.includes(text[i])) i++;
  return text[i];
}

// The record's text as a parsed JSON object, or a failure with the Rust library's reason.
function objectDoc(text) {
  const doc = parse(text);
  const first = firstNonWs(text);
  if (first === '{') return doc;
  const kinds = { '[': 'an array', '"': 'a string', t: 'a boolean', f: 'a boolean', n: 'null' };
  throw new Fail(`not a JSON object: the document is ${kinds[first] || 'a number'}`);
}

const SMALL = 1 << 16;

const colons = (s) => s.split(':').length - 1;

// The record's text as JSON.parse reads it (native, so much faster here: plain objects, numbers
// as doubles) where that holds what the exact parser's tree does for a reader of strings: an
// object in which no key repeats (JSON.parse keeps a repeated key's last value only). Else
// null: the exact parser decides, and words any error. Each key puts one colon in the text and
// one in JSON.stringify's output, and a dropped repeat takes its colon with it; strings carry
// the same colons in both unless the text writes one as an escape (`\u003a`: the exact way).
function parsedFast(text) {
  if (text.includes('\\u003')) return null;
  try {
    const doc = JSON.parse(text);
    if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return null;
    return colons(text) === colons(JSON.stringify(doc)) ? doc : null;
  } catch (e) {
    return null;
  }
}

// Whether the text may write a lone surrogate: valid UTF-8 cannot, only an escape `\uDxxx`.
// Where none is written, the strings need no readStr.
const surrogateEscapes = (text) => text.includes('\\ud') || text.includes('\\uD');

const SURROGATE = /[\ud800-\udfff]/;
const PAIRED = /[\ud800-\udbff][\udc00-\udfff]/g;

// A string the Rust parser decodes (rather than skips): a lone surrogate fails there.
function readStr(s) {
  if (SURROGATE.test(s) && SURROGATE.test(s.replace(PAIRED, ''))) {
    throw new Fail('not valid JSON: lone surrogate in hex escape');
  }
  return s;
}

// The depth inside one more array or object that the Rust parser reads (rather than skips).
// serde_json's recursion limit fails the 128th, counting the document's object; a skipped
// value is not counted, however deep.
function nested(depth) {
  if (depth + 1 >= 128) throw new Fail('not valid JSON: recursion limit exceeded');
  return depth + 1;
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
const I32_MAX = 2 ** 31 - 1;
const POW10 = Array.from({ length: 309 }, (_, i) => Number(`1e${i}`));

const outOfRange = () => new Fail('not valid JSON: number out of range');

// serde_json's float assembly (without its `float_roundtrip` feature): the significand, then
// one multiplication or division by a power of ten. Not always correctly rounded, and
// reproduced here so that re-serialized floats match the Rust plugin's bytes.
function f64FromParts(positive, significand, exponent0) {
  let f = Number(significand);
  let exponent = exponent0;
  for (;;) {
    if (Math.abs(exponent) < POW10.length) {
      const pow10 = POW10[Math.abs(exponent)];
      if (exponent >= 0) {
        f *= pow10;
        if (f === Infinity) throw outOfRange();
      } else f /= pow10;
      break;
    }
    if (f === 0) break;
    if (exponent >= 0) throw outOfRange();
    f /= 1e308;
    exponent += 308;
  }
  return positive ? f : -f;
}

const overflowsU64 = (acc, d) => acc >= U64_MAX / 10n && (acc > U64_MAX / 10n || d > U64_MAX % 10n);
const isDigit = (c) => c >= '0' && c <= '9';

// A number as serde_json reads it: ['u', bigint], ['i', bigint] or ['f', number]; fails when
// out of range. `lex` is a valid JSON number.
function number(lex) {
  const positive = lex[0] !== '-';
  const s = positive ? lex : lex.slice(1);
  const n = s.length;
  let i = 0;
  let sig = 0n;
  let exp = 0;
  const exponentPart = () => {
    i += 1; // 'e' or 'E'
    let positiveExp = true;
    if (s[i] === '+' || s[i] === '-') {
      positiveExp = s[i] === '+';
      i += 1;
    }
    let e = 0;
    for (; i < n; i++) {
      const d = s.charCodeAt(i) - 48;
      if (e >= Math.floor(I32_MAX / 10) && (e > Math.floor(I32_MAX / 10) || d > I32_MAX % 10)) {
        if (sig !== 0n && positiveExp) throw outOfRange();
        return positive ? 0 : -0;
      }
      e = e * 10 + d;
    }
    return f64FromParts(positive, sig, positiveExp ? exp + e : exp - e);
  };
  let long = false;
  for (; i < n && isDigit(s[i]); i++) {
    const d = BigInt(s.charCodeAt(i) - 48);
    if (overflowsU64(sig, d)) {
      // a long integer: further digits only raise the exponent
      for (; i < n && isDigit(s[i]); i++) exp += 1;
      long = true;
      break;
    }
    sig = sig * 10n + d;
  }
  if (i === n && !long) {
    if (positive) return ['u', sig];
    if (sig > 0n && sig <= 1n << 63n) return ['i', -sig];
    return ['f', -Number(sig)];
  }
  if (s[i] === '.') {
    i += 1;
    for (; i < n && isDigit(s[i]); i++) {
      const d = BigInt(s.charCodeAt(i) - 48);
      if (overflowsU64(sig, d)) {
        while (i < n && isDigit(s[i])) i += 1;
        break;
      }
      sig = sig * 10n + d;
      exp -= 1;
    }
  }
  return ['f', i < n ? exponentPart() : f64FromParts(positive, sig, exp)];
}

// ---- canonical serialization (serde_json's compact form) -------------------------------

const SHORT_ESC = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

export function dumpStr(s) {
  return `"${s.replace(/["\\\u0000-\u001f]/g, (c) => SHORT_ESC[c] || `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

// A finite f64 the way serde_json writes it (shortest round trip).
export function formatFloat(f) {
  if (f === 0) return Object.is(f, -0) ? '-0.0' : '0.0';
  const sign = f < 0 ? '-' : '';
  const [mant, exp] = Math.abs(f).toExponential().split('e');
  const digits = mant.replace('.', '').replace(/0+$/, '') || '0';
  const point = Number(exp) + 1; // the value is 0.digits * 10^point
  const n = digits.length;
  if (point > 0 && point <= 16) {
    if (n <= point) return `${sign}${digits}${'0'.repeat(point - n)}.0`;
    return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
  }
  if (point > -5 && point <= 0) return `${sign}0.${'0'.repeat(-point)}${digits}`;
  const e = point - 1;
  const m = n > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${m}e${e > 0 ? '+' : '-'}${Math.abs(e)}`;
}

// Orders strings by code point (as UTF-8 bytes compare), not by UTF-16 unit.
function codeUnitRank(x) {
  if (x >= 0xe000) return x - 0x800;
  if (x >= 0xd800) return x + 0x2000;
  return x;
}

function byCodePoint(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codeUnitRank(x) - codeUnitRank(y);
  }
  return a.length - b.length;
}

function sortedEntries(map) {
  return [...map.entries()].sort((p, q) => byCodePoint(p[0], q[0]));
}

function dump(v, out) {
  if (v instanceof JObj || v instanceof Map) {
    const entries = sortedEntries(v instanceof Map ? v : v.map());
    out.push('{');
    entries.forEach(([k, x], i) => {
      if (i) out.push(',');
      out.push(dumpStr(k), ':');
      dump(x, out);
    });
    out.push('}');
  } else if (v instanceof JNum) {
    const [kind, n] = number(v.lex);
    out.push(kind === 'f' ? formatFloat(n) : n.toString());
  } else if (typeof v === 'string') {
    out.push(dumpStr(v));
  } else if (Array.isArray(v)) {
    out.push('[');
    v.forEach((x, i) => {
      if (i) out.push(',');
      dump(x, out);
    });
    out.push(']');
  } else {
    out.push(v === true ? 'true' : v === false ? 'false' : 'null');
  }
}

export function dumps(v) {
  const out = [];
  dump(v, out);
  return out.join('');
}

// What serde_json checks when it reads a whole document into a Value.
function checkTree(v, depth = 0) {
  if (v instanceof JObj) {
    const inner = nested(depth);
    for (const [k, x] of v.pairs) {
      readStr(k);
      checkTree(x, inner);
    }
  } else if (v instanceof JNum) number(v.lex);
  else if (typeof v === 'string') readStr(v);
  else if (Array.isArray(v)) {
    const inner = nested(depth);
    for (const x of v) checkTree(x, inner);
  }
}

// ---- config ----------------------------------------------------------------------------

// Rust's str::trim: Unicode White_Space at both ends.
const WHITE = '[\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const TRIM = new RegExp(`^${WHITE}+|${WHITE}+$`, 'g');

function rustTrim(s) {
  return s.replace(TRIM, '');
}

// Rust's `{:?}` of a string, for the common characters.
export function rustDebug(s) {
  let out = '"';
  for (const c of s) {
    const o = c.codePointAt(0);
    if (c === '"' || c === '\\') out += `\\${c}`;
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (o < 0x20 || o === 0x7f) out += `\\u{${o.toString(16)}}`;
    else out += c;
  }
  return `${out}"`;
}

class Config {
  constructor(pairs, known) {
    const seen = new Set();
    for (const [key] of pairs) {
      if (!known.includes(key)) {
        throw new Fail(`unknown config key \`${key}\` (known keys: ${known.join(', ')})`);
      }
      if (seen.has(key)) throw new Fail(`config key \`${key}\` is given more than once`);
      seen.add(key);
    }
    this.pairs = new Map(pairs);
  }
  get(key) {
    return this.pairs.get(key);
  }
  bool(key, dflt) {
    const raw = this.get(key);
    if (raw === undefined) return dflt;
    const v = rustTrim(raw).replace(/[A-Z]/g, (c) => c.toLowerCase());
    if (['true', 'yes', 'on', '1'].includes(v)) return true;
    if (['false', 'no', 'off', '0'].includes(v)) return false;
    throw new Fail(`config key \`${key}\`: expected true or false, got ${rustDebug(raw)}`);
  }
  list(key) {
    const raw = this.get(key);
    if (raw === undefined) return null;
    const items = splitList(raw);
    if (items.length === 0) throw new Fail(`config key \`${key}\`: the list is empty`);
    return items;
  }
}

function splitList(raw) {
  const items = [];
  let cur = '';
  const push = () => {
    const item = rustTrim(cur);
    if (item) items.push(item);
    cur = '';
  };
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c === '\\') {
      if (i + 1 < raw.length) {
        const next = raw[i + 1];
        cur += next === ',' ? ',' : `\\${next}`;
        i += 1;
      } else cur += '\\';
    } else if (c === ',') push();
    else cur += c;
  }
  push();
  return items;
}

// ---- paths -----------------------------------------------------------------------------

const ANY = null;

function parsePath(raw) {
  const segs = [];
  let key = '';
  let escaped = false;
  const s = rustTrim(raw);
  let i = 0;
  for (;;) {
    const c = i < s.length ? s[i] : undefined;
    i += 1;
    if (c === '\\') {
      const next = i < s.length ? s[i] : undefined;
      i += 1;
      if (next === '.' || next === '*' || next === '\\' || next === ',') {
        key += next;
        escaped = true;
      } else if (next === undefined) {
        throw new Fail(`path ${rustDebug(raw)}: ends with a lone backslash`);
      } else {
        throw new Fail(`path ${rustDebug(raw)}: unknown escape \`\\${next}\` (use \\. \\* or \\\\)`);
      }
    } else if (c === '.' || c === undefined) {
      if (!key) throw new Fail(`path ${rustDebug(raw)}: empty segment`);
      segs.push(key === '*' && !escaped ? ANY : key);
      key = '';
      escaped = false;
      if (c === undefined) return segs;
    } else key += c;
  }
}

function pathStr(p) {
  return p.map((seg) => (seg === ANY ? '*' : seg.replace(/[.*\\]/g, (c) => `\\${c}`))).join('.');
}

// Many paths matched at once, as a lazily built deterministic automaton: a state is the set of
// (path, position) pairs still alive; reaching the end of a path covers the whole subtree.
const ALL = 'all';

class Paths {
  constructor(paths) {
    this.paths = paths;
    this.start = paths.map((_, i) => [i, 0]);
    this.start.next = new Map();
  }
  // A state's children are memoized on it: `next` maps a key to the child state.
  child(state, key) {
    const known = state.next.get(key);
    if (known !== undefined) return known;
    let next = [];
    for (const [i, pos] of state) {
      const seg = this.paths[i][pos];
      if (seg === ANY || seg === key) {
        if (pos + 1 === this.paths[i].length) {
          next = ALL;
          break;
        }
        next.push([i, pos + 1]);
      }
    }
    if (next !== ALL) {
      if (next.length === 0) next = null;
      else next.next = new Map();
    }
    state.next.set(key, next);
    return next;
  }
}

// Calls f on every string at or beneath a path (arrays transparent), checking what the Rust
// streaming walk decodes: every key of an object it reads, even beneath a path. The document
// is the exact parser's tree or parsedFast's; `lone` is surrogateEscapes of its text.
function walkStrings(v, paths, state, f, lone, depth = 0) {
  if (typeof v === 'string') {
    if (lone) readStr(v);
    if (state === ALL) f(v);
  } else if (typeof v === 'number') {
    // A double from JSON.parse. Near f64's limits only serde_json's own (inexact) assembly
    // tells whether it is out of range: the failure sends the record the exact way.
    if (!(Math.abs(v) < 1e308)) throw outOfRange();
  } else if (v instanceof JNum) number(v.lex);
  else if (Array.isArray(v)) {
    const inner = nested(depth);
    for (let i = 0; i < v.length; i++) walkStrings(v[i], paths, state, f, lone, inner);
  } else if (v !== null && typeof v === 'object') {
    const inner = nested(depth);
    const exact = v instanceof JObj;
    const keys = exact ? v.pairs : Object.keys(v);
    for (let i = 0; i < keys.length; i++) {
      const k = exact ? keys[i][0] : keys[i];
      if (lone) readStr(k);
      const next = state === ALL ? ALL : paths.child(state, k);
      if (next !== null) walkStrings(exact ? keys[i][1] : v[k], paths, next, f, lone, inner);
    }
  }
}

// The same over the last-wins view of a document (enrich's Value path).
function walkStringsTree(v, paths, state, f) {
  if (v instanceof JObj) {
    for (const [k, x] of v.map()) {
      const next = state === ALL ? ALL : paths.child(state, k);
      if (next !== null) walkStringsTree(x, paths, next, f);
    }
  } else if (Array.isArray(v)) {
    for (const x of v) walkStringsTree(x, paths, state, f);
  } else if (typeof v === 'string' && state === ALL) f(v);
}

const V1_FIELDS = ['text', 'full_text', 'extended_tweet.full_text', 'entities.hashtags.text',
  'extended_tweet.entities.hashtags.text'];
const V1_STATUSES = ['', 'retweeted_status.', 'quoted_status.', 'retweeted_status.quoted_status.'];
const V2_FIELDS = ['data.text', 'data.note_tweet.text', 'data.entities.hashtags.tag',
  'data.note_tweet.entities.hashtags.tag', 'includes.tweets.text',
  'includes.tweets.note_tweet.text', 'includes.tweets.entities.hashtags.tag'];
const DEFAULT_PATHS = V1_STATUSES.flatMap((s) => V1_FIELDS.map((f) => s + f)).concat(V2_FIELDS);

// ---- keyword matching ------------------------------------------------------------------

// ALNUM: the non-ASCII characters for which Rust's `char::is_alphanumeric` holds, as sorted
// half-open ranges [lo0, hi0, lo1, hi1, ...], generated by `cargo xtask plugins` from the
// Rust toolchain's tables and prepended to the bundle.
function isAlnum(o) {
  let lo = 0;
  let hi = ALNUM.length; // eslint-disable-line no-undef
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ALNUM[mid] <= o) lo = mid + 1; // eslint-disable-line no-undef
    else hi = mid;
  }
  return lo % 2 === 1;
}

const UNSPACED = [[0x0e00, 0x0eff], [0x1000, 0x109f], [0x1100, 0x11ff], [0x1780, 0x17ff],
  [0x3000, 0x303f], [0x3040, 0x30ff], [0x3130, 0x318f], [0x31f0, 0x31ff], [0x3400, 0x4dbf],
  [0x4e00, 0x9fff], [0xa960, 0xa97f], [0xac00, 0xd7ff], [0xf900, 0xfaff], [0xff66, 0xffdc],
  [0x20000, 0x3ffff]];
const DIACRITIC = [[0x0300, 0x036f], [0x0591, 0x05c7], [0x0610, 0x061a], [0x064b, 0x065f],
  [0x0670, 0x0670], [0x06d6, 0x06ed], [0x1ab0, 0x1aff], [0x1dc0, 0x1dff], [0x20d0, 0x20ff],
  [0xfe20, 0xfe2f]];

const inRanges = (ranges, o) => ranges.some(([lo, hi]) => o >= lo && o <= hi);

// A word character (by code point) that takes part in whole-word boundaries.
function bounded(o) {
  if (o < 0x80) return (o >= 97 && o <= 122) || (o >= 65 && o <= 90) || (o >= 48 && o <= 57) || o === 95;
  return isAlnum(o) && !inRanges(UNSPACED, o) && !inRanges(DIACRITIC, o);
}

function fold(s) {
  return s.toLowerCase().replaceAll('ς', 'σ');
}

const asciiLower = (s) => s.replace(/[A-Z]+/g, (c) => c.toLowerCase());

function caseless(c) {
  return c.toLowerCase() === c && c.toUpperCase() === c;
}

// The code point that ends just before UTF-16 index i.
function pointBefore(s, i) {
  const low = s.charCodeAt(i - 1);
  if (low >= 0xdc00 && low <= 0xdfff && i >= 2) {
    const high = s.charCodeAt(i - 2);
    if (high >= 0xd800 && high <= 0xdbff) return (high - 0xd800) * 0x400 + (low - 0xdc00) + 0x10000;
  }
  return low;
}

class Keyword {
  constructor(original, needle, needsFolding, asciiCi, checkLeft, checkRight) {
    Object.assign(this, { original, needle, needsFolding, asciiCi, checkLeft, checkRight });
  }
  findIn(text, cache) {
    if (this.needsFolding) {
      if (cache.fold === undefined) cache.fold = fold(text);
      return this.find(cache.fold, cache.fold);
    }
    if (this.asciiCi) {
      // The native toLowerCase finds every candidate asciiLower (a regex, slow here) would, at
      // the same index while it keeps the length (only U+0130 lengthens, nothing shortens);
      // one counts where the text's own characters lower to the needle in ASCII.
      if (cache.lower === undefined) cache.lower = text.toLowerCase();
      if (cache.lower.length === text.length) return this.find(cache.lower, text, true);
      if (cache.ascii === undefined) cache.ascii = asciiLower(text);
      return this.find(cache.ascii, text);
    }
    return this.find(text, text);
  }
  // Whether the needle occurs at all, boundaries aside: findIn's hay holds it (see mayMatch).
  occursIn(text, cache) {
    if (this.needsFolding) {
      if (cache.fold === undefined) cache.fold = fold(text);
      return cache.fold.includes(this.needle);
    }
    if (this.asciiCi) {
      if (cache.lower === undefined) cache.lower = text.toLowerCase();
      return cache.lower.includes(this.needle);
    }
    return text.includes(this.needle);
  }
  // Like the Rust matcher: overlapping candidates in the ASCII case-insensitive scan,
  // non-overlapping ones (memmem's find_iter) otherwise. `verify`: hay is text.toLowerCase().
  find(hay, text, verify = false) {
    const { needle } = this;
    const step = this.asciiCi ? 1 : needle.length;
    let start = hay.indexOf(needle);
    while (start >= 0) {
      const end = start + needle.length;
      const same = !verify || asciiLower(text.slice(start, end)) === needle;
      const leftOk = !(this.checkLeft && start > 0 && bounded(pointBefore(text, start)));
      const rightOk = !(this.checkRight && end < text.length && bounded(text.codePointAt(end)));
      if (same && leftOk && rightOk) return true;
      start = hay.indexOf(needle, start + step);
    }
    return false;
  }
}

class Matcher {
  constructor(keywords, caseSensitive, wholeWord) {
    this.wholeWord = wholeWord;
    this.keywords = [];
    for (const original of keywords) {
      let needle = original;
      let needs = false;
      if (!caseSensitive) {
        needs = [...original].some((c) => c.codePointAt(0) >= 0x80 && !caseless(c));
        needle = fold(original);
      }
      if (!needle || this.keywords.some((k) => k.needle === needle)) continue;
      const chars = [...needle];
      this.keywords.push(new Keyword(original, needle, needs, !caseSensitive && !needs,
        wholeWord && bounded(chars[0].codePointAt(0)),
        wholeWord && bounded(chars[chars.length - 1].codePointAt(0))));
    }
    this.escapable = this.keywords.some((k) => /["\\/\u0000-\u001f]/.test(k.needle));
  }
  // Whether a string of the record's text may hold a keyword, to spare matching each string
  // of a record that cannot. A string shows its characters in the text as they are, but for
  // escapes: \uXXXX may write any, the others only `"`, `\`, `/` and controls (`escapable`:
  // a keyword holds one). Folding is per character (with ς as σ), so a string's match is in
  // the folded text too.
  mayMatch(text) {
    if (this.escapable || text.includes('\\u')) return true;
    const cache = {};
    for (let i = 0; i < this.keywords.length; i++) if (this.keywords[i].occursIn(text, cache)) return true;
    return false;
  }
  matchesAny(text) {
    const cache = {};
    for (let i = 0; i < this.keywords.length; i++) if (this.keywords[i].findIn(text, cache)) return true;
    return false;
  }
  mark(text, found) {
    const cache = {};
    this.keywords.forEach((k, i) => {
      if (!found[i] && k.findIn(text, cache)) found[i] = true;
    });
  }
  describe() {
    const names = this.keywords.map((k) => k.original);
    return `${names.length} keyword(s) [${names.join(', ')}], whole_word=${this.wholeWord}`;
  }
}

class KeywordSearch {
  constructor(c) {
    const caseSensitive = c.bool('case_sensitive', false);
    const wholeWord = c.bool('whole_word', true);
    let fields = c.list('fields');
    if (fields !== null) {
      fields = fields.map((item) => {
        try {
          return parsePath(item);
        } catch (e) {
          throw new Fail(`config key \`fields\`: ${e.message}`);
        }
      });
    }
    const keywords = c.list('keywords');
    if (keywords === null) {
      if (c.get('fields') !== undefined) throw new Fail('config key `fields` needs `keywords`');
      this.matcher = null;
      return;
    }
    this.matcher = new Matcher(keywords.map((k) => k.replaceAll('\\\\', '\\')), caseSensitive, wholeWord);
    this.fields = fields;
    this.caseSensitive = caseSensitive;
    this.paths = new Paths(fields !== null ? fields : DEFAULT_PATHS.map(parsePath));
  }
  describe() {
    const where = this.fields === null ? 'the default tweet text fields' : this.fields.map(pathStr).join(', ');
    return `${this.matcher.describe()}, case_sensitive=${this.caseSensitive}, in ${where}`;
  }
}

function outcomeOf(e) {
  if (e instanceof Fail) return { fail: e.message };
  throw e;
}

// ---- keyword-filter --------------------------------------------------------------------

export class KeywordFilter {
  constructor(pairs) {
    const c = new Config(pairs, ['keywords', 'fields', 'case_sensitive', 'whole_word', 'invert']);
    this.search = new KeywordSearch(c);
    if (this.search.matcher === null) {
      throw new Fail('config key `keywords` is required: comma-separated keywords, e.g. "bts,방탄소년단"');
    }
    this.invert = c.bool('invert', false);
  }
  summary() {
    return `${this.invert ? 'drops' : 'keeps only'} tweets matching ${this.search.describe()}`;
  }
  // JSON.parse's tree where it reads the same (parsedFast), the exact parser's otherwise. The
  // fast way only keeps or drops: on any failure the exact way runs again and reports the
  // failure Rust would, the first in document order.
  apply(value) {
    try {
      const text = utf8(value);
      const lone = surrogateEscapes(text);
      // A big record goes the exact way, which holds fewer copies of it (the memory cap).
      const small = text.length <= SMALL;
      const may = !small || this.search.matcher.mayMatch(text);
      const doc = small ? parsedFast(text) : null;
      if (doc !== null) {
        try {
          return this.outcome(doc, lone, may);
        } catch (e) {
          if (!(e instanceof Fail)) throw e;
        }
      }
      return this.outcome(objectDoc(text), lone, may);
    } catch (e) {
      return outcomeOf(e);
    }
  }
  // The walk checks what Rust decodes even where no keyword can match (`may`).
  outcome(doc, lone, may) {
    const { matcher, paths } = this.search;
    let found = false;
    walkStrings(doc, paths, paths.start, (s) => {
      if (!found && may) found = matcher.matchesAny(s);
    }, lone);
    return found !== this.invert ? KEEP : DROP;
  }
}

// ---- time ------------------------------------------------------------------------------

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const fdiv = (a, b) => Math.floor(a / b);

function daysFromCivil(y0, m, d) {
  const y = m <= 2 ? y0 - 1 : y0;
  const era = fdiv(y, 400);
  const yoe = y - era * 400;
  const doy = fdiv(153 * (m > 2 ? m - 3 : m + 9) + 2, 5) + d - 1;
  const doe = yoe * 365 + fdiv(yoe, 4) - fdiv(yoe, 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(days) {
  const z = days + 719468;
  const era = fdiv(z, 146097);
  const doe = z - era * 146097;
  const yoe = fdiv(doe - fdiv(doe, 1460) + fdiv(doe, 36524) - fdiv(doe, 146096), 365);
  const doy = doe - (365 * yoe + fdiv(yoe, 4) - fdiv(yoe, 100));
  const mp = fdiv(5 * doy + 2, 153);
  const d = doy - fdiv(153 * mp + 2, 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

function daysInMonth(y, m) {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(m) ? 30 : 31;
}

// Epoch milliseconds as a BigInt (timestamps may exceed 2^53 ms).
function epoch(y, mo, d, h, mi, s, ms, off) {
  if (mo < 1 || mo > 12 || d === 0 || d > daysInMonth(y, mo) || h > 23 || mi > 59 || s > 60 || ms > 999) {
    return null;
  }
  return BigInt(daysFromCivil(y, mo, d)) * 86400000n + BigInt((h * 3600 + mi * 60 + s) * 1000 + ms)
    - BigInt(off) * 60000n;
}

const pad = (n, w) => String(n).padStart(w, '0');

function formatIso(ms) {
  let days = ms / 86400000n;
  let msd = ms % 86400000n;
  if (msd < 0n) {
    msd += 86400000n;
    days -= 1n;
  }
  if (days < -800000n || days > 3000000n) return null; // far outside years 0..9999
  const [y, m, d] = civilFromDays(Number(days));
  if (y < 0 || y > 9999) return null;
  const t = Number(msd);
  const s = fdiv(t, 1000);
  return `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}T${pad(fdiv(s, 3600), 2)}:${pad(fdiv(s, 60) % 60, 2)}:${pad(s % 60, 2)}.${pad(t % 1000, 3)}Z`;
}

const digits = (s) => (/^[0-9]+$/.test(s) ? Number(s) : null);
const isAscii = (s) => /^[\x00-\x7f]*$/.test(s);

function parseOffset(s) {
  if (!s || (s[0] !== '+' && s[0] !== '-')) return null;
  const sign = s[0] === '+' ? 1 : -1;
  const r = s.slice(1);
  let h;
  let m;
  if (r.length === 4) [h, m] = [r.slice(0, 2), r.slice(2)];
  else if (r.length === 5 && r[2] === ':') [h, m] = [r.slice(0, 2), r.slice(3)];
  else return null;
  h = digits(h);
  m = digits(m);
  if (h === null || m === null || h > 23 || m > 59) return null;
  return sign * (h * 60 + m);
}

function parseClock(s) {
  if (s.length !== 8 || s[2] !== ':' || s[5] !== ':') return null;
  const parts = [digits(s.slice(0, 2)), digits(s.slice(3, 5)), digits(s.slice(6))];
  return parts.includes(null) ? null : parts;
}

function parseV1Time(s) {
  if (!isAscii(s)) return null;
  const parts = s.split(' ');
  if (parts.length !== 6) return null;
  const [wd, mon, day, clock, off, year] = parts;
  if (wd.length !== 3 || !/^[A-Za-z]+$/.test(wd)) return null;
  const month = MONTHS.indexOf(mon.toLowerCase());
  if (month < 0 || day.length > 2 || year.length !== 4) return null;
  const c = parseClock(clock);
  const y = digits(year);
  const d = digits(day);
  const o = parseOffset(off);
  if (c === null || y === null || d === null || o === null) return null;
  return epoch(y, month + 1, d, c[0], c[1], c[2], 0, o);
}

function parseRfc3339(s) {
  if (!isAscii(s) || s.length < 20 || s[4] !== '-' || s[7] !== '-' || !'Tt '.includes(s[10])) return null;
  const y = digits(s.slice(0, 4));
  const mo = digits(s.slice(5, 7));
  const d = digits(s.slice(8, 10));
  const c = parseClock(s.slice(11, 19));
  if (y === null || mo === null || d === null || c === null) return null;
  let rest = s.slice(19);
  let ms = 0;
  if (rest.startsWith('.')) {
    const frac = rest.slice(1);
    const n = frac.match(/^[0-9]*/)[0].length;
    if (n === 0) return null;
    ms = Number(`${frac.slice(0, Math.min(n, 3))}00`.slice(0, 3));
    rest = frac.slice(n);
  }
  const off = rest === 'Z' || rest === 'z' ? 0 : parseOffset(rest);
  if (off === null) return null;
  return epoch(y, mo, d, c[0], c[1], c[2], ms, off);
}

function parseI64(s) {
  if (!/^[+-]?[0-9]+$/.test(s)) return null;
  const v = BigInt(s);
  return v >= I64_MIN && v <= I64_MAX ? v : null;
}

// ---- enrich: the fast path's strict reading (mirrors the Rust serde structures) ---------

const TEXT = 'text';
const ID = 'id';
const MILLIS = 'millis';
const KIND = 'kind';
const vec = (t) => ({ vec: t });
const struct = (name, fields) => ({ name, fields });

const TAG = struct('Tag', [['text', TEXT], ['tag', TEXT]]);
const MENTION = struct('Mention', [['screen_name', TEXT], ['username', TEXT]]);
const ENTITIES = struct('Entities', [['hashtags', vec(TAG)], ['user_mentions', vec(MENTION)],
  ['mentions', vec(MENTION)]]);
const EXTENDED = struct('Extended', [['full_text', TEXT], ['entities', ENTITIES]]);
const NOTE = struct('Note', [['text', TEXT], ['entities', ENTITIES]]);
const V1_NESTED = struct('V1Nested', [['entities', ENTITIES], ['extended_tweet', EXTENDED]]);
const V1_USER = struct('V1User', [['screen_name', TEXT]]);
const REFERENCE = struct('Reference', [['type', TEXT], ['id', TEXT]]);
const V2_DATA = struct('V2Data', [['id', TEXT], ['text', TEXT], ['created_at', TEXT],
  ['author_id', TEXT], ['entities', ENTITIES], ['note_tweet', NOTE],
  ['referenced_tweets', vec(REFERENCE)]]);
const V2_USER = struct('V2User', [['id', TEXT], ['username', TEXT]]);
const V2_INCLUDED = struct('V2Included', [['id', TEXT], ['entities', ENTITIES], ['note_tweet', NOTE]]);
const V2_INCLUDES = struct('V2Includes', [['users', vec(V2_USER)], ['tweets', vec(V2_INCLUDED)]]);
const TOP_FIELDS = new Map([
  ['id_str', ID], ['id', ID], ['text', TEXT], ['full_text', TEXT], ['created_at', TEXT],
  ['timestamp_ms', MILLIS], ['user', V1_USER], ['entities', ENTITIES],
  ['extended_tweet', EXTENDED], ['retweeted_status', V1_NESTED], ['is_quote_status', KIND],
  ['quoted_status', KIND], ['data', V2_DATA], ['includes', V2_INCLUDES],
]);

// What serde_json decodes while reporting an unexpected type: strings and numbers.
function touch(v) {
  if (v instanceof JNum) number(v.lex);
  else if (typeof v === 'string') readStr(v);
}

// Reads v as the Option<t> of the Rust structures: null for JSON null, else the typed value;
// DataError on an unexpected type, Fail where serde_json would report a syntax error.
function strict(v, t) {
  return v === null ? null : strictSome(v, t);
}

function strictSome(v, t) {
  const compound = v instanceof JObj || Array.isArray(v);
  if (t === TEXT) {
    if (typeof v === 'string') return readStr(v);
    touch(v);
    throw new DataError();
  }
  if (t === ID) {
    if (v instanceof JNum) {
      const [kind, n] = number(v.lex);
      return kind === 'u' ? n.toString() : null;
    }
    if (typeof v === 'string') return readStr(v) || null;
    if (compound) throw new DataError();
    return null;
  }
  if (t === MILLIS) {
    if (v instanceof JNum) {
      const [kind, n] = number(v.lex);
      return kind !== 'f' && n <= I64_MAX ? n : null;
    }
    if (typeof v === 'string') return parseI64(readStr(v));
    if (compound) throw new DataError();
    return null;
  }
  if (t === KIND) {
    if (v instanceof JObj) {
      v.pairs.forEach(([k]) => readStr(k)); // read, while the values are skipped
      return 'object';
    }
    touch(v);
    return v === true ? 'true' : 'other';
  }
  if (t.vec) {
    if (!Array.isArray(v)) {
      touch(v);
      throw new DataError();
    }
    return v.map((x) => strictSome(x, t.vec));
  }
  return strictStruct(v, t);
}

function strictStruct(v, t) {
  const out = new Map();
  if (v instanceof JObj) {
    const types = new Map(t.fields);
    for (const [k0, x] of v.pairs) {
      const k = readStr(k0);
      if (types.has(k)) {
        if (out.has(k)) throw new DataError();
        out.set(k, strict(x, types.get(k)));
      }
    }
    return out;
  }
  if (Array.isArray(v)) {
    // serde's derived structs also read a sequence, field by field in declaration order.
    if (v.length < t.fields.length) {
      v.forEach((x, i) => strict(x, t.fields[i][1]));
      throw new DataError();
    }
    t.fields.forEach(([name, ft], i) => out.set(name, strict(v[i], ft)));
    if (v.length > t.fields.length) throw new Fail('not valid JSON: trailing characters');
    return out;
  }
  touch(v);
  throw new DataError();
}

function readTop(doc, target) {
  const top = new Map([['keys', 0], ['has_timestamp', false], ['has_target', false], ['v1', false]]);
  // Fields given a value other than null, even one that reads as no id or time: a second
  // occurrence is serde's duplicate_field.
  const given = new Set();
  for (const [k0, x] of doc.pairs) {
    const k = readStr(k0);
    top.set('keys', top.get('keys') + 1);
    const t = TOP_FIELDS.get(k);
    if (t !== undefined) {
      if (given.has(k)) throw new DataError();
      if (x !== null) given.add(k);
      top.set(`.${k}`, strict(x, t));
    } else if (k === '@timestamp') top.set('has_timestamp', true);
    if (k === target) top.set('has_target', true);
    if (['id_str', 'id', 'text', 'full_text', 'created_at'].includes(k)) top.set('v1', true);
  }
  return top;
}

function pushFolded(list, value) {
  if (value) {
    const f = value.toLowerCase();
    if (!list.includes(f)) list.push(f);
  }
}

// A nested field of the strict reading (Maps), or null.
function g(m, ...keys) {
  let v = m;
  for (const k of keys) {
    if (v === null || v === undefined) return null;
    v = v.get(k);
  }
  return v === undefined ? null : v;
}

const newFacts = () => ({
  hashtags: [], mentions: [], id: null, author: null, isRetweet: false, isQuote: false,
  fullText: null, ms: null,
});

function entityFacts(f, ent, tagField, mentionsKey, mentionField) {
  if (ent === null) return;
  for (const h of g(ent, 'hashtags') || []) {
    const v = g(h, tagField);
    if (v !== null) pushFolded(f.hashtags, v);
  }
  for (const m of g(ent, mentionsKey) || []) {
    const v = g(m, mentionField);
    if (v !== null) pushFolded(f.mentions, v);
  }
}

function streamedFacts(top) {
  const f = newFacts();
  const data = g(top, '.data');
  if (data !== null) {
    const refs = (g(data, 'referenced_tweets') || [])
      .filter((r) => g(r, 'type') !== null && g(r, 'id') !== null)
      .map((r) => [g(r, 'type'), g(r, 'id')]);
    const rt = refs.find(([kind]) => kind === 'retweeted');
    const rtId = rt ? rt[1] : null;
    const includes = g(top, '.includes');
    let retweeted = null;
    if (rtId !== null && includes !== null) {
      retweeted = (g(includes, 'tweets') || []).find((t) => g(t, 'id') === rtId) || null;
    }
    for (const ent of [g(data, 'entities'), g(data, 'note_tweet', 'entities'),
      g(retweeted, 'entities'), g(retweeted, 'note_tweet', 'entities')]) {
      entityFacts(f, ent, 'tag', 'mentions', 'username');
    }
    f.id = g(data, 'id') || null;
    const author = g(data, 'author_id');
    if (author !== null && includes !== null) {
      const user = (g(includes, 'users') || []).find((u) => g(u, 'id') === author) || null;
      f.author = g(user, 'username') || null;
    }
    f.isRetweet = rtId !== null;
    f.isQuote = refs.some(([kind]) => kind === 'quoted');
    const note = g(data, 'note_tweet', 'text');
    f.fullText = note !== null ? note : g(data, 'text');
    const created = g(data, 'created_at');
    f.ms = created !== null ? parseRfc3339(created) : null;
    return ['v2', f];
  }
  if (!top.get('v1')) return ['unknown', f];
  const rt = g(top, '.retweeted_status');
  for (const ent of [g(top, '.entities'), g(top, '.extended_tweet', 'entities'), g(rt, 'entities'),
    g(rt, 'extended_tweet', 'entities')]) {
    entityFacts(f, ent, 'text', 'user_mentions', 'screen_name');
  }
  f.id = g(top, '.id_str') || g(top, '.id');
  f.author = g(top, '.user', 'screen_name') || null;
  f.isRetweet = rt !== null;
  f.isQuote = g(top, '.is_quote_status') === 'true' || g(top, '.quoted_status') === 'object';
  for (const text of [g(top, '.extended_tweet', 'full_text'), g(top, '.full_text'), g(top, '.text')]) {
    if (text !== null) {
      f.fullText = text;
      break;
    }
  }
  const created = g(top, '.created_at');
  const ms = created !== null ? parseV1Time(created) : null;
  f.ms = ms !== null ? ms : g(top, '.timestamp_ms');
  return ['v1.1', f];
}

// ---- enrich: the Value path (last key wins) --------------------------------------------

const asMap = (v) => (v instanceof JObj ? v.map() : null);

function getPath(m, path) {
  let v = m;
  for (const k of path.split('.')) {
    if (!(v instanceof Map)) return null;
    v = v.get(k);
    if (v === undefined) return null;
    if (v instanceof JObj) v = v.map();
  }
  return v;
}

function getText(m, path) {
  const v = getPath(m, path);
  return typeof v === 'string' ? v : null;
}

function objects(v) {
  if (v instanceof JObj) return [v.map()];
  if (v instanceof Map) return [v];
  if (Array.isArray(v)) return v.filter((x) => x instanceof JObj).map((x) => x.map());
  return [];
}

function collect(list, entities, kind, field) {
  if (!(entities instanceof Map)) return;
  for (const item of objects(entities.get(kind))) {
    const value = item.get(field);
    if (typeof value === 'string') pushFolded(list, value);
  }
}

function idString(v) {
  if (v instanceof JNum) {
    const [kind, n] = number(v.lex);
    return kind === 'u' ? n.toString() : null;
  }
  return typeof v === 'string' && v ? v : null;
}

function treeFacts(doc, shape) {
  const f = newFacts();
  if (shape === 'v1.1') {
    const rt = asMap(doc.get('retweeted_status'));
    for (const status of rt !== null ? [doc, rt] : [doc]) {
      for (const ent of [asMap(status.get('entities')), getPath(status, 'extended_tweet.entities')]) {
        collect(f.hashtags, ent, 'hashtags', 'text');
        collect(f.mentions, ent, 'user_mentions', 'screen_name');
      }
    }
    f.id = idString(doc.get('id_str')) || idString(doc.get('id'));
    f.author = getText(doc, 'user.screen_name') || null;
    f.isRetweet = rt !== null;
    f.isQuote = doc.get('is_quote_status') === true || doc.get('quoted_status') instanceof JObj;
    for (const p of ['extended_tweet.full_text', 'full_text', 'text']) {
      const t = getText(doc, p);
      if (t !== null) {
        f.fullText = t;
        break;
      }
    }
    const created = getText(doc, 'created_at');
    let ms = created !== null ? parseV1Time(created) : null;
    if (ms === null) {
      const tms = doc.get('timestamp_ms');
      if (tms instanceof JNum) {
        const [kind, n] = number(tms.lex);
        ms = kind !== 'f' && n <= I64_MAX ? n : null;
      } else if (typeof tms === 'string') ms = parseI64(tms);
    }
    f.ms = ms;
  } else if (shape === 'v2') {
    const data = asMap(doc.get('data'));
    const refs = objects(data.get('referenced_tweets'))
      .filter((r) => typeof r.get('type') === 'string' && typeof r.get('id') === 'string')
      .map((r) => [r.get('type'), r.get('id')]);
    const rtRef = refs.find(([kind]) => kind === 'retweeted');
    const rtId = rtRef ? rtRef[1] : null;
    let rt = null;
    if (rtId !== null) rt = objects(getPath(doc, 'includes.tweets')).find((t) => t.get('id') === rtId) || null;
    for (const tweet of rt !== null ? [data, rt] : [data]) {
      for (const ent of [asMap(tweet.get('entities')), getPath(tweet, 'note_tweet.entities')]) {
        collect(f.hashtags, ent, 'hashtags', 'tag');
        collect(f.mentions, ent, 'mentions', 'username');
      }
    }
    f.id = getText(data, 'id') || null;
    const author = getText(data, 'author_id');
    if (author !== null) {
      const user = objects(getPath(doc, 'includes.users')).find((u) => u.get('id') === author);
      f.author = (user && getText(user, 'username')) || null;
    }
    f.isRetweet = rtId !== null;
    f.isQuote = refs.some(([kind]) => kind === 'quoted');
    const note = getText(data, 'note_tweet.text');
    f.fullText = note !== null ? note : getText(data, 'text');
    const created = getText(data, 'created_at');
    f.ms = created !== null ? parseRfc3339(created) : null;
  }
  return f;
}

function treeShape(doc) {
  if (doc.get('data') instanceof JObj) return 'v2';
  if (['id_str', 'id', 'text', 'full_text', 'created_at'].some((k) => doc.has(k))) return 'v1.1';
  return 'unknown';
}

// The derived fields (a Map, dumped in sorted key order) and the @timestamp string or null.
function derived(shape, f, matched) {
  const out = new Map([['hashtags', [...f.hashtags]], ['mentions', [...f.mentions]]]);
  if (matched !== null) out.set('matched_keywords', matched);
  if (f.id !== null) out.set('tweet_url', `https://twitter.com/${f.author || 'i/web'}/status/${f.id}`);
  out.set('is_retweet', f.isRetweet);
  out.set('is_quote', f.isQuote);
  if (f.fullText !== null) out.set('text_length', new JNum(String([...f.fullText].length)));
  out.set('shape', shape);
  return [out, f.ms !== null ? formatIso(f.ms) : null];
}

export class Enrich {
  constructor(pairs) {
    const c = new Config(pairs, ['keywords', 'fields', 'case_sensitive', 'whole_word', 'target']);
    const raw = c.get('target');
    const target = raw !== undefined ? rustTrim(raw) : 'sluice';
    if (!target || target === '@timestamp') {
      throw new Fail(`config key \`target\`: ${rustDebug(target)} cannot hold the derived fields`);
    }
    this.search = new KeywordSearch(c);
    this.target = target;
  }
  summary() {
    const kw = this.search.matcher !== null ? `matched_keywords from ${this.search.describe()}` : 'no keywords';
    return `derived fields in \`${this.target}\`, ${kw}`;
  }
  matched(walk) {
    const { matcher, paths } = this.search;
    if (matcher === null) return null;
    const found = matcher.keywords.map(() => false);
    walk(paths, (s) => matcher.mark(s, found));
    return matcher.keywords.filter((_, i) => found[i]).map((k) => k.original);
  }
  apply(value) {
    try {
      const text = utf8(value);
      const doc = objectDoc(text);
      try {
        return this.streaming(text, doc);
      } catch (e) {
        if (e instanceof DataError) return this.tree(doc);
        throw e;
      }
    } catch (e) {
      return outcomeOf(e);
    }
  }
  streaming(text, doc) {
    const top = readTop(doc, this.target);
    if (top.get('has_timestamp') || top.get('has_target')) throw new DataError();
    const [shape, f] = streamedFacts(top);
    const lone = surrogateEscapes(text);
    const matched = this.matched((paths, mark) => walkStrings(doc, paths, paths.start, mark, lone));
    const [fields, ts] = derived(shape, f, matched);
    let close = text.length - 1;
    while (WS_CHARS.includes(text[close])) close -= 1;
    const parts = [text.slice(0, close)];
    let first = top.get('keys') === 0;
    if (ts !== null) {
      parts.push(`${first ? '' : ','}"@timestamp":${dumpStr(ts)}`);
      first = false;
    }
    parts.push(`${first ? '' : ','}${dumpStr(this.target)}:${dumps(fields)}`, text.slice(close));
    return { set: encoder.encode(parts.join('')) };
  }
  tree(doc) {
    checkTree(doc);
    const m = doc.map();
    const shape = treeShape(m);
    const f = treeFacts(m, shape);
    const matched = this.matched((paths, mark) => walkStringsTree(doc, paths, paths.start, mark));
    const [fields, ts] = derived(shape, f, matched);
    let changed = false;
    if (ts !== null && m.get('@timestamp') !== ts) {
      m.set('@timestamp', ts);
      changed = true;
    }
    const existing = m.get(this.target);
    if (existing instanceof JObj) {
      const merged = existing.map();
      for (const [k, v] of fields) {
        if (!merged.has(k) || dumps(merged.get(k)) !== dumps(v)) {
          merged.set(k, v);
          changed = true;
        }
      }
      m.set(this.target, merged);
    } else {
      m.set(this.target, fields);
      changed = true;
    }
    if (!changed) return KEEP;
    return { set: encoder.encode(dumps(m)) };
  }
}
