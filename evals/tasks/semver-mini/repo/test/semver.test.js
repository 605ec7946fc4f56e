import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compare, maxSatisfying, parse, satisfies } from '../src/semver.js';

test('parse reads every part', () => {
  assert.deepEqual(parse('v1.2.3-beta.2+build.7'), {
    major: 1, minor: 2, patch: 3, prerelease: ['beta', '2'], build: ['build', '7'],
  });
});

test('parse rejects garbage', () => {
  assert.throws(() => parse('1.2'), TypeError);
  assert.throws(() => parse('01.2.3'), TypeError);
});

test('compare orders numerically', () => {
  assert.equal(compare('1.2.3', '1.10.0'), -1);
  assert.equal(compare('2.0.0', '1.99.99'), 1);
  assert.equal(compare('1.2.3+a', '1.2.3+b'), 0);
});

test('compare orders pre-releases among themselves', () => {
  assert.equal(compare('1.0.0-alpha', '1.0.0-beta'), -1);
  assert.equal(compare('1.0.0-alpha', '1.0.0-alpha.1'), -1);
});

test('satisfies comparison ranges', () => {
  assert.equal(satisfies('1.4.2', '>=1.2.0 <2.0.0'), true);
  assert.equal(satisfies('2.0.0', '>=1.2.0 <2.0.0'), false);
  assert.equal(satisfies('1.2.3', '1.2.3'), true);
});

test('satisfies caret and tilde ranges above 1.0.0', () => {
  assert.equal(satisfies('1.9.0', '^1.2.0'), true);
  assert.equal(satisfies('2.0.0', '^1.2.0'), false);
  assert.equal(satisfies('1.3.9', '~1.3.0'), true);
  assert.equal(satisfies('1.4.0', '~1.3.0'), false);
});

test('maxSatisfying picks the highest match', () => {
  assert.equal(maxSatisfying(['1.2.0', '1.3.5', '1.3.1', '2.0.0'], '~1.3.0'), '1.3.5');
  assert.equal(maxSatisfying(['1.2.0'], '^2.0.0'), null);
});
