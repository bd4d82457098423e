// The officer's own camera and microphone: capture, device choice and a level meter.

/** What went wrong with capture, in the terms the messages need. */
export type MediaProblem =
  | { kind: "insecure" }
  | { kind: "permission" }
  | { kind: "notFound"; missing: "camera" | "microphone" | "both" }
  | { kind: "busy" }
  | { kind: "other"; detail: string };

/**
 * The camera at the session's `maxHeight` (16:9) and up to 25 fps: it is sent as three simulcast
 * layers (a quarter, half and the full height), and each receiving office gets only the layer
 * its tile needs. A session of older PCs sets a lower `maxHeight`: capture and encoding cost
 * follow it. Without the claim (links issued before it), 540p: three layers in every browser
 * (Chromium sends fewer below 960×540), at half the cost of 720p.
 */
export const DEFAULT_CAPTURE_HEIGHT = 540;

function videoConstraints(maxHeight: number): MediaTrackConstraints {
  return {
    width: { ideal: Math.round((maxHeight * 16) / 9) },
    height: { ideal: maxHeight },
    frameRate: { ideal: 25, max: 30 },
  };
}

const AUDIO_CONSTRAINTS: MediaTrackConstraints = {
  echoCancellation: true,
  noiseSuppression: true,
  autoGainControl: true,
};

export interface DeviceChoice {
  deviceId: string;
  label: string;
}

export class LocalMedia {
  private readonly video: MediaTrackConstraints;

  constructor(maxHeight: number | undefined) {
    this.video = videoConstraints(maxHeight ? maxHeight : DEFAULT_CAPTURE_HEIGHT);
  }

  audioTrack: MediaStreamTrack | null = null;
  videoTrack: MediaStreamTrack | null = null;
  private audioContext: AudioContext | null = null;
  private analyser: AnalyserNode | null = null;
  private source: MediaStreamAudioSourceNode | null = null;
  private readonly samples = new Float32Array(1024);

  /** Opens camera and microphone. Returns the problem when either is missing (the other may work). */
  async start(cameraId?: string, micId?: string): Promise<MediaProblem | null> {
    if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
      return { kind: "insecure" };
    }
    this.stop();
    const video = cameraId ? { ...this.video, deviceId: { exact: cameraId } } : this.video;
    const audio = micId ? { ...AUDIO_CONSTRAINTS, deviceId: { exact: micId } } : AUDIO_CONSTRAINTS;
    let first: MediaProblem;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio, video });
      this.adopt(stream);
      return null;
    } catch (error) {
      first = classify(error);
      if (first.kind !== "notFound" && first.kind !== "other") {
        return first;
      }
    }
    // One of the two is missing or refuses the constraints: keep whichever works, so a point
    // without a camera can still speak and hear.
    const [gotVideo, gotAudio] = await Promise.all([
      navigator.mediaDevices.getUserMedia({ video }).then(
        (s) => s,
        () => null,
      ),
      navigator.mediaDevices.getUserMedia({ audio }).then(
        (s) => s,
        () => null,
      ),
    ]);
    if (gotVideo) {
      this.adopt(gotVideo);
    }
    if (gotAudio) {
      this.adopt(gotAudio);
    }
    if (gotVideo && gotAudio) {
      return null;
    }
    if (!gotVideo && !gotAudio) {
      return first;
    }
    return { kind: "notFound", missing: gotVideo ? "microphone" : gotAudio ? "camera" : "both" };
  }

  /** Replaces one track with another device's; returns the new track for the producer. */
  async switchDevice(kind: "audio" | "video", deviceId: string): Promise<MediaStreamTrack | MediaProblem> {
    const constraints =
      kind === "video"
        ? { video: { ...this.video, deviceId: { exact: deviceId } } }
        : { audio: { ...AUDIO_CONSTRAINTS, deviceId: { exact: deviceId } } };
    // Release the old device first: some USB cameras cannot be opened twice.
    const old = kind === "video" ? this.videoTrack : this.audioTrack;
    old?.stop();
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      this.adopt(stream);
      const track = kind === "video" ? this.videoTrack : this.audioTrack;
      return track ?? { kind: "other", detail: "no track" };
    } catch (error) {
      return classify(error);
    }
  }

  /** A stream of the current tracks, for the preview element. */
  stream(): MediaStream {
    return new MediaStream([this.videoTrack, this.audioTrack].filter((t): t is MediaStreamTrack => t !== null));
  }

  async devices(): Promise<{ cameras: DeviceChoice[]; microphones: DeviceChoice[] }> {
    const all = await navigator.mediaDevices.enumerateDevices();
    const pick = (kind: MediaDeviceKind) =>
      all
        .filter((d) => d.kind === kind && d.deviceId !== "")
        .map((d, i) => ({ deviceId: d.deviceId, label: d.label || `${kind} ${i + 1}` }));
    return { cameras: pick("videoinput"), microphones: pick("audioinput") };
  }

  currentDeviceId(kind: "audio" | "video"): string | undefined {
    const track = kind === "video" ? this.videoTrack : this.audioTrack;
    return track?.getSettings().deviceId;
  }

  /**
   * Browsers start an AudioContext suspended until the person interacts with the page; call this
   * from a click so the meter moves.
   */
  resumeAudio(): void {
    void this.audioContext?.resume();
  }

  /** The microphone's current RMS level, 0..1 (0 while muted or without a microphone). */
  level(): number {
    if (!this.analyser || !this.audioTrack?.enabled || this.audioTrack.readyState !== "live") {
      return 0;
    }
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const s of this.samples) {
      sum += s * s;
    }
    return Math.sqrt(sum / this.samples.length);
  }

  stop(): void {
    this.audioTrack?.stop();
    this.videoTrack?.stop();
    this.audioTrack = null;
    this.videoTrack = null;
    this.source?.disconnect();
    this.source = null;
  }

  private adopt(stream: MediaStream): void {
    const video = stream.getVideoTracks()[0];
    const audio = stream.getAudioTracks()[0];
    if (video) {
      this.videoTrack = video;
    }
    if (audio) {
      this.audioTrack = audio;
      this.meter(audio);
    }
  }

  private meter(track: MediaStreamTrack): void {
    if (!this.audioContext) {
      this.audioContext = new AudioContext();
      this.analyser = this.audioContext.createAnalyser();
      this.analyser.fftSize = this.samples.length;
    }
    this.source?.disconnect();
    this.source = this.audioContext.createMediaStreamSource(new MediaStream([track]));
    if (this.analyser) {
      this.source.connect(this.analyser);
    }
  }
}

function classify(error: unknown): MediaProblem {
  const name = error instanceof DOMException ? error.name : "";
  switch (name) {
    case "NotAllowedError":
    case "SecurityError":
      return { kind: "permission" };
    case "NotFoundError":
    case "OverconstrainedError":
      return { kind: "notFound", missing: "both" };
    case "NotReadableError":
    case "AbortError":
      return { kind: "busy" };
    default:
      return { kind: "other", detail: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
  }
}
