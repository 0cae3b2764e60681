/** What doctor prints about URLs, and which Redis versions it accepts. */
import { describe, expect, it } from 'vitest';
import { redactUrl } from '../../src/cli/doctor.js';
import { redisVersionSupported } from '../../src/adapters/redis/guarded-redis.js';

describe('unit/doctor helpers', () => {
  it('redacts passwords, users (NATS tokens) and credential-like query parameters', () => {
    expect(redactUrl('postgres://app:s3cr3t@db:5432/agents')).toBe('postgres://***:***@db:5432/agents');
    expect(redactUrl('nats://t0ken@nats:4222')).toBe('nats://***@nats:4222');
    expect(redactUrl('postgres://db/agents?password=x&sslmode=require')).toBe('postgres://db/agents?password=***&sslmode=require');
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactUrl('not a url')).toBe('(unparsable URL)');
  });

  it('needs Redis 6.2 or newer (GETEX, ZADD GT)', () => {
    expect(redisVersionSupported('6.0.16')).toBe(false);
    expect(redisVersionSupported('6.1.0')).toBe(false);
    expect(redisVersionSupported('6.2.0')).toBe(true);
    expect(redisVersionSupported('7.0.15')).toBe(true);
    expect(redisVersionSupported('10.0.0')).toBe(true);
  });
});
