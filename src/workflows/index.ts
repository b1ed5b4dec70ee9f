export { smokeTest } from './smokeTest';
