// The reception-point console: lobby (preview, devices, self-test), then the session, with
// messages for everything an officer can run into and reconnection when the worker restarts.
//
//   load ── join-check ──> lobby ──"Vào phiên"──> joining ──> room
//                            ^                       │          │ connection lost / ICE failed
//                            └── refused (fatal) ────┘          v
//                                                          reconnecting (backoff) ──> room

import { Checklist, type ConsoleItem } from "./checks";
import { formatClock, formatMoment, initLang, lang, setLang, t, text, type Lang } from "./i18n";
import { LocalMedia, type MediaProblem } from "./media";
import type { ErrorCode, JoinCheck } from "./protocol";
import { MediaPathError, Room, type Moderation, type Quality, type RoomEnd } from "./room";
import { passed, runSelfTest, type SelfTestResult } from "./selftest";
import { SignalingError } from "./signaling";
import { Tiles, type Moderator } from "./tiles";
import { claimTime, decodeClaims, rememberToken, tokenFromLocation, tokenFromPasted, type Claims } from "./token";

/** The worker accepts tokens this long before `nbf` (its clock-skew leeway). */
const NBF_LEEWAY_MS = 30_000;
/** Reconnect backoff: 1 s doubling to 20 s, with ±20 % jitter so points do not return in lockstep. */
const BACKOFF_FIRST_MS = 1_000;
const BACKOFF_MAX_MS = 20_000;

type Phase = "lobby" | "joining" | "room" | "reconnecting";
type Slot = "link" | "media" | "connection" | "moderation" | "share";

interface Notice {
  level: "error" | "warn" | "info";
  title: () => string;
  body: () => string;
  action?: { label: () => string; run: () => void };
}

const el = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (!found) {
    throw new Error(`#${id} is missing from the page`);
  }
  return found as T;
};

const state = {
  token: null as string | null,
  claims: null as Claims | null,
  /** Worker clock minus ours; the offices' PCs are often minutes off. */
  serverOffsetMs: 0,
  tokenOk: false,
  phase: "lobby" as Phase,
  room: null as Room | null,
  micMuted: false,
  /** The host muted this office (`asked`: and has since asked it to unmute). */
  mutedByHost: null as { by: string; asked: boolean } | null,
  cameraOff: false,
  quality: "none" as Quality,
  selfTestRunning: false,
  selfTest: null as SelfTestResult | null,
  attempt: 0,
  retryAt: 0,
  retryTimer: 0,
  /** Set when the room is being (re)joined, so a second click cannot join twice. */
  busy: false,
  /** The first camera/microphone request has been answered (either way): joining earlier would
   * join without sending anything. */
  mediaSettled: false,
};

const notices = new Map<Slot, Notice>();
/** Made in `main`, once the link's claims say how tall the session's pictures may be. */
let local: LocalMedia;
let tiles: Tiles;
let checklist: Checklist;
/** The room the checklist was last reported to: a new room gets the whole report again. */
let reportedTo: Room | null = null;

function now(): number {
  return Date.now() + state.serverOffsetMs;
}

function secondsUntilRetry(): number {
  return Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderStatic(): void {
  document.documentElement.lang = lang();
  document.title = state.claims ? `${state.claims.name} — ${t().appName}` : t().appName;
  for (const node of document.querySelectorAll<HTMLElement>("[data-t]")) {
    node.textContent = text(node.dataset.t ?? "");
  }
  el("lang").textContent = t().langToggle;
  const claims = state.claims;
  el("point-name").textContent = claims?.name ?? "";
  el("point-role").textContent = claims ? (claims.role === "host" ? t().roleHost : t().roleParticipant) : "";
  el("session-title").textContent = state.room?.title || claims?.title || "";
  renderControls();
  renderQuality();
  renderSelfTest();
  renderChecks();
  renderNotices();
  tiles.relabel();
  tick();
}

function renderControls(): void {
  const inLobby = state.phase === "lobby";
  el("lobby").hidden = !inLobby;
  el("room").hidden = inLobby;
  const joinable = inLobby && state.tokenOk && state.mediaSettled && !state.selfTestRunning && !state.busy;
  el<HTMLButtonElement>("join").disabled = !joinable;
  el<HTMLButtonElement>("self-test").disabled =
    !joinable || (local.audioTrack === null && local.videoTrack === null);
  el("join").textContent = state.busy ? t().joining : t().join;
  const mic = el<HTMLButtonElement>("mic-toggle");
  const held = state.mutedByHost !== null && !state.mutedByHost.asked;
  mic.textContent = held ? t().micHeldByHost : state.micMuted ? t().unmute : t().mute;
  mic.classList.toggle("off", state.micMuted);
  // Held by the host: the worker would refuse anyway; the button says why instead.
  mic.disabled = held;
  const share = el<HTMLButtonElement>("share-toggle");
  share.textContent = state.room?.sharing ? t().stopShare : t().startShare;
  share.classList.toggle("off", state.room?.sharing === true);
  // getDisplayMedia is missing on phones and old browsers: no button rather than an error.
  share.hidden = typeof navigator.mediaDevices?.getDisplayMedia !== "function";
  const cam = el("cam-toggle");
  cam.textContent = state.cameraOff ? t().cameraOn : t().cameraOff;
  cam.classList.toggle("off", state.cameraOff);
  el("paste").hidden = state.token !== null;
}

function renderQuality(): void {
  // Only meaningful once media flows; in the lobby it would just say "not connected".
  el("quality").hidden = state.phase === "lobby";
  const q = state.phase === "room" ? state.quality : "none";
  const label = { good: t().qualityGood, fair: t().qualityFair, poor: t().qualityPoor, none: t().qualityNone }[q];
  el("quality").dataset.level = q;
  el("quality-label").textContent = label;
  el("quality").title = `${t().qualityLabel}: ${label}`;
}

function renderNotices(): void {
  const container = el("notices");
  for (const slot of ["link", "media", "connection", "moderation", "share"] as const) {
    const notice = notices.get(slot);
    let node = container.querySelector<HTMLElement>(`[data-slot="${slot}"]`);
    if (!notice) {
      node?.remove();
      continue;
    }
    if (!node) {
      node = document.createElement("div");
      node.dataset.slot = slot;
      node.setAttribute("role", notice.level === "error" ? "alert" : "status");
      node.append(document.createElement("strong"), document.createElement("p"), document.createElement("button"));
      container.append(node);
    }
    node.className = `notice ${notice.level}`;
    const [title, body, button] = [...node.children] as [HTMLElement, HTMLElement, HTMLButtonElement];
    title.textContent = notice.title();
    body.textContent = notice.body();
    button.hidden = !notice.action;
    button.type = "button";
    button.textContent = notice.action?.label() ?? "";
    button.onclick = notice.action?.run ?? null;
  }
}

function notify(slot: Slot, notice: Notice | null): void {
  if (notice) {
    notices.set(slot, notice);
  } else {
    notices.delete(slot);
  }
  renderNotices();
}

function renderSelfTest(): void {
  const panel = el("self-test-panel");
  const status = el("self-test-status");
  const list = el("self-test-results");
  panel.hidden = !state.selfTestRunning && !state.selfTest;
  list.replaceChildren();
  status.className = "self-test-status";
  if (state.selfTestRunning) {
    status.textContent = t().selfTestRunning;
    return;
  }
  const result = state.selfTest;
  if (!result) {
    return;
  }
  const s = t();
  const ok = passed(result);
  status.textContent = ok ? s.selfTestPass : s.selfTestFail;
  status.classList.add(ok ? "ok" : "bad");
  const item = (good: boolean, name: string, detail: string) => {
    const li = document.createElement("li");
    li.className = good ? "ok" : "bad";
    const b = document.createElement("b");
    b.textContent = name;
    li.append(b, detail);
    list.append(li);
  };
  const camera = result.camera;
  item(camera.ok, s.selfTestCamera, camera.ok ? s.selfTestCameraOk(camera) : s.selfTestCameraFail);
  item(result.microphone.ok, s.selfTestMicrophone, result.microphone.ok ? s.selfTestMicOk : s.selfTestMicFail);
  const network = result.network;
  if (network.ok) {
    const rtt = network.rttMs === null ? s.unknownRtt : `${Math.round(network.rttMs)} ms`;
    item(true, s.selfTestNetwork, s.selfTestNetworkOk({ rtt }));
  } else {
    const f = network.failure;
    const reason =
      f.kind === "noMedia"
        ? s.selfTestNoMedia
        : f.kind === "refused"
          ? s.selfTestJoinRefused({ code: f.code })
          : f.kind === "unreachable"
            ? s.selfTestUnreachable
            : f.kind === "blocked"
              ? s.selfTestBlocked({ address: f.address })
              : s.selfTestNoReturn;
    item(false, s.selfTestNetwork, s.selfTestNetworkFail({ reason }));
  }
}

/** The connection checklist in the room, item by item, with what to do about a failed one. */
function renderChecks(): void {
  const panel = el("checks-panel");
  panel.hidden = state.phase === "lobby";
  const list = el("checks");
  const s = t();
  list.replaceChildren(
    ...checklist.items().map((item) => {
      const r = checklist.state(item);
      const li = document.createElement("li");
      li.className = r.state === "passed" ? "ok" : r.state === "failed" ? "bad" : "pending";
      li.dataset.item = item;
      li.dataset.state = r.state;
      const b = document.createElement("b");
      b.textContent = s.checkItem[item];
      const detail =
        r.state === "passed"
          ? item === "icePath" && r.path
            ? s.checkPath(r.path)
            : s.checkPassed
          : r.state === "failed"
            ? s.checkAdvice[item]
            : s.checkPending;
      li.append(b, detail);
      return li;
    }),
  );
  const failed = checklist.items().some((i) => checklist.state(i).state === "failed");
  el("checks-status").textContent = checklist.passed() ? s.checksPassed : failed ? s.checksFailed : s.checksNotYet;
}

/** Measures the checklist in the room and reports it to the worker when it changed. */
async function sampleChecks(): Promise<void> {
  const room = state.room;
  if (!room || state.phase !== "room") {
    return;
  }
  const changed = await checklist.sample(room.sendTransport, room.remote(state.claims?.role === "host"));
  if (changed || reportedTo !== room) {
    reportedTo = room;
    await room.reportChecks(checklist.report()).catch((error: unknown) => console.warn("reportChecks", error));
  }
  renderChecks();
}

/** Every second: the clock, and countdowns in notices. */
function tick(): void {
  const clock = formatClock(now());
  el("clock-time").textContent = clock.time;
  el("clock-date").textContent = `${clock.date} (${t().vietnamTime})`;
  if (state.retryTimer) {
    renderNotices();
  }
}

// ---------------------------------------------------------------------------------------------
// Messages for refusals

/** What to do after the worker (or the network) refused: give up, or try again later. */
type Outcome = "fatal" | "retry" | "wait";

function momentOrNull(ms: number | null): string | null {
  return ms === null ? null : formatMoment(ms);
}

/** Shows the message for `code` and says whether retrying makes sense. */
function explain(code: ErrorCode | "closed" | "timeout" | "unreachable"): Outcome {
  const s = () => t();
  const claims = state.claims;
  const retryIn = () => secondsUntilRetry();
  switch (code) {
    case "invalid_token":
    case "malformed_message":
      notify("link", { level: "error", title: () => s().invalidLinkTitle, body: () => s().invalidLinkBody });
      return "fatal";
    case "token_expired": {
      const until = claims ? claims.exp * 1000 : null;
      notify("link", {
        level: "error",
        title: () => s().expiredTitle,
        body: () => (until ? s().expiredBody({ until: formatMoment(until) }) : s().expiredBodyNoTime),
      });
      return "fatal";
    }
    case "token_not_yet_valid": {
      const from = claims ? claims.nbf * 1000 : null;
      const start = claimTime(claims?.start);
      notify("link", {
        level: "warn",
        title: () => s().notYetTitle,
        body: () => s().notYetBody({ from: momentOrNull(from) ?? "?", start: momentOrNull(start) }),
      });
      return "wait";
    }
    case "token_revoked":
      notify("link", { level: "error", title: () => s().revokedTitle, body: () => s().revokedBody });
      return "fatal";
    case "wrong_session":
      notify("link", { level: "error", title: () => s().wrongSessionTitle, body: () => s().wrongSessionBody });
      return "fatal";
    case "replaced":
      notify("connection", { level: "warn", title: () => s().replacedTitle, body: () => s().replacedBody });
      return "fatal";
    case "session_closed":
      notify("connection", { level: "info", title: () => s().sessionClosedTitle, body: () => s().sessionClosedBody });
      return "fatal";
    case "session_not_allocated":
      notify("connection", {
        level: "warn",
        title: () => s().notAllocatedTitle,
        body: () => s().notAllocatedBody({ seconds: retryIn() }),
      });
      return "retry";
    case "draining":
    case "closed":
    case "timeout":
      notify("connection", {
        level: "warn",
        title: () => s().restartingTitle,
        body: () =>
          state.retryTimer ? s().restartingBody({ seconds: retryIn(), attempt: state.attempt }) : s().reconnectingNow,
      });
      return "retry";
    case "reconnect_check":
      // The worker proving the office recovers (checklist item `reconnect`): not a fault.
      notify("connection", { level: "info", title: () => s().reconnectCheckTitle, body: () => s().reconnectCheckBody });
      return "retry";
    case "unreachable":
      notify("connection", {
        level: "warn",
        title: () => s().unreachableTitle,
        body: () => s().unreachableBody({ seconds: retryIn() }),
      });
      return "retry";
    default:
      notify("connection", {
        level: "error",
        title: () => s().errorTitle,
        body: () => s().errorBody({ code, seconds: retryIn() }),
      });
      return "retry";
  }
}

function explainMedia(problem: MediaProblem | null): void {
  const s = () => t();
  const retry = { label: () => s().retry, run: () => void startMedia() };
  if (!problem) {
    notify("media", null);
    return;
  }
  switch (problem.kind) {
    case "insecure":
      notify("media", { level: "error", title: () => s().insecureTitle, body: () => s().insecureBody });
      break;
    case "permission":
      notify("media", {
        level: "error",
        title: () => s().noPermissionTitle,
        body: () => s().noPermissionBody,
        action: retry,
      });
      break;
    case "notFound": {
      const missing = () =>
        problem.missing === "camera"
          ? s().theCamera
          : problem.missing === "microphone"
            ? s().theMicrophone
            : s().theCameraAndMicrophone;
      notify("media", {
        level: "error",
        title: () => s().noDeviceTitle,
        body: () => s().noDeviceBody({ missing: missing() }),
        action: retry,
      });
      break;
    }
    case "busy":
      notify("media", { level: "error", title: () => s().deviceBusyTitle, body: () => s().deviceBusyBody, action: retry });
      break;
    case "other":
      notify("media", {
        level: "error",
        title: () => s().mediaErrorTitle,
        body: () => s().mediaErrorBody({ detail: problem.detail }),
        action: retry,
      });
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Retrying

function cancelRetry(): void {
  window.clearTimeout(state.retryTimer);
  state.retryTimer = 0;
}

function scheduleRetry(run: () => void): void {
  cancelRetry();
  state.attempt += 1;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** (state.attempt - 1));
  const delay = base * (0.8 + 0.4 * Math.random());
  state.retryAt = Date.now() + delay;
  state.retryTimer = window.setTimeout(() => {
    state.retryTimer = 0;
    run();
  }, delay);
  renderNotices();
}

// ---------------------------------------------------------------------------------------------
// The token

async function checkToken(): Promise<void> {
  const token = state.token;
  if (!token) {
    return;
  }
  let check: JoinCheck;
  try {
    const response = await fetch("/v1/join-check", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token }),
      cache: "no-store",
    });
    check = (await response.json()) as JoinCheck;
  } catch {
    explain("unreachable");
    scheduleRetry(() => void checkToken());
    return;
  }
  cancelRetry();
  state.attempt = 0;
  state.serverOffsetMs = check.serverTime * 1000 - Date.now();
  if (check.valid) {
    state.tokenOk = true;
    notify("link", null);
    notify("connection", null);
  } else {
    state.tokenOk = false;
    const outcome = explain(check.code ?? "invalid_token");
    if (outcome === "retry") {
      scheduleRetry(() => void checkToken());
    } else if (outcome === "wait") {
      waitUntilOpen();
    }
  }
  renderControls();
}

/** Checks again once the token's `nbf` has come (by the worker's clock). */
function waitUntilOpen(): void {
  const opensAt = (state.claims?.nbf ?? 0) * 1000 - NBF_LEEWAY_MS;
  // Re-check at least hourly: the clock estimate or the session may have changed.
  const wait = Math.min(Math.max(opensAt - now() + 500, 1_000), 3_600_000);
  cancelRetry();
  state.retryTimer = window.setTimeout(() => {
    state.retryTimer = 0;
    void checkToken();
  }, wait);
}

// ---------------------------------------------------------------------------------------------
// Local media

async function startMedia(): Promise<void> {
  const problem = await local.start();
  state.mediaSettled = true;
  if (local.audioTrack) {
    local.audioTrack.enabled = !state.micMuted;
  }
  if (local.videoTrack) {
    local.videoTrack.enabled = !state.cameraOff;
  }
  explainMedia(problem);
  showPreview();
  // "Thử lại" while in the session: send the new tracks (producing a kind not sent before).
  for (const track of [local.audioTrack, local.videoTrack]) {
    if (track && state.room) {
      await state.room.replaceTrack(track.kind as "audio" | "video", track);
    }
  }
  await fillDeviceLists();
  renderControls();
}

function showPreview(): void {
  const preview = el<HTMLVideoElement>("preview");
  preview.srcObject = local.stream();
  void preview.play().catch(() => undefined);
  if (state.room && state.claims) {
    tiles.showSelf(selfPeer(), local.stream());
  }
}

async function fillDeviceLists(): Promise<void> {
  if (!navigator.mediaDevices?.enumerateDevices) {
    return;
  }
  const { cameras, microphones } = await local.devices();
  const fill = (select: HTMLSelectElement, choices: { deviceId: string; label: string }[], current?: string) => {
    select.replaceChildren(
      ...choices.map((c) => {
        const option = document.createElement("option");
        option.value = c.deviceId;
        option.textContent = c.label;
        option.selected = c.deviceId === current;
        return option;
      }),
    );
    if (choices.length === 0) {
      const option = document.createElement("option");
      option.textContent = t().noDevices;
      select.append(option);
    }
    select.disabled = choices.length === 0;
  };
  fill(el("camera-select"), cameras, local.currentDeviceId("video"));
  fill(el("mic-select"), microphones, local.currentDeviceId("audio"));
}

async function switchDevice(kind: "audio" | "video", deviceId: string): Promise<void> {
  const result = await local.switchDevice(kind, deviceId);
  if (!(result instanceof MediaStreamTrack)) {
    explainMedia(result);
    return;
  }
  explainMedia(null);
  if (kind === "audio" && state.micMuted) {
    result.enabled = false;
  }
  if (kind === "video" && state.cameraOff) {
    result.enabled = false;
  }
  showPreview();
  await state.room?.replaceTrack(kind, result);
}

// ---------------------------------------------------------------------------------------------
// The session

function selfPeer() {
  const claims = state.claims;
  return {
    point: claims?.sub ?? "",
    displayName: claims?.name ?? "",
    role: claims?.role ?? ("participant" as const),
  };
}

async function join(reconnecting: boolean): Promise<void> {
  const token = state.token;
  if (!token || state.busy) {
    return;
  }
  cancelRetry();
  state.busy = true;
  state.phase = reconnecting ? "reconnecting" : "joining";
  if (!reconnecting) {
    notify("connection", null);
  }
  tiles.showSelf(selfPeer(), local.stream());
  renderControls();
  try {
    // The worker's join lists who is muted now; a mute from a previous room (or a worker that
    // restarted) does not carry over.
    state.mutedByHost = null;
    notify("moderation", null);
    const room = await Room.join(token, local, tiles, onRoomEnd, onModeration);
    tiles.setModerator(state.claims?.role === "host" ? moderator(room) : null);
    state.room = room;
    // A new connection: items not yet proved get a fresh chance before they count as failed.
    checklist.restart();
    state.phase = "room";
    state.attempt = 0;
    room.setPaused("audio", state.micMuted);
    room.setPaused("video", state.cameraOff);
    void sendViewport();
    if (reconnecting) {
      notify("connection", { level: "info", title: () => t().reconnectedTitle, body: () => t().reconnectedBody });
      window.setTimeout(() => {
        if (notices.get("connection")?.level === "info" && state.phase === "room") {
          notify("connection", null);
        }
      }, 5_000);
    } else {
      notify("connection", null);
    }
  } catch (error) {
    tiles.clearRemote();
    let outcome: Outcome;
    if (error instanceof SignalingError) {
      outcome = explain(error.code);
    } else if (error instanceof MediaPathError) {
      blocked(error.address);
      outcome = "retry";
    } else {
      console.error("join failed", error);
      outcome = explain("internal");
    }
    if (outcome === "retry") {
      state.phase = "reconnecting";
      scheduleRetry(() => void join(true));
    } else {
      state.phase = "lobby";
      if (outcome === "wait") {
        state.tokenOk = false;
        waitUntilOpen();
      } else {
        // Replaced or closed: the link itself is still good, the officer may rejoin.
        const code = error instanceof SignalingError ? error.code : undefined;
        state.tokenOk = code === "replaced" || code === "session_closed";
      }
    }
  } finally {
    state.busy = false;
    renderStatic();
  }
}

function blocked(address: string): void {
  notify("connection", {
    level: "error",
    title: () => t().blockedTitle,
    body: () => t().blockedBody({ address, seconds: secondsUntilRetry() }),
  });
}

function onRoomEnd(end: RoomEnd): void {
  state.room = null;
  tiles.clearRemote();
  if (end.kind === "mediaPath") {
    blocked(end.address);
    state.phase = "reconnecting";
    scheduleRetry(() => void join(true));
  } else {
    const outcome = explain(end.code ?? "closed");
    if (outcome === "retry") {
      state.phase = "reconnecting";
      scheduleRetry(() => void join(true));
    } else {
      state.phase = "lobby";
      // Replaced or closed: the link itself is still good, the officer may rejoin.
      state.tokenOk = end.code === "replaced" || end.code === "session_closed";
    }
  }
  renderStatic();
}

/** The host's tile buttons: the worker checks the role too. */
function moderator(room: Room): Moderator {
  const failed = (error: unknown) => {
    const code = error instanceof SignalingError ? error.code : "internal";
    notify("moderation", { level: "error", title: () => t().errorTitle, body: () => t().moderationFailed({ code }) });
  };
  return {
    mute: (point) => void room.mutePoint(point).catch(failed),
    askToUnmute: (point) => void room.askToUnmute(point).catch(failed),
    giveFloor: (point) => void room.giveFloor(point).catch(failed),
    stopShare: () => void room.stopAnyShare().catch(failed),
  };
}

/** Shares a screen or window, or stops this office's share. */
async function toggleShare(): Promise<void> {
  const room = state.room;
  if (!room) {
    return;
  }
  if (room.sharing) {
    await room.stopShare();
    renderControls();
    return;
  }
  let stream: MediaStream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch {
    // The officer closed the picker: nothing to say.
    return;
  }
  const [track] = stream.getVideoTracks();
  if (!track) {
    return;
  }
  try {
    await room.startShare(track);
    notify("share", null);
  } catch (error) {
    track.stop();
    const code = error instanceof SignalingError ? error.code : "internal";
    notify("share", {
      level: "warn",
      title: () => t().shareRefusedTitle,
      body: () => (code === "share_in_progress" ? t().shareInProgressBody : t().moderationFailed({ code })),
    });
  }
  renderControls();
}

/** What the host did about this office's microphone. */
function onModeration(event: Moderation): void {
  const by = event.by;
  if (event.kind === "shareStopped") {
    notify("share", { level: "info", title: () => t().shareStoppedTitle, body: () => t().shareStoppedBody({ by }) });
    renderControls();
    return;
  }
  if (event.kind === "muted") {
    state.mutedByHost = { by, asked: false };
    state.micMuted = true;
    state.room?.setPaused("audio", true);
    if (local.audioTrack) {
      local.audioTrack.enabled = false;
    }
    notify("moderation", {
      level: "warn",
      title: () => t().mutedByHostTitle,
      body: () => t().mutedByHostBody({ by }),
    });
  } else {
    state.mutedByHost = { by, asked: true };
    notify("moderation", {
      level: "info",
      title: () => t().unmuteAskedTitle,
      body: () => t().unmuteAskedBody({ by }),
      action: { label: () => t().unmute, run: () => void unmuteAfterHost() },
    });
  }
  tiles.setSelfState({ cameraOff: state.cameraOff, micMuted: state.micMuted });
  renderControls();
}

/** The officer speaks again once the host asked: the worker resumes the audio first. */
async function unmuteAfterHost(): Promise<void> {
  const room = state.room;
  if (!room) {
    return;
  }
  try {
    await room.resumeAudio();
  } catch (error) {
    const code = error instanceof SignalingError ? error.code : "internal";
    notify("moderation", { level: "error", title: () => t().errorTitle, body: () => t().moderationFailed({ code }) });
    return;
  }
  state.mutedByHost = null;
  state.micMuted = false;
  if (local.audioTrack) {
    local.audioTrack.enabled = true;
  }
  notify("moderation", null);
  tiles.setSelfState({ cameraOff: state.cameraOff, micMuted: state.micMuted });
  renderControls();
}

function leave(): void {
  cancelRetry();
  state.room?.leave();
  state.room = null;
  state.phase = "lobby";
  tiles.clearRemote();
  notify("connection", { level: "info", title: () => t().leftTitle, body: () => t().leftBody });
  renderStatic();
}

/** How often the console reports the freezes it counted: often enough for a dashboard's minute. */
const QUALITY_REPORT_MS = 5_000;

async function sendViewport(): Promise<void> {
  await state.room?.setViewport(tiles.views()).catch((error) => console.warn("setViewport failed", error));
}

async function pollQuality(): Promise<void> {
  const room = state.room;
  state.quality = room ? await room.quality().catch(() => "none" as const) : "none";
  renderQuality();
}

// ---------------------------------------------------------------------------------------------
// Self-test

async function selfTest(): Promise<void> {
  const token = state.token;
  if (!token || state.selfTestRunning) {
    return;
  }
  local.resumeAudio();
  state.selfTestRunning = true;
  state.selfTest = null;
  renderControls();
  renderSelfTest();
  try {
    state.selfTest = await runSelfTest(token, local, el("preview"), el("loopback"), checklist);
  } finally {
    state.selfTestRunning = false;
    renderControls();
    renderSelfTest();
  }
}

// ---------------------------------------------------------------------------------------------
// The test hook: the end-to-end test reads what the page decoded through this.

interface TestHook {
  phase(): Phase;
  stats(): Promise<unknown>;
  selfTest(): SelfTestResult | null;
  /** The connection checklist: each item's state, as reported to the worker. */
  checks(): { item: ConsoleItem; state: string; path?: string }[];
  notices(): { slot: Slot; level: string; title: string; body: string }[];
  /**
   * What a tampered console would do after the host's mute: send its microphone again without
   * asking the worker. The moderation test proves the SFU still drops it.
   */
  sendAudioAnyway(): void;
  /** Restarts ICE on both transports, as a network change does. */
  restartIce(): Promise<void>;
  /** The focus layout's state, with when the speaker last changed (`Date.now()`). */
  focus(): { speaker: string | null; speakerAt: number; floor: string | null };
}

declare global {
  interface Window {
    tiepdan: TestHook;
  }
}

window.tiepdan = {
  phase: () => state.phase,
  stats: async () => ({
    phase: state.phase,
    point: state.room?.point ?? null,
    secureContext: window.isSecureContext,
    quality: state.quality,
    consumers: (await state.room?.consumerStats()) ?? [],
    producers: (await state.room?.producerStats()) ?? [],
    iceRoutes: (await state.room?.iceRoutes()) ?? null,
    viewport: tiles.views(),
  }),
  selfTest: () => state.selfTest,
  checks: () => checklist.items().map((item) => ({ item, ...checklist.state(item) })),
  notices: () =>
    [...notices.entries()].map(([slot, n]) => ({ slot, level: n.level, title: n.title(), body: n.body() })),
  focus: () => tiles.focusState(),
  restartIce: async () => {
    await state.room?.restartIce();
  },
  sendAudioAnyway: () => {
    state.room?.setPaused("audio", false);
    if (local.audioTrack) {
      local.audioTrack.enabled = true;
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Start

function main(): void {
  initLang();
  tiles = new Tiles(el("tiles"), el("alone"));
  state.token = tokenFromLocation();
  state.claims = state.token ? decodeClaims(state.token) : null;
  local = new LocalMedia(state.claims?.video?.maxHeight);
  checklist = new Checklist(local, state.claims?.audioOnly === true);

  el("lang").addEventListener("click", () => {
    const next: Lang = lang() === "vi" ? "en" : "vi";
    setLang(next);
    renderStatic();
    void fillDeviceLists();
  });
  el("join").addEventListener("click", () => {
    local.resumeAudio();
    state.attempt = 0;
    void join(false);
  });
  el("self-test").addEventListener("click", () => void selfTest());
  el("leave").addEventListener("click", leave);
  el("mic-toggle").addEventListener("click", () => {
    if (state.mutedByHost) {
      if (state.mutedByHost.asked) {
        void unmuteAfterHost();
      }
      return;
    }
    state.micMuted = !state.micMuted;
    state.room?.setPaused("audio", state.micMuted);
    if (local.audioTrack) {
      local.audioTrack.enabled = !state.micMuted;
    }
    tiles.setSelfState({ cameraOff: state.cameraOff, micMuted: state.micMuted });
    renderControls();
  });
  el("share-toggle").addEventListener("click", () => void toggleShare());
  // A network change (another Wi-Fi, a 4G fallback, the line back): new ICE credentials on the
  // same transports, rather than waiting for the old path to time out and rejoining.
  const onNetworkChange = () => {
    if (state.phase === "room") {
      void state.room?.restartIce().catch((error: unknown) => console.warn("ICE restart failed", error));
    }
  };
  window.addEventListener("online", onNetworkChange);
  (navigator as Navigator & { connection?: EventTarget }).connection?.addEventListener("change", onNetworkChange);
  el("cam-toggle").addEventListener("click", () => {
    state.cameraOff = !state.cameraOff;
    state.room?.setPaused("video", state.cameraOff);
    if (local.videoTrack) {
      local.videoTrack.enabled = !state.cameraOff;
    }
    tiles.setSelfState({ cameraOff: state.cameraOff, micMuted: state.micMuted });
    renderControls();
  });
  el<HTMLSelectElement>("camera-select").addEventListener("change", (e) => {
    void switchDevice("video", (e.target as HTMLSelectElement).value);
  });
  el<HTMLSelectElement>("mic-select").addEventListener("change", (e) => {
    void switchDevice("audio", (e.target as HTMLSelectElement).value);
  });
  el("paste-go").addEventListener("click", () => {
    const token = tokenFromPasted(el<HTMLInputElement>("paste-input").value);
    if (token) {
      // Never into the address bar: kept for this tab, then read back as a link would be.
      rememberToken(token);
      location.reload();
    }
  });
  // A link opened over this page changes only the fragment, which does not load the page again:
  // start over with the new link, as a fresh load would.
  window.addEventListener("hashchange", () => {
    if (new URLSearchParams(location.hash.replace(/^#/, "")).has("token")) {
      location.reload();
    }
  });
  // Browsers keep an AudioContext suspended until the first interaction.
  document.addEventListener("pointerdown", () => local.resumeAudio(), { once: true });
  navigator.mediaDevices?.addEventListener?.("devicechange", () => void fillDeviceLists());
  window.addEventListener("pagehide", () => state.room?.leave());

  if (!state.token) {
    notify("link", { level: "warn", title: () => t().noTokenTitle, body: () => t().noTokenBody });
  } else if (!state.claims) {
    explain("invalid_token");
  } else {
    void checkToken();
  }
  renderStatic();
  void startMedia();

  window.setInterval(tick, 1_000);
  window.setInterval(() => void pollQuality(), 2_000);
  // The tiles' sizes follow the window and the room; the worker hears only changes. A hidden
  // (minimised, backgrounded) page says so at once, so its pictures stop at once.
  window.setInterval(() => void sendViewport(), 1_000);
  document.addEventListener("visibilitychange", () => void sendViewport());
  window.addEventListener("resize", () => void sendViewport());
  window.setInterval(() => void state.room?.reportQuality().catch(() => undefined), QUALITY_REPORT_MS);
  window.setInterval(() => void sampleChecks(), 500);
  const fill = el("meter-fill");
  window.setInterval(() => {
    // RMS 0.25 is loud speech close to the microphone: full scale.
    fill.style.width = `${Math.min(1, local.level() * 4) * 100}%`;
  }, 100);
}

main();
