// Being in the session: send our camera and microphone, receive every other point, follow
// joins and leaves, and report statistics. Reconnecting is the caller's job: a Room ends once
// (`onEnd`) and a new one is joined.

import type { types } from "mediasoup-client";
import { Connection, type IceRoute, MediaPathError } from "./connection";
import type { LocalMedia } from "./media";
import type { Remote } from "./checks";
import type { ConsoleCheck, ErrorCode, MediaKind, PeerInfo, Push, TileView } from "./protocol";
import { SignalingError } from "./signaling";

export interface RoomView {
  peerJoined(peer: PeerInfo): void;
  peerLeft(point: string): void;
  /** A remote track appeared (`track`) or went away (`null`). */
  remoteTrack(point: string, kind: MediaKind, track: MediaStreamTrack | null): void;
  /** `point` shares a document (`track`), or stopped (`null`); this office's own share too. */
  share(point: string, track: MediaStreamTrack | null): void;
  /** The host muted `point` (this office's own name included); `by` may be empty on joining. */
  pointMuted(point: string, by: string): void;
  /** `point` speaks again after the host's mute. */
  pointUnmuted(point: string): void;
  /** The SFU's audio levels say `point` speaks now (`null`: nobody yet, or the speaker left). */
  activeSpeaker(point: string | null): void;
  /** The host gave the floor to `point` (`null`: took it back). */
  floor(point: string | null): void;
}

/** What the host did about this office's microphone. */
export type Moderation =
  /** The host (`by`) muted this office; the worker holds its audio until the host asks. */
  | { kind: "muted"; by: string }
  /** The host asks this office to unmute: the officer decides when. */
  | { kind: "asked"; by: string }
  /** The host (`by`) stopped this office's document share. */
  | { kind: "shareStopped"; by: string };

/** Why a room ended without the person leaving. */
export type RoomEnd =
  /** The signaling connection closed; `code` is the worker's last error push, if any. */
  | { kind: "lost"; code: ErrorCode | undefined }
  /** ICE/DTLS failed after the session was up. */
  | { kind: "mediaPath"; address: string };

/** How long a disconnected transport may take to heal by itself before an ICE restart. */
const RESTART_AFTER_MS = 2_000;
/** ICE restarts tried after a failure before a full rejoin. */
const MAX_ICE_RESTARTS = 2;

export type Quality = "good" | "fair" | "poor" | "none";

interface Received {
  consumer: types.Consumer;
  point: string;
  kind: MediaKind;
  /** A document share, shown in its own large tile. */
  screen: boolean;
}

/** Per consumer, what the page decoded; the e2e test reads this through `window.tiepdan`. */
export interface ConsumerStats {
  point: string;
  kind: MediaKind;
  packetsReceived: number;
  packetsLost: number;
  bytesReceived: number;
  framesDecoded: number;
  totalSamplesReceived: number;
  /** Audio only: the energy of what was played out (0 while a point is muted in the SFU). */
  totalAudioEnergy: number;
  /** Audio samples the browser had to make up (lost or late packets). */
  concealedSamples: number;
  /** Video: the height being decoded now (which simulcast layer arrives), and its frame rate. */
  frameHeight: number;
  framesPerSecond: number;
  freezeCount: number;
  totalFreezesDuration: number;
}

/** One simulcast layer as the browser sends it. */
export interface LayerStats {
  rid: string | null;
  bytesSent: number;
  frameHeight: number;
}

export interface ProducerStats {
  kind: MediaKind;
  packetsSent: number;
  bytesSent: number;
  framesEncoded: number;
  /** The sender's caps on its encodings added up, bits per second (null: none). */
  maxBitrate: number | null;
  /** Video: each simulcast layer's `outbound-rtp`. */
  layers: LayerStats[];
}

export class Room {
  private conn: Connection | null = null;
  private readonly early: Push[] = [];
  private readonly producers = new Map<MediaKind, types.Producer>();
  /** This office's document share, if on. */
  private screen: types.Producer | null = null;
  /** Which announced producers are shares (the rest are cameras and microphones). */
  private readonly screens = new Set<string>();
  private readonly received = new Map<string, Received>();
  private readonly peers = new Map<string, PeerInfo>();
  private consuming: Promise<void> = Promise.resolve();
  private ended = false;
  /** Set once joined and sending; before that a failure is the join's rejection, not an end. */
  private live = false;
  private lostDuringJoin: RoomEnd | null = null;
  private previousLoss: { lost: number; received: number } = { lost: 0, received: 0 };
  /** What was last said to the worker: the tiles (as JSON), and each consumer's freezes. */
  private sentViewport = "";
  private readonly reportedFreezes = new Map<string, { count: number; seconds: number }>();
  /** ICE restarts since the path was last connected, and the pending one's timer. */
  private iceRestarts = 0;
  private restartTimer = 0;

  private constructor(
    private readonly view: RoomView,
    private readonly onEnd: (end: RoomEnd) => void,
    private readonly onModeration: (event: Moderation) => void,
  ) {}

  /**
   * Joins, sends the local tracks and receives everyone present. Rejects with SignalingError
   * (refused), MediaPathError (ICE/DTLS blocked) or another Error.
   */
  static async join(
    token: string,
    local: LocalMedia,
    view: RoomView,
    onEnd: (end: RoomEnd) => void,
    onModeration: (event: Moderation) => void,
  ): Promise<Room> {
    const room = new Room(view, onEnd, onModeration);
    const conn = await Connection.open(token, {
      onPush: (push) => (room.conn ? room.onPush(push) : room.early.push(push)),
      onClose: (_event, code) => room.end({ kind: "lost", code }),
    });
    room.conn = conn;
    try {
      await room.start(local);
    } catch (error) {
      room.ended = true;
      conn.close();
      const lost = room.lostDuringJoin;
      if (lost?.kind === "lost") {
        throw new SignalingError(lost.code ?? "closed", "the connection closed while joining");
      }
      throw error;
    }
    if (room.lostDuringJoin) {
      room.ended = true;
      conn.close();
      throw new SignalingError("closed", "the connection closed while joining");
    }
    room.live = true;
    return room;
  }

  get point(): string {
    return this.conn?.joined.point ?? "";
  }

  get title(): string {
    return this.conn?.joined.title ?? "";
  }

  private async start(local: LocalMedia): Promise<void> {
    const conn = this.connection();
    for (const peer of conn.joined.peers) {
      this.addPeer(peer);
    }
    for (const producer of conn.joined.producers) {
      this.onPush({ action: "newProducer", ...producer });
    }
    for (const point of conn.joined.mutedPoints ?? []) {
      this.onPush({ action: "pointMuted", point, by: "" });
    }
    this.view.activeSpeaker(conn.joined.activeSpeaker ?? null);
    this.view.floor(conn.joined.floor ?? null);
    for (const push of this.early.splice(0)) {
      this.onPush(push);
    }
    for (const track of [local.audioTrack, local.videoTrack]) {
      if (track) {
        this.producers.set(track.kind as MediaKind, await conn.produce(track));
      }
    }
    // With something to send, the send transport proves the path now; otherwise the receive
    // transport does once there is something to receive.
    if (this.producers.size > 0) {
      await conn.waitConnected(conn.sendTransport);
    }
    for (const transport of [conn.sendTransport, conn.recvTransport]) {
      transport.on("connectionstatechange", (state) => {
        if (state === "connected") {
          this.iceRestarts = 0;
          window.clearTimeout(this.restartTimer);
        } else if (state === "disconnected") {
          // A blip (Wi-Fi roaming, a DSL resync) often heals by itself; if not, new ICE
          // credentials on the same transports keep the producers and consumers.
          window.clearTimeout(this.restartTimer);
          this.restartTimer = window.setTimeout(() => void this.restartIceIf("disconnected"), RESTART_AFTER_MS);
        } else if (state === "failed") {
          if (this.iceRestarts < MAX_ICE_RESTARTS) {
            void this.restartIceIf("failed");
          } else {
            // ICE restarts did not bring the path back: a full rejoin, with the officer told.
            this.end({ kind: "mediaPath", address: conn.mediaAddress });
          }
        }
      });
    }
  }

  private connection(): Connection {
    if (!this.conn) {
      throw new Error("not joined");
    }
    return this.conn;
  }

  private onPush(push: Push): void {
    switch (push.action) {
      case "peerJoined":
        this.addPeer({ point: push.point, displayName: push.displayName, role: push.role });
        break;
      case "peerLeft":
        this.peers.delete(push.point);
        for (const [id, r] of this.received) {
          if (r.point === push.point) {
            this.drop(id);
          }
        }
        this.view.peerLeft(push.point);
        break;
      case "newProducer":
        if (push.point !== this.point) {
          if (push.source === "screen") {
            this.screens.add(push.producerId);
          }
          this.enqueueConsume(push.producerId);
        }
        break;
      case "shareStopped":
        if (push.point === this.point) {
          this.endShare();
          this.onModeration({ kind: "shareStopped", by: push.by });
        }
        break;
      case "producerClosed":
        for (const [id, r] of this.received) {
          if (r.consumer.producerId === push.producerId) {
            this.drop(id);
          }
        }
        break;
      case "consumerClosed":
        this.drop(push.consumerId);
        break;
      case "pointMuted":
        this.view.pointMuted(push.point, push.by);
        if (push.point === this.point) {
          this.onModeration({ kind: "muted", by: push.by });
        }
        break;
      case "pointUnmuted":
        this.view.pointUnmuted(push.point);
        break;
      case "activeSpeaker":
        this.view.activeSpeaker(push.point);
        break;
      case "floorGiven":
        this.view.floor(push.point);
        break;
      case "unmuteAsked":
        if (push.point === this.point) {
          this.onModeration({ kind: "asked", by: push.by });
        }
        break;
      case "error":
        // Kicks (replaced, session_closed, ...) arrive as an error push just before the close;
        // the signaling layer keeps the code for onClose.
        break;
    }
  }

  private addPeer(peer: PeerInfo): void {
    this.peers.set(peer.point, peer);
    this.view.peerJoined(peer);
  }

  private enqueueConsume(producerId: string): void {
    // One at a time: each consume renegotiates the receive transport's SDP.
    this.consuming = this.consuming.then(async () => {
      if (this.ended) {
        return;
      }
      try {
        const { consumer, point } = await this.connection().consume(producerId);
        if (this.ended) {
          consumer.close();
          return;
        }
        const kind = consumer.kind as MediaKind;
        const screen = this.screens.has(producerId);
        this.received.set(consumer.id, { consumer, point, kind, screen });
        consumer.on("trackended", () => this.drop(consumer.id));
        if (screen) {
          this.view.share(point, consumer.track);
        } else {
          this.view.remoteTrack(point, kind, consumer.track);
        }
      } catch (error) {
        // The producer may have closed meanwhile (producer_not_found): nothing to show then.
        console.warn("consume failed", producerId, error);
      }
    });
  }

  private drop(consumerId: string): void {
    const r = this.received.get(consumerId);
    if (!r) {
      return;
    }
    this.received.delete(consumerId);
    r.consumer.close();
    if (r.screen) {
      this.screens.delete(r.consumer.producerId);
      this.view.share(r.point, null);
    } else {
      this.view.remoteTrack(r.point, r.kind, null);
    }
  }

  private end(end: RoomEnd): void {
    if (!this.live) {
      this.lostDuringJoin ??= end;
      return;
    }
    if (this.ended) {
      return;
    }
    this.ended = true;
    this.endShare();
    this.conn?.close();
    this.onEnd(end);
  }

  /** The host only: mutes `point`'s microphone for everyone (the worker enforces it). */
  async mutePoint(point: string): Promise<void> {
    await this.connection().signaling.request({ action: "mutePoint", point });
  }

  /** The host only: asks a point it muted to unmute. */
  async askToUnmute(point: string): Promise<void> {
    await this.connection().signaling.request({ action: "askToUnmute", point });
  }

  /**
   * Shares a screen or window (from `getDisplayMedia`). Rejects with SignalingError
   * `share_in_progress` while another point shares. The browser's own "stop sharing" ends it too.
   */
  async startShare(track: MediaStreamTrack): Promise<void> {
    const producer = await this.connection().produceScreen(track);
    this.screen = producer;
    track.addEventListener("ended", () => void this.stopShare());
    this.view.share(this.point, track);
  }

  get sharing(): boolean {
    return this.screen !== null;
  }

  /** Stops this office's share. */
  async stopShare(): Promise<void> {
    const producer = this.screen;
    if (!producer) {
      return;
    }
    this.endShare();
    if (this.conn && !this.ended) {
      await this.conn.signaling.request({ action: "closeProducer", producerId: producer.id }).catch(() => undefined);
    }
  }

  /** The host only: stops whichever point shares. */
  async stopAnyShare(): Promise<void> {
    await this.connection().signaling.request({ action: "stopShare" });
  }

  private endShare(): void {
    const producer = this.screen;
    if (producer) {
      this.screen = null;
      producer.close();
      producer.track?.stop();
      this.view.share(this.point, null);
    }
  }

  /**
   * An ICE restart of both transports (on a network change, or a path that dropped): the
   * session goes on with the same producers and consumers, no rejoin.
   */
  async restartIce(): Promise<void> {
    const conn = this.conn;
    if (!conn || this.ended) {
      return;
    }
    this.iceRestarts += 1;
    await Promise.all([conn.restartIce(conn.sendTransport), conn.restartIce(conn.recvTransport)]);
  }

  private async restartIceIf(state: "disconnected" | "failed"): Promise<void> {
    const conn = this.conn;
    const stuck = conn && [conn.sendTransport, conn.recvTransport].some((t) => t.connectionState === state);
    if (stuck) {
      await this.restartIce().catch((error: unknown) => console.warn("ICE restart failed", error));
    }
  }

  /** The host only: shows `point` large for everyone (`null`: takes the floor back). */
  async giveFloor(point: string | null): Promise<void> {
    await this.connection().signaling.request({ action: "giveFloor", point });
  }

  /**
   * Speaks again after the host's mute: the worker resumes our audio (refused with
   * `muted_by_host` until the host asked), then the browser sends it.
   */
  async resumeAudio(): Promise<void> {
    const producer = this.producers.get("audio");
    if (producer) {
      await this.connection().signaling.request({ action: "resumeProducer", producerId: producer.id });
      producer.resume();
    }
  }

  /** Mutes or unmutes sending of one kind (the worker keeps the producer). */
  setPaused(kind: MediaKind, paused: boolean): void {
    const producer = this.producers.get(kind);
    if (producer) {
      if (paused) {
        producer.pause();
      } else {
        producer.resume();
      }
    }
  }

  async replaceTrack(kind: MediaKind, track: MediaStreamTrack): Promise<void> {
    const producer = this.producers.get(kind);
    if (producer) {
      await producer.replaceTrack({ track });
      if (producer.paused) {
        track.enabled = false;
      }
    } else if (!this.ended && this.conn) {
      this.producers.set(kind, await this.conn.produce(track));
    }
  }

  /**
   * The remote media that proves this office receives: the host's, or for the host (who has no
   * host to watch) the first other point's.
   */
  remote(selfIsHost: boolean): Remote {
    const hosts = [...this.peers.values()].filter((p) => p.role === "host").map((p) => p.point);
    const fromHost = (r: Received) => (selfIsHost ? r.point !== this.point : hosts.includes(r.point));
    const pick = (kind: MediaKind) =>
      [...this.received.values()].filter((r) => r.kind === kind && fromHost(r)).map((r) => r.consumer);
    return { video: pick("video"), audio: pick("audio") };
  }

  /** The send transport, whose selected ICE pair is the office's path to the worker. */
  get sendTransport(): types.Transport | null {
    return this.conn?.sendTransport ?? null;
  }

  /** Reports the console's checklist to the worker. */
  async reportChecks(checks: ConsoleCheck[]): Promise<void> {
    if (this.conn && !this.ended) {
      await this.conn.signaling.request({ action: "reportChecks", checks });
    }
  }

  /**
   * Tells the worker where each point's picture is shown, when that changed: it picks each
   * picture's layer from its tile's height and pauses the ones nobody sees.
   */
  async setViewport(tiles: TileView[]): Promise<void> {
    const text = JSON.stringify(tiles);
    if (!this.conn || this.ended || text === this.sentViewport) {
      return;
    }
    this.sentViewport = text;
    try {
      await this.conn.signaling.request({ action: "setViewport", tiles });
    } catch (error) {
      // Sent again on the next change; until then the worker keeps the previous tiles.
      this.sentViewport = "";
      throw error;
    }
  }

  /** Reports the picture freezes the browser counted since the previous report. */
  async reportQuality(): Promise<void> {
    if (!this.conn || this.ended) {
      return;
    }
    let freezes = 0;
    let freezeSeconds = 0;
    for (const [id, r] of this.received) {
      if (r.kind !== "video") {
        continue;
      }
      const now = { count: 0, seconds: 0 };
      (await r.consumer.getStats()).forEach((s: Record<string, unknown>) => {
        if (s.type === "inbound-rtp") {
          now.count += num(s.freezeCount);
          now.seconds += num(s.totalFreezesDuration);
        }
      });
      const before = this.reportedFreezes.get(id) ?? { count: 0, seconds: 0 };
      freezes += Math.max(0, now.count - before.count);
      freezeSeconds += Math.max(0, now.seconds - before.seconds);
      this.reportedFreezes.set(id, now);
    }
    for (const id of this.reportedFreezes.keys()) {
      if (!this.received.has(id)) {
        this.reportedFreezes.delete(id);
      }
    }
    await this.conn.signaling.request({ action: "reportQuality", freezes, freezeSeconds });
  }

  /** Leaves on purpose; `onEnd` is not called. */
  leave(): void {
    this.ended = true;
    this.endShare();
    this.conn?.close();
  }

  async consumerStats(): Promise<ConsumerStats[]> {
    return Promise.all(
      [...this.received.values()].map(async (r) => {
        const out: ConsumerStats = {
          point: r.point,
          kind: r.kind,
          packetsReceived: 0,
          packetsLost: 0,
          bytesReceived: 0,
          framesDecoded: 0,
          totalSamplesReceived: 0,
          concealedSamples: 0,
          frameHeight: 0,
          framesPerSecond: 0,
          freezeCount: 0,
          totalFreezesDuration: 0,
          totalAudioEnergy: 0,
        };
        (await r.consumer.getStats()).forEach((s: Record<string, unknown>) => {
          if (s.type === "inbound-rtp") {
            out.packetsReceived += num(s.packetsReceived);
            out.packetsLost += num(s.packetsLost);
            out.bytesReceived += num(s.bytesReceived);
            out.framesDecoded += num(s.framesDecoded);
            out.totalSamplesReceived += num(s.totalSamplesReceived);
            out.concealedSamples += num(s.concealedSamples);
            out.frameHeight = Math.max(out.frameHeight, num(s.frameHeight));
            out.framesPerSecond += num(s.framesPerSecond);
            out.freezeCount += num(s.freezeCount);
            out.totalFreezesDuration += num(s.totalFreezesDuration);
            out.totalAudioEnergy += num(s.totalAudioEnergy);
          }
        });
        return out;
      }),
    );
  }

  /** The ICE route of each transport (see `Connection.iceRoute`). */
  async iceRoutes(): Promise<{ send: IceRoute | null; recv: IceRoute | null } | null> {
    const conn = this.conn;
    if (!conn) {
      return null;
    }
    const [send, recv] = await Promise.all([conn.iceRoute(conn.sendTransport), conn.iceRoute(conn.recvTransport)]);
    return { send, recv };
  }

  async producerStats(): Promise<ProducerStats[]> {
    return Promise.all(
      [...this.producers.entries()].map(async ([kind, producer]) => {
        const caps = (producer.rtpSender?.getParameters().encodings ?? []).map((e) => e.maxBitrate);
        const maxBitrate = caps.some((c) => c !== undefined) ? caps.reduce((a: number, c) => a + (c ?? 0), 0) : null;
        const out: ProducerStats = { kind, packetsSent: 0, bytesSent: 0, framesEncoded: 0, maxBitrate, layers: [] };
        (await producer.getStats()).forEach((s: Record<string, unknown>) => {
          if (s.type === "outbound-rtp") {
            out.packetsSent += num(s.packetsSent);
            out.bytesSent += num(s.bytesSent);
            out.framesEncoded += num(s.framesEncoded);
            if (kind === "video") {
              const rid = typeof s.rid === "string" ? s.rid : null;
              out.layers.push({ rid, bytesSent: num(s.bytesSent), frameHeight: num(s.frameHeight) });
            }
          }
        });
        return out;
      }),
    );
  }

  /**
   * Good below 150 ms round trip and 2 % loss (the worker's verification limit), poor above
   * 400 ms or 8 % (speech breaks up), fair between.
   */
  async quality(): Promise<Quality> {
    const conn = this.conn;
    if (!conn || this.ended) {
      return "none";
    }
    const states = [conn.sendTransport.connectionState, conn.recvTransport.connectionState];
    if (!states.includes("connected")) {
      return "none";
    }
    const rtts = await Promise.all([conn.rttMs(conn.sendTransport), conn.rttMs(conn.recvTransport)]);
    const rtt = Math.max(0, ...rtts.filter((r): r is number => r !== null));
    const stats = await this.consumerStats();
    const lost = stats.reduce((a, s) => a + s.packetsLost, 0);
    const received = stats.reduce((a, s) => a + s.packetsReceived, 0);
    const dLost = Math.max(0, lost - this.previousLoss.lost);
    const dReceived = Math.max(0, received - this.previousLoss.received);
    this.previousLoss = { lost, received };
    const loss = dLost + dReceived > 0 ? (100 * dLost) / (dLost + dReceived) : 0;
    if (rtt > 400 || loss > 8) {
      return "poor";
    }
    if (rtt > 150 || loss > 2) {
      return "fair";
    }
    return "good";
  }
}

function num(value: unknown): number {
  return typeof value === "number" ? value : 0;
}

export { MediaPathError };
