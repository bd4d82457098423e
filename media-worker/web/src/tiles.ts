// The video tiles of the room: one per other point (the host's larger) and our own.

import { t } from "./i18n";
import type { MediaKind, PeerInfo, TileView } from "./protocol";
import type { RoomView } from "./room";

interface Tile {
  peer: PeerInfo;
  el: HTMLElement;
  video: HTMLVideoElement;
  audio: HTMLAudioElement;
  name: HTMLElement;
  placeholder: HTMLElement;
}

/** What the host's console can do from another point's tile. */
export interface Moderator {
  mute(point: string): void;
  askToUnmute(point: string): void;
  giveFloor(point: string | null): void;
  stopShare(): void;
}

export class Tiles implements RoomView {
  private readonly tiles = new Map<string, Tile>();
  private self: Tile | null = null;
  private selfState = { cameraOff: false, micMuted: false };
  /** Points the host muted, this office's own included. */
  private readonly mutedByHost = new Set<string>();
  /** Set on the host's console only: each other point's tile gets a big mute/ask button. */
  private moderator: Moderator | null = null;
  /** Shown large with the host: who speaks now, and who has the floor. */
  private speaker: string | null = null;
  /** When this console learnt of the current speaker (`Date.now()`), for the test hook. */
  private speakerAt = 0;
  private floorPoint: string | null = null;
  /** The document being shared (one at a time), in its own large tile. */
  private shareTile: { point: string; el: HTMLElement; video: HTMLVideoElement; label: HTMLElement } | null = null;

  constructor(
    private readonly container: HTMLElement,
    private readonly alone: HTMLElement,
  ) {}

  /** Our own tile, with the local camera (muted: we must not hear ourselves). */
  showSelf(peer: PeerInfo, stream: MediaStream): void {
    if (!this.self) {
      this.self = this.create(peer, true);
    }
    this.self.peer = peer;
    this.self.video.srcObject = stream;
    this.self.el.classList.toggle("has-video", stream.getVideoTracks().length > 0);
    void this.self.video.play().catch(() => undefined);
    this.relabel();
  }

  setSelfState(state: { cameraOff: boolean; micMuted: boolean }): void {
    this.selfState = state;
    if (this.self) {
      this.self.el.classList.toggle("has-video", !state.cameraOff && this.self.video.srcObject !== null);
    }
    this.relabel();
  }

  setModerator(moderator: Moderator | null): void {
    this.moderator = moderator;
    this.relabel();
  }

  pointMuted(point: string, _by: string): void {
    this.mutedByHost.add(point);
    this.relabel();
  }

  pointUnmuted(point: string): void {
    this.mutedByHost.delete(point);
    this.relabel();
  }

  share(point: string, track: MediaStreamTrack | null): void {
    if (!track) {
      if (this.shareTile?.point === point) {
        this.shareTile.el.remove();
        this.shareTile = null;
      }
      this.relabel();
      return;
    }
    this.shareTile?.el.remove();
    const el = document.createElement("div");
    el.className = "tile share has-video";
    el.dataset.share = point;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true;
    // A document must be readable whole: fit, never crop.
    video.style.objectFit = "contain";
    video.srcObject = new MediaStream([track]);
    const label = document.createElement("div");
    label.className = "name";
    el.append(video, label);
    this.container.insertBefore(el, this.container.firstChild);
    void video.play().catch(() => undefined);
    this.shareTile = { point, el, video, label };
    this.relabel();
  }

  activeSpeaker(point: string | null): void {
    if (point !== this.speaker) {
      this.speakerAt = Date.now();
    }
    this.speaker = point;
    this.relabel();
  }

  /** Who is shown as speaking and since when, and who has the floor. */
  focusState(): { speaker: string | null; speakerAt: number; floor: string | null } {
    return { speaker: this.speaker, speakerAt: this.speakerAt, floor: this.floorPoint };
  }

  floor(point: string | null): void {
    this.floorPoint = point;
    this.relabel();
  }

  peerJoined(peer: PeerInfo): void {
    const tile = this.tiles.get(peer.point) ?? this.create(peer, false);
    tile.peer = peer;
    tile.el.classList.toggle("host", peer.role === "host");
    this.tiles.set(peer.point, tile);
    this.relabel();
  }

  peerLeft(point: string): void {
    const tile = this.tiles.get(point);
    if (tile) {
      tile.el.remove();
      this.tiles.delete(point);
    }
    this.relabel();
  }

  remoteTrack(point: string, kind: MediaKind, track: MediaStreamTrack | null): void {
    let tile = this.tiles.get(point);
    if (!tile) {
      // A producer announced before its owner's peerJoined cannot happen with this worker, but
      // a tile with the bare point name is better than dropping the media.
      this.peerJoined({ point, displayName: point, role: "participant" });
      tile = this.tiles.get(point);
      if (!tile) {
        return;
      }
    }
    const element = kind === "video" ? tile.video : tile.audio;
    element.srcObject = track ? new MediaStream([track]) : null;
    if (track) {
      void element.play().catch(() => undefined);
    }
    if (kind === "video") {
      tile.el.classList.toggle("has-video", track !== null);
    }
  }

  /**
   * Where each other point's picture is shown: its tile's height in device pixels, and whether it
   * is shown at all (the page visible, not minimised or in a background tab, and the tile laid
   * out). The worker sends each picture at the layer that fills its tile, and nothing for tiles
   * nobody sees. A tile scrolled out of the window still counts as shown: the officer scrolls
   * back expecting the picture to be there, and the worker gives a small tile a small layer.
   */
  views(): TileView[] {
    const pageVisible = document.visibilityState === "visible";
    const scale = window.devicePixelRatio || 1;
    return [...this.tiles.values()].map((tile) => {
      const height = Math.round(tile.el.getBoundingClientRect().height * scale);
      return { point: tile.peer.point, height, visible: pageVisible && height > 0 };
    });
  }

  /** Removes the other points (the room ended); our own tile stays. */
  clearRemote(): void {
    for (const tile of this.tiles.values()) {
      tile.el.remove();
    }
    this.tiles.clear();
    this.shareTile?.el.remove();
    this.shareTile = null;
    // The next room's join lists who is muted.
    this.mutedByHost.clear();
    this.relabel();
  }

  /** Re-renders every label, e.g. after a language change. */
  relabel(): void {
    const s = t();
    for (const tile of this.tiles.values()) {
      this.label(tile, tile.peer.displayName, tile.peer.role === "host" ? s.hostBadge : null);
      tile.placeholder.textContent = s.waitingVideo;
      const muted = this.mutedByHost.has(tile.peer.point);
      this.flag(tile, "host-muted-flag", muted ? s.mutedByHostFlag : null);
      this.moderateButton(tile, muted);
      this.focus(tile);
    }
    if (this.self) {
      // "Bạn" first: long office names are cut at the end of the label.
      this.label(this.self, `${s.you} · ${this.self.peer.displayName}`, null);
      this.self.placeholder.textContent = this.selfState.cameraOff ? s.ownCameraOff : s.waitingVideo;
      const byHost = this.mutedByHost.has(this.self.peer.point);
      this.flag(this.self, "muted-flag", byHost ? s.mutedByHostSelf : this.selfState.micMuted ? s.micMuted : null);
      this.self.el.classList.toggle("muted-by-host", byHost);
      this.focus(this.self);
    }
    this.labelShare();
    this.alone.hidden = this.tiles.size > 0;
  }

  /** Shows `text` in the tile's `cls` flag, or removes the flag (`null`). */
  private flag(tile: Tile, cls: string, text: string | null): void {
    let flag = tile.el.querySelector<HTMLElement>(`.${cls}`);
    if (text === null) {
      flag?.remove();
      return;
    }
    flag ??= tile.el.appendChild(document.createElement("div"));
    flag.className = cls;
    flag.textContent = text;
  }

  /** The share's label says whose document it is; the host gets a button to stop it. */
  private labelShare(): void {
    const share = this.shareTile;
    if (!share) {
      return;
    }
    const s = t();
    const own = this.self?.peer.point === share.point;
    const name = own ? s.you : (this.tiles.get(share.point)?.peer.displayName ?? share.point);
    share.label.textContent = own ? s.youShare : s.sharedBy(name);
    let button = share.el.querySelector<HTMLButtonElement>("button.stop-share");
    const moderator = this.moderator;
    if (!moderator || own) {
      button?.remove();
      return;
    }
    button ??= share.el.appendChild(document.createElement("button"));
    button.className = "stop-share";
    button.type = "button";
    button.textContent = s.stopShare;
    button.onclick = () => moderator.stopShare();
  }

  /**
   * The focus layout: the floor's point first and large, the speaker large, labelled in words
   * (a coloured border alone is easy to miss); the host's console gets a floor button per tile.
   */
  private focus(tile: Tile): void {
    const s = t();
    const point = tile.peer.point;
    const floor = this.floorPoint === point;
    const speaking = this.speaker === point;
    tile.el.classList.toggle("floor", floor);
    tile.el.classList.toggle("speaker", speaking);
    this.flag(tile, "focus-flag", floor ? s.hasFloor : speaking ? s.speaking : null);
    let button = tile.el.querySelector<HTMLButtonElement>("button.floor-button");
    const moderator = this.moderator;
    if (!moderator || tile === this.self) {
      button?.remove();
      return;
    }
    button ??= tile.el.appendChild(document.createElement("button"));
    button.className = "floor-button";
    button.type = "button";
    button.textContent = floor ? s.takeFloorBack : s.giveFloor;
    button.onclick = () => moderator.giveFloor(floor ? null : point);
  }

  /** The host's big button on another point's tile: mute it, or ask it to unmute. */
  private moderateButton(tile: Tile, muted: boolean): void {
    let button = tile.el.querySelector<HTMLButtonElement>("button.moderate");
    const moderator = this.moderator;
    if (!moderator) {
      button?.remove();
      return;
    }
    button ??= tile.el.appendChild(document.createElement("button"));
    button.className = muted ? "moderate ask" : "moderate";
    button.type = "button";
    const s = t();
    button.textContent = muted ? s.askToUnmute : s.mutePoint;
    button.title = muted ? s.askToUnmuteHint(tile.peer.displayName) : s.mutePointHint(tile.peer.displayName);
    const point = tile.peer.point;
    button.onclick = () => (muted ? moderator.askToUnmute(point) : moderator.mute(point));
  }

  private label(tile: Tile, name: string, badge: string | null): void {
    tile.name.textContent = name;
    if (badge) {
      const b = document.createElement("span");
      b.className = "badge";
      b.textContent = badge;
      tile.name.appendChild(b);
    }
  }

  private create(peer: PeerInfo, self: boolean): Tile {
    const el = document.createElement("div");
    el.className = self ? "tile self" : "tile";
    el.dataset.point = peer.point;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    // Sound goes through the <audio> element; the video element stays muted so autoplay
    // policies never block the picture.
    video.muted = true;
    if (self) {
      video.classList.add("mirrored");
    }
    const audio = document.createElement("audio");
    audio.autoplay = true;
    const placeholder = document.createElement("div");
    placeholder.className = "placeholder";
    const name = document.createElement("div");
    name.className = "name";
    el.append(video, audio, placeholder, name);
    if (self) {
      this.container.append(el);
    } else {
      // Host first, then the others in order of arrival, then ourselves.
      const before = peer.role === "host" ? this.container.firstChild : (this.self?.el ?? null);
      this.container.insertBefore(el, before);
    }
    return { peer, el, video, audio, name, placeholder };
  }
}
