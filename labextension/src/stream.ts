/**
 * The live stream (WS {base_url}api/v1/ws/{client_id}): reconnects on its own and resumes
 * with `since_seq`, re-subscribes what it had when the server started a new session.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { StreamCursor, reconnectDelay } from './cursor';
import { IStreamMessage } from './model';

export type ConnectionStatus = 'connecting' | 'open' | 'closed';

export class LiveStream {
  constructor(
    private readonly settings: ServerConnection.ISettings,
    readonly clientId: string
  ) {}

  get message(): ISignal<this, IStreamMessage> {
    return this._message;
  }

  get statusChanged(): ISignal<this, ConnectionStatus> {
    return this._statusChanged;
  }

  get status(): ConnectionStatus {
    return this._status;
  }

  connect(): void {
    if (this._disposed || this._socket) {
      return;
    }
    const params: Record<string, string> = { ...this._cursor.resumeParams() };
    if (this.settings.appendToken && this.settings.token) {
      params.token = this.settings.token;
    }
    const url =
      URLExt.join(this.settings.wsUrl, 'api/v1/ws', encodeURIComponent(this.clientId)) +
      URLExt.objectToQueryString(params);
    this._setStatus('connecting');
    const socket = new this.settings.WebSocket(url);
    this._socket = socket;
    socket.onopen = () => {
      this._attempt = 0;
      this._setStatus('open');
    };
    socket.onmessage = event => this._onMessage(event.data as string);
    socket.onclose = event => {
      this._socket = null;
      this._setStatus('closed');
      if (!this._disposed && event.code !== 4000) {
        this._timer = window.setTimeout(() => this.connect(), reconnectDelay(this._attempt++));
      }
    };
  }

  /** Follow `jobs`, `job:<id>`...: subscribed again whenever the server starts a new session. */
  subscribe(topics: string[]): void {
    topics.forEach(topic => this._topics.add(topic));
    if (!this._send({ type: 'subscribe', topics })) {
      this._topicsChanged = true;
    }
  }

  unsubscribe(topics: string[]): void {
    topics.forEach(topic => this._topics.delete(topic));
    if (!this._send({ type: 'unsubscribe', topics })) {
      topics.forEach(topic => this._unfollowed.add(topic));
    }
  }

  /**
   * Follow a job's log from wherever its view has got to (`position()` is asked each time
   * the subscription is sent: now, after a new server session, after a reconnect that
   * missed the change, or on `resync`).
   */
  followLog(topic: string, position: () => Record<string, unknown>): void {
    this._logs.set(topic, position);
    this._unfollowed.delete(topic);
    if (!this._sendLogs([topic])) {
      this._pendingLogs.add(topic);
    }
  }

  unfollowLog(topic: string): void {
    this._logs.delete(topic);
    this._pendingLogs.delete(topic);
    if (!this._send({ type: 'unsubscribe', topics: [topic] })) {
      this._unfollowed.add(topic);
    }
  }

  /** Subscribe a log again from the view's position (its pages stopped lining up). */
  resync(topic: string): void {
    this._sendLogs([topic]);
  }

  dispose(): void {
    this._disposed = true;
    window.clearTimeout(this._timer);
    this._socket?.close(1000);
    Signal.clearData(this);
  }

  private _onMessage(text: string): void {
    let message: IStreamMessage;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (!this._cursor.accept(message)) {
      return;
    }
    if (message.type === 'welcome') {
      if (!message.data.resumed) {
        // A new session knows nothing of what this client followed.
        this._subscribeEach([...this._topics]);
        this._sendLogs([...this._logs.keys()]);
      } else {
        // The session kept its subscriptions; what changed while the socket was down did not reach it.
        if (this._unfollowed.size) {
          this._send({ type: 'unsubscribe', topics: [...this._unfollowed] });
        }
        if (this._topicsChanged) {
          this._subscribeEach([...this._topics]);
        }
        this._sendLogs([...this._pendingLogs]);
      }
      this._unfollowed.clear();
      this._pendingLogs.clear();
      this._topicsChanged = false;
    }
    this._message.emit(message);
  }

  /** One message per topic: a topic this user may not read is refused alone, not with the others. */
  private _subscribeEach(topics: string[]): void {
    topics.forEach(topic => this._send({ type: 'subscribe', topics: [topic] }));
  }

  private _sendLogs(topics: string[]): boolean {
    const wanted = topics
      .filter(topic => this._logs.has(topic))
      .map(topic => ({ topic, ...this._logs.get(topic)!() }));
    return wanted.length === 0 || this._send({ type: 'subscribe', topics: wanted });
  }

  /** False when the socket is not open (the welcome of the next connection catches up). */
  private _send(message: unknown): boolean {
    if (this._socket && this._socket.readyState === WebSocket.OPEN) {
      this._socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  private _setStatus(status: ConnectionStatus): void {
    if (status !== this._status) {
      this._status = status;
      this._statusChanged.emit(status);
    }
  }

  private _cursor = new StreamCursor();
  private _socket: WebSocket | null = null;
  private _status: ConnectionStatus = 'closed';
  private _attempt = 0;
  private _timer = 0;
  private _disposed = false;
  private _topics = new Set<string>();
  private _logs = new Map<string, () => Record<string, unknown>>();
  private _pendingLogs = new Set<string>();
  private _unfollowed = new Set<string>();
  private _topicsChanged = false;
  private _message = new Signal<this, IStreamMessage>(this);
  private _statusChanged = new Signal<this, ConnectionStatus>(this);
}
