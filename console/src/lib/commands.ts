/** The commands panel's logic: when a command is over, and its state in words. */

// CommandState values that end a command's lifecycle (command.proto).
const FINISHED = new Set([4, 5, 6, 7, 8]); // SUCCEEDED, FAILED, EXPIRED, TIMED_OUT, CANCELED

export function isFinished(state: number): boolean {
  return FINISHED.has(state);
}

/** "COMMAND_STATE_SUCCEEDED" -> "succeeded". */
export function stateLabel(enumName: string | undefined): string {
  return (enumName ?? "unknown").replace(/^COMMAND_STATE_/, "").toLowerCase().replace(/_/g, " ");
}
