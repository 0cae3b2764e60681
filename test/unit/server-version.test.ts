/**
 * The start-up check against too old a PostgreSQL. No such server is installed here, so the
 * answer to `server_version_num` is the one thing faked; the real servers pass in every suite.
 */
import { describe, expect, it } from 'vitest';
import { checkServerVersion } from '../../src/internal.js';

const answering = (v: string) => ({
  query: async <R>() => [{ v }] as R[],
});

describe('unit/server-version', () => {
  it('refuses PostgreSQL 12 with a message naming both versions', async () => {
    await expect(checkServerVersion(answering('120017'))).rejects.toThrow(/PostgreSQL 12 is too old: agent-sessions needs 13 or newer/);
  });

  it('accepts PostgreSQL 13 and newer', async () => {
    await expect(checkServerVersion(answering('130000'))).resolves.toBeUndefined();
    await expect(checkServerVersion(answering('180006'))).resolves.toBeUndefined();
  });
});
