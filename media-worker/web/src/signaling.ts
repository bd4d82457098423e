// One WebSocket to /v1/ws: requests carry a numeric requestId and resolve with the worker's
// reply of the expected kind; everything without a requestId is a push.

import { type ClientAction, type ConsoleRequest, type ErrorCode, type Push, type Replies, REPLY_ACTION } from "./protocol";

/** Long enough for a join on a loaded worker, short enough that a hung request is noticed. */
const REQUEST_TIMEOUT_MS = 10_000;

/** A refusal from the worker (`error` reply) or a failure of the connection itself. */
export class SignalingError extends Error {
  constructor(
    /** The worker's error code, or "closed" / "timeout" / "unreachable" for the connection. */
    readonly code: ErrorCode | "closed" | "timeout" | "unreachable",
    message: string,
  ) {
    super(message);
  }
}

interface Pending {
  expect: string;
  resolve: (value: unknown) => void;
  reject: (error: SignalingError) => void;
  timer: number;
}

export interface SignalingHandlers {
  onPush: (push: Push) => void;
  /** The socket closed after it had opened; `lastError` is the worker's last pushed error. */
  onClose: (event: CloseEvent, lastError: ErrorCode | undefined) => void;
}

export class Signaling {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private lastError: ErrorCode | undefined;
  private closedByUs = false;

  private constructor(
    private readonly socket: WebSocket,
    private readonly handlers: SignalingHandlers,
  ) {
    socket.addEventListener("message", (event) => this.onMessage(event));
    socket.addEventListener("close", (event) => {
      for (const [, p] of this.pending) {
        window.clearTimeout(p.timer);
        p.reject(new SignalingError(this.lastError ?? "closed", "the connection to the worker closed"));
      }
      this.pending.clear();
      if (!this.closedByUs) {
        this.handlers.onClose(event, this.lastError);
      }
    });
  }

  /** Opens the socket on the page's own origin (ws: for http:, wss: for https:). */
  static connect(handlers: SignalingHandlers, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Signaling> {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/v1/ws`);
    return new Promise((resolve, reject) => {
      const fail = () => {
        window.clearTimeout(timer);
        reject(new SignalingError("unreachable", "cannot reach the worker"));
      };
      const timer = window.setTimeout(() => {
        socket.removeEventListener("error", fail);
        socket.close();
        reject(new SignalingError("unreachable", "the worker did not answer in time"));
      }, timeoutMs);
      socket.addEventListener("error", fail, { once: true });
      socket.addEventListener(
        "open",
        () => {
          window.clearTimeout(timer);
          socket.removeEventListener("error", fail);
          resolve(new Signaling(socket, handlers));
        },
        { once: true },
      );
    });
  }

  request<M extends ConsoleRequest>(message: M): Promise<Replies[M["action"]]> {
    const action: ClientAction = message.action;
    if (this.socket.readyState !== WebSocket.OPEN) {
      return Promise.reject(new SignalingError("closed", "the connection to the worker is closed"));
    }
    const requestId = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = window.setTimeout(() => {
        this.pending.delete(requestId);
        reject(new SignalingError("timeout", `no answer to ${action}`));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(requestId, {
        expect: REPLY_ACTION[action],
        resolve: resolve as (value: unknown) => void,
        reject,
        timer,
      });
      this.socket.send(JSON.stringify({ ...message, requestId }));
    });
  }

  /** Sends `leave` without waiting for `left`, then closes; no onClose callback follows. */
  close(): void {
    this.closedByUs = true;
    if (this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ action: "leave" }));
    }
    this.socket.close(1000);
  }

  private onMessage(event: MessageEvent): void {
    if (typeof event.data !== "string") {
      return;
    }
    let message: { action?: unknown; requestId?: unknown; code?: unknown; message?: unknown };
    try {
      message = JSON.parse(event.data) as typeof message;
    } catch {
      return;
    }
    const requestId = typeof message.requestId === "number" ? message.requestId : undefined;
    const pending = requestId === undefined ? undefined : this.pending.get(requestId);
    if (requestId !== undefined && pending) {
      this.pending.delete(requestId);
      window.clearTimeout(pending.timer);
      if (message.action === "error") {
        pending.reject(new SignalingError(message.code as ErrorCode, String(message.message)));
      } else if (message.action === pending.expect) {
        pending.resolve(message);
      } else {
        pending.reject(new SignalingError("internal", `expected ${pending.expect}, got ${String(message.action)}`));
      }
      return;
    }
    if (message.action === "error") {
      this.lastError = message.code as ErrorCode;
    }
    this.handlers.onPush(message as Push);
  }
}
