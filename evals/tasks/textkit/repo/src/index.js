export { slugify } from './slugify.js';
export { truncate } from './truncate.js';
export { wrap } from './wrap.js';
export { words, snakeCase, kebabCase, camelCase } from './case.js';
