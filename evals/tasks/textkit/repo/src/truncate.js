/**
 * `text` cut to at most `max` characters (user-perceived code points, so emoji count
 * as one), ending with `ellipsis` when something was cut.
 */
export function truncate(text, max, ellipsis = '…') {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  const room = max - Array.from(ellipsis).length;
  if (room <= 0) return Array.from(ellipsis).slice(0, max).join('');
  return chars.slice(0, room).join('') + ellipsis;
}
