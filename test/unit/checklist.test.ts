import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { CHECK_IDS, CHECKLIST, checksInUse, CheckResult, combineChecks, SECTIONS } from '../../src/checklist/catalog';
import { RUNBOOK_NAMES } from '../../src/config/schema';

const REPO = join(__dirname, '..', '..');

interface ParsedItem {
  section: string;
  subsection: string;
  title: string;
  text: string;
  line: number;
}

/** The checklist's items as the markdown has them: `- [ ] **Title**: text` under `## section` / `### subsection`, outside code blocks. */
function parseChecklist(markdown: string): ParsedItem[] {
  const items: ParsedItem[] = [];
  let section = '';
  let subsection = '';
  let inCode = false;
  markdown.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (line.startsWith('```')) inCode = !inCode;
    if (inCode) return;
    if (line.startsWith('## ')) [section, subsection] = [line.slice(3).trim(), ''];
    else if (line.startsWith('### ')) subsection = line.slice(4).trim();
    else if (line.startsWith('- [')) {
      const m = /^- \[[ xX]\] \*\*(.+?)\*\*:\s*(.+)$/.exec(line);
      assert.ok(m, `line ${i + 1} is a checklist item the parser does not understand: ${line}`);
      items.push({ section, subsection, title: m[1], text: m[2], line: i + 1 });
    }
  });
  return items;
}

const key = (x: { section: string; subsection: string; title: string; text: string }) => `${x.section} / ${x.subsection} / ${x.title}: ${x.text}`;

const checklist = parseChecklist(readFileSync(join(REPO, 'docs', 'production-checklist.md'), 'utf8'));
const snapshot = JSON.parse(readFileSync(join(__dirname, 'checklist-ids.snapshot.json'), 'utf8')) as Record<string, string>;

describe('the checklist catalog', () => {
  test('the checklist has its 106 items and every one is in the catalog, once, with its section, subsection and words', () => {
    assert.equal(checklist.length, 106);
    const catalogKeys = CHECKLIST.map(key);
    const missing = checklist.filter((p) => !catalogKeys.includes(key(p))).map((p) => `line ${p.line}: ${key(p)}`);
    assert.deepEqual(missing, [], 'checklist items missing from src/checklist/catalog.ts');
    const parsedKeys = checklist.map(key);
    const extra = CHECKLIST.filter((c) => !parsedKeys.includes(key(c))).map((c) => `${c.id}: ${key(c)}`);
    assert.deepEqual(extra, [], 'catalog items that are not in the checklist');
    assert.equal(CHECKLIST.length, checklist.length);
    assert.equal(new Set(catalogKeys).size, catalogKeys.length, 'an item is in the catalog twice');
  });

  test('ids are unique, well-formed, and none changed: every id in the snapshot still names the same item', () => {
    const ids = CHECKLIST.map((i) => i.id);
    assert.equal(new Set(ids).size, ids.length, 'duplicate ids');
    for (const id of ids) assert.match(id, /^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$/, id);
    const now = Object.fromEntries(CHECKLIST.map((i) => [i.id, key(i)]));
    const changed = Object.entries(snapshot).filter(([id, text]) => now[id] !== text).map(([id, text]) => `${id}: was "${text}", now ${now[id] ? `"${now[id]}"` : 'gone'}`);
    assert.deepEqual(changed, [], 'ids are stable: add a new id instead of renaming or reusing one');
    const unrecorded = ids.filter((id) => !(id in snapshot));
    assert.deepEqual(unrecorded, [], 'new ids must be added to test/unit/checklist-ids.snapshot.json');
  });

  test('the catalog keeps the checklist order and sections', () => {
    assert.deepEqual(CHECKLIST.map(key), checklist.map(key));
    assert.deepEqual(SECTIONS, [...new Set(checklist.map((p) => p.section))]);
  });

  test('every item says how it is proved, with a usable proof', () => {
    for (const item of CHECKLIST) {
      assert.ok(['critical', 'high', 'normal'].includes(item.severity), item.id);
      const p = item.proof;
      if (p.kind === 'automated') {
        assert.ok(p.checks.length > 0, item.id);
        for (const c of p.checks) assert.ok((CHECK_IDS as readonly string[]).includes(c), `${item.id}: unknown check ${c}`);
      } else if (p.kind === 'runbook') {
        assert.ok((RUNBOOK_NAMES as readonly string[]).includes(p.runbook), `${item.id}: ${p.runbook} is not a runbook`);
        assert.ok(p.within === 'rpo' || (p.within.days > 0 && p.within.days <= 366), item.id);
      } else {
        assert.equal(p.kind, 'attested');
        assert.ok(Number.isInteger(p.validForDays) && p.validForDays >= 1 && p.validForDays <= 366, item.id);
      }
    }
    // Every check that exists is used by some item, so none runs for nothing.
    assert.deepEqual([...checksInUse()].sort(), [...CHECK_IDS].sort());
  });

  test('the proofs the issue names: DR drill within 92 days, restore test within the RPO window, rollback, on-call attested', () => {
    const proof = (id: string) => CHECKLIST.find((i) => i.id === id)!.proof;
    assert.deepEqual(proof('dr-drills-quarterly'), { kind: 'runbook', runbook: 'drDrill', within: { days: 92 } });
    assert.deepEqual(proof('backup-verification'), { kind: 'runbook', runbook: 'verifyBackup', within: 'rpo' });
    assert.equal((proof('rollback-tested') as { runbook: string }).runbook, 'rollback');
    assert.equal(proof('on-call-rotation').kind, 'attested');
    assert.equal(proof('communication-plan').kind, 'attested');
    assert.deepEqual(proof('temporal-version'), { kind: 'automated', checks: ['checkTemporalVersion'] });
  });

  test('an item proved by several checks fails if any fails and passes only if all pass', () => {
    const r = (status: CheckResult['status']): CheckResult => ({ check: 'checkTemporalVersion', status, summary: '', evidence: {}, durationMs: 0 });
    const cases: [CheckResult['status'][], string][] = [
      [['pass'], 'pass'],
      [['fail'], 'fail'],
      [['unknown'], 'unknown'],
      [['pass', 'pass'], 'pass'],
      [['pass', 'unknown'], 'unknown'],
      [['unknown', 'fail'], 'fail'],
      [['pass', 'fail'], 'fail'],
      [[], 'unknown'],
    ];
    for (const [statuses, expected] of cases) assert.equal(combineChecks(statuses.map(r)), expected, statuses.join(','));
    assert.equal(combineChecks([r('pass'), undefined]), 'unknown', 'a check that never reported is not a pass');
  });

  test("the README's proof table and status line give the catalog's own counts", () => {
    const readme = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');
    const count = (k: string) => CHECKLIST.filter((i) => i.proof.kind === k).length;
    assert.match(readme, new RegExp(`^\\| automated checks \\| ${count('automated')} \\|.*; ${checksInUse().length} checks, each under its own deadline\\)`, 'm'));
    assert.match(readme, new RegExp(`^\\| runbook runs \\| ${count('runbook')} \\|`, 'm'));
    assert.match(readme, new RegExp(`^\\| attestations \\| ${count('attested')} \\|`, 'm'));
    assert.match(readme.replace(/\s+/g, ' '), new RegExp(`${count('automated') + count('runbook')} of its ${CHECKLIST.length} items proved by checks or runbook runs`));
  });
});
