// One joined signaling connection with its mediasoup-client Device and two WebRTC transports
// (send and receive). The room and the self-test are both built on it.

import { Device, type types } from "mediasoup-client";
import type { ServerMessage } from "./protocol";
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

/** One video layer at a bitrate a shared commune line can carry for every receiving point. */
export const VIDEO_MAX_BITRATE = 800_000;
/** What Opus (mono, with FEC) and RTCP take of a point's uplink, before video gets the rest. */
const AUDIO_RESERVE_BPS = 64_000;
/** Below this, video is not worth sending; the worker's cap still holds whatever the encoder tries. */
const VIDEO_MIN_BITRATE = 100_000;

/**
 * The video layer's cap under the point's uplink cap (`uplinkKbps`, which the worker also
 * enforces on the send transport): the uplink less the audio, never above the default.
 */
export function videoMaxBitrate(uplinkKbps: number | undefined): number {
  if (!uplinkKbps) {
    return VIDEO_MAX_BITRATE;
  }
  return Math.min(VIDEO_MAX_BITRATE, Math.max(VIDEO_MIN_BITRATE, uplinkKbps * 1000 - AUDIO_RESERVE_BPS));
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
      return this.sendTransport.produce({
        track,
        stopTracks: false,
        encodings: [{ maxBitrate: videoMaxBitrate(this.joined.uplinkKbps) }],
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
      encodings: [{ maxBitrate: videoMaxBitrate(this.joined.uplinkKbps) }],
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

