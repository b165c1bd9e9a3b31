/**
 * The console's clients: one gRPC-Web transport to the page's own origin (Envoy serves the
 * console, REST and gRPC-Web on one listener), one client per service, every call carrying the
 * signed-in credential (an API key or a single sign-on access token) as a bearer token.
 */
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { AccessService } from "../gen/sensormesh/v1/access_pb";
import { AlertService } from "../gen/sensormesh/v1/alert_pb";
import { AuditService } from "../gen/sensormesh/v1/audit_pb";
import { CommandService } from "../gen/sensormesh/v1/command_pb";
import { DeviceService } from "../gen/sensormesh/v1/device_pb";
import { FrameService } from "../gen/sensormesh/v1/frame_pb";
import { QueryService } from "../gen/sensormesh/v1/query_pb";

export interface Api {
  access: Client<typeof AccessService>;
  alerts: Client<typeof AlertService>;
  audit: Client<typeof AuditService>;
  commands: Client<typeof CommandService>;
  devices: Client<typeof DeviceService>;
  frames: Client<typeof FrameService>;
  query: Client<typeof QueryService>;
}

export interface ApiOptions {
  baseUrl?: string;
  /** Called when a call is refused as UNAUTHENTICATED (a single sign-on token that expired). */
  onUnauthenticated?: () => void;
}

export function createApi(key: string, options: ApiOptions = {}): Api {
  const { baseUrl = window.location.origin, onUnauthenticated } = options;
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${key}`);
    return next(request);
  };
  const refused: Interceptor = (next) => async (request) => {
    try {
      return await next(request);
    } catch (error) {
      if (onUnauthenticated && ConnectError.from(error).code === Code.Unauthenticated) onUnauthenticated();
      throw error;
    }
  };
  const transport = createGrpcWebTransport({ baseUrl, interceptors: [refused, bearer] });
  return {
    access: createClient(AccessService, transport),
    alerts: createClient(AlertService, transport),
    audit: createClient(AuditService, transport),
    commands: createClient(CommandService, transport),
    devices: createClient(DeviceService, transport),
    frames: createClient(FrameService, transport),
    query: createClient(QueryService, transport),
  };
}
