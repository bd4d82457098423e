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

export class Tiles implements RoomView {
  private readonly tiles = new Map<string, Tile>();
  private self: Tile | null = null;
  private selfState = { cameraOff: false, micMuted: false };

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
    this.relabel();
  }

  /** Re-renders every label, e.g. after a language change. */
  relabel(): void {
    const s = t();
    for (const tile of this.tiles.values()) {
      this.label(tile, tile.peer.displayName, tile.peer.role === "host" ? s.hostBadge : null);
      tile.placeholder.textContent = s.waitingVideo;
    }
    if (this.self) {
      // "Bạn" first: long office names are cut at the end of the label.
      this.label(this.self, `${s.you} · ${this.self.peer.displayName}`, null);
      this.self.placeholder.textContent = this.selfState.cameraOff ? s.ownCameraOff : s.waitingVideo;
      let flag = this.self.el.querySelector<HTMLElement>(".muted-flag");
      if (this.selfState.micMuted) {
        flag ??= this.self.el.appendChild(document.createElement("div"));
        flag.className = "muted-flag";
        flag.textContent = s.micMuted;
      } else {
        flag?.remove();
      }
    }
    this.alone.hidden = this.tiles.size > 0;
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
