// {{name}}: a Sluice transform plugin. It keeps the records whose value contains the
// configured `needle` and drops the others; a value that is not UTF-8 is dead-lettered.
import { log } from 'sluice:transform/log@0.1.0';

let needle = null;
const utf8 = new TextDecoder('utf-8', { fatal: true });

// Called once per instance with the `config` table of pipeline.toml; a throw rejects it.
export function init(config) {
  for (const [key, value] of config) {
    if (key !== 'needle') throw `unknown config key \`${key}\` (known keys: needle)`;
    needle = value;
  }
  if (needle === null) throw 'config key `needle` is required';
  log('info', `keeping records that contain ${JSON.stringify(needle)}`);
}

// One outcome per record, in order: { tag: 'keep' | 'drop' | 'set-value' | 'replace' |
// 'expand' | 'fail', val }.
export function process(batch) {
  return batch.map((record) => {
    let text;
    try {
      text = utf8.decode(record.value);
    } catch (e) {
      return { tag: 'fail', val: `not valid UTF-8: ${e}` };
    }
    return { tag: text.includes(needle) ? 'keep' : 'drop' };
  });
}
