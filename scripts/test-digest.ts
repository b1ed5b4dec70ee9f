/**
 * The part of a failed test file's output worth reading last: node's spec reporter repeats every
 * failing test with its error under "✖ failing tests:" at the end of a file's run. CI keeps only the
 * tail of a run's output, so the runner prints this digest after the totals.
 */
export function failureDigest(output: string, maxLines = 60): string {
  const lines = output.replace(/\r/g, '').split('\n');
  const start = lines.findIndex((l) => l.startsWith('✖ failing tests:'));
  let picked: string[];
  if (start >= 0) {
    picked = lines.slice(start + 1).filter((l) => l.trim() !== '');
  } else {
    // No spec summary (the process crashed or was killed): the last lines say why.
    picked = lines.filter((l) => l.trim() !== '' && !/^ℹ /.test(l)).slice(-Math.min(maxLines, 20));
  }
  if (picked.length > maxLines) picked = [...picked.slice(0, maxLines), `… ${picked.length - maxLines} more lines in the file's output above`];
  return picked.join('\n');
}
