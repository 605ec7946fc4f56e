import { test } from 'node:test';
import assert from 'node:assert/strict';
import { truncate } from '../src/truncate.js';

test('truncate keeps short text', () => {
  assert.equal(truncate('short', 10), 'short');
});

test('truncate cuts and adds an ellipsis', () => {
  assert.equal(truncate('Hello wonderful world', 10), 'Hello won…');
});

test('truncate with a custom ellipsis', () => {
  assert.equal(truncate('abcdefghij', 6, '...'), 'abc...');
});
