/**
 * The Redis-specific suite against a Redis Cluster of three masters that this file starts
 * itself (redis-server --cluster-enabled yes, then redis-cli --cluster create), so keys of
 * different sessions land on different nodes and every script must stay within one slot.
 */
import { describe } from 'vitest';
import { requireServices } from '../setup/harness.js';
import { OwnRedisCluster, requireRedisBinaries } from './redis-servers.js';
import { redisCacheSuite } from './redis-cache.suite.js';
import { afterAll } from 'vitest';

const suite = 'redis/cluster';
const ready = requireServices(['postgres'], suite) && requireRedisBinaries(['redis-server', 'redis-cli'], suite);

describe.skipIf(!ready)(suite, () => {
  let cluster: OwnRedisCluster | null = null;
  afterAll(async () => {
    await cluster?.stop();
  });
  redisCacheSuite(async () => {
    cluster = await OwnRedisCluster.start(3);
    return { url: cluster.url, cluster: true };
  });
});
