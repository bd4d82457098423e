// One joined signaling connection with its mediasoup-client Device and two WebRTC transports
// (send and receive). The room and the self-test are both built on it.

import { Device, type types } from "mediasoup-client";
import type { ServerMessage, VideoCaps } from "./protocol";
import { DEFAULT_CAPTURE_HEIGHT } from "./media";
import { Signaling, type SignalingHandlers } from "./signaling";

/**
 * ICE and DTLS over a working path take well under a second; past this the path is blocked
 * (a firewall dropping UDP and TCP to the worker's RTC ports is the usual cause).
 */
export const MEDIA_PATH_TIMEOUT_MS = 12_000;

/** ICE/DTLS failed or did not finish in time: the media path to `address` is blocked. */
export class MediaPathError extends Error {
  constructor(readonly address: string) {
    super(`no media path to ${address}`);
  }
}

export type Joined = Extract<ServerMessage, { action: "joined" }>;

/** How a transport's media flows: the local side of its selected ICE candidate pair. */
export interface IceRoute {
  /** host, srflx, prflx or relay (through the TURN server). */
  candidateType: string;
  /** udp or tcp, to the worker or, for a relay, from the TURN server to the worker. */
  protocol: string;
  /** For a relay: how the browser reaches the TURN server (udp, tcp or tls); else null. */
  relayProtocol: string | null;
}

/** The session's video cap when its token names none: the operator's default `maxBitrateKbps`. */
export const DEFAULT_VIDEO_BUDGET_KBPS = 1500;
/** The top layer's height when the token names no `maxHeight`: what the camera is opened at then. */
export const DEFAULT_MAX_HEIGHT = DEFAULT_CAPTURE_HEIGHT;
/** What Opus (mono, with FEC) and RTCP take of a point's uplink, before video gets the rest (the worker's `AUDIO_RESERVE_KBPS`). */
const AUDIO_RESERVE_KBPS = 64;
/** Below this, video is not worth sending (the worker's `VIDEO_MIN_KBPS`). */
const VIDEO_MIN_KBPS = 100;
/** Below these budgets a third (a second) layer would be too thin to be worth its overhead. */
const THREE_LAYERS_FROM_KBPS = 300;
const TWO_LAYERS_FROM_KBPS = 150;
/**
 * The share of the budget the encoders aim at: VP8's rate control overshoots its target by up to
 * a tenth over a few seconds (key frames, motion), and the budget is a cap, not a target.
 */
const ENCODER_HEADROOM = 0.9;
/** Each layer's share of what the encoders aim at, lowest first: roughly what its pixels need. */
const SHARES: readonly (readonly number[])[] = [[1], [0.3, 0.7], [0.1, 0.25, 0.65]];

/**
 * What a camera may send, all layers together, in kbit/s: the session's cap (`video.maxBitrateKbps`)
 * and what the point's uplink (`uplinkKbps`) leaves after audio, whichever is lower. The worker
 * refuses a producer asking for more (`VideoCaps::video_budget_kbps`), and caps the send transport.
 */
export function videoBudgetKbps(caps: VideoCaps | undefined, uplinkKbps: number | undefined): number {
  const session = caps?.maxBitrateKbps ? caps.maxBitrateKbps : undefined;
  const uplink = uplinkKbps ? Math.max(VIDEO_MIN_KBPS, uplinkKbps - AUDIO_RESERVE_KBPS) : undefined;
  if (session !== undefined && uplink !== undefined) {
    return Math.min(session, uplink);
  }
  return session ?? uplink ?? DEFAULT_VIDEO_BUDGET_KBPS;
}

/**
 * The simulcast layers of a camera whose track is `trackHeight` pixels tall: up to three (a
 * quarter, half and the full height), the top one no taller than `maxHeight`, with maxBitrates
 * that add up to nine tenths of the budget. The worker picks, per receiver, the layer its tile needs.
 */
export function simulcastEncodings(
  caps: VideoCaps | undefined,
  uplinkKbps: number | undefined,
  trackHeight: number,
): types.RtpEncodingParameters[] {
  const budget = videoBudgetKbps(caps, uplinkKbps);
  const count = budget >= THREE_LAYERS_FROM_KBPS ? 3 : budget >= TWO_LAYERS_FROM_KBPS ? 2 : 1;
  const maxHeight = caps?.maxHeight ? caps.maxHeight : DEFAULT_MAX_HEIGHT;
  // The top layer is scaled down when the camera gives more than the session allows.
  const topScale = trackHeight > maxHeight ? trackHeight / maxHeight : 1;
  const target = Math.floor(budget * ENCODER_HEADROOM);
  const shares = SHARES[count - 1] ?? [1];
  const kbps = shares.map((share) => Math.floor(target * share));
  // The top layer gets what rounding left, so the layers add up to the target exactly.
  kbps[kbps.length - 1] = target - kbps.slice(0, -1).reduce((a, b) => a + b, 0);
  return kbps.map((layerKbps, i) => ({
    // Layer i of `count` is 2^(count-1-i) times smaller than the top one.
    scaleResolutionDownBy: topScale * 2 ** (count - 1 - i),
    maxBitrate: layerKbps * 1000,
  }));
}

/**
 * A shared screen or window: one layer (everyone shows it large) at nine tenths of the point's
 * video budget, which the worker checks like a camera's.
 */
export function screenEncodings(caps: VideoCaps | undefined, uplinkKbps: number | undefined): types.RtpEncodingParameters[] {
  return [{ maxBitrate: Math.floor(videoBudgetKbps(caps, uplinkKbps) * ENCODER_HEADROOM) * 1000 }];
}

/**
 * The codec a camera sends with: VP8 (simulcast in every browser), else H264 (Safari on older
 * iPhones and some hardware-only builds), else whatever the worker and the browser share.
 */
export function cameraCodec(device: Device): types.RtpCodecCapability | undefined {
  const codecs = device.rtpCapabilities.codecs ?? [];
  const find = (mime: string) => codecs.find((c) => c.mimeType.toLowerCase() === mime);
  return find("video/vp8") ?? find("video/h264");
}

export class Connection {
  private constructor(
    readonly signaling: Signaling,
    readonly joined: Joined,
    readonly device: Device,
    readonly sendTransport: types.Transport,
    readonly recvTransport: types.Transport,
    /** Where media goes, for messages: the worker's first ICE candidate. */
    readonly mediaAddress: string,
  ) {}

  /** Connects, joins with `token` and prepares both transports. Throws SignalingError on refusal. */
  static async open(token: string, handlers: SignalingHandlers): Promise<Connection> {
    const signaling = await Signaling.connect(handlers);
    try {
      const joined = await signaling.request({ action: "join", token });
      const device = await Device.factory();
      await device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
      const [send, recv] = await Promise.all([
        signaling.request({ action: "createWebRtcTransport", direction: "send" }),
        signaling.request({ action: "createWebRtcTransport", direction: "recv" }),
      ]);
      const options = (created: typeof send) => ({
        id: created.transportId,
        iceParameters: created.iceParameters,
        iceCandidates: created.iceCandidates as types.IceCandidate[],
        dtlsParameters: created.dtlsParameters,
        // The worker's UDP and ICE-TCP candidates come first by priority; the TURN relays (UDP,
        // then TLS on 443) are the way through firewalls that block both. A point whose
        // firewall lets nothing else through gets "relay".
        iceServers: joined.iceServers,
        iceTransportPolicy: joined.iceTransportPolicy,
      });
      const sendTransport = device.createSendTransport(options(send));
      const recvTransport = device.createRecvTransport(options(recv));
      for (const transport of [sendTransport, recvTransport]) {
        transport.on("connect", ({ dtlsParameters }, callback, errback) => {
          signaling
            .request({ action: "connectWebRtcTransport", transportId: transport.id, dtlsParameters })
            .then(() => callback(), errback);
        });
      }
      sendTransport.on("produce", ({ kind, rtpParameters, appData }, callback, errback) => {
        const source = appData.source === "screen" ? ("screen" as const) : undefined;
        signaling
          .request({ action: "produce", transportId: sendTransport.id, kind, rtpParameters, source })
          .then(({ producerId }) => callback({ id: producerId }), errback);
      });
      const candidate = send.iceCandidates[0];
      const address = candidate ? `${candidate.address ?? candidate.ip}:${candidate.port}` : "?";
      return new Connection(signaling, joined, device, sendTransport, recvTransport, address);
    } catch (error) {
      signaling.close();
      throw error;
    }
  }

  /** Sends a local track. The track stays ours: closing the producer does not stop it. */
  produce(track: MediaStreamTrack): Promise<types.Producer> {
    if (track.kind === "video") {
      const height = track.getSettings().height ?? DEFAULT_MAX_HEIGHT;
      return this.sendTransport.produce({
        track,
        stopTracks: false,
        encodings: simulcastEncodings(this.joined.video, this.joined.uplinkKbps, height),
        codec: cameraCodec(this.device),
        codecOptions: { videoGoogleStartBitrate: 500 },
      });
    }
    return this.sendTransport.produce({ track, stopTracks: false, codecOptions: { opusStereo: false, opusFec: true } });
  }

  /** New ICE credentials for `transport` from the worker, applied: media resumes in place. */
  async restartIce(transport: types.Transport): Promise<void> {
    const restarted = await this.signaling.request({ action: "restartIce", transportId: transport.id });
    await transport.restartIce({ iceParameters: restarted.iceParameters });
  }

  /** Shares a screen or window: a separate video producer the others show large. */
  produceScreen(track: MediaStreamTrack): Promise<types.Producer> {
    return this.sendTransport.produce({
      track,
      stopTracks: false,
      // Documents: sharp text over smooth motion, within the point's uplink.
      encodings: screenEncodings(this.joined.video, this.joined.uplinkKbps),
      appData: { source: "screen" },
    });
  }

  /** Receives a producer; the worker starts consumers paused, so this resumes it once ready. */
  async consume(producerId: string): Promise<{ consumer: types.Consumer; point: string }> {
    const consumed = await this.signaling.request({
      action: "consume",
      transportId: this.recvTransport.id,
      producerId,
      rtpCapabilities: this.device.recvRtpCapabilities,
    });
    const consumer = await this.recvTransport.consume({
      id: consumed.consumerId,
      producerId: consumed.producerId,
      kind: consumed.kind,
      rtpParameters: consumed.rtpParameters,
    });
    await this.signaling.request({ action: "resumeConsumer", consumerId: consumed.consumerId });
    return { consumer, point: consumed.point };
  }

  /** Resolves once `transport` is connected; rejects with MediaPathError on failure or timeout. */
  waitConnected(transport: types.Transport, timeoutMs = MEDIA_PATH_TIMEOUT_MS): Promise<void> {
    if (transport.connectionState === "connected") {
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const done = (error?: Error) => {
        window.clearTimeout(timer);
        transport.off("connectionstatechange", onState);
        if (error) {
          reject(error);
        } else {
          resolve();
        }
      };
      const onState = (state: types.ConnectionState) => {
        if (state === "connected") {
          done();
        } else if (state === "failed" || state === "closed") {
          done(new MediaPathError(this.mediaAddress));
        }
      };
      const timer = window.setTimeout(() => done(new MediaPathError(this.mediaAddress)), timeoutMs);
      transport.on("connectionstatechange", onState);
    });
  }

  /** Round-trip time of the selected ICE candidate pair of `transport`, in milliseconds. */
  async rttMs(transport: types.Transport): Promise<number | null> {
    const report = await transport.getStats();
    let rtt: number | null = null;
    report.forEach((stat: { type?: string; state?: string; nominated?: boolean; currentRoundTripTime?: number }) => {
      if (stat.type === "candidate-pair" && stat.nominated && stat.currentRoundTripTime !== undefined) {
        rtt = stat.currentRoundTripTime * 1000;
      }
    });
    return rtt;
  }

  /** The route `transport`'s media takes now, or null before ICE has selected a pair. */
  async iceRoute(transport: types.Transport): Promise<IceRoute | null> {
    const report: ReadonlyMap<string, Record<string, unknown>> = await transport.getStats();
    let pairId: unknown;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pairId = s.selectedCandidatePairId;
      }
    });
    const pair = typeof pairId === "string" ? report.get(pairId) : undefined;
    const local = pair && typeof pair.localCandidateId === "string" ? report.get(pair.localCandidateId) : undefined;
    if (!local) {
      return null;
    }
    return {
      candidateType: String(local.candidateType),
      protocol: String(local.protocol),
      relayProtocol: typeof local.relayProtocol === "string" ? local.relayProtocol : null,
    };
  }

  /** Leaves the session and releases everything. */
  close(): void {
    this.sendTransport.close();
    this.recvTransport.close();
    this.signaling.close();
  }
}

