// Reads the join token's claims for display only (point name, title, when the session opens).
// The page never trusts them: the worker checks the signature and the time window and answers
// with an error code, which is what decides the messages.

import type { JoinClaims } from "./generated/wire";

/** The claims the page reads (and `isClaims` checks); the names and types come from tokens.rs. */
export type Claims = Pick<JoinClaims, "sub" | "aud" | "name" | "title" | "role" | "nbf" | "exp" | "start" | "end" | "audioOnly" | "video">;

/** Where the token is kept once read: this tab only, gone when the tab closes. */
const TAB_KEY = "tiepdan.token";

/**
 * The join token. Links carry it in the fragment (`/join#token=…`), which browsers never send to
 * a server nor put in a Referer; once read it leaves the address bar and the history entry, and
 * lives on only in this tab's sessionStorage, so a reload still works but the browser's history
 * and the next person at the office's shared computer never see it. A `?token=` query (older
 * links) is read the same way and removed too, although it has already reached the server.
 */
export function tokenFromLocation(): string | null {
  const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
  const fromQuery = new URLSearchParams(location.search).get("token");
  if (fromHash !== null || fromQuery !== null) {
    history.replaceState(null, "", location.pathname);
  }
  const token = (fromHash ?? fromQuery ?? "").trim();
  if (token) {
    rememberToken(token);
    return token;
  }
  const kept = sessionStorage.getItem(TAB_KEY);
  return kept && kept.trim() ? kept.trim() : null;
}

/** Keeps `token` for this tab (a reload after the address bar was cleaned). */
export function rememberToken(token: string): void {
  try {
    sessionStorage.setItem(TAB_KEY, token);
  } catch {
    // Storage disabled: the page works until it is reloaded.
  }
}

/** Accepts a whole join link or a bare token, as people paste either. */
export function tokenFromPasted(text: string): string | null {
  const trimmed = text.trim();
  if (!trimmed) {
    return null;
  }
  try {
    const url = new URL(trimmed);
    return new URLSearchParams(url.hash.replace(/^#/, "")).get("token") ?? url.searchParams.get("token");
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
    typeof v.exp === "number" &&
    (v.video === undefined || (typeof v.video === "object" && v.video !== null))
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
