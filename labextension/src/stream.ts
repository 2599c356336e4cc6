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

  /**
   * Topics are strings (`jobs`, `job:<id>`) or `{topic: 'job_log:<id>', offset}`. Remembered
   * topics are subscribed again when the server starts a new session; a log view passes
   * `remember = false` and subscribes again itself, from the offset it has reached.
   */
  subscribe(topics: Array<string | Record<string, unknown>>, remember = true): void {
    if (remember) {
      for (const topic of topics) {
        const key = typeof topic === 'string' ? topic : String(topic.topic);
        this._topics.set(key, topic);
      }
    }
    this._send({ type: 'subscribe', topics });
  }

  unsubscribe(topics: string[]): void {
    topics.forEach(topic => this._topics.delete(topic));
    this._send({ type: 'unsubscribe', topics });
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
    if (message.type === 'welcome' && !message.data.resumed && this._topics.size) {
      // A new session knows nothing of what this client followed.
      this._send({ type: 'subscribe', topics: [...this._topics.values()] });
    }
    this._message.emit(message);
  }

  private _send(message: unknown): void {
    if (this._socket && this._socket.readyState === WebSocket.OPEN) {
      this._socket.send(JSON.stringify(message));
    }
    // Not connected: the subscriptions are sent again when the new session welcomes us.
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
  private _topics = new Map<string, string | Record<string, unknown>>();
  private _message = new Signal<this, IStreamMessage>(this);
  private _statusChanged = new Signal<this, ConnectionStatus>(this);
}
