// "Chạy thử thiết bị": before joining, check the camera, the microphone level and the media path
// through the worker by sending our own audio and video and consuming them back (the worker lets
// a point consume its own producers; that does not count towards its verification).

import type { Checklist } from "./checks";
import { Connection, MediaPathError } from "./connection";
import type { LocalMedia } from "./media";
import type { ErrorCode } from "./protocol";
import { SignalingError } from "./signaling";

/** Long enough to catch a beep or a few spoken words, short enough not to bore anyone. */
const MIN_DURATION_MS = 4_000;
/** How long looped-back media may take to arrive once the path is up. */
const RETURN_TIMEOUT_MS = 10_000;
/** RMS of about −40 dBFS: speech after noise suppression is well above, a dead input below. */
const MIC_THRESHOLD = 0.01;

export type CameraResult = { ok: true; width: number; height: number } | { ok: false };
export interface MicrophoneResult {
  ok: boolean;
  peak: number;
}
export type NetworkFailure =
  | { kind: "noMedia" }
  | { kind: "refused"; code: ErrorCode | "closed" | "timeout" | "unreachable" }
  | { kind: "unreachable" }
  | { kind: "blocked"; address: string }
  | { kind: "noReturn" };
export type NetworkResult = { ok: true; rttMs: number | null } | { ok: false; failure: NetworkFailure };

export interface SelfTestResult {
  camera: CameraResult;
  microphone: MicrophoneResult;
  network: NetworkResult;
}

export function passed(result: SelfTestResult): boolean {
  return result.camera.ok && result.microphone.ok && result.network.ok;
}

/**
 * Runs the self-test, measuring the checklist's local items (signaling, ICE path, microphone,
 * camera) on the way and reporting them to the worker; the host's media is measured once in the
 * session. The camera passes only with non-black frames.
 */
export async function runSelfTest(
  token: string,
  local: LocalMedia,
  preview: HTMLVideoElement,
  loopback: HTMLVideoElement,
  checklist: Checklist,
): Promise<SelfTestResult> {
  const started = performance.now();
  let peak = 0;
  const sampler = window.setInterval(() => {
    peak = Math.max(peak, local.level());
  }, 50);
  checklist.restart();
  // The local items, whether or not the network works.
  const sampling = (async () => {
    while (performance.now() - started < MIN_DURATION_MS) {
      await checklist.sample(null, null);
      await delay(250);
    }
  })();
  try {
    const [camera, network] = await Promise.all([
      checkCamera(local, preview),
      checkNetwork(token, local, loopback, checklist, started),
      sampling,
    ]);
    const lit = checklist.audioOnly || checklist.state("camera").state === "passed";
    return { camera: camera.ok && lit ? camera : { ok: false }, microphone: { ok: peak >= MIC_THRESHOLD, peak }, network };
  } finally {
    window.clearInterval(sampler);
  }
}

async function checkCamera(local: LocalMedia, preview: HTMLVideoElement): Promise<CameraResult> {
  const track = local.videoTrack;
  if (!track || track.readyState !== "live") {
    return { ok: false };
  }
  const deadline = performance.now() + 3_000;
  while (performance.now() < deadline) {
    if (preview.videoWidth > 0 && !track.muted) {
      return { ok: true, width: preview.videoWidth, height: preview.videoHeight };
    }
    await delay(100);
  }
  return { ok: false };
}

/** Samples the checklist for the rest of the minimum duration, then reports it over `conn`. */
async function measureChecklist(conn: Connection, checklist: Checklist, started: number): Promise<void> {
  do {
    await checklist.sample(conn.sendTransport, null);
    await delay(250);
  } while (performance.now() - started < MIN_DURATION_MS);
  await checklist.sample(conn.sendTransport, null);
  checklist.finish();
  await conn.signaling.request({ action: "reportChecks", checks: checklist.report() });
}

async function checkNetwork(
  token: string,
  local: LocalMedia,
  loopback: HTMLVideoElement,
  checklist: Checklist,
  started: number,
): Promise<NetworkResult> {
  const tracks = [local.audioTrack, local.videoTrack].filter((t): t is MediaStreamTrack => t !== null);
  if (tracks.length === 0) {
    return { ok: false, failure: { kind: "noMedia" } };
  }
  let conn: Connection;
  try {
    conn = await Connection.open(token, { onPush: () => undefined, onClose: () => undefined });
  } catch (error) {
    if (error instanceof SignalingError && error.code !== "unreachable") {
      return { ok: false, failure: { kind: "refused", code: error.code } };
    }
    return { ok: false, failure: { kind: "unreachable" } };
  }
  try {
    const producers = [];
    for (const track of tracks) {
      producers.push(await conn.produce(track));
    }
    await conn.waitConnected(conn.sendTransport);
    const consumers = [];
    for (const producer of producers) {
      consumers.push((await conn.consume(producer.id)).consumer);
    }
    const video = consumers.find((c) => c.kind === "video");
    if (video) {
      loopback.srcObject = new MediaStream([video.track]);
      void loopback.play().catch(() => undefined);
    }
    await conn.waitConnected(conn.recvTransport);
    const deadline = performance.now() + RETURN_TIMEOUT_MS;
    while (performance.now() < deadline) {
      const arrived = await Promise.all(consumers.map(async (c) => returned(await c.getStats())));
      if (arrived.every(Boolean)) {
        const rttMs = await conn.rttMs(conn.sendTransport);
        await measureChecklist(conn, checklist, started);
        return { ok: true, rttMs };
      }
      await delay(200);
    }
    return { ok: false, failure: { kind: "noReturn" } };
  } catch (error) {
    if (error instanceof MediaPathError) {
      return { ok: false, failure: { kind: "blocked", address: error.address } };
    }
    if (error instanceof SignalingError) {
      return { ok: false, failure: { kind: "refused", code: error.code } };
    }
    throw error;
  } finally {
    conn.close();
  }
}

/** Video counts once a frame was decoded, audio once packets arrived (samples need playback). */
function returned(report: RTCStatsReport): boolean {
  let ok = false;
  report.forEach((s: Record<string, unknown>) => {
    if (s.type === "inbound-rtp") {
      ok = s.kind === "video" ? Number(s.framesDecoded) > 0 : Number(s.packetsReceived) > 0;
    }
  });
  return ok;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
}
