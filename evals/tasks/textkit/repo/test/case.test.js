import { test } from 'node:test';
import assert from 'node:assert/strict';
import { camelCase, kebabCase, snakeCase } from '../src/case.js';

test('snakeCase of camelCase', () => {
  assert.equal(snakeCase('userName'), 'user_name');
});

test('kebabCase of a phrase', () => {
  assert.equal(kebabCase('Hello big World'), 'hello-big-world');
});

test('camelCase of snake_case', () => {
  assert.equal(camelCase('user_id_value'), 'userIdValue');
});
