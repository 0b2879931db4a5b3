// The glue between a transform of transforms.js and the WIT world `transform`: the bundle's
// entry (e.g. keyword-filter-js/plugin.js) calls exportTransform(KeywordFilter).
import { log } from 'sluice:transform/log@0.1.0';

const NOT_INITIALISED = 'not initialised: process was called before a successful init';

function exportTransform(TransformClass) {
  let transform = null;
  function init(config) {
    let t;
    try {
      t = new TransformClass(config);
    } catch (e) {
      // jco turns a thrown value into the `err` of `result<_, string>`.
      if (e instanceof Fail) throw e.message;
      throw e;
    }
    log('info', t.summary());
    transform = t;
  }
  function process(batch) {
    if (transform === null) return batch.map(() => ({ tag: 'fail', val: NOT_INITIALISED }));
    return batch.map((record) => {
      const o = transform.apply(record.value);
      if (o === KEEP) return { tag: 'keep' };
      if (o === DROP) return { tag: 'drop' };
      if (o.set) return { tag: 'set-value', val: o.set };
      return { tag: 'fail', val: o.fail };
    });
  }
  return { init, process };
}
