/**
 * An error meant for the user: its message is one line naming the file/line/field at fault. The CLI prints
 * it without a stack trace and exits non-zero; any other error is a bug and keeps its stack.
 */
export class WeitiaoError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WeitiaoError";
  }
}
