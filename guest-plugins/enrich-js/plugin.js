// enrich in JavaScript: adds @timestamp and the `sluice` object to tweets (see ../enrich).
const plugin = exportTransform(Enrich);
export const { init, process } = plugin;
