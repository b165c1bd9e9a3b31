/**
 * The console's pages, addressed by the URL's fragment (`#/devices/greenhouse-pi`): the server
 * only ever serves `/` and `/assets/`, so no path of the console can shadow a REST one.
 */
export type Route =
  | { page: "fleet" }
  | { page: "device"; deviceId: string }
  | { page: "alerts" }
  | { page: "keys" }
  | { page: "audit" }
  | { page: "notFound"; hash: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "") || "/";
  if (path === "/") return { page: "fleet" };
  if (path === "/alerts") return { page: "alerts" };
  if (path === "/keys") return { page: "keys" };
  if (path === "/audit") return { page: "audit" };
  const device = /^\/devices\/([a-z0-9-]{1,63})$/.exec(path);
  if (device) return { page: "device", deviceId: device[1] };
  return { page: "notFound", hash };
}

export function deviceHref(deviceId: string): string {
  return `#/devices/${deviceId}`;
}
