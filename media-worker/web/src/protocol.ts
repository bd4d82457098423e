// The signaling protocol of /v1/ws, mirrored from media-worker/src/signaling/protocol.rs (the
// reference). The lists below are compared with the Rust enums by a unit test in
// media-worker/src/console.rs, so a renamed action or error code fails `cargo test` instead of
// a browser in a reception office.

import type { types } from "mediasoup-client";

export const CLIENT_ACTIONS = [
  "join",
  "createWebRtcTransport",
  "connectWebRtcTransport",
  "createPlainTransport",
  "connectPlainTransport",
  "produce",
  "closeProducer",
  "consume",
  "resumeConsumer",
  "leave",
] as const;

export const ERROR_CODES = [
  "malformed_message",
  "unknown_action",
  "frame_too_large",
  "invalid_token",
  "token_expired",
  "token_not_yet_valid",
  "token_revoked",
  "wrong_session",
  "session_not_allocated",
  "draining",
  "not_joined",
  "already_joined",
  "transport_not_found",
  "wrong_transport_direction",
  "producer_not_found",
  "consumer_not_found",
  "cannot_consume",
  "replaced",
  "session_closed",
  "limit_exceeded",
  "media_rejected",
  "internal",
  "plain_transport_forbidden",
  "remote_address_forbidden",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];
// "probe" tokens exist too, but a probe is never shown to points (nor points to it), so the
// console never meets that role on the wire.
export type Role = "host" | "participant";
export type Direction = "send" | "recv";
export type MediaKind = types.MediaKind;

/**
 * A worker ICE candidate. mediasoup 3.8 names the address `ip`; mediasoup-client reads
 * `address ?? ip`, so the worker's form is passed through as it is.
 */
export type IceCandidate = Omit<types.IceCandidate, "address"> & { address?: string };

export interface PeerInfo {
  point: string;
  displayName: string;
  role: Role;
}

export interface ProducerInfo {
  producerId: string;
  point: string;
  kind: MediaKind;
}

/** What the console sends (the plain-transport messages are for the probe and RTP tools). */
export type ClientMessage =
  | { action: "join"; token: string }
  | { action: "createWebRtcTransport"; direction: Direction }
  | { action: "connectWebRtcTransport"; transportId: string; dtlsParameters: types.DtlsParameters }
  | { action: "produce"; transportId: string; kind: MediaKind; rtpParameters: types.RtpParameters }
  | { action: "closeProducer"; producerId: string }
  | { action: "consume"; transportId: string; producerId: string; rtpCapabilities: types.RtpCapabilities }
  | { action: "resumeConsumer"; consumerId: string }
  | { action: "leave" };

export type ClientAction = ClientMessage["action"];

export type ServerMessage =
  | {
      action: "joined";
      point: string;
      session: string;
      title: string;
      routerRtpCapabilities: types.RtpCapabilities;
      peers: PeerInfo[];
      producers: ProducerInfo[];
    }
  | {
      action: "webRtcTransportCreated";
      transportId: string;
      direction: Direction;
      iceParameters: types.IceParameters;
      iceCandidates: IceCandidate[];
      dtlsParameters: types.DtlsParameters;
    }
  | { action: "transportConnected"; transportId: string }
  | { action: "produced"; producerId: string }
  | {
      action: "consumed";
      consumerId: string;
      producerId: string;
      point: string;
      kind: MediaKind;
      rtpParameters: types.RtpParameters;
      paused: boolean;
    }
  | { action: "consumerResumed"; consumerId: string }
  | { action: "newProducer"; producerId: string; point: string; kind: MediaKind }
  | { action: "producerClosed"; producerId: string; point: string }
  | { action: "consumerClosed"; consumerId: string; producerId: string }
  | { action: "peerJoined"; point: string; displayName: string; role: Role }
  | { action: "peerLeft"; point: string }
  | { action: "left" }
  | { action: "error"; code: ErrorCode; message: string };

/** The reply each request expects; anything else (but an error) is a protocol violation. */
export interface Replies {
  join: Extract<ServerMessage, { action: "joined" }>;
  createWebRtcTransport: Extract<ServerMessage, { action: "webRtcTransportCreated" }>;
  connectWebRtcTransport: Extract<ServerMessage, { action: "transportConnected" }>;
  produce: Extract<ServerMessage, { action: "produced" }>;
  closeProducer: Extract<ServerMessage, { action: "producerClosed" }>;
  consume: Extract<ServerMessage, { action: "consumed" }>;
  resumeConsumer: Extract<ServerMessage, { action: "consumerResumed" }>;
  leave: Extract<ServerMessage, { action: "left" }>;
}

export const REPLY_ACTION: { [A in ClientAction]: Replies[A]["action"] } = {
  join: "joined",
  createWebRtcTransport: "webRtcTransportCreated",
  connectWebRtcTransport: "transportConnected",
  produce: "produced",
  closeProducer: "producerClosed",
  consume: "consumed",
  resumeConsumer: "consumerResumed",
  leave: "left",
};

export type Push = Extract<
  ServerMessage,
  { action: "newProducer" | "producerClosed" | "consumerClosed" | "peerJoined" | "peerLeft" | "error" }
>;

/** `POST /v1/join-check`: the worker's opinion of a token, without joining. */
export interface JoinCheck {
  valid: boolean;
  /** Set when `valid` is false: the same code a `join` would get. */
  code?: ErrorCode;
  message?: string;
  /** The worker's clock (Unix seconds): reception-office PCs' clocks are often off. */
  serverTime: number;
}
