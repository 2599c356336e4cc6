/**
 * Where a client is in its live stream: the session it belongs to and the last `seq` it
 * received. Pure (unit-tested): the WebSocket client asks it what to resume with.
 */
import { IStreamMessage } from './model';

export class StreamCursor {
  session: string | null = null;
  lastSeq = 0;
  gaps = 0;

  /** Take in a message; returns false for one already seen (a replay overlap). */
  accept(message: IStreamMessage): boolean {
    if (message.type === 'welcome') {
      const resumed = Boolean(message.data.resumed) && message.data.session === this.session;
      this.session = message.data.session;
      if (!resumed) {
        this.lastSeq = message.seq; // a new numbering
        return true;
      }
    }
    if (message.seq <= this.lastSeq) {
      return false;
    }
    if (this.lastSeq && message.seq !== this.lastSeq + 1 && message.type !== 'lagged') {
      this.gaps += 1; // should not happen: the server resumes or says it lagged
    }
    this.lastSeq = message.seq;
    return true;
  }

  /** Query arguments of a reconnection. */
  resumeParams(): Record<string, string> {
    if (!this.session) {
      return {};
    }
    return { since_seq: String(this.lastSeq), session: this.session };
  }
}

export function reconnectDelay(attempt: number): number {
  return Math.min(30000, 500 * 2 ** Math.min(attempt, 6));
}
