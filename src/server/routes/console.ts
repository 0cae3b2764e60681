import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

const html = readFileSync(new URL('../console/index.html', import.meta.url), 'utf8');

/** The web console: one static page that talks to the API with the key the user enters. */
export function consoleRoutes(app: FastifyInstance): void {
  app.get('/', { schema: { hide: true } }, async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
      .send(html),
  );
}
