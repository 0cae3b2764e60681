/** The Redis-specific suite against the shared standalone Redis. */
import { describe } from 'vitest';
import { requireServices, serviceUrl } from '../setup/harness.js';
import { redisCacheSuite } from './redis-cache.suite.js';

const suite = 'redis/standalone';
const ready = requireServices(['postgres', 'redis'], suite);

describe.skipIf(!ready)(suite, () => {
  redisCacheSuite(async () => ({ url: serviceUrl('redis'), cluster: false }));
});
