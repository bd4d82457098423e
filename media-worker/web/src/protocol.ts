// The signaling protocol of /v1/ws as the console uses it. The wire types themselves are
// generated from media-worker/src into ./generated/wire.ts (see the header there for the command;
// `cargo test -p media-worker` fails while it is stale), so a renamed field, action or error code
// fails `tsc`. This file adds only the console's own view: which requests it sends and which reply
// each one expects.

import type { types } from "mediasoup-client";
import type { ClientMessage, ServerMessage } from "./generated/wire";

export type {
  CheckItem,
  CheckState,
  ConsoleCheck,
  Direction,
  ErrorCode,
  IceCandidate,
  IcePath,
  JoinCheck,
  MediaSource,
  PeerInfo,
  ProducerInfo,
  Role,
  ServerMessage,
  TileView,
  VideoCaps,
} from "./generated/wire";

export type MediaKind = types.MediaKind;

/**
 * What the console sends: every client message but the plain-transport ones, which are for the
 * probe and RTP tools. A new action in protocol.rs lands here, and `REPLY_ACTION` below then fails
 * to typecheck until it names the reply.
 */
export type ConsoleRequest = Exclude<ClientMessage, { action: "createPlainTransport" | "connectPlainTransport" }>;

export type ClientAction = ConsoleRequest["action"];

/** The server message with `action` A; naming an action the worker does not send fails `tsc`. */
type Message<A extends ServerMessage["action"]> = Extract<ServerMessage, { action: A }>;

/** The reply each request expects; anything else (but an error) is a protocol violation. */
export interface Replies {
  join: Message<"joined">;
  createWebRtcTransport: Message<"webRtcTransportCreated">;
  connectWebRtcTransport: Message<"transportConnected">;
  produce: Message<"produced">;
  closeProducer: Message<"producerClosed">;
  consume: Message<"consumed">;
  resumeConsumer: Message<"consumerResumed">;
  reportChecks: Message<"checksRecorded">;
  setViewport: Message<"viewportApplied">;
  reportQuality: Message<"qualityRecorded">;
  resumeProducer: Message<"producerResumed">;
  mutePoint: Message<"pointMuted">;
  askToUnmute: Message<"unmuteAsked">;
  giveFloor: Message<"floorGiven">;
  restartIce: Message<"iceRestarted">;
  stopShare: Message<"shareStopped">;
  leave: Message<"left">;
}

export const REPLY_ACTION: { [A in ClientAction]: Replies[A]["action"] } = {
  join: "joined",
  createWebRtcTransport: "webRtcTransportCreated",
  connectWebRtcTransport: "transportConnected",
  produce: "produced",
  closeProducer: "producerClosed",
  consume: "consumed",
  resumeConsumer: "consumerResumed",
  reportChecks: "checksRecorded",
  setViewport: "viewportApplied",
  reportQuality: "qualityRecorded",
  resumeProducer: "producerResumed",
  mutePoint: "pointMuted",
  askToUnmute: "unmuteAsked",
  giveFloor: "floorGiven",
  restartIce: "iceRestarted",
  stopShare: "shareStopped",
  leave: "left",
};

export type Push = Message<
  | "newProducer"
  | "producerClosed"
  | "consumerClosed"
  | "peerJoined"
  | "peerLeft"
  | "pointMuted"
  | "pointUnmuted"
  | "unmuteAsked"
  | "activeSpeaker"
  | "floorGiven"
  | "shareStopped"
  | "error"
>;
