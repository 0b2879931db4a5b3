// A JavaScript plugin that misbehaves on purpose, for the sandbox tests (tests/polyglot_sandbox.rs):
// the same modes as the Rust one in tests/plugins/hostile, picked by the `mode` config.
//
// - pass: keeps every record
// - loop: spins forever in process (stopped by the deadline or fuel)
// - loop-on: spins forever on a batch holding a record whose value contains `needle`
// - oom: allocates until memory runs out (stopped by the memory cap)
// - trap-on: throws on a batch holding a record whose value contains `needle`
// - wrong-count: returns one outcome too few
// - leak: keeps `leak_kib` KiB per call alive forever (a leaking guest)
import { log } from 'sluice:transform/log@0.1.0';

const MODES = ['pass', 'loop', 'loop-on', 'oom', 'trap-on', 'wrong-count', 'leak'];
let config = null;
const leaked = [];

function contains(bytes, needle) {
  if (needle.length === 0) return false;
  outer: for (let i = 0; i + needle.length <= bytes.length; i++) {
    for (let j = 0; j < needle.length; j++) {
      if (bytes[i + j] !== needle[j]) continue outer;
    }
    return true;
  }
  return false;
}

function spin() {
  let n = 0;
  for (;;) n = (n + 1) % 1000003;
}

export function init(pairs) {
  const get = (k) => (pairs.find(([key]) => key === k) || [])[1];
  const mode = get('mode') || 'pass';
  if (!MODES.includes(mode)) throw `unknown mode \`${mode}\``;
  config = {
    mode,
    needle: new TextEncoder().encode(get('needle') || ''),
    leakKib: Number(get('leak_kib') || '1024'),
  };
  log('info', `hostile-js in mode ${mode}`);
}

export function process(batch) {
  const hit = batch.some((r) => contains(r.value, config.needle));
  switch (config.mode) {
    case 'loop':
      spin();
      break;
    case 'loop-on':
      if (hit) spin();
      break;
    case 'oom': {
      const hog = [];
      for (;;) hog.push(new Uint8Array(1 << 20).fill(1));
    }
    case 'trap-on':
      if (hit) throw new Error('poison record');
      break;
    case 'wrong-count':
      return batch.slice(1).map(() => ({ tag: 'keep' }));
    case 'leak':
      leaked.push(new Uint8Array(config.leakKib * 1024).fill(7));
      break;
    default:
  }
  return batch.map(() => ({ tag: 'keep' }));
}
