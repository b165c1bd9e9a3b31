/**
 * Who is signed in: the pasted key (kept in the tab's session storage, so it is gone when the
 * tab closes), the clients made with it, and the caller the services say it is (GetCaller).
 * The one store the pages share.
 */
import { writable } from "svelte/store";
import type { GetCallerResponse } from "../gen/sensormesh/v1/access_pb";
import { createApi, type Api } from "./api";

const STORAGE_KEY = "sensormesh.apiKey";

export interface Session {
  api: Api;
  caller: GetCallerResponse;
}

export const session = writable<Session | null>(null);

/** Signs in with `key`; throws the call's error (UNAUTHENTICATED for a bad key) and keeps nothing. */
export async function signIn(key: string): Promise<void> {
  const api = createApi(key.trim());
  const caller = await api.access.getCaller({});
  sessionStorage.setItem(STORAGE_KEY, key.trim());
  session.set({ api, caller });
}

/** Signs in again with the key this tab kept, if any; false when there is none or it is refused. */
export async function resume(): Promise<boolean> {
  const key = sessionStorage.getItem(STORAGE_KEY);
  if (!key) return false;
  try {
    await signIn(key);
    return true;
  } catch {
    sessionStorage.removeItem(STORAGE_KEY);
    return false;
  }
}

export function signOut(): void {
  sessionStorage.removeItem(STORAGE_KEY);
  session.set(null);
}
