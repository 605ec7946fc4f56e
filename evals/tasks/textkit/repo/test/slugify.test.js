import { test } from 'node:test';
import assert from 'node:assert/strict';
import { slugify } from '../src/slugify.js';

test('slugify lowercases and joins words', () => {
  assert.equal(slugify('Hello, World!'), 'hello-world');
});

test('slugify trims separators at the ends', () => {
  assert.equal(slugify('  --Top 10--  '), 'top-10');
});

test('slugify custom separator and length', () => {
  assert.equal(slugify('one two three', { separator: '_', maxLength: 7 }), 'one_two');
});
