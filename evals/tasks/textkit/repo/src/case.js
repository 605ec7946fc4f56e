/**
 * The words of an identifier or phrase: split on non-alphanumerics, on lower-to-upper
 * changes (`fooBar`), and before the last capital of an acronym (`HTTPResponse`).
 */
export function words(text) {
  return text
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean);
}

export function snakeCase(text) {
  return words(text).map((w) => w.toLowerCase()).join('_');
}

export function kebabCase(text) {
  return words(text).map((w) => w.toLowerCase()).join('-');
}

export function camelCase(text) {
  return words(text)
    .map((w, i) => (i === 0 ? w.toLowerCase() : w[0].toUpperCase() + w.slice(1).toLowerCase()))
    .join('');
}
