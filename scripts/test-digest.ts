/**
 * The part of a failed test file's output worth reading last: node's spec reporter repeats every
 * failing test with its error under "✖ failing tests:" at the end of a file's run. CI keeps only the
 * tail of a run's output, so the runner prints this digest after the totals.
 */
export function failureDigest(output: string, maxLines = 30, maxWidth = 240): string {
  const lines = output.replace(/\r/g, '').split('\n');
  const start = lines.findIndex((l) => l.startsWith('✖ failing tests:'));
  let picked: string[];
  if (start >= 0) {
    // Stack frames and the error object's bookkeeping fields say little here (the file's full output
    // is above): left out, so every failing file's digest fits in the tail CI keeps.
    picked = lines
      .slice(start + 1)
      .filter((l) => l.trim() !== '' && !/^\s+at /.test(l) && !/^\s+(generatedMessage|code|operator|diff|source|stackTrace|applicationFailureInfo|nextRetryDelay|category|retryState|encodedAttributes|timeoutFailureInfo|canceledFailureInfo|resetWorkflowFailureInfo):/.test(l) && !/^\s*[{}\]]+,?$/.test(l))
      .map((l) => (l.length > maxWidth ? `${l.slice(0, maxWidth)}…` : l));
  } else {
    // No spec summary (the process crashed or was killed): the last lines say why.
    picked = lines.filter((l) => l.trim() !== '' && !/^ℹ /.test(l)).slice(-Math.min(maxLines, 20));
  }
  if (picked.length > maxLines) picked = [...picked.slice(0, maxLines), `… ${picked.length - maxLines} more lines in the file's output above`];
  return picked.join('\n');
}
