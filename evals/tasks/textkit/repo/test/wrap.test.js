import { test } from 'node:test';
import assert from 'node:assert/strict';
import { wrap } from '../src/wrap.js';

test('wrap breaks between words', () => {
  assert.deepEqual(wrap('the quick brown fox jumps', 10), ['the quick', 'brown fox', 'jumps']);
});

test('wrap gives long words their own line', () => {
  assert.deepEqual(wrap('a extraordinarily b', 5), ['a', 'extraordinarily', 'b']);
});

test('wrap rejects a zero width', () => {
  assert.throws(() => wrap('x', 0), RangeError);
});
