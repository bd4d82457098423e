// Reads the join token's claims for display only (point name, title, when the session opens).
// The page never trusts them: the worker checks the signature and the time window and answers
// with an error code, which is what decides the messages.

import type { Role } from "./protocol";

export interface Claims {
  /** The point name. */
  sub: string;
  /** The session id. */
  aud: string;
  name: string;
  title: string;
  role: Role;
  /** Unix seconds. */
  nbf: number;
  exp: number;
  /** RFC 3339: the live window, when the operator set it. */
  start?: string;
  end?: string;
}

export function tokenFromLocation(): string | null {
  const token = new URLSearchParams(location.search).get("token");
  return token && token.trim() ? token.trim() : null;
}

/** Accepts a whole join link or a bare token, as people paste either. */
export function tokenFromPasted(text: string): string | null {
  const trimmed = text.trim();
  if (!trimmed) {
    return null;
  }
  try {
    const url = new URL(trimmed);
    return url.searchParams.get("token");
  } catch {
    return trimmed;
  }
}

export function decodeClaims(token: string): Claims | null {
  const parts = token.split(".");
  const payload = parts[1];
  if (parts.length !== 3 || !payload) {
    return null;
  }
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (!isClaims(value)) {
      return null;
    }
    return value;
  } catch {
    return null;
  }
}

function isClaims(value: unknown): value is Claims {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const v = value as Record<string, unknown>;
  return (
    typeof v.sub === "string" &&
    typeof v.aud === "string" &&
    typeof v.name === "string" &&
    typeof v.title === "string" &&
    (v.role === "host" || v.role === "participant") &&
    typeof v.nbf === "number" &&
    typeof v.exp === "number"
  );
}

/** `start`/`end` as milliseconds, when present and parseable. */
export function claimTime(value: string | undefined): number | null {
  if (!value) {
    return null;
  }
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}
