/**
 * A URL slug: accents folded to ASCII, anything else that is not a letter or digit
 * becomes one separator, none at either end, at most `maxLength` characters.
 */
export function slugify(text, { separator = '-', maxLength = 80 } = {}) {
  const folded = text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '');
  const slug = folded
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, separator)
    .split(separator)
    .filter(Boolean)
    .join(separator);
  if (slug.length <= maxLength) return slug;
  const cut = slug.slice(0, maxLength);
  return cut.endsWith(separator) ? cut.slice(0, -separator.length) : cut;
}
