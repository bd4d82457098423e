// The connection checklist ("Kiểm tra kết nối"), measured in this office's browser and reported
// to the worker (`reportChecks`), which verifies a point only once every item passed (see
// media-worker/src/checks.rs). Each item passes on evidence a person would trust:
//
//   signaling   the WebSocket is wss: (the page came over HTTPS), or stays on this machine
//               (a loopback origin: development and tests)
//   icePath     the transport's selected ICE candidate pair: udp, tcp, turn-udp, turn-tcp, turn-tls
//   microphone  the local track's RMS level above a threshold for a while (not muted, not dead)
//   camera      the local preview's mean luma above black
//   hostVideo   framesDecoded of the host's video rising (the host: any other point's)
//   hostAudio   totalAudioEnergy of the host's audio rising (the host: any other point's)
//
// An item that has shown no evidence after DECIDE_AFTER_MS is failed (the officer sees why); it
// can still pass later. A passed item stays passed: it was proved.

import type { types } from "mediasoup-client";
import type { LocalMedia } from "./media";
import type { CheckItem, CheckState, ConsoleCheck, IcePath } from "./protocol";

export type ConsoleItem = Extract<CheckItem, "signaling" | "icePath" | "microphone" | "camera" | "hostVideo" | "hostAudio">;

export const CONSOLE_ITEMS: readonly ConsoleItem[] = [
  "signaling",
  "icePath",
  "microphone",
  "camera",
  "hostVideo",
  "hostAudio",
];

/** Items without a camera: an audio-only point (by its spec) proves no video. */
const VIDEO_ITEMS: readonly ConsoleItem[] = ["camera", "hostVideo"];

/** 127.0.0.0/8, ::1 and localhost: signaling that never leaves the machine. */
const LOOPBACK = /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/;
/** How long an item may show nothing before it is failed. */
export const DECIDE_AFTER_MS = 12_000;
/** How many consecutive samples must hear the host (see `audible`). */
const AUDIBLE_SAMPLES = 2;
/** RMS of about −40 dBFS: speech after noise suppression is well above, a dead input below. */
const MIC_THRESHOLD = 0.01;
/** The level is read this often: a word, or a test beep of 20 ms, is caught. */
const MIC_SAMPLE_MS = 50;
/** The microphone must be above the threshold in this many readings, not one click. */
const MIC_HITS = 5;
/** Mean luma (0..255) of the preview: a covered or black camera is near 0, a dim room ~40. */
const LUMA_THRESHOLD = 12;
/** The preview is scaled down to this width to measure it: enough for a mean, cheap to read. */
const LUMA_WIDTH = 32;

/**
 * The remote tracks that prove this office receives: the host's (or, for the host, every other
 * point's: one working office is enough to show the host receives).
 */
export interface Remote {
  video: types.Consumer[];
  audio: types.Consumer[];
}

interface Result {
  state: CheckState;
  path?: IcePath;
}

export class Checklist {
  private readonly results = new Map<ConsoleItem, Result>();
  private started = performance.now();
  private micHits = 0;
  private hostFrames: number | null = null;
  /** The remote audio's summed `totalAudioEnergy` and `totalSamplesDuration` at the last sample. */
  private hostAudio: AudioTotals | null = null;
  /** Consecutive samples in which the host was audible. */
  private hostAudioHeard = 0;
  private readonly canvas = document.createElement("canvas");
  /** A detached player of the camera track: the lobby's preview is hidden in the room. */
  private readonly preview = document.createElement("video");

  constructor(
    private readonly local: LocalMedia,
    readonly audioOnly: boolean,
  ) {
    this.preview.muted = true;
    this.preview.playsInline = true;
    // Invisible but rendered: a detached or hidden video may not decode frames to draw.
    this.preview.style.cssText = "position:fixed;left:0;top:0;width:2px;height:2px;opacity:0;pointer-events:none";
    window.setInterval(() => {
      if (this.local.level() >= MIC_THRESHOLD) {
        this.micHits += 1;
      }
    }, MIC_SAMPLE_MS);
  }

  /** The items this point must pass, in order. */
  items(): ConsoleItem[] {
    return CONSOLE_ITEMS.filter((i) => !(this.audioOnly && VIDEO_ITEMS.includes(i)));
  }

  state(item: ConsoleItem): Result {
    return this.results.get(item) ?? { state: "pending" };
  }

  /** Every item this point must pass, passed. */
  passed(items: ConsoleItem[] = this.items()): boolean {
    return items.every((i) => this.state(i).state === "passed");
  }

  /** Starts the failure clock again (a new connection). */
  restart(): void {
    this.started = performance.now();
    this.hostFrames = null;
    this.hostAudio = null;
    this.hostAudioHeard = 0;
  }

  /**
   * Measures once (call every few hundred ms). `transport` gives the ICE path; `remote` the
   * host's media, or null where there is none to measure (the self-test). Returns whether any
   * item's result changed.
   */
  async sample(transport: types.Transport | null, remote: Remote | null): Promise<boolean> {
    const before = JSON.stringify(this.report());

    this.decide("signaling", location.protocol === "https:" || LOOPBACK.test(location.hostname));
    if (transport) {
      const path = await icePath(transport);
      if (path) {
        this.results.set("icePath", { state: "passed", path });
      } else {
        this.decide("icePath", false);
      }
    }
    this.decide("microphone", this.micHits >= MIC_HITS);
    if (!this.audioOnly) {
      this.decide("camera", this.luma() >= LUMA_THRESHOLD);
    }
    if (remote) {
      if (!this.audioOnly) {
        const frames = await inbound(remote.video, "framesDecoded");
        this.decide("hostVideo", rising(this.hostFrames, frames));
        this.hostFrames = frames ?? this.hostFrames;
      }
      const now = await audioTotals(remote.audio);
      // Heard in consecutive samples, as the SFU's own voice evidence wants two reports: one
      // interval alone passed a silent host now and then on a loaded machine (CI run 9).
      this.hostAudioHeard = audible(this.hostAudio, now) ? this.hostAudioHeard + 1 : 0;
      this.decide("hostAudio", this.hostAudioHeard >= AUDIBLE_SAMPLES);
      this.hostAudio = now ?? this.hostAudio;
    }
    return JSON.stringify(this.report()) !== before;
  }

  /** What the worker gets: every measured item. */
  report(): ConsoleCheck[] {
    return this.items()
      .filter((item) => this.results.has(item))
      .map((item) => {
        const r = this.state(item);
        return r.path ? { item, state: r.state, path: r.path } : { item, state: r.state };
      });
  }

  private decide(item: ConsoleItem, evidence: boolean): void {
    const current = this.state(item).state;
    if (evidence) {
      this.results.set(item, { ...this.state(item), state: "passed" });
    } else if (current !== "passed") {
      const late = performance.now() - this.started >= DECIDE_AFTER_MS;
      this.results.set(item, { state: late ? "failed" : "pending" });
    }
  }

  /** Items not passed by now are failed: the self-test's verdict at its end. */
  finish(): void {
    for (const item of this.items()) {
      const r = this.state(item);
      if (this.results.has(item) && r.state !== "passed") {
        this.results.set(item, { state: "failed" });
      }
    }
  }

  /** Mean luma (BT.601) of the camera, 0 while it shows nothing. */
  private luma(): number {
    const video = this.preview;
    const track = this.local.videoTrack;
    if (!track || track.readyState !== "live" || !track.enabled) {
      return 0;
    }
    const playing = video.srcObject instanceof MediaStream ? video.srcObject.getVideoTracks()[0] : undefined;
    if (playing !== track) {
      if (!video.isConnected) {
        document.body.append(video);
      }
      video.srcObject = new MediaStream([track]);
      void video.play().catch(() => undefined);
    }
    if (video.videoWidth === 0) {
      return 0;
    }
    const width = LUMA_WIDTH;
    const height = Math.max(1, Math.round((video.videoHeight / video.videoWidth) * width));
    this.canvas.width = width;
    this.canvas.height = height;
    const context = this.canvas.getContext("2d", { willReadFrequently: true });
    if (!context) {
      return 0;
    }
    context.drawImage(video, 0, 0, width, height);
    const pixels = context.getImageData(0, 0, width, height).data;
    let sum = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      sum += 0.299 * (pixels[i] ?? 0) + 0.587 * (pixels[i + 1] ?? 0) + 0.114 * (pixels[i + 2] ?? 0);
    }
    return sum / (pixels.length / 4);
  }
}

function rising(previous: number | null, now: number | null): boolean {
  return previous !== null && now !== null && now > previous;
}

interface AudioTotals {
  energy: number;
  duration: number;
}

/**
 * Whether the remote audio between two samples was louder than a dead input: its mean square
 * level (energy over duration, as `totalAudioEnergy` sums level² × seconds) at or above the
 * microphone's threshold squared. Energy merely rising is not enough: decoded silence and
 * comfort noise add a little to it, which passed a silent host.
 */
function audible(previous: AudioTotals | null, now: AudioTotals | null): boolean {
  if (previous === null || now === null || now.duration <= previous.duration) {
    return false;
  }
  return (now.energy - previous.energy) / (now.duration - previous.duration) >= MIC_THRESHOLD ** 2;
}

/** The audio consumers' energy and duration, each pair read from one statistics report. */
async function audioTotals(consumers: types.Consumer[]): Promise<AudioTotals | null> {
  let totals: AudioTotals | null = null;
  for (const consumer of consumers) {
    (await consumer.getStats()).forEach((s: Record<string, unknown>) => {
      if (s.type === "inbound-rtp" && typeof s.totalAudioEnergy === "number" && typeof s.totalSamplesDuration === "number") {
        totals = {
          energy: (totals?.energy ?? 0) + s.totalAudioEnergy,
          duration: (totals?.duration ?? 0) + s.totalSamplesDuration,
        };
      }
    });
  }
  return totals;
}

/** `field` of the consumers' inbound-rtp statistics, summed; null without any consumer. */
async function inbound(
  consumers: types.Consumer[],
  field: "framesDecoded" | "totalAudioEnergy" | "totalSamplesDuration",
): Promise<number | null> {
  let value: number | null = null;
  for (const consumer of consumers) {
    (await consumer.getStats()).forEach((s: Record<string, unknown>) => {
      if (s.type === "inbound-rtp" && typeof s[field] === "number") {
        value = (value ?? 0) + (s[field] as number);
      }
    });
  }
  return value;
}

/** The path of the transport's selected candidate pair, from its local candidate. */
async function icePath(transport: types.Transport): Promise<IcePath | null> {
  const report = await transport.getStats();
  const byId = new Map<string, Record<string, unknown>>();
  let selected: string | undefined;
  report.forEach((s: Record<string, unknown>) => {
    byId.set(String(s.id), s);
    if (s.type === "transport" && typeof s.selectedCandidatePairId === "string") {
      selected = s.selectedCandidatePairId;
    }
  });
  if (!selected) {
    // Firefox has no transport entry: the nominated, succeeded pair.
    report.forEach((s: Record<string, unknown>) => {
      if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        selected = String(s.id);
      }
    });
  }
  const pair = selected ? byId.get(selected) : undefined;
  const local = pair ? byId.get(String(pair.localCandidateId)) : undefined;
  if (!local) {
    return null;
  }
  if (local.candidateType === "relay") {
    const relay = String(local.relayProtocol ?? "udp");
    return relay === "tls" ? "turn-tls" : relay === "tcp" ? "turn-tcp" : "turn-udp";
  }
  return local.protocol === "tcp" ? "tcp" : "udp";
}
