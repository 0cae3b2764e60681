/**
 * Vitest global setup: an empty directory for this run's build of the package. Test files
 * that need the built package share one build there (see built-package.ts), made on first
 * use, so a run that needs none pays nothing and two files never build over each other.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import './built-package-context.js';

export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'agent-sessions-package-'));
  project.provide('packageBuildDir', dir);
  return () => rmSync(dir, { recursive: true, force: true });
}
