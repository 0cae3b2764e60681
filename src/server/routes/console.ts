import { readdirSync, readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * The web console: static files (plain JavaScript modules, no build step, no CDN) that talk
 * to the API like any other client, with the key the user enters. They are read once at
 * start from ../console/ (copied into dist by scripts/copy-assets.mjs); only those names are
 * served, so nothing else on disk is reachable through `/console/`.
 */
const DIR = new URL('../console/', import.meta.url);
const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
};

interface Asset {
  type: string;
  body: string;
}

function loadAssets(): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const name of readdirSync(DIR)) {
    const type = TYPES[name.slice(name.lastIndexOf('.'))];
    if (type) assets.set(name, { type, body: readFileSync(new URL(name, DIR), 'utf8') });
  }
  return assets;
}

/**
 * Only this origin's scripts, styles and API; no inline script or style, no framing, no
 * forms posting elsewhere. The key never leaves through a referrer.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

function send(reply: FastifyReply, asset: Asset): FastifyReply {
  return reply
    .type(asset.type)
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY')
    // Small files, revalidated on every load, so a new version shows at once.
    .header('cache-control', 'no-cache')
    .send(asset.body);
}

export function consoleRoutes(app: FastifyInstance): void {
  const assets = loadAssets();
  const index = assets.get('index.html');
  if (!index) throw new Error('the console is missing index.html');
  app.get('/', { schema: { hide: true } }, async (_request, reply) => send(reply, index));
  app.get<{ Params: { file: string } }>('/console/:file', { schema: { hide: true } }, async (request, reply) => {
    const asset = request.params.file === 'index.html' ? undefined : assets.get(request.params.file);
    if (!asset) return reply.callNotFound();
    return send(reply, asset);
  });
}
