const PATTERN = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$/;

export function parse(text) {
  const match = PATTERN.exec(String(text).trim());
  if (!match) throw new TypeError(`invalid version: ${text}`);
  return {
    major: Number(match[1]),
    minor: Number(match[2]),
    patch: Number(match[3]),
    prerelease: match[4] ? match[4].split('.') : [],
    build: match[5] ? match[5].split('.') : [],
  };
}

function compareIdentifiers(a, b) {
  const aNumeric = /^\d+$/.test(a);
  const bNumeric = /^\d+$/.test(b);
  if (aNumeric && bNumeric) return Math.sign(Number(a) - Number(b));
  if (aNumeric) return -1;
  if (bNumeric) return 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function comparePrerelease(a, b) {
  if (!a.length && !b.length) return 0;
  if (!a.length) return 1;
  if (!b.length) return -1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const order = compareIdentifiers(a[i], b[i]);
    if (order) return order;
  }
  return Math.sign(a.length - b.length);
}

/** -1, 0 or 1. Build metadata is ignored, as the specification says. */
export function compare(a, b) {
  const x = typeof a === 'string' ? parse(a) : a;
  const y = typeof b === 'string' ? parse(b) : b;
  for (const part of ['major', 'minor', 'patch']) {
    if (x[part] !== y[part]) return x[part] < y[part] ? -1 : 1;
  }
  return comparePrerelease(x.prerelease, y.prerelease);
}

function upperBoundOfCaret(v) {
  if (v.major > 0) return `${v.major + 1}.0.0`;
  if (v.minor > 0) return `0.${v.minor + 1}.0`;
  return `0.0.${v.patch + 1}`;
}

function comparators(range) {
  const result = [];
  for (const token of range.trim().split(/\s+/)) {
    const match = /^(\^|~|>=|<=|>|<|=)?(.+)$/.exec(token);
    const [, operator = '=', text] = match;
    const version = parse(text);
    if (operator === '^') {
      result.push(['>=', version], ['<', parse(upperBoundOfCaret(version))]);
    } else if (operator === '~') {
      result.push(['>=', version], ['<', parse(`${version.major}.${version.minor + 1}.0`)]);
    } else {
      result.push([operator, version]);
    }
  }
  return result;
}

const TESTS = {
  '=': (order) => order === 0,
  '>': (order) => order > 0,
  '>=': (order) => order >= 0,
  '<': (order) => order < 0,
  '<=': (order) => order <= 0,
};

export function satisfies(version, range) {
  const v = parse(version);
  return comparators(range).every(([operator, bound]) => TESTS[operator](compare(v, bound)));
}

export function maxSatisfying(versions, range) {
  const matching = versions.filter((v) => satisfies(v, range));
  matching.sort(compare);
  return matching.length ? matching[matching.length - 1] : null;
}
