/**
 * Greedy word wrap: lines of at most `width` characters, words kept whole (a word longer
 * than `width` gets a line of its own). Whitespace runs become single spaces.
 */
export function wrap(text, width) {
  if (!(width > 0)) throw new RangeError('width must be positive');
  const lines = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}
