/**
 * Throwaway Redis servers for tests that kill, restart or cluster Redis: each runs as our
 * child on a free port in its own temp dir, never touching the shared instance.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { requireBinaries } from '../setup/harness.js';
import { freePort, which } from '../setup/services.js';

export function redisBinary(name: string): string | null {
  return which(name, ['/usr/bin', '/usr/local/bin']);
}

/** Whether the Redis programs a suite starts are here (see requireBinaries). */
export function requireRedisBinaries(names: readonly ('redis-server' | 'redis-cli')[], suite: string): boolean {
  return requireBinaries(names, suite, redisBinary);
}

/**
 * Waits until the redis-server `child` answers on `port`. The answer must come from that very
 * process (INFO's process_id): another server that took the port after we picked it does not
 * count, and our child, unable to bind, exits.
 */
async function waitForPort(port: number, child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new RedisExitedError(`redis-server on ${port} exited with ${child.exitCode ?? child.signalCode}`);
    const pid = await new Promise<number | null>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      let text = '';
      const done = (value: number | null) => {
        clearTimeout(timer);
        socket.destroy();
        resolve(value);
      };
      const timer = setTimeout(() => done(null), 2_000);
      socket.once('connect', () => socket.write('INFO server\r\n'));
      socket.on('data', (d: Buffer) => {
        text += d.toString();
        const match = /process_id:(\d+)\r\n/.exec(text);
        if (match) done(Number(match[1]));
        else if (text.startsWith('-')) done(null);
      });
      socket.once('error', () => done(null));
      socket.once('close', () => done(null));
    });
    if (pid !== null && pid === child.pid) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on ${port} did not answer within ${timeoutMs} ms`);
}

class RedisExitedError extends Error {}

/** A redis-server we own: start, SIGKILL, start again on the same port. */
export class OwnRedis {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-redis-'));
  private child: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    private readonly extraArgs: string[],
  ) {}

  /**
   * Starts a server on a free port (`extraArgs` may depend on it). A port some other process
   * took between our pick and the server's bind makes the server exit: another port is tried.
   */
  static async start(extraArgs: string[] | ((port: number) => string[]) = []): Promise<OwnRedis> {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const server = new OwnRedis(port, typeof extraArgs === 'function' ? extraArgs(port) : extraArgs);
      try {
        await server.restart();
        return server;
      } catch (err) {
        await server.stop();
        if (attempt >= 3 || !(err instanceof RedisExitedError)) throw err;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async restart(): Promise<void> {
    const binary = redisBinary('redis-server');
    if (!binary) throw new Error('no redis-server binary');
    const child = spawn(
      binary,
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, ...this.extraArgs],
      { stdio: 'ignore' },
    );
    this.child = child;
    await waitForPort(this.port, child);
  }

  /** SIGSTOP: the server keeps its data and its connections but answers nothing. */
  pause(): void {
    this.child?.kill('SIGSTOP');
  }

  resume(): void {
    this.child?.kill('SIGCONT');
  }

  /** SIGKILL: no shutdown, no save, connections cut. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
    this.child = null;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Three masters, no replicas, created with redis-cli --cluster create. */
export class OwnRedisCluster {
  private constructor(readonly nodes: OwnRedis[]) {}

  static async start(size = 3): Promise<OwnRedisCluster> {
    const cli = redisBinary('redis-cli');
    if (!cli) throw new Error('no redis-cli binary');
    const nodes: OwnRedis[] = [];
    try {
      for (let i = 0; i < size; i++) {
        nodes.push(
          await OwnRedis.start((port) => [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            `nodes-${port}.conf`,
            '--cluster-node-timeout',
            '2000',
          ]),
        );
      }
      const create = spawnSync(
        cli,
        ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'],
        { encoding: 'utf8', timeout: 30_000 },
      );
      if (create.status !== 0) throw new Error(`redis-cli --cluster create failed: ${create.stdout}${create.stderr}`);
      // Wait until every node agrees the cluster is up.
      const deadline = Date.now() + 20_000;
      for (const node of nodes) {
        for (;;) {
          const info = spawnSync(cli, ['-p', String(node.port), 'cluster', 'info'], { encoding: 'utf8' });
          if (info.stdout.includes('cluster_state:ok')) break;
          if (Date.now() > deadline) throw new Error(`cluster not ok on ${node.port}: ${info.stdout}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      return new OwnRedisCluster(nodes);
    } catch (err) {
      await Promise.all(nodes.map((n) => n.stop()));
      throw err;
    }
  }

  /** The comma-separated seed list REDIS_URL takes for a Cluster. */
  get url(): string {
    return this.nodes.map((n) => n.url).join(',');
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}

/** Waits until every instance reports Redis healthy again (after a restart), for at most `ms`. */
export async function waitForRedis(instances: ReadonlyArray<{ health(): Promise<{ dependencies: { name: string; ok: boolean }[] }> }>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (const s of instances) {
    for (;;) {
      const report = await s.health();
      if (report.dependencies.find((d) => d.name === 'redis')?.ok) break;
      if (Date.now() > deadline) throw new Error(`redis not healthy again within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
