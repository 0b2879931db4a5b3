// keyword-filter in JavaScript: keeps the tweets that mention a keyword (see ../keyword-filter).
const plugin = exportTransform(KeywordFilter);
export const { init, process } = plugin;
