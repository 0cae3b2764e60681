/**
 * The session-service conformance suite, once per configuration in configurations.ts.
 * A configuration whose services are missing is skipped by name (or fails the run when
 * REQUIRE_SERVICES is set).
 */
import { describe } from 'vitest';
import { requireServices } from '../setup/harness.js';
import { CONFIGURATIONS } from './configurations.js';
import { sessionServiceConformance } from './session-service.conformance.js';

for (const configuration of CONFIGURATIONS) {
  const suite = `conformance/${configuration.name}`;
  const ready = requireServices(configuration.services, suite);
  describe.skipIf(!ready)(suite, () => {
    sessionServiceConformance(() => configuration.prepare());
  });
}
