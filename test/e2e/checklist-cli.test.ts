import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CHECKLIST, SECTIONS } from '../../src/checklist/catalog';
import { runCli } from '../helpers';

// `runbook checklist` reads the catalog alone: it runs with no config file and no server.
const noConfig = { RUNBOOK_CONFIG: '/nonexistent/runbook.yaml' };

describe('runbook checklist', () => {
  test('--json lists every catalog item once, with its section, severity and proof, and counts each proof kind', async () => {
    const r = await runCli(['--json', 'checklist'], { env: noConfig });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { items: { id: string; section: string; severity: string; proof: { kind: string }; provedBy: string }[]; coverage: Record<string, number> };
    assert.deepEqual(out.items.map((i) => i.id), CHECKLIST.map((i) => i.id));
    for (const i of out.items) {
      const item = CHECKLIST.find((c) => c.id === i.id)!;
      assert.deepEqual([i.section, i.severity, i.proof], [item.section, item.severity, item.proof]);
      if (item.proof.kind === 'automated') for (const check of item.proof.checks) assert.match(i.provedBy, new RegExp(`\\b${check}\\b`));
      if (item.proof.kind === 'runbook') assert.match(i.provedBy, new RegExp(`${item.proof.runbook} run within`));
      if (item.proof.kind === 'attested') assert.match(i.provedBy, new RegExp(`valid ${item.proof.validForDays} days`));
    }
    assert.match(out.items.find((i) => i.id === 'rollback-tested')!.provedBy, /rollback run within 90 days that changed a Deployment .* and was verified by its analysis$/);
    const count = (k: string) => CHECKLIST.filter((i) => i.proof.kind === k).length;
    assert.deepEqual(out.coverage, { items: CHECKLIST.length, automated: count('automated'), runbook: count('runbook'), attested: count('attested') });
  });

  test('filters combine; the text form groups by section and ends with the coverage line', async () => {
    const section = SECTIONS.find((s) => s === 'Disaster Recovery')!;
    const r = await runCli(['checklist', '--section', 'disaster recovery', '--proof', 'runbook'], { env: noConfig });
    assert.equal(r.code, 0, r.stderr);
    const want = CHECKLIST.filter((i) => i.section === section && i.proof.kind === 'runbook');
    assert.ok(want.length > 0);
    for (const i of want) assert.match(r.stdout, new RegExp(`^  ${i.id} `, 'm'));
    assert.equal(r.stdout.match(/^  \S+ /gm)?.length, want.length, 'only the matching items');
    assert.match(r.stdout, new RegExp(`^${want.length} items: 0 proved by automated checks, ${want.length} by runbook runs, 0 by attestation$`, 'm'));
  });

  test('a wrong filter names the flag and what it accepts, with the usage exit code', async () => {
    for (const [args, says] of [
      [['checklist', '--proof', 'manual'], /--proof: "manual" is not a proof kind; use automated, runbook or attested/],
      [['checklist', '--severity', 'urgent'], /--severity: "urgent" is not a severity; use critical, high or normal/],
      [['checklist', '--section', 'Backups'], /--section: "Backups" is not a checklist section; sections: Infrastructure Prerequisites;/],
    ] as const) {
      const r = await runCli([...args], { env: noConfig });
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, says);
      assert.equal(r.stdout, '');
    }
  });
});
